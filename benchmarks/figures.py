"""The report's figures: ratios on log axes of whole decades with the ratio-1 line drawn, one
colour per library with a legend, the spread over processes as whiskers, titles that fit.

A row's time is shown relative to a reference (JAX's ``jax-epoch``, or JAX's fastest row), as
dots with whiskers, never bars (a bar's length on a log axis depends on where the axis starts).
"""

from __future__ import annotations

from pathlib import Path

from jax_echo.plot import Row, decades, dot, ratio_panel

from .rows import (
    JAX_EPOCH,
    MEMBER_WINDOWS_PER_S,
    MEMBERS,
    MS_PER_WINDOW,
    ONE,
    SERIES,
    SIZES,
    US_PER_WINDOW,
    Bench,
    Case,
    Measure,
    by,
    cases,
    label,
    libraries,
    library,
    library_best,
    name,
    ranked_rows,
)

# The figures each group gets (PREFIX-NAME.png), with their alt text.
FIGURES = {
    "headline": "each library's fastest row against JAX's, the series and the realistic sizes",
    "series": "the series by implementation",
    "realistic": "realistic LSTM sizes by implementation",
    "population": "population throughput",
    "window": "one training window by implementation",
}


def _row(b: Bench, measure: Measure) -> Row:
    return (label(b), library(b), measure.value(b), *measure.ends(b))


def _save(plt, fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _panels(plt, benches: list[Bench], case: Case, measure: Measure, reference, title: str, path):
    """A ``plot.ratio_panel`` per case, two to a row."""
    by_case = cases(benches, case)
    columns = min(len(by_case), 2)
    rows = -(-len(by_case) // columns)
    height = max(3.0, 0.22 * max(len(v) for v in by_case.values()) + 1.2)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, height * rows), squeeze=False)
    for ax, (k, entries) in zip(axes.flat, by_case.items(), strict=False):  # spare panels
        panel = [_row(b, measure) for b in ranked_rows(entries, measure)]
        ratio_panel(ax, panel, label(reference(entries)), case.head(k))
    for ax in list(axes.flat)[len(by_case) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    _save(plt, fig, path)


def _jax_epoch(entries: list[Bench]) -> Bench:
    return next((b for b in entries if name(b) == JAX_EPOCH), None) or library_best(entries, "jax")


def _jax_best(entries: list[Bench]) -> Bench:
    return library_best(entries, "jax") or entries[0]


def _headline(plt, groups: dict[str, list[Bench]], device: str, path) -> None:
    """Per case of the series and the realistic sizes, each library's fastest row's time over
    JAX's fastest row's."""
    parts = (("series", SERIES, US_PER_WINDOW), ("realistic", SIZES, MS_PER_WINDOW))
    columns = [
        (case.head(k), entries, measure)
        for group, case, measure in parts
        for k, entries in cases(groups.get(group, []), case).items()
    ]
    if not columns:
        return
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(columns) + 2), 4.2))
    found = libraries(b for _, entries, _ in columns for b in entries)
    values = []
    for j, lib in enumerate(found):
        offset = (j - (len(found) - 1) / 2) * 0.1
        for i, (_, entries, measure) in enumerate(columns):
            b, jax = library_best(entries, lib), library_best(entries, "jax")
            if b is not None and jax is not None:
                base, once = measure.value(jax), lib if i == 0 else None
                values += dot(ax, _row(b, measure), base, i + offset, False, label=once)
    ax.axhline(1.0, color="black", linewidth=0.8)
    decades(ax, values, "y")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([head for head, _, _ in columns], fontsize=8, rotation=20)
    ax.set_ylabel("fastest row's time / JAX's fastest (log)", fontsize=8)
    ax.set_title(
        f"Each library at its best ({device}), relative to JAX's fastest row\n"
        "(below 1: faster than JAX; whiskers: min-max over processes)",
        fontsize=9,
    )
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.legend(fontsize=7, ncol=len(found), loc="upper left")
    _save(plt, fig, path)


def _population(plt, benches: list[Bench], path, bound: float | None) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    values = []
    for implementation, entries in sorted(by(benches, "implementation").items()):
        points = sorted(entries, key=MEMBERS.key)
        ys = [MEMBER_WINDOWS_PER_S.value(b) for b in points]
        ends = [MEMBER_WINDOWS_PER_S.ends(b) for b in points]
        spread = [[y - lo for y, (lo, _) in zip(ys, ends, strict=True)]]
        spread.append([hi - y for y, (_, hi) in zip(ys, ends, strict=True)])
        xs = [MEMBERS.key(b) for b in points]
        ax.errorbar(xs, ys, yerr=spread, marker="o", capsize=3, label=implementation)
        values += [v for pair in ends for v in pair]
    if bound:
        target = f"target {bound:,.0f}"
        ax.axhline(bound, color="black", linestyle="--", linewidth=0.8, label=target)
        values.append(bound)
    ax.set_xscale("log")
    decades(ax, values, "y", one=False)
    ax.set(xlabel="members (tutorial models)", ylabel="member-windows per second (log)")
    ax.set_title(
        "Populations: one call trains every member's epoch\n(whiskers: min-max over processes)",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax.grid(which="major", alpha=0.3)
    _save(plt, fig, path)


def path(prefix: Path | str, figure: str, device: str) -> str:
    """``PREFIX-FIGURE.png`` for the CPU, ``PREFIX-FIGURE-DEVICE.png`` for another device."""
    return f"{prefix}-{figure}.png" if device == "cpu" else f"{prefix}-{figure}-{device}.png"


def draw(benches: list[Bench], prefix: Path, device: str, bound: float | None) -> list[str]:
    """Every figure this device's entries allow, into ``prefix``, with the population target
    ``bound``; their names (``FIGURES``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by(benches, "group")
    made = []

    def out(figure: str) -> str:
        made.append(figure)
        return path(prefix, figure, device)

    if groups.get("series") or groups.get("realistic"):
        _headline(plt, groups, device, out("headline"))
    if groups.get("series"):
        title = f"The series ({device}): us per window relative to jax-epoch"
        _panels(plt, groups["series"], SERIES, US_PER_WINDOW, _jax_epoch, title, out("series"))
    if groups.get("realistic"):
        title = f"Realistic LSTM sizes ({device}): ms per window relative to JAX's fastest row"
        _panels(plt, groups["realistic"], SIZES, MS_PER_WINDOW, _jax_best, title, out("realistic"))
    if groups.get("window"):
        title = f"One training window ({device}) relative to jax-epoch"
        _panels(plt, groups["window"], ONE, US_PER_WINDOW, _jax_epoch, title, out("window"))
    if groups.get("population"):
        _population(plt, groups["population"], out("population"), bound)
    return made


def figure_lines(prefix: str, device: str, made: list[str]) -> list[str]:
    return [f"![{FIGURES[f]}]({path(prefix, f, device)})" for f in made]
