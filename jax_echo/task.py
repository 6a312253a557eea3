"""The echo task as the tutorial series defines it: configuration and data.

NumPy only, so that every implementation (JAX here, TensorFlow in ``tf_echo``) starts from the
same config and the same series. ``EchoConfig.for_part(n)`` gives part n of the series (1-6).

Shape legend used across the project: B batch, T time steps of a window, S state, C classes,
N windows per epoch, L steps per row of the series.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class EchoConfig:
    """Hyperparameters of the tutorial run; the defaults are the tutorial's own."""

    num_epochs: int = 100  # each epoch generates a fresh series
    total_series_length: int = 50000  # length of one generated series
    truncated_backprop_length: int = 15  # T: time steps per training window
    state_size: int = 4  # S: hidden units
    num_classes: int = 2  # C: symbols in the series
    echo_step: int = 3  # the target is the input delayed by this many steps
    batch_size: int = 5  # B: the series is cut into this many parallel rows
    learning_rate: float = 0.3  # Adagrad step size
    seed: int = 0  # seeds the initial weights, every epoch's data and its dropout masks
    cell: str = "tutorial"  # the recurrent cell: one of CELL_NAMES
    num_layers: int = 1  # cells stacked, each layer's output the next one's input
    keep_prob: float = 1.0  # dropout: probability of keeping each layer's output (part 6: 0.5)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if field.type == "int":  # the annotation, as a string
                _check_int(field.name, getattr(self, field.name), _MINIMUMS.get(field.name, 1))
        if self.cell not in CELL_NAMES:
            raise ValueError(f"EchoConfig.cell must be one of {CELL_NAMES}, got {self.cell!r}")
        if self.cell == "tutorial" and self.num_layers != 1:
            raise ValueError(
                f"EchoConfig.num_layers must be 1 for cell='tutorial' (part 1's one hand-written "
                f"layer), got {self.num_layers}; stack basic_rnn cells instead"
            )
        kp = self.keep_prob
        if not (_is_number(kp) and 0 < kp <= 1):
            raise ValueError(f"EchoConfig.keep_prob must be a number in (0, 1], got {kp!r}")
        if self.total_series_length % self.batch_size:
            raise ValueError(
                f"EchoConfig.total_series_length ({self.total_series_length}) must be a multiple "
                f"of batch_size ({self.batch_size}): the series is reshaped into batch_size rows"
            )
        if self.echo_step >= self.row_length:
            raise ValueError(
                f"EchoConfig.echo_step ({self.echo_step}) must be shorter than a row "
                f"(total_series_length // batch_size = {self.row_length})"
            )
        if self.num_batches < 1:
            raise ValueError(
                f"EchoConfig.truncated_backprop_length ({self.truncated_backprop_length}) is "
                f"longer than a row ({self.row_length} steps): num_batches must be at least 1"
            )
        lr = self.learning_rate
        if not (_is_number(lr) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"EchoConfig.learning_rate must be a finite number > 0, got {lr!r}")

    @property
    def row_length(self) -> int:
        """L: time steps in each of the batch_size rows of a series."""
        return self.total_series_length // self.batch_size

    @property
    def num_batches(self) -> int:
        """N: training windows per epoch (666 with the tutorial defaults)."""
        return self.row_length // self.truncated_backprop_length

    @classmethod
    def for_part(cls, part: int, **changes: Any) -> EchoConfig:
        """Part ``part`` (1-6) of the tutorial series, with optional field ``changes``.

        >>> EchoConfig.for_part(6)
        EchoConfig(num_epochs=100, ..., cell='lstm', num_layers=3, keep_prob=0.5)
        """
        if part not in PARTS:
            raise ValueError(f"the tutorial series has parts 1-6, got part {part!r}")
        return cls(**{**PARTS[part], **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EchoConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown EchoConfig fields: {sorted(unknown)}")
        return cls(**d)


CELL_NAMES = ("tutorial", "basic_rnn", "lstm", "gru")  # cells.CELLS has their functions

# What each part of the series changes; the rest is the tutorial's defaults. Parts 4 and 5 are
# one model: part 5 runs part 4's cells through dynamic_rnn instead of static_rnn.
PARTS: dict[int, dict[str, Any]] = {
    1: {},  # hand-written tanh RNN
    2: {"cell": "basic_rnn"},  # BasicRNNCell + static_rnn
    3: {"cell": "lstm"},  # BasicLSTMCell, state (c, h)
    4: {"cell": "lstm", "num_layers": 3},  # MultiRNNCell of 3 LSTMCells
    5: {"cell": "lstm", "num_layers": 3},  # the same through dynamic_rnn
    6: {"cell": "lstm", "num_layers": 3, "keep_prob": 0.5},  # DropoutWrapper on every layer
}


_MINIMUMS = {"num_classes": 2, "echo_step": 0, "seed": 0}  # every other int field: 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"EchoConfig.{name} must be an integer, got {value!r}")
    if value < minimum:
        rule = "positive" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"EchoConfig.{name} must be {rule}, got {value}")


def generate_data(cfg: EchoConfig, rng: np.random.Generator | int) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's ``generateData``: a random series and its echo, cut into rows.

    Args:
      cfg: the configuration.
      rng: a ``numpy.random.Generator`` (or legacy ``RandomState``), or an int seed.

    Returns:
      ``(x, y)``, each of shape (batch_size, total_series_length // batch_size): ``x`` float32
      symbols drawn uniformly from ``num_classes`` (p=[0.5, 0.5] in the tutorial's binary case),
      ``y`` int32, ``x`` delayed by ``echo_step`` with the first ``echo_step`` targets zero.
      Each row is a contiguous stretch of the one series.

    >>> x, y = generate_data(EchoConfig(), 0)
    >>> x.shape, bool((y[0, 3:] == x[0, :-3]).all())
    ((5, 10000), True)
    """
    if not hasattr(rng, "choice"):
        rng = np.random.default_rng(rng)
    p = np.full(cfg.num_classes, 1.0 / cfg.num_classes)
    x = rng.choice(cfg.num_classes, cfg.total_series_length, p=p)
    y = np.roll(x, cfg.echo_step)
    y[0 : cfg.echo_step] = 0
    x = x.reshape((cfg.batch_size, -1))
    y = y.reshape((cfg.batch_size, -1))
    return x.astype(np.float32), y.astype(np.int32)


def epoch_data(cfg: EchoConfig, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The fresh series of one epoch, a pure function of ``(cfg.seed, epoch)``: each epoch seeded
    on its own, an interrupted run resumes with exactly the data it would have seen."""
    return generate_data(cfg, np.random.default_rng([cfg.seed, _DATA_STREAM, epoch]))


def eval_data(cfg: EchoConfig, seed: int, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation series, from a stream that no training epoch draws from."""
    return generate_data(cfg, np.random.default_rng([seed, _EVAL_STREAM, index]))


def init_stream(cfg: EchoConfig) -> np.random.Generator:
    """The random stream of the initial weights, seeded by ``cfg.seed`` alone."""
    return np.random.default_rng([cfg.seed, _INIT_STREAM])


# Independent streams of one seed; DROPOUT_STREAM seeds the JAX dropout keys.
_INIT_STREAM, _DATA_STREAM, _EVAL_STREAM, DROPOUT_STREAM = 0, 1, 2, 3


def split_windows(a_BxL: Any, window: int) -> Any:
    """(B, L) series to (N, B, T) windows (and (B, L, P) to (N, B, T, P)); the last L % T steps
    go unused, as in the tutorial. Array methods only: NumPy arrays, JAX arrays and tracers."""
    B, L, *rest = a_BxL.shape
    N = L // window
    return a_BxL[:, : N * window].reshape(B, N, window, *rest).swapaxes(0, 1)


def prediction_accuracies(pred_NxBxT: Any, y_BxL: Any) -> Any:
    """Per-window accuracy (N,) of predictions (N, B, T) against a series' targets (B, L)."""
    return (pred_NxBxT == split_windows(y_BxL, pred_NxBxT.shape[-1])).mean(axis=(-2, -1))


@dataclasses.dataclass(frozen=True)
class SeriesModel:
    """One model of the series as tests, benchmarks and reports name it."""

    config: EchoConfig
    part: int | None  # the tutorial part whose TF1 program it is; None for the GRU (not a part)
    what_changed: str  # from part 1, in the tutorial's terms


# Every model the project checks, by name: the six parts (part 6 also at keep_prob 1, where it is
# checked exactly against TF1) and TF1's GRU, one and two layers.
MODELS: dict[str, SeriesModel] = {
    "part1": SeriesModel(EchoConfig.for_part(1), 1, "the baseline: hand-written tanh RNN, state h"),
    "part2": SeriesModel(EchoConfig.for_part(2), 2, "BasicRNNCell + static_rnn: part 1's math"),
    "part3": SeriesModel(EchoConfig.for_part(3), 3, "BasicLSTMCell, state (c, h)"),
    "part4": SeriesModel(EchoConfig.for_part(4), 4, "MultiRNNCell of 3 LSTMCells, 3 x (c, h)"),
    "part5": SeriesModel(EchoConfig.for_part(5), 5, "part 4 through dynamic_rnn"),
    "part6": SeriesModel(EchoConfig.for_part(6), 6, "part 4 with output dropout (keep 0.5)"),
    "part6-keep1": SeriesModel(
        EchoConfig.for_part(6, keep_prob=1.0), 6, "part 6's program with nothing dropped"
    ),
    "gru": SeriesModel(EchoConfig(cell="gru"), None, "GRUCell (TF1's), state h; not a part"),
    "gru-2": SeriesModel(
        EchoConfig(cell="gru", num_layers=2), None, "MultiRNNCell of 2 GRUCells; not a part"
    ),
}
# The distinct JAX programs among them (parts 2, 5 and 6 are part 1's or part 4's program in
# JAX): what the benchmarks time and the fast test tier trains.
DISTINCT_MODELS = ("part1", "part3", "part4", "gru")
