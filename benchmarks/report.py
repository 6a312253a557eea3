"""Renders ``benchmarks.run`` results as Markdown tables, generated sentences and figures.

    python -m benchmarks.report benchmarks/results/DIR [DIR ...] [--docs docs/benchmarks.md]
        [--readme README.md]

A directory is one ``benchmarks.run``, its processes merged (``runs.merge``); several directories
are runs of different groups on one machine, each group whole from one run (``runs.combine``).
The report goes into the first directory (``report.md``, ``report-*.png``); ``--docs`` replaces
the block between ``<!-- bench:DEVICE:start -->`` and ``<!-- bench:DEVICE:end -->`` with every
table, ``--readme`` the ``headline:DEVICE`` block with the headline (each library at its best and
as typically written, the figure, the sentences).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from jax_echo.io import atomic_write

from . import claims, figures
from .report_tables import (
    accuracy_table,
    best_table,
    end_to_end_table,
    measure_table,
    population_table,
    scaling_table,
    series_overview,
)
from .rows import (
    MS_PER_CALL,
    MS_PER_WINDOW,
    ONE,
    PEAK_MIB,
    SERIES,
    SIZES,
    US_PER_WINDOW,
    by,
    row_of,
)
from .runs import combine, load, machine_line, read

# The report's sections, group by group in order: their title, their table and its arguments.
# A group's figures (FIGURES_OF) follow its last section.
SECTIONS = {
    "series": [
        ("The series against its targets", series_overview, SERIES),
        ("The series, each library at its best and as typically written", best_table, SERIES),
        ("The series by implementation", measure_table, US_PER_WINDOW, SERIES),
    ],
    "realistic": [
        (
            "Realistic LSTM sizes, each library at its best and as typically written",
            best_table,
            SIZES,
            MS_PER_WINDOW,
        ),
        ("Realistic LSTM sizes by implementation", measure_table, MS_PER_WINDOW, SIZES),
        (
            "Realistic LSTM sizes: peak memory of one training call",
            measure_table,
            PEAK_MIB,
            SIZES,
            None,
        ),
    ],
    "population": [("Populations: member-windows per second", population_table)],
    "window": [
        (
            "One training window, tutorial config (measured apart from the series, in its own run)",
            measure_table,
            US_PER_WINDOW,
            ONE,
        )
    ],
    "epoch": [("One epoch, tutorial config", measure_table, MS_PER_CALL, ONE)],
    "compile": [("First call: build, trace and compile", measure_table, MS_PER_CALL, ONE)],
    "scaling": [("Scaling: sizes grown from the tutorial config", scaling_table)],
    "accuracy": [
        ("Accuracy: the tutorial run, and wall time to 99.9% from scratch", accuracy_table)
    ],
    "end_to_end": [
        ("The main job, `jax-echo train`, and the TF runs, end to end", end_to_end_table)
    ],
}
FIGURES_OF = {"series": ("headline", "series")}
FIGURES_OF |= {group: (group,) for group in ("realistic", "population", "window")}

__all__ = ["combine", "headline", "library_and_form", "load", "machine_line", "main", "render"]


library_and_form = row_of  # a row's library and form
Made = dict[str, list[str]]  # per device, the figures drawn


def _devices(data: dict[str, Any]):
    """``(device, its entries by group)``, devices by name."""
    for device, benches in sorted(by(data["benchmarks"], "device").items()):
        yield device, by(benches, "group")


def render(data: dict[str, Any], prefix: str, made: Made | None = None) -> dict[str, str]:
    """Per device, every section's table, the targets and the sentences; figures linked as
    ``prefix-NAME.png`` where ``made`` (per device) lists them."""
    docs = {}
    for device, groups in _devices(data):
        found = claims.targets(groups)
        lines = [machine_line(data), ""]
        if found:
            lines += ["**Targets**", "", *claims.targets_table(found), ""]
            lines += [*claims.headline(groups, found), ""]
        for group, sections in SECTIONS.items():
            if not groups.get(group):
                continue
            for title, table, *args in sections:
                lines += [f"**{title}** ({device})", "", *table(groups[group], *args), ""]
            shown = [f for f in FIGURES_OF.get(group, ()) if f in (made or {}).get(device, [])]
            if shown:
                lines += [*figures.figure_lines(prefix, device, shown), ""]
        docs[device] = "\n".join(lines).rstrip()
    return docs


def headline(data: dict[str, Any], prefix: str, made: Made | None = None) -> dict[str, str]:
    """Per device: each library at its best and as typically written on the series and the
    realistic sizes, the headline figure and the generated sentences."""
    out = {}
    for device, groups in _devices(data):
        lines = []
        for group, case, measure, what in (
            ("series", SERIES, US_PER_WINDOW, "The series"),
            ("realistic", SIZES, MS_PER_WINDOW, "Realistic LSTM sizes"),
        ):
            if groups.get(group):
                table = best_table(groups[group], case, measure)
                lines += [f"**{what}** ({device})", "", *table, ""]
        if "headline" in (made or {}).get(device, []):
            lines += [*figures.figure_lines(prefix, device, ["headline"]), ""]
        lines += [*claims.headline(groups, claims.targets(groups)), ""]
        lines.append(machine_line(data))
        out[device] = "\n".join(lines)
    return out


def update_block(path: Path, marker: str, device: str, text: str) -> None:
    """Replace ``path``'s block between ``<!-- MARKER:DEVICE:start -->`` and its end."""
    content = path.read_text()
    start, end = f"<!-- {marker}:{device}:start -->", f"<!-- {marker}:{device}:end -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(content):
        raise SystemExit(f"{path} has no {start} ... {end} block")
    content = pattern.sub(lambda _: f"{start}\n{text}\n{end}", content)
    atomic_write(path, lambda f: f.write(content), "w")


def block(path: Path, marker: str, device: str) -> str:
    """The text of ``path``'s block (``update_block``), for the docs' tests."""
    start, end = f"<!-- {marker}:{device}:start -->\n", f"\n<!-- {marker}:{device}:end -->"
    content = path.read_text()
    return content[content.index(start) + len(start) : content.index(end)]


def prefix_of(first: Path) -> Path:
    """Where a report's files go: ``DIR/report`` for a run's directory, ``FILE`` for a JSON's."""
    return first / "report" if first.is_dir() else first.with_suffix("")


def made_figures(data: dict[str, Any], prefix: Path) -> Made:
    """The figures of each device, drawn (``figures.draw``)."""
    return {
        device: figures.draw(benches, prefix, device, claims.MIN_MEMBER_WINDOWS_PER_S)
        for device, benches in by(data["benchmarks"], "device").items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = "benchmarks.run directories (each group from one of them), or one JSON file"
    parser.add_argument("file", type=Path, nargs="+", help=what)
    parser.add_argument("--docs", type=Path, help="update this file's bench:DEVICE blocks")
    parser.add_argument("--readme", type=Path, help="update this README's headline:DEVICE blocks")
    args = parser.parse_args(argv)
    data = read(args.file)
    prefix = prefix_of(args.file[0])
    made = made_figures(data, prefix)
    docs = render(data, prefix.name, made)
    md = "\n\n".join(f"### {device.upper()}\n\n{doc}" for device, doc in docs.items())
    atomic_write(prefix.with_suffix(".md"), lambda f: f.write(md + "\n"), "w")
    print(md)
    for path, marker, build in ((args.docs, "bench", render), (args.readme, "headline", headline)):
        if path:
            relative = os.path.relpath(prefix.parent.resolve(), path.resolve().parent)
            for device, doc in build(data, f"{relative}/{prefix.name}", made).items():
                update_block(path, marker, device, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
