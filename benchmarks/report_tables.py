"""The report's tables, each a list of Markdown lines ending with what its columns measure.

``measure_table`` is the generic one: a measure per case (a model of the series, an LSTM size, a
population), one row per implementation, best first. The others say what it cannot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from jax_echo.tables import Column, markdown

from .rows import (
    JAX_EPOCH,
    MEMBER_WINDOWS_PER_S,
    MEMBERS,
    OWN_MATH_NOTE,
    REFERENCE,
    SERIES,
    TUTORIAL,
    US_PER_WINDOW,
    Bench,
    Case,
    Measure,
    cases,
    fastest,
    label,
    libraries,
    library_best,
    name,
    number,
    one_program,
    own_math,
    ranked_rows,
    ratio,
    row_of,
    size,
    spread,
    tf2,
    times,
    us_of,
)

SPREAD = "median over processes of each process's median, (min-max) over the processes"
MEDIAN = SPREAD.split(",")[0]


def lines(columns: list, table: list, note: str, benches: Iterable[Bench] = ()) -> list[str]:
    """The table, a blank line, what its columns measure and, where a row of ``benches`` runs
    its library's own math, the note that says so."""
    own = [OWN_MATH_NOTE] if any(own_math(b) for b in benches) else []
    return [*markdown(columns, table).splitlines(), "", note, *own]


def measure_table(
    benches: list[Bench], measure: Measure, case: Case, versus: str | None = JAX_EPOCH
) -> list[str]:
    """One row per implementation (best first in the first case), per case its measure with
    the spread over processes and, where ``versus`` ran, how many times ``versus`` is faster;
    entries without the measure are left out."""
    benches = [b for b in benches if measure.value(b)]
    by_case = cases(benches, case)
    rows: dict[str, dict[Any, Bench]] = defaultdict(dict)
    for key, entries in by_case.items():
        for b in ranked_rows(entries, measure):
            rows[name(b)][key] = b
    ref = {k: b for k, entries in by_case.items() for b in entries if name(b) == versus}
    columns = ["implementation", "library, form", Column("windows / call")]
    spread_head = " (min-max)" if measure.per_process else ""
    for k in by_case:
        columns.append(Column(f"{case.head(k)}: {measure.title}{spread_head}"))
        if k in ref:
            columns.append(Column(f"{case.head(k)}: {versus} faster by"))
    table = []
    for row, cells in rows.items():
        counts = sorted({b["extra_info"]["windows_per_call"] for b in cells.values()})
        windows = f"{counts[0]:,}" + (f"-{counts[-1]:,}" if len(counts) > 1 else "")
        line: list[Any] = [row, ", ".join(row_of(row)), windows]
        for k in by_case:
            b = cells.get(k)
            if b is None:
                line += [None] * (1 + (k in ref))
                continue
            line.append(spread(b, measure) + (" *" if own_math(b) else ""))
            if k in ref:
                line.append(times(measure.faster(measure.value(ref[k]), measure.value(b))))
        table.append(line)
    faster = f"; `{versus} faster by`: how many times {versus}'s median beats the row's"
    note = (
        f"Columns: `{measure.title}`: {measure.what}{'; ' + SPREAD if measure.per_process else ''}"
        f"{faster if ref else ''}; `windows / call`: the windows one timed call trains."
    )
    return lines(columns, table, note, benches)


def best_table(benches: list[Bench], case: Case, measure: Measure = US_PER_WINDOW) -> list[str]:
    """Per library, its fastest measured row and its fastest idiomatic row, per case: the
    measure (the row) and its time relative to JAX's fastest measured row there."""
    by_case = cases(benches, case)
    jax = {k: library_best(v, "jax") for k, v in by_case.items()}
    columns = ["library", "row"]
    columns += [Column(f"{case.head(k)}: {measure.title} (row), x JAX's fastest") for k in by_case]

    def cell(k, entries: list[Bench], library: str, form: str | None) -> str | None:
        b = library_best(entries, library, form)
        if b is None:
            return None
        tail = f": {times(measure.value(b) / measure.value(jax[k]))}" if jax[k] else ""
        return f"{number(measure.value(b))} ({label(b)}){tail}"

    table = [
        (library, title, *(cell(k, entries, library, form) for k, entries in by_case.items()))
        for library in libraries(benches)
        for form, title in ((None, "fastest measured"), ("idiomatic", "as typically written"))
    ]
    note = (
        f"Columns: `{measure.title}`: {measure.what}, {MEDIAN}; `fastest measured`: the "
        "library's fastest row in this run, whatever its form; `as typically written`: its "
        "fastest row of the form its documentation teaches (idiomatic); `x JAX's fastest`: the "
        "row's time divided by JAX's fastest row's (below 1x: faster than JAX)."
    )
    return lines(columns, table, note, benches)


def series_overview(benches: list[Bench], case: Case) -> list[str]:
    """One row per model: JAX's epoch, TF1's program and TF2's fastest row, and the ratios the
    series' targets are about."""
    by_case = cases(benches, case)
    part1 = next(iter(by_case), None)
    base = us_of(by_case.get(part1, []), JAX_EPOCH)
    columns = ["model", "cell", Column("layers"), "what changed"]
    columns += [Column(f"{row} us / window", number) for row in ("jax-epoch", "tf-graph (TF1)")]
    columns.append("fastest TF2 us / window (row)")
    heads = (f"jax-epoch cost vs {case.head(part1)}", "TF1 / JAX", "fastest TF2 / JAX")
    columns += [Column(head, times) for head in heads]
    table = []
    for k, entries in by_case.items():
        e = entries[0]["extra_info"]
        jax, tf1 = us_of(entries, JAX_EPOCH), us_of(entries, REFERENCE)
        modern = fastest(filter(tf2, entries))
        tf2_us = US_PER_WINDOW.value(modern) if modern else None
        tf2_cell = f"{number(tf2_us)} ({name(modern)})" if modern else None
        model = (case.head(k), e["cell"], e["num_layers"], e.get("what_changed", ""), jax, tf1)
        table.append((*model, tf2_cell, ratio(jax, base), ratio(tf1, jax), ratio(tf2_us, jax)))
    note = (
        f"Columns: us / window: {US_PER_WINDOW.what}, {MEDIAN}; `TF1 / JAX`: tf-graph's time "
        "divided by jax-epoch's; `fastest TF2`: the fastest tf-function row of that model."
    )
    return lines(columns, table, note, benches)


def scaling_table(benches: list[Bench]) -> list[str]:
    """Sizes grown one at a time from the tutorial's: us per window per implementation, and
    the JAX epoch's peak memory (XLA's buffers of one call)."""
    impls = sorted({name(b) for b in benches})
    cells: dict[tuple, dict[str, float]] = defaultdict(dict)
    memory: dict[tuple, float] = {}
    windows: dict[tuple, int] = {}
    for b in benches:
        e = b["extra_info"]
        key = (e["axis"], *size(b), bool(e.get("remat")))
        cells[key][name(b)] = US_PER_WINDOW.value(b)
        if e.get("xla_memory_bytes") is not None:
            memory[key] = e["xla_memory_bytes"]["peak"] / 2**20
            windows[key] = e["windows_per_call"]
    columns = ["grows", Column("state"), Column("batch"), Column("window"), "remat"]
    columns += [Column(f"{i} us / window", number) for i in impls]
    columns += ["ratio", Column("JAX peak MiB (XLA buffers of one call)", "{:,.2f}")]
    columns.append(Column("windows in that call"))
    table = []
    for key in sorted(cells):
        vals = [cells[key].get(i) for i in impls]
        faster = None
        if None not in vals and len(vals) > 1:
            faster = f"{times(max(vals) / min(vals))} ({impls[vals.index(min(vals))]} faster)"
        remat = "yes" if key[4] else ""
        table.append((*key[:4], remat, *vals, faster, memory.get(key), windows.get(key)))
    note = (
        f"Columns: one size at a time grown from the tutorial's (state {TUTORIAL.state_size}, "
        f"batch {TUTORIAL.batch_size}, window {TUTORIAL.truncated_backprop_length}); us / window: "
        f"{US_PER_WINDOW.what}, {MEDIAN}; `ratio`: the slower row's time over the faster's; peak "
        "MiB: XLA's arguments, outputs and temporaries of one compiled call of jax-epoch, which "
        "trains the windows the last column says (a remat row's call is shorter, so its memory "
        "compares with its own row only)."
    )
    return lines(columns, table, note)


def accuracy_table(benches: list[Bench]) -> list[str]:
    """Per model and row: wall time and epochs to 99.9% from scratch, the final accuracies."""
    columns = ["model", "implementation", Column("seconds to 99.9% (from scratch)", "{:.2f}")]
    columns += [Column("epochs"), Column("final accuracy after window 0", "{:.4%}")]
    columns.append(Column("final accuracy", "{:.4%}"))
    table = []
    models = SERIES._replace(key=lambda b: b["extra_info"].get("model", "part1"))
    for k, entries in cases(benches, models).items():
        for b in sorted(entries, key=lambda b: b["stats"]["median"]):
            e = b["extra_info"]
            epochs = "not reached" if e["epochs_to_threshold"] is None else e["epochs_to_threshold"]
            finals = (e["final_accuracy_after_first"], e["final_accuracy"])
            table.append((models.head(k), label(b), b["stats"]["median"], epochs, *finals))
    note = (
        "Columns: seconds from the first call (compilation included) until the epoch whose "
        "accuracy reaches 99.9%, median over processes; `after window 0`: the accuracy without "
        "each epoch's first window, which cannot be predicted."
    )
    return lines(columns, table, note, benches)


def end_to_end_table(benches: list[Bench]) -> list[str]:
    """The whole training run as a subprocess: wall time and where it went (history.json)."""
    columns = ["run", Column("wall s (min-max)"), Column("training s", "{:.2f}"), "compile s"]
    columns += [Column("outside them s", "{:.2f}"), Column("outside / inside", "{:.2f}")]
    columns.append("compilations (cache hits)")
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
            compile_s = "in training" if comp is None else f"{comp:.2f}"
            split = (train, compile_s, outside, outside / inside)
        cache = None
        if e.get("compilations") is not None:
            cache = f"{e['compilations']} ({e.get('compile_cache_hits')})"
        table.append((name(b), spread(b, seconds), *split, cache))
    note = (
        "Columns: the whole command as a subprocess, process start to its last file; training, "
        "compile and the rest from the run's history.json (one process: the run's own record)."
    )
    return lines(columns, table, note)


def population_table(benches: list[Bench]) -> list[str]:
    """``measure_table`` of member-windows per second against the members-in-lanes layout."""
    lanes = next((name(b) for b in benches if one_program(b)), None)
    return measure_table(benches, MEMBER_WINDOWS_PER_S, MEMBERS, versus=lanes)
