"""The report's tables, each a list of Markdown lines ending with what its columns measure.

``measure_table`` is the one generic table: a measure per case (a model of the series, an LSTM
size, a population), one row per implementation, best first. The others say what it cannot:
the series against its targets, each library at its best, scaling, accuracy, the main job.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from jax_echo.tables import Column, markdown

from .rows import (
    JAX_EPOCH,
    MEMBER_WINDOWS_PER_S,
    OWN_MATH_NOTE,
    REFERENCE,
    TUTORIAL,
    US_PER_WINDOW,
    Bench,
    Case,
    Measure,
    cases,
    label,
    library_best,
    name,
    number,
    one_program,
    own_math,
    ranked_rows,
    row_of,
    spread,
    tf2,
    times,
)

SPREAD = "median over processes of each process's median, (min-max) over the processes"


def _windows(benches: list[Bench]) -> str:
    counts = sorted({b["extra_info"]["windows_per_call"] for b in benches})
    return f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}-{counts[-1]:,}"


def _notes(benches: list[Bench], *lines: str) -> list[str]:
    notes = [line for line in lines if line]
    if any(own_math(b) for b in benches):
        notes.append(OWN_MATH_NOTE)
    return ["", *notes]


def measure_table(
    benches: list[Bench], measure: Measure, case: Case, versus: str | None = JAX_EPOCH
) -> list[str]:
    """One row per implementation (best first in the first case), per case its measure with
    the spread over processes and, where ``versus`` ran, how many times ``versus`` is faster."""
    by_case = cases(benches, case)
    rows: dict[str, dict[Any, Bench]] = defaultdict(dict)
    for key, entries in by_case.items():
        for b in ranked_rows(entries, measure):
            rows[name(b)][key] = b
    ref = {k: next((b for b in v if name(b) == versus), None) for k, v in by_case.items()}
    shown = {k for k, b in ref.items() if b is not None}
    columns = [Column("implementation", right=False), Column("library, form", right=False)]
    columns.append(Column("windows / call"))
    for k in by_case:
        spread_head = " (min-max)" if measure.per_process else ""
        columns.append(Column(f"{case.head(k)}: {measure.title}{spread_head}"))
        if k in shown:
            columns.append(Column(f"{case.head(k)}: {versus} faster by"))
    table = []
    for row, cells in rows.items():
        line: list[Any] = [row, ", ".join(row_of(row))]
        line.append(_windows(list(cells.values())))
        for k in by_case:
            b = cells.get(k)
            line.append(None if b is None else spread(b, measure) + (" *" if own_math(b) else ""))
            if k in shown:
                ratio = (
                    None if b is None else measure.faster(measure.value(ref[k]), measure.value(b))
                )
                line.append(None if ratio is None else times(ratio))
        table.append(line)
    faster = (
        f"; `{versus} faster by`: how many times {versus}'s median beats the row's" if shown else ""
    )
    return [
        *markdown(columns, table).splitlines(),
        *_notes(
            benches,
            f"Columns: `{measure.title}`: {measure.what}"
            f"{'; ' + SPREAD if measure.per_process else ''}{faster}; `windows / call`: "
            "the windows one timed call trains.",
        ),
    ]


def best_table(benches: list[Bench], case: Case, measure: Measure = US_PER_WINDOW) -> list[str]:
    """Per library, its fastest measured row and its fastest idiomatic row, per case: the
    measure (the row) and its time relative to JAX's fastest measured row there."""
    by_case = cases(benches, case)
    jax = {k: library_best(v, "jax") for k, v in by_case.items()}
    libraries = sorted({row_of(name(b))[0] for b in benches}, key=lambda lib: (lib != "jax", lib))
    columns = [Column("library", right=False), Column("row", right=False)]
    columns += [Column(f"{case.head(k)}: {measure.title} (row), x JAX's fastest") for k in by_case]
    table = []
    for library in libraries:
        for form, title in ((None, "fastest measured"), ("idiomatic", "as typically written")):
            cells = []
            for k, entries in by_case.items():
                b = library_best(entries, library, form)
                if b is None:
                    cells.append(None)
                    continue
                relative = measure.value(b) / measure.value(jax[k]) if jax[k] else None
                tail = "" if relative is None else f": {times(relative)}"
                cells.append(f"{number(measure.value(b))} ({label(b)}){tail}")
            table.append((library, title, *cells))
    return [
        *markdown(columns, table).splitlines(),
        *_notes(
            benches,
            f"Columns: `{measure.title}`: {measure.what}, {SPREAD.split(',')[0]}; `fastest "
            "measured`: the library's fastest row in this run, whatever its form; `as typically "
            "written`: its fastest row of the form its documentation teaches (idiomatic); `x "
            "JAX's fastest`: the row's time divided by JAX's fastest row's (below 1x: faster "
            "than JAX).",
        ),
    ]


def series_overview(benches: list[Bench], case: Case) -> list[str]:
    """One row per model: JAX's epoch, TF1's program and TF2's fastest row, and the ratios the
    series' targets are about."""
    by_case = cases(benches, case)
    part1 = next(iter(by_case), None)
    base = _time(by_case.get(part1, []), JAX_EPOCH)
    columns = [
        Column("model", right=False),
        Column("cell", right=False),
        Column("layers"),
        Column("what changed", right=False),
        Column("jax-epoch us / window", number),
        Column("tf-graph (TF1) us / window", number),
        Column("fastest TF2 us / window (row)", right=False),
        Column(f"jax-epoch cost vs {case.head(part1)}", times),
        Column("TF1 / JAX", times),
        Column("fastest TF2 / JAX", times),
    ]
    table = []
    for k, entries in by_case.items():
        e = entries[0]["extra_info"]
        jax, tf1 = _time(entries, JAX_EPOCH), _time(entries, REFERENCE)
        modern = min(
            (b for b in entries if tf2(b)),
            key=US_PER_WINDOW.value,
            default=None,
        )
        tf2_us = US_PER_WINDOW.value(modern) if modern else None
        table.append(
            (
                case.head(k),
                e["cell"],
                e["num_layers"],
                e.get("what_changed", ""),
                jax,
                tf1,
                f"{number(tf2_us)} ({name(modern)})" if modern else None,
                jax / base if jax and base else None,
                tf1 / jax if tf1 and jax else None,
                tf2_us / jax if tf2_us and jax else None,
            )
        )
    return [
        *markdown(columns, table).splitlines(),
        *_notes(
            benches,
            f"Columns: us / window: {US_PER_WINDOW.what}, {SPREAD.split(',')[0]}; `TF1 / JAX`: "
            "tf-graph's time divided by jax-epoch's; `fastest TF2`: the fastest tf-function "
            "row of that model.",
        ),
    ]


def _time(entries: list[Bench], row: str) -> float | None:
    return next((US_PER_WINDOW.value(b) for b in entries if name(b) == row), None)


def scaling_table(benches: list[Bench]) -> list[str]:
    """Sizes grown one at a time from the tutorial's: us per window per implementation, and
    the JAX epoch's peak memory (XLA's buffers of one call)."""
    impls = sorted({name(b) for b in benches})
    cells: dict[tuple, dict[str, float]] = defaultdict(dict)
    memory: dict[tuple, float] = {}
    windows: dict[tuple, int] = {}
    for b in benches:
        e = b["extra_info"]
        key = (
            e["axis"],
            e["state_size"],
            e["batch_size"],
            e["window_length"],
            bool(e.get("remat")),
        )
        cells[key][name(b)] = US_PER_WINDOW.value(b)
        if e.get("xla_memory_bytes") is not None:
            memory[key] = e["xla_memory_bytes"]["peak"] / 2**20
            windows[key] = e["windows_per_call"]
    columns = [
        Column("grows", right=False),
        Column("state"),
        Column("batch"),
        Column("window"),
        Column("remat", right=False),
        *(Column(f"{i} us / window", number) for i in impls),
        Column("ratio", right=False),
        Column("JAX peak MiB (XLA buffers of one call)", "{:,.2f}"),
        Column("windows in that call"),
    ]
    table = []
    for key in sorted(cells):
        vals = [cells[key].get(i) for i in impls]
        ratio = None
        if None not in vals and len(vals) > 1:
            ratio = f"{times(max(vals) / min(vals))} ({impls[vals.index(min(vals))]} faster)"
        table.append(
            (*key[:4], "yes" if key[4] else "", *vals, ratio, memory.get(key), windows.get(key))
        )
    return [
        *markdown(columns, table).splitlines(),
        "",
        f"Columns: one size at a time grown from the tutorial's (state {TUTORIAL.state_size}, "
        f"batch {TUTORIAL.batch_size}, window {TUTORIAL.truncated_backprop_length}); us / window: "
        f"{US_PER_WINDOW.what}, {SPREAD.split(',')[0]}; `ratio`: the slower row's time over the "
        "faster's; peak MiB: XLA's arguments, outputs and temporaries of one compiled call of "
        "jax-epoch, which trains the windows the last column says (a remat row's call is shorter, "
        "so its memory compares with its own row only).",
    ]


def accuracy_table(benches: list[Bench], case: Case) -> list[str]:
    """Per model and row: wall time and epochs to 99.9% from scratch, the final accuracies."""
    columns = [
        Column("model", right=False),
        Column("implementation", right=False),
        Column("seconds to 99.9% (from scratch)", "{:.2f}"),
        Column("epochs"),
        Column("final accuracy after window 0", "{:.4%}"),
        Column("final accuracy", "{:.4%}"),
    ]
    table = []
    for k, entries in cases(benches, case).items():
        for b in sorted(entries, key=lambda b: b["stats"]["median"]):
            e = b["extra_info"]
            epochs = e["epochs_to_threshold"]
            table.append(
                (
                    case.head(k),
                    label(b),
                    b["stats"]["median"],
                    "not reached" if epochs is None else epochs,
                    e["final_accuracy_after_first"],
                    e["final_accuracy"],
                )
            )
    return [
        *markdown(columns, table).splitlines(),
        *_notes(
            benches,
            "Columns: seconds from the first call (compilation included) until the epoch whose "
            "accuracy reaches 99.9%, median over processes; `after window 0`: the accuracy "
            "without each epoch's first window, which cannot be predicted.",
        ),
    ]


def end_to_end_table(benches: list[Bench]) -> list[str]:
    """The whole training run as a subprocess: wall time and where it went (history.json)."""
    columns = [
        Column("run", right=False),
        Column("wall s (min-max)"),
        Column("training s", "{:.2f}"),
        Column("compile s", right=False),
        Column("outside them s", "{:.2f}"),
        Column("outside / inside", "{:.2f}"),
        Column("compilations (cache hits)", right=False),
    ]
    seconds = Measure("s", "", lambda b: b["stats"]["median"])
    table = []
    for b in ranked_rows(benches, seconds):
        e = b["extra_info"]
        parts = e.get("breakdown") or {}
        train, comp = parts.get("training"), parts.get("compile")
        split: tuple = (None, None, None, None)
        if train is not None:  # TensorFlow compiles inside its first epoch: counted in training
            inside = train + (comp or 0.0)
            outside = b["stats"]["median"] - inside
            split = (
                train,
                "in training" if comp is None else f"{comp:.2f}",
                outside,
                outside / inside,
            )
        cache = None
        if e.get("compilations") is not None:
            cache = f"{e['compilations']} ({e.get('compile_cache_hits')})"
        table.append((name(b), spread(b, seconds), *split, cache))
    return [
        *markdown(columns, table).splitlines(),
        "",
        "Columns: the whole command as a subprocess, process start to its last file; training, "
        "compile and the rest from the run's history.json (one process: the run's own record).",
    ]


def population_table(benches: list[Bench], case: Case) -> list[str]:
    """``measure_table`` of member-windows per second against the members-in-lanes layout."""
    lanes = next((name(b) for b in benches if one_program(b)), None)
    return measure_table(benches, MEMBER_WINDOWS_PER_S, case, versus=lanes)
