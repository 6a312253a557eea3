"""What the results say, from the results: each target, its measured value and whether it is met,
and the sentences the README leads with. Every number is formatted as the tables format it
(``rows.number``, ``rows.times``), so a sentence quotes a cell (``tests/test_report_docs.py``).
"""

from __future__ import annotations

from typing import NamedTuple

from .report_tables import lines
from .rows import (
    JAX_EPOCH,
    MEMBER_WINDOWS_PER_S,
    MEMBERS,
    MS_PER_WINDOW,
    REFERENCE,
    SERIES,
    SIZES,
    US_PER_WINDOW,
    Bench,
    cases,
    fastest,
    label,
    library_best,
    name,
    number,
    one_program,
    ratio,
    tf2,
    times,
    us_of,
)

# A series model's jax-epoch may cost at most this many times part 1's window ...
COST_VS_PART1 = {"part3": 2.5, "part4": 6.0}
# ... and must be at least this many times faster than its TF1 program and its fastest TF2 row.
MIN_SPEEDUP_VS_TF1 = 40.0
MIN_SPEEDUP_VS_TF2 = 5.0
# A population of at least MIN_MEMBERS tutorial models trains this many member-windows a second.
MIN_MEMBER_WINDOWS_PER_S = 500_000
MIN_MEMBERS = 256


class Target(NamedTuple):
    what: str
    target: str
    measured: str  # as the tables print it; "" when not measured
    met: bool | None  # None: not measured


def ratio_target(what: str, measured: float | None, op: str, bound: float) -> Target:
    """A target on a ratio: at most (``op`` "<=") or at least (">=") ``bound``."""
    if measured is None:
        return Target(what, f"{op} {bound:g}x", "", None)
    met = measured <= bound if op == "<=" else measured >= bound
    return Target(what, f"{op} {bound:g}x", times(measured), met)


def series_targets(series: list[Bench]) -> list[Target]:
    """Per model: TF1 / JAX and fastest TF2 / JAX; for parts 3 and 4 their cost vs part 1."""
    by_model = cases(series, SERIES)
    base = us_of(by_model.get("part1", []), JAX_EPOCH)
    out = []
    for model, entries in by_model.items():
        head, jax = SERIES.head(model), us_of(entries, JAX_EPOCH)
        if model in COST_VS_PART1:
            what, cost = f"{head}: jax-epoch cost vs part 1", ratio(jax, base)
            out.append(ratio_target(what, cost, "<=", COST_VS_PART1[model]))
        tf1 = ratio(us_of(entries, REFERENCE), jax)
        out.append(ratio_target(f"{head}: TF1 / JAX", tf1, ">=", MIN_SPEEDUP_VS_TF1))
        modern = min((US_PER_WINDOW.value(b) for b in entries if tf2(b)), default=None)
        tf2_ratio = ratio(modern, jax)
        out.append(ratio_target(f"{head}: fastest TF2 / JAX", tf2_ratio, ">=", MIN_SPEEDUP_VS_TF2))
    return out


def population_targets(population: list[Bench]) -> list[Target]:
    """Every population of at least ``MIN_MEMBERS``: its one-program row's throughput."""
    out = []
    for members, entries in cases(population, MEMBERS).items():
        lanes = fastest(filter(one_program, entries), MEMBER_WINDOWS_PER_S)
        if members < MIN_MEMBERS or lanes is None:
            continue
        rate, bound = MEMBER_WINDOWS_PER_S.value(lanes), MIN_MEMBER_WINDOWS_PER_S
        what = f"{members:,} members: {name(lanes)} member-windows / s"
        out.append(Target(what, f">= {bound:,}", number(rate), rate >= bound))
    return out


def realistic_targets(realistic: list[Bench]) -> list[Target]:
    """Per size: PyTorch's fastest row's time over JAX's (at least 1: JAX at most as slow)."""
    out = []
    for size, entries in cases(realistic, SIZES).items():
        jax, torch = library_best(entries, "jax"), library_best(entries, "torch")
        slower = MS_PER_WINDOW.value(torch) / MS_PER_WINDOW.value(jax) if jax and torch else None
        what = f"{SIZES.head(size)}: PyTorch's fastest / JAX's fastest time"
        out.append(ratio_target(what, slower, ">=", 1))
    return out


def targets(groups: dict[str, list[Bench]]) -> list[Target]:
    return [
        *series_targets(groups.get("series", [])),
        *population_targets(groups.get("population", [])),
        *realistic_targets(groups.get("realistic", [])),
    ]


def targets_table(found: list[Target]) -> list[str]:
    status = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}
    rows = [(t.what, t.target, t.measured or None, status[t.met]) for t in found]
    note = (
        "Columns: `bound`: what the project aims for; `measured`: the value in the tables of "
        "this run (times per window from the series and realistic tables, throughput from the "
        "population table)."
    )
    return lines(["target", "bound", "measured", "status"], rows, note)


def headline(groups: dict[str, list[Bench]], found: list[Target]) -> list[str]:
    """Two or three sentences from the results, each number a cell of the tables beside them."""
    out = []
    series = cases(groups.get("series", []), SERIES)
    tf1 = [t for t in found if t.what.endswith("TF1 / JAX") and t.met is not None]
    if series and tf1:
        lows = sorted(tf1, key=lambda t: float(t.measured.rstrip("x").replace(",", "")))
        met = sum(bool(t.met) for t in tf1)
        out.append(
            f"On the series ({', '.join(SERIES.head(m) for m in series)}), JAX's compiled epoch "
            f"trains a window {lows[0].measured} to {lows[-1].measured} faster than the author's "
            f"TF1 program ({met} of {len(tf1)} at the {MIN_SPEEDUP_VS_TF1:g}x target or above)."
        )
    realistic = cases(groups.get("realistic", []), SIZES)
    if realistic:
        sizes, led = [], 0
        for size, entries in realistic.items():
            best = library_best(entries, "jax")
            leader = min(entries, key=MS_PER_WINDOW.value)
            led += leader is best
            sizes.append(
                f"{SIZES.head(size)}: {label(leader)} {number(MS_PER_WINDOW.value(leader))} ms "
                f"against JAX's fastest, {label(best)}, {number(MS_PER_WINDOW.value(best))}"
            )
        out.append(
            f"At the realistic LSTM sizes JAX has the fastest measured row at {led} of "
            f"{len(realistic)} sizes (ms per window: " + "; ".join(sizes) + ")."
        )
    missed = [t for t in found if t.met is False]
    if missed:
        missed_text = "; ".join(f"{t.what} {t.measured} (bound {t.target})" for t in missed)
        out.append(f"Not met in this run: {missed_text}.")
    return out
