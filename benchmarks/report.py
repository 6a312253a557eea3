"""Renders pytest-benchmark JSON files as markdown tables and PNG plots.

    python -m benchmarks.report benchmarks/results/DIR [DIR ...] [--readme README.md]
    python -m benchmarks.report benchmarks/results/FILE.json [--readme README.md]

A directory is one ``benchmarks.run``: one JSON per process, merged here. Every row's value is
the median over the processes of each process's median, shown with the min-max over processes
where there were several (``merge``). Writes ``report.md`` into the directory (``FILE.md``
beside a file), and ``-window.png`` and ``-scaling.png`` plots where the run has those groups.

Several directories make one report of runs of different groups on one machine (``combine``):
each group's table comes whole from the one run that measured it, the machine line names every
run's groups and commit, and the report goes into the first directory.

First, per device, the ``series`` table: one row per model of the tutorial series, its cost per
window in JAX and TensorFlow, and a check of the targets (``COST_VS_PART1``,
``MIN_SPEEDUP_VS_TF1``, ``MIN_SPEEDUP_VS_TF2``). Then per group and device, a table of medians
per implementation with ratios to the TF1 reference (``tf-graph``), to the fastest TensorFlow
variant and to ``jax-epoch``; ``x faster`` means that implementation's time divides into the
other's that many times. With ``--readme``, the block between ``<!-- bench:DEVICE:start -->``
and ``<!-- bench:DEVICE:end -->`` is replaced with the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from jax_echo import bench, xla_flags
from jax_echo.tables import Column, markdown

REFERENCE = "tf-graph"  # the tutorial's own TF1 program
JAX_EPOCH = "jax-epoch"
TF2_PREFIX = "tf-function"  # every TF2 variant: tf-function[-epoch][-xla]

# Targets of the series: a model's JAX epoch may cost at most this many times part 1's ...
COST_VS_PART1 = {3: 2.5, 4: 6.0}
# ... and every model's JAX epoch must be at least this many times faster than its TF1
# reference and than its fastest TF2 variant.
MIN_SPEEDUP_VS_TF1 = 40.0
MIN_SPEEDUP_VS_TF2 = 5.0


def load(path: str | Path) -> dict[str, Any]:
    """One JSON file, or every process's JSON of a ``benchmarks.run`` directory, merged."""
    path = Path(path)
    if path.is_file():
        return merge([json.loads(path.read_text())])
    # The main processes first: the merged run's machine info is theirs (the data-parallel
    # processes see one CPU device per core).
    files = sorted(
        (f for f in path.glob("*.json") if f.name != "run.json"),
        key=lambda f: (not f.name.startswith("process-"), f.name),
    )
    if not files:
        raise SystemExit(f"{path} holds no benchmark JSON")
    data = merge([json.loads(f.read_text()) for f in files])
    run = path / "run.json"
    if run.exists():
        data["source"] = json.loads(run.read_text())
    return data


def _machine(data: dict[str, Any]) -> tuple[str, object, str]:
    """A run's CPU, core count and system (``machine_line``; ``combine`` compares them)."""
    m = data.get("machine_info", {})
    return (
        m.get("cpu", {}).get("brand_raw", m.get("processor", "")),
        m.get("cpu_count"),
        m.get("system", ""),
    )


def _source(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Where a run's numbers come from: its groups, start and commit."""
    source = data.get("source") or {}
    return {
        "path": str(path),
        "groups": sorted({b["group"] for b in data["benchmarks"]}),
        "datetime": data.get("datetime", ""),
        "commit": source.get("commit") or (data.get("commit_info") or {}).get("id", ""),
        "dirty": bool(source.get("dirty")),
    }


def combine(paths: list[Path]) -> dict[str, Any]:
    """Runs of different groups on one machine as one report (``load`` of each).

    A group must come whole from one run, so a group found in two of them is refused, as is a
    run from another machine (a different CPU or core count).
    """
    runs = [load(path) for path in paths]
    sources = [_source(path, data) for path, data in zip(paths, runs, strict=True)]
    owner: dict[str, str] = {}
    for data, source in zip(runs, sources, strict=True):
        if _machine(data) != _machine(runs[0]):
            raise SystemExit(
                f"{source['path']} was measured on {_machine(data)}, {paths[0]} on "
                f"{_machine(runs[0])}: one report is one machine"
            )
        for group in source["groups"]:
            if group in owner:
                raise SystemExit(
                    f"group {group!r} is in both {owner[group]} and {source['path']}: each table "
                    "comes from one run"
                )
            owner[group] = source["path"]
    return {
        **runs[0],
        "benchmarks": [b for data in runs for b in data["benchmarks"]],
        "sources": sources,
    }


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One benchmark per case: the median over processes of each process's median.

    ``stats["process_medians"]`` keeps every process's median, for the spread.
    """
    cases: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for data in runs:
        for b in data["benchmarks"]:
            cases[b["fullname"]].append(b)
    benches = []
    for group in cases.values():
        medians = sorted(b["stats"]["median"] for b in group)
        merged = {**group[0], "stats": {**group[0]["stats"]}}
        merged["stats"]["median"] = float(statistics.median(medians))
        merged["stats"]["process_medians"] = medians
        benches.append(merged)
    started = min((data.get("datetime", "") for data in runs), default="")
    return {**runs[0], "datetime": started, "benchmarks": benches}


def spread(b: dict[str, Any], value) -> str:
    """``value(b)``, and its range over processes where there were several: ``12.3 (11.0-14.1)``."""
    v = value(b)
    medians = b["stats"].get("process_medians", [])
    if len(medians) < 2:
        return f"{v:,.1f}"
    ends = sorted(
        value({**b, "stats": {**b["stats"], "median": m}}) for m in medians[:: len(medians) - 1]
    )
    return f"{v:,.1f} ({ends[0]:,.1f}-{ends[1]:,.1f})"


def per_window_us(bench: dict[str, Any]) -> float:
    return 1e6 * bench["stats"]["median"] / bench["extra_info"]["windows_per_call"]


def by_device(benches: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out = defaultdict(list)
    for b in benches:
        out[b["extra_info"]["device"]].append(b)
    return out


def _ratio(num: float | None, den: float | None) -> str:
    return "" if num is None or den is None else f"{num / den:.1f}x"


def speed_table(benches: list[dict[str, Any]], value, unit: str) -> list[str]:
    """Rows sorted fastest first: the median (min-max over processes), how many times that row
    is faster than tf-graph and than the fastest TF variant, and how many times jax-epoch is
    faster than it."""
    rows_by_name = {b["extra_info"]["implementation"]: b for b in benches}
    values = {name: value(b) for name, b in rows_by_name.items()}
    ref, jax_epoch = values.get(REFERENCE), values.get(JAX_EPOCH)
    tf_values = [v for k, v in values.items() if k.startswith("tf-")]
    fastest_tf = min(tf_values) if tf_values else None
    columns = [
        Column("implementation", right=False),
        Column(f"median {unit} (min-max)"),
        Column("vs TF1 graph"),
        Column("vs fastest TF"),
        Column("jax-epoch faster by"),
    ]
    rows = [
        (
            label(rows_by_name[name]),
            spread(rows_by_name[name], value),
            _ratio(ref, v),
            _ratio(fastest_tf, v),
            _ratio(v, jax_epoch),
        )
        for name, v in sorted(values.items(), key=lambda kv: kv[1])
    ]
    return markdown(columns, rows).splitlines()


def label(b: dict[str, Any]) -> str:
    """The row's name; a peer whose cell is not TF1's math says so."""
    e = b["extra_info"]
    differs = e.get("exact_math") is False
    return e["implementation"] + (" (own cell math)" if differs else "")


def _us(v: float | None) -> str:
    return "" if v is None else f"{v:,.1f}"


def _check(ratio: float | None, op: str, target: float, what: str) -> str:
    if ratio is None:
        return f"{what} {op} {target:g}x: NOT MEASURED"
    met = ratio <= target if op == "<=" else ratio >= target
    return f"{what} {op} {target:g}x: {'MET' if met else 'NOT MET'} ({ratio:.1f}x)"


def series_table(benches: list[dict[str, Any]]) -> list[str]:
    """One row per model: us per window per implementation, ratios, then the targets' checks.

    "JAX" in the ratios is ``jax-epoch``; the fastest TF2 variant is the fastest ``tf-function*``
    of that model (``tf-graph`` is the TF1 reference).
    """
    models: dict[str, dict[str, Any]] = {}
    times: dict[str, dict[str, float]] = defaultdict(dict)
    for b in benches:
        e = b["extra_info"]
        models[e["model"]] = e
        times[e["model"]][e["implementation"]] = per_window_us(b)
    order = sorted(models, key=lambda m: (models[m].get("part") is None, models[m].get("part"), m))
    part1 = next((m for m in order if models[m].get("part") == 1), None)
    base = times[part1].get(JAX_EPOCH) if part1 else None
    columns = [
        Column("model", right=False),
        Column("cell", right=False),
        Column("layers"),
        Column("what changed", right=False),
        Column("jax-epoch us/window", _us),
        Column("jax-step", _us),
        Column("tf-graph (TF1)", _us),
        Column("fastest TF2", right=False),
        Column("cost vs part 1"),
        Column("TF1 / JAX", "{:.1f}x"),
        Column("fastest TF2 / JAX", "{:.1f}x"),
    ]
    rows, checks = [], []
    for m in order:
        e, t = models[m], times[m]
        jax_us, tf1_us = t.get(JAX_EPOCH), t.get(REFERENCE)
        tf2 = {k: v for k, v in t.items() if k.startswith(TF2_PREFIX)}
        tf2_name = min(tf2, key=tf2.get) if tf2 else None
        tf2_us = tf2.get(tf2_name)
        vs_part1 = jax_us / base if jax_us and base else None
        vs_tf1 = tf1_us / jax_us if jax_us and tf1_us else None
        vs_tf2 = tf2_us / jax_us if jax_us and tf2_us else None
        label = f"part {e['part']}" if e.get("part") is not None else m
        fastest = f"{_us(tf2_us)} ({tf2_name})" if tf2_name else ""
        rows.append(
            (
                label,
                e["cell"],
                e["num_layers"],
                e.get("what_changed", ""),
                jax_us,
                t.get("jax-step"),
                tf1_us,
                fastest,
                _ratio(jax_us, base) if base else "",
                vs_tf1,
                vs_tf2,
            )
        )
        line = []
        if e.get("part") in COST_VS_PART1:
            line.append(_check(vs_part1, "<=", COST_VS_PART1[e["part"]], "cost vs part 1"))
        line.append(_check(vs_tf1, ">=", MIN_SPEEDUP_VS_TF1, "TF1 / JAX"))
        line.append(_check(vs_tf2, ">=", MIN_SPEEDUP_VS_TF2, "fastest TF2 / JAX"))
        checks.append(f"- {label}: " + "; ".join(line))
    return [*markdown(columns, rows).splitlines(), "", "Targets:", "", *checks]


def series_by_implementation(benches: list[dict[str, Any]]) -> list[str]:
    """Every implementation and peer (rows) on every model (columns): us per window."""
    models: dict[str, dict[str, Any]] = {}
    cells: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for b in benches:
        e = b["extra_info"]
        models[e["model"]] = e
        cells[e["implementation"]][e["model"]] = b
    order = sorted(models, key=lambda m: (models[m].get("part") is None, models[m].get("part"), m))
    names = sorted(
        cells, key=lambda n: per_window_us(cells[n].get(order[0]) or next(iter(cells[n].values())))
    )
    heads = [f"part {models[m]['part']}" if models[m].get("part") else m for m in order]
    columns = [Column("implementation", right=False), *(Column(f"{h} us/window") for h in heads)]
    rows = []
    for name in names:
        shown = []
        for m in order:
            b = cells[name].get(m)
            mark = " *" if b is not None and b["extra_info"].get("exact_math") is False else ""
            shown.append(None if b is None else spread(b, per_window_us) + mark)
        rows.append((name, *shown))
    rows = markdown(columns, rows).splitlines()
    if not any(b["extra_info"].get("exact_math") is False for b in benches):
        return rows
    return [
        *rows,
        "",
        "\\* the library's own cell, different math from TF1's (timed, not compared).",
    ]


def library_and_form(name: str) -> tuple[str, str]:
    """A row's library and form ("best" or "idiomatic"), from ``jax_echo.bench``'s rows; a
    rematerialised or data-parallel row (``jax-epoch-remat``, ``jax-epoch-data-parallel``), or
    a TF XLA row measured without the small-loop option (``tf-function-epoch-xla-no-small-loops``),
    is its row's."""
    r = bench.row(
        name.removesuffix("-remat").removesuffix("-data-parallel").removesuffix(xla_flags.SUFFIX)
    )
    return r.library, r.form


def best_forms_table(
    benches: list[dict[str, Any]], case, heads: dict[Any, str], scale: float = 1.0
) -> list[str]:
    """Per library, its fastest row of each form against ``jax-epoch``, per case (``case(b)``:
    a model or a size, ``heads`` its column titles): ``time (row): jax-epoch faster by``, the
    time in us per window divided by ``scale``."""
    fastest: dict[tuple[str, str], dict[Any, dict[str, Any]]] = defaultdict(dict)
    jax_epoch = {}
    for b in benches:
        name = b["extra_info"]["implementation"]
        key, where = library_and_form(name), case(b)
        if name == JAX_EPOCH:
            jax_epoch[where] = per_window_us(b)
        held = fastest[key].get(where)
        if held is None or per_window_us(b) < per_window_us(held):
            fastest[key][where] = b

    def cell(b):
        if b is None:
            return None
        mark = " *" if b["extra_info"].get("exact_math") is False else ""
        ratio = _ratio(per_window_us(b), jax_epoch.get(case(b)))
        time = _us(per_window_us(b) / scale)
        return f"{time} ({b['extra_info']['implementation']}{mark}): {ratio}"

    order = sorted(fastest, key=lambda k: (k[0] != "jax", k[0], k[1] != "best"))
    columns = [
        Column("library", right=False),
        Column("form", right=False),
        *(Column(head) for head in heads.values()),
    ]
    rows = [(lib, form, *(cell(fastest[lib, form].get(h)) for h in heads)) for lib, form in order]
    return markdown(columns, rows).splitlines()


def series_best_forms(benches: list[dict[str, Any]]) -> list[str]:
    """``best_forms_table`` over the series' models."""
    models = {b["extra_info"]["model"]: b["extra_info"] for b in benches}
    order = sorted(models, key=lambda m: (models[m].get("part") is None, models[m].get("part"), m))
    heads = {m: f"part {models[m]['part']}" if models[m].get("part") else m for m in order}
    return best_forms_table(benches, lambda b: b["extra_info"]["model"], heads)


def _size(b: dict[str, Any]) -> tuple[int, int, int]:
    e = b["extra_info"]
    return (e["state_size"], e["batch_size"], e["window_length"])


def realistic_best_forms(benches: list[dict[str, Any]]) -> list[str]:
    """``best_forms_table`` over the realistic LSTM sizes."""
    heads = {k: "S{}, B{}, T{}".format(*k) for k in sorted({_size(b) for b in benches})}
    return best_forms_table(benches, _size, heads, scale=1e3)


def scaling_table(benches: list[dict[str, Any]]) -> list[str]:
    impls = sorted({b["extra_info"]["implementation"] for b in benches})
    cells: dict[tuple, dict[str, float]] = defaultdict(dict)
    memory: dict[tuple, float] = {}
    for b in benches:
        e = b["extra_info"]
        key = (e["axis"], e["state_size"], e["batch_size"], e["window_length"], e.get("remat"))
        cells[key][e["implementation"]] = per_window_us(b)
        if e.get("xla_memory_bytes") is not None:
            memory[key] = e["xla_memory_bytes"]["peak"] / 2**20
    columns = [
        Column("grows", right=False),
        Column("state"),
        Column("batch"),
        Column("window"),
        Column("remat", right=False),
        *(Column(f"{i} us/window", "{:,.1f}") for i in impls),
        Column("ratio"),
        Column("JAX peak MiB (XLA args+outputs+temps)", "{:,.2f}"),
    ]
    rows = []
    for key in sorted(cells, key=lambda k: (k[0], k[1], k[2], k[3], bool(k[4]))):
        vals = [cells[key].get(i) for i in impls]
        ratio = (
            f"{max(vals) / min(vals):.1f}x ({impls[vals.index(min(vals))]} faster)"
            if None not in vals and len(vals) > 1
            else ""
        )
        remat = "yes" if key[4] else ""
        rows.append((*key[:4], remat, *vals, ratio, memory.get(key)))
    return markdown(columns, rows).splitlines()


def population_table(benches: list[dict[str, Any]]) -> list[str]:
    cells: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for b in benches:
        e = b["extra_info"]
        cells[e["population"]][e["implementation"].removeprefix("jax-population-")] = b

    def throughput(b):
        return b["extra_info"]["windows_per_call"] / b["stats"]["median"]

    columns = [
        Column("models"),
        Column("layout", right=False),
        Column("one call: windows / s (min-max)", lambda b: spread(b, throughput)),
        Column("one by one: windows / s (min-max)", lambda b: spread(b, throughput)),
        Column("speed-up"),
    ]
    rows = []
    for size in sorted(cells):
        o = cells[size].pop("one-by-one", None)
        for layout, v in sorted(cells[size].items()):  # lanes, or vmap (policy.population_lanes)
            speedup = f"{throughput(v) / throughput(o):.1f}x" if o else ""
            rows.append((size, layout, v, o, speedup))
    return markdown(columns, rows).splitlines()


def realistic_table(benches: list[dict[str, Any]]) -> list[str]:
    """Per LSTM size, every row fastest first: ms per window, vs jax-epoch, peak memory."""

    def ms(b):
        return per_window_us(b) / 1e3

    def size(b):
        e = b["extra_info"]
        return (e["state_size"], e["batch_size"], e["window_length"])

    columns = [
        Column("LSTM state, batch, window", right=False),
        Column("implementation", right=False),
        Column("ms / window (min-max)"),
        Column("jax-epoch faster by"),
        Column("peak MiB (what is measured)", right=False),
    ]
    rows = []
    for key in sorted({size(b) for b in benches}):
        case = sorted((b for b in benches if size(b) == key), key=ms)
        jax_epoch = next(
            (ms(b) for b in case if b["extra_info"]["implementation"] == JAX_EPOCH), None
        )
        for b in case:
            e = b["extra_info"]
            memory = (
                f"{e['peak_bytes'] / 2**20:,.1f} ({e['peak_what']})"
                if e.get("peak_bytes") is not None
                else "not measured"
            )
            rows.append(
                (
                    ", ".join(map(str, key)),
                    label(b),
                    spread(b, ms),
                    _ratio(ms(b), jax_epoch),
                    memory,
                )
            )
    return markdown(columns, rows).splitlines()


def end_to_end_table(benches: list[dict[str, Any]]) -> list[str]:
    """The whole training run as a subprocess: wall time and where it went (history.json)."""

    def seconds(b):
        return b["stats"]["median"]

    columns = [
        Column("run", right=False),
        Column("wall s (min-max)"),
        Column("training s", "{:.2f}"),
        Column("compile s"),
        Column("outside them s", "{:.2f}"),
        Column("outside / inside", "{:.2f}"),
        Column("compilations (cache hits)"),
    ]
    rows = []
    for b in sorted(benches, key=seconds):
        e = b["extra_info"]
        parts = e.get("breakdown") or {}
        train, comp = parts.get("training"), parts.get("compile")
        if train is None:
            split = (None, None, None, None)
        else:  # TensorFlow compiles inside its first epoch: counted in training
            inside = train + (comp or 0.0)
            outside = seconds(b) - inside
            shown = "in training" if comp is None else f"{comp:.2f}"
            split = (train, shown, outside, outside / inside)
        cache = (
            f"{e['compilations']} ({e.get('compile_cache_hits')})"
            if e.get("compilations") is not None
            else ""
        )
        rows.append((e["implementation"], spread(b, seconds), *split, cache))
    return markdown(columns, rows).splitlines()


def accuracy_table(benches: list[dict[str, Any]]) -> list[str]:
    columns = [
        Column("model", right=False),
        Column("implementation", right=False),
        Column("seconds to 99.9% (from scratch)", "{:.2f}"),
        Column("epochs"),
        Column("final accuracy after window 0", "{:.4%}"),
        Column("final accuracy", "{:.4%}"),
    ]
    rows = []

    def order(b):
        part = b["extra_info"].get("part", 1)  # files from before the series have part 1 only
        return (part is None, part, b["stats"]["median"])

    for b in sorted(benches, key=order):
        e = b["extra_info"]
        epochs = e["epochs_to_threshold"] if e["epochs_to_threshold"] is not None else "not reached"
        part = e.get("part", 1)
        model = f"part {part}" if part is not None else e.get("model", "")
        rows.append(
            (
                model,
                e["implementation"],
                b["stats"]["median"],
                epochs,
                e["final_accuracy_after_first"],
                e["final_accuracy"],
            )
        )
    return markdown(columns, rows).splitlines()


def machine_line(data: dict[str, Any]) -> str:
    m = data["machine_info"]
    v = m.get("library_versions", {})
    libs = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    cpu, cores, system = _machine(data)
    processes = max(
        (len(b["stats"].get("process_medians", [])) for b in data["benchmarks"]), default=1
    )

    def run(source: dict[str, Any]) -> str:
        dirty = " WITH UNCOMMITTED CHANGES" if source["dirty"] else ""
        return f"{source['datetime'][:19]} at commit {source['commit'][:10]}{dirty}"

    sources = data.get("sources")
    if sources:
        runs = "Runs by group: " + "; ".join(f"{', '.join(s['groups'])}: {run(s)}" for s in sources)
    else:
        runs = f"Run {run(_source(Path(), data))}"
    return (
        f"Machine: {cpu}, {cores} cores, {system} {m.get('release', '')}; "
        f"JAX devices: {', '.join(m.get('jax_devices', []))}. {libs}. "
        f"{runs}; medians over up to {processes} processes."
    )


def render(data: dict[str, Any], stem: str) -> dict[str, str]:
    """Markdown per device: every group's table."""
    groups: dict[str, list] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"]].append(b)
    docs: dict[str, list[str]] = defaultdict(list)
    sections = [
        (
            "series",
            "The series: training cost per window of each model (median us; epoch-level "
            "implementations: one epoch / 666)",
            series_table,
        ),
        (
            "series",
            "The series, each library at its best and as typically written: its fastest row of "
            "each form, us per window (the row): jax-epoch faster by",
            series_best_forms,
        ),
        (
            "series",
            "The series by implementation (median us per window, min-max over processes)",
            series_by_implementation,
        ),
        (
            "window",
            "One training window (epoch-level implementations: one epoch / 666)",
            lambda bs: speed_table(bs, per_window_us, "us / window"),
        ),
        (
            "epoch",
            "One epoch (666 windows)",
            lambda bs: speed_table(bs, lambda b: 1e3 * b["stats"]["median"], "ms / epoch"),
        ),
        (
            "compile",
            "First call: build, trace and compile",
            lambda bs: speed_table(bs, lambda b: 1e3 * b["stats"]["median"], "ms"),
        ),
        (
            "scaling",
            "Scaling: sizes grown from the tutorial config (us per window)",
            scaling_table,
        ),
        (
            "population",
            "Population: trained windows per second, one epoch of 20 windows per model",
            population_table,
        ),
        (
            "realistic",
            "Realistic sizes, each library at its best and as typically written: its fastest row "
            "of each form, ms per window (the row): jax-epoch faster by",
            realistic_best_forms,
        ),
        (
            "realistic",
            "Realistic sizes: LSTMs of state 128-256, batch 32-256, windows of 50-200 steps",
            realistic_table,
        ),
        (
            "accuracy",
            "Accuracy: the tutorial run, and wall time to 99.9% from scratch",
            accuracy_table,
        ),
        (
            "end_to_end",
            "The main job: `jax-echo train` (tutorial defaults) and the TF runs, end to end",
            end_to_end_table,
        ),
    ]
    for group, title, table in sections:
        for device, benches in sorted(by_device(groups.get(group, [])).items()):
            docs[device] += [f"**{title}** ({device})", "", *table(benches), ""]
    for device, lines in docs.items():
        figures = [
            f"![{alt}]({_figure(stem, group, device)})"
            for group, alt in PLOTS.items()
            if any(b["extra_info"]["device"] == device for b in groups.get(group, []))
        ]
        lines += [*figures, "", machine_line(data)]
    return {device: "\n".join(lines) for device, lines in docs.items()}


# The groups that get a figure (FILE-GROUP.png), with its alt text; only if the file has them.
PLOTS = {
    "series": "the series by implementation",
    "realistic": "realistic LSTM sizes by implementation",
    "population": "population throughput",
    "window": "per-window time",
    "scaling": "scaling",
}


def plot(data: dict[str, Any], out_prefix: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"]].append(b)
    drawers = {
        "series": _plot_series,
        "realistic": _plot_realistic,
        "population": _plot_population,
        "window": _plot_window,
        "scaling": _plot_scaling,
    }
    for group, draw in drawers.items():
        if groups.get(group):
            draw(plt, groups[group], out_prefix)


def _bar_rows(benches: list[dict[str, Any]], value) -> list[tuple[str, str, float, float, float]]:
    """``jax_echo.bench.bars`` rows, fastest first: name, library, median, process min, max."""
    rows = []
    for b in sorted(benches, key=value):
        medians = b["stats"].get("process_medians") or [b["stats"]["median"]]
        ends = [value({**b, "stats": {**b["stats"], "median": m}}) for m in medians]
        name = b["extra_info"]["implementation"]
        mark = " *" if b["extra_info"].get("exact_math") is False else ""
        rows.append((name + mark, library_and_form(name)[0], value(b), min(ends), max(ends)))
    return rows


def _panels(plt, cases: dict[str, list[dict[str, Any]]], value, ylabel: str, title: str, path):
    """One ``bars`` panel per case (a model, a size), two to a row."""
    columns = min(len(cases), 2)
    rows = -(-len(cases) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(7 * columns, 5 * rows), squeeze=False)
    for ax, (head, benches) in zip(axes.flat, cases.items(), strict=False):  # spare panels
        bench.bars(ax, _bar_rows(benches, value), ylabel=ylabel, title=head)
    for ax in list(axes.flat)[len(cases) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_series(plt, series: list[dict[str, Any]], out_prefix: Path) -> None:
    for device, benches in by_device(series).items():
        models = {b["extra_info"]["model"]: b["extra_info"] for b in benches}
        order = sorted(models, key=lambda m: (models[m].get("part") is None, models[m].get("part")))
        cases = {
            f"part {models[m]['part']}" if models[m].get("part") else m: [
                b for b in benches if b["extra_info"]["model"] == m
            ]
            for m in order
        }
        title = f"The series ({device}): us per training window, median over processes, " + (
            "whiskers min-max; * the library's own cell"
        )
        _panels(
            plt,
            cases,
            per_window_us,
            "us per window (log)",
            title,
            _path(out_prefix, "series", device),
        )


def _plot_realistic(plt, realistic: list[dict[str, Any]], out_prefix: Path) -> None:
    for device, benches in by_device(realistic).items():
        sizes = sorted({_size(b) for b in benches})
        cases = {
            "LSTM state {}, batch {}, {} steps".format(*k): [b for b in benches if _size(b) == k]
            for k in sizes
        }
        title = f"Realistic LSTM sizes ({device}): ms per training window, whiskers min-max"
        _panels(
            plt,
            cases,
            lambda b: per_window_us(b) / 1e3,
            "ms per window (log)",
            title,
            _path(out_prefix, "realistic", device),
        )


def _plot_population(plt, population: list[dict[str, Any]], out_prefix: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines: dict[tuple[str, str], list] = defaultdict(list)
    for b in population:
        e = b["extra_info"]
        rate = e["windows_per_call"] / b["stats"]["median"]
        lines[e["implementation"].removeprefix("jax-population-"), e["device"]].append(
            (e["population"], rate)
        )
    for (mode, device), points in sorted(lines.items()):
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, marker="o", label=f"{mode} ({device})")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="members (tutorial models)",
        ylabel="trained member-windows per second",
        title="Populations: one epoch of 20 windows per member",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{out_prefix}-population.png", dpi=100)
    plt.close(fig)


def _figure(stem: str, group: str, device: str) -> str:
    """The figure file of ``group`` for ``device``: one per device for the series and the
    realistic sizes (``_path``), one for every device otherwise."""
    if group in ("series", "realistic"):
        return _path(stem, group, device)
    return f"{stem}-{group}.png"


def _path(out_prefix: Path | str, group: str, device: str) -> str:
    """``PREFIX-GROUP.png`` for the CPU, ``PREFIX-GROUP-DEVICE.png`` for another device."""
    return f"{out_prefix}-{group}.png" if device == "cpu" else f"{out_prefix}-{group}-{device}.png"


def _plot_window(plt, window: list[dict[str, Any]], out_prefix: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(window), 4) + 1))
    window.sort(key=per_window_us, reverse=True)
    labels = [f"{b['extra_info']['implementation']} ({b['extra_info']['device']})" for b in window]
    values = [per_window_us(b) for b in window]
    colors = ["tab:orange" if "tf-" in name else "tab:blue" for name in labels]
    ax.barh(labels, values, color=colors)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.1f}", va="center", fontsize=8)
    ax.set(
        xscale="log",
        xlabel="microseconds per training window (median, log scale)",
        title="Echo RNN, tutorial config: one training window",
    )
    fig.tight_layout()
    fig.savefig(f"{out_prefix}-window.png", dpi=100)
    plt.close(fig)


def _plot_scaling(plt, scaling: list[dict[str, Any]], out_prefix: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, field in zip(axes, ["state_size", "batch_size", "window_length"], strict=True):
        lines = defaultdict(list)
        tutorial = {"state_size": 4, "batch_size": 5, "window_length": 15}
        for b in scaling:
            e = b["extra_info"]
            # Points that differ from the tutorial config in this field only (or not at all).
            others = all(e[f] == v for f, v in tutorial.items() if f != field)
            if others and not e.get("remat"):
                lines[(e["implementation"], e["device"])].append((e[field], per_window_us(b)))
        for (impl, device), points in sorted(lines.items()):
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, marker="o", label=f"{impl} ({device})")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel=field,
            ylabel="us per window",
            title=f"growing {field}",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{out_prefix}-scaling.png", dpi=100)
    plt.close(fig)


def update_readme(readme: Path, device: str, markdown: str) -> None:
    text = readme.read_text()
    start, end = f"<!-- bench:{device}:start -->", f"<!-- bench:{device}:end -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{readme} has no {start} ... {end} block")
    text = pattern.sub(lambda _: f"{start}\n{markdown}\n{end}", text)
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "file",
        type=Path,
        nargs="+",
        help="benchmarks.run directories (each group from one of them), or one JSON file",
    )
    parser.add_argument("--readme", type=Path, help="update this README's benchmark blocks")
    args = parser.parse_args(argv)
    first = args.file[0]
    data = load(first) if len(args.file) == 1 else combine(args.file)
    prefix = first / "report" if first.is_dir() else first.with_suffix("")
    plot(data, prefix)
    docs = render(data, prefix.name)
    md = "\n\n".join(f"### {device.upper()}\n\n{doc}" for device, doc in docs.items())
    prefix.with_suffix(".md").write_text(md + "\n")
    print(md)
    if args.readme:
        relative = os.path.relpath(prefix.parent.resolve(), args.readme.resolve().parent)
        for device, doc in render(data, f"{relative}/{prefix.name}").items():
            update_readme(args.readme, device, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
