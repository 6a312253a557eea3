"""What the report knows about a benchmark entry: its row (library, form), its case, its measures.

``row_of`` is the one place that reads a row's library and form (``jax_echo.registry.ROWS``);
the series' order and labels come from ``jax_echo.task.MODELS``, the realistic sizes from the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from jax_echo import registry
from jax_echo.plot import jax_first
from jax_echo.task import MODELS, EchoConfig

Bench = dict[str, Any]

REFERENCE = registry.REFERENCE  # the tutorial's own TF1 program
JAX_EPOCH = registry.FALLBACK_REFERENCE  # JAX's epoch: the base of every ratio to JAX

POPULATION_PREFIX = "jax-population-"  # -lanes or -vmap: one program for all members ...
ONE_BY_ONE = "jax-population-one-by-one"  # ... or train_epoch called for each member in turn


def name(b: Bench) -> str:
    return b["extra_info"]["implementation"]


def row_of(implementation: str) -> tuple[str, str]:
    """A row's library and form ("tuned" or "idiomatic", ``registry.Row.form``)."""
    if implementation.startswith(POPULATION_PREFIX):
        return "jax", "idiomatic" if implementation == ONE_BY_ONE else "tuned"
    r = registry.row(implementation)
    return r.library, r.form


def library(b: Bench) -> str:
    return row_of(name(b))[0]


def libraries(benches: Iterable[Bench]) -> list[str]:
    """The entries' libraries, JAX's first."""
    return jax_first(library(b) for b in benches)


def tf2(b: Bench) -> bool:
    """Whether the row is one of TensorFlow 2's (``tf.function``) forms."""
    return library(b) == "tensorflow" and name(b) != REFERENCE


def one_program(b: Bench) -> bool:
    """Whether the row trains a whole population in one program."""
    return name(b).startswith(POPULATION_PREFIX) and name(b) != ONE_BY_ONE


def own_math(b: Bench) -> bool:
    """Whether the row runs its library's own cell, whose math is not TF1's."""
    return b["extra_info"].get("exact_math") is False


def label(b: Bench) -> str:
    """The row's name, marked ``*`` where its cell's math is not TF1's."""
    return name(b) + (" *" if own_math(b) else "")


OWN_MATH_NOTE = "\\* the library's own cell, different math from TF1's (timed, not compared)."


class Measure(NamedTuple):
    """A number per benchmark entry: its column title, what it measures, and its direction."""

    title: str  # e.g. "us / window"
    what: str  # one sentence: what exactly is measured
    value: Callable[[Bench], float | None]
    lower_is_better: bool = True
    per_process: bool = True  # whether processes measure it apart (a compiled size does not)

    def ends(self, b: Bench) -> tuple[float, float]:
        """The lowest and highest value over the processes' medians."""
        medians = b["stats"].get("process_medians") or [b["stats"]["median"]]
        values = sorted(self.value({**b, "stats": {**b["stats"], "median": m}}) for m in medians)
        return values[0], values[-1]

    def faster(self, a: float, b: float) -> float:
        """How many times ``a`` is faster (better) than ``b``."""
        return b / a if self.lower_is_better else a / b


def per_window_us(b: Bench) -> float:
    return 1e6 * b["stats"]["median"] / b["extra_info"]["windows_per_call"]


US_PER_WINDOW = Measure(
    "us / window",
    "microseconds per training window: the median call's time divided by the windows it trains "
    "(one for a per-window row, every window of its epoch for a per-epoch row)",
    per_window_us,
)
MS_PER_WINDOW = Measure(
    "ms / window",
    US_PER_WINDOW.what.replace("microseconds", "milliseconds"),
    lambda b: per_window_us(b) / 1e3,
)
MS_PER_CALL = Measure(
    "ms / call",
    "milliseconds per call (the median call's time)",
    lambda b: 1e3 * b["stats"]["median"],
)
MEMBER_WINDOWS_PER_S = Measure(
    "member-windows / s",
    "trained windows per second summed over the population's members (members x windows of one "
    "call, divided by the median call's time)",
    lambda b: b["extra_info"]["windows_per_call"] / b["stats"]["median"],
    lower_is_better=False,
)
PEAK_MIB = Measure(
    "peak MiB",
    "peak memory of one training call in MiB, and what was measured: XLA's arguments, outputs "
    "and temporaries of the compiled epoch (JAX), or the allocator's peak "
    "(torch.cuda.max_memory_allocated, which also holds cached blocks); blank: not measured",
    lambda b: (b["extra_info"].get("peak_bytes") or 0) / 2**20 or None,
    per_process=False,
)


def us_of(entries: list[Bench], row: str) -> float | None:
    """Row ``row``'s us per window among ``entries``, or ``None``."""
    return next((US_PER_WINDOW.value(b) for b in entries if name(b) == row), None)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def number(v: float) -> str:
    return f"{v:,.1f}"


def times(r: float) -> str:
    """A ratio: one decimal from 1x, two significant digits below (never ``0.0x``)."""
    return f"{r:,.1f}x" if round(r, 1) >= 1 else f"{r:.2g}x"


def spread(b: Bench, measure: Measure) -> str:
    """The measure and its range over processes where there were several: ``12.3 (11.0-14.1)``."""
    v = measure.value(b)
    if len(b["stats"].get("process_medians", [])) < 2 or not measure.per_process:
        return number(v)
    low, high = measure.ends(b)
    return f"{number(v)} ({number(low)}-{number(high)})"


class Case(NamedTuple):
    """What a table's columns are: the key of an entry's case and its column head."""

    key: Callable[[Bench], Any]
    head: Callable[[Any], str]
    order: Callable[[Iterable[Any]], list[Any]] = sorted


def model_order(models: Iterable[str]) -> list[str]:
    """The series' models in ``MODELS``' order (any other after them, by name)."""
    models = set(models)
    return [m for m in MODELS if m in models] + sorted(models - set(MODELS))


def model_head(model: str) -> str:
    """``part N`` for a part's own model, else the model's name (``gru``, ``part6-keep1``)."""
    m = MODELS.get(model)
    return f"part {m.part}" if m is not None and model == f"part{m.part}" else model


def size(b: Bench) -> tuple[int, int, int]:
    e = b["extra_info"]
    return (e["state_size"], e["batch_size"], e["window_length"])


TUTORIAL = EchoConfig()
SERIES = Case(lambda b: b["extra_info"]["model"], model_head, model_order)
SIZES = Case(size, lambda key: "S{}, B{}, T{}".format(*key))
ONE = Case(lambda b: "tutorial", lambda _: "tutorial config")
MEMBERS = Case(
    lambda b: b["extra_info"]["population"], lambda n: f"{n:,} member{'s' if n != 1 else ''}"
)


def cases(benches: list[Bench], case: Case) -> dict[Any, list[Bench]]:
    """The entries by case, cases in their order."""
    keys = case.order({case.key(b) for b in benches})
    return {k: [b for b in benches if case.key(b) == k] for k in keys}


def by(benches: Iterable[Bench], field: str) -> dict[str, list[Bench]]:
    """Entries grouped by a field (``group``, or an ``extra_info`` field such as ``device``)."""
    out: dict[str, list[Bench]] = {}
    for b in benches:
        out.setdefault(b[field] if field in b else b["extra_info"][field], []).append(b)
    return out


def ranked_rows(benches: Iterable[Bench], measure: Measure) -> list[Bench]:
    """Best first: the one sort of rows every table and figure uses."""
    sign = 1 if measure.lower_is_better else -1
    return sorted(benches, key=lambda b: (sign * measure.value(b), name(b)))


def fastest(benches: Iterable[Bench], measure: Measure = US_PER_WINDOW) -> Bench | None:
    """The best entry by ``measure`` (``None`` for none)."""
    return next(iter(ranked_rows(benches, measure)), None)


def library_best(benches: Iterable[Bench], lib: str, form: str | None = None) -> Bench | None:
    """A library's fastest measured entry (of one form where ``form`` is given)."""
    return fastest(b for b in benches if library(b) == lib and form in (None, row_of(name(b))[1]))
