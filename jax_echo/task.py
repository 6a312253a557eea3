"""The echo task as the tutorial defines it: configuration, data and initial weights.

NumPy only, so that every implementation (JAX here, TensorFlow in ``tf_echo``) starts from the
same config, the same series and the same weights.

Shape legend used across the project: B batch, T time steps of a window, S state, C classes,
N windows per epoch, L steps per row of the series.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

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
    seed: int = 0  # seeds the initial weights and every epoch's data

    def __post_init__(self) -> None:
        for name in (
            "num_epochs",
            "total_series_length",
            "truncated_backprop_length",
            "state_size",
            "batch_size",
        ):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("num_classes", self.num_classes, minimum=2)
        _check_int("echo_step", self.echo_step, minimum=0)
        _check_int("seed", self.seed, minimum=0)
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
        if (
            isinstance(lr, bool)
            or not isinstance(lr, (int, float))
            or not math.isfinite(lr)
            or lr <= 0
        ):
            raise ValueError(f"EchoConfig.learning_rate must be a finite number > 0, got {lr!r}")

    @property
    def row_length(self) -> int:
        """L: time steps in each of the batch_size rows of a series."""
        return self.total_series_length // self.batch_size

    @property
    def num_batches(self) -> int:
        """N: training windows per epoch (666 with the tutorial defaults)."""
        return self.row_length // self.truncated_backprop_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EchoConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown EchoConfig fields: {sorted(unknown)}")
        return cls(**d)


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
    """The fresh series of one epoch, a pure function of ``(cfg.seed, epoch)``.

    Seeding each epoch on its own (rather than drawing all epochs from one stream) is what lets
    an interrupted run resume with exactly the data it would have seen.
    """
    return generate_data(cfg, np.random.default_rng([cfg.seed, _DATA_STREAM, epoch]))


def eval_data(cfg: EchoConfig, seed: int, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation series, from a stream that no training epoch draws from."""
    return generate_data(cfg, np.random.default_rng([seed, _EVAL_STREAM, index]))


_INIT_STREAM, _DATA_STREAM, _EVAL_STREAM = 0, 1, 2


def split_windows(a_BxL: Any, window: int) -> Any:
    """(B, L) series to (N, B, T) windows; the last L % T steps go unused, as in the tutorial.

    Written with array methods only, so it serves NumPy arrays, JAX arrays and tracers alike.
    """
    B, L = a_BxL.shape
    N = L // window
    return a_BxL[:, : N * window].reshape(B, N, window).swapaxes(0, 1)


def prediction_accuracies(pred_NxBxT: Any, y_BxL: Any) -> Any:
    """Per-window accuracy (N,) of predictions (N, B, T) against a series' targets (B, L)."""
    return (pred_NxBxT == split_windows(y_BxL, pred_NxBxT.shape[-1])).mean(axis=(-2, -1))


class Params(NamedTuple):
    """The tutorial's variables, with its names. Row 0 of ``W`` holds the input weights."""

    W: Any  # (S+1, S): input row, then state rows
    b: Any  # (1, S)
    W2: Any  # (S, C)
    b2: Any  # (1, C)

    def to_dict(self) -> dict[str, np.ndarray]:
        """Plain NumPy arrays keyed by name: how weights move between implementations and files."""
        return {name: np.asarray(value) for name, value in self._asdict().items()}

    @classmethod
    def from_dict(cls, d: Any, cfg: EchoConfig | None = None) -> Params:
        """Builds ``Params`` from a mapping, ``np.load`` result or ``Params``, checking shapes."""
        if isinstance(d, Params):
            d = d._asdict()
        missing = [name for name in cls._fields if name not in d]
        if missing:
            raise ValueError(
                f"params are missing {missing}; expected the arrays {list(cls._fields)}"
            )
        params = cls(*(np.asarray(d[name]) for name in cls._fields))
        check_params(params, cfg)
        return params


def check_params(params: Params, cfg: EchoConfig | None = None) -> None:
    """Raises ``ValueError`` naming the array whose shape is not the tutorial's."""
    if cfg is not None:
        S, C = cfg.state_size, cfg.num_classes
    elif np.ndim(params.W2) == 2:
        S, C = np.shape(params.W2)
    else:
        raise ValueError(
            f"params['W2'] must be a (state_size, num_classes) matrix, "
            f"got shape {np.shape(params.W2)}"
        )
    expected = {"W": (S + 1, S), "b": (1, S), "W2": (S, C), "b2": (1, C)}
    for name, shape in expected.items():
        got = np.shape(getattr(params, name))
        if got != shape:
            raise ValueError(
                f"params[{name!r}] has shape {got}, expected {shape} "
                f"(state_size={S}, num_classes={C})"
            )


def init_params(
    cfg: EchoConfig, rng: np.random.Generator | int | None = None, dtype: Any = np.float32
) -> Params:
    """The tutorial's initialisation: ``W`` and ``W2`` uniform in [0, 1), zero biases.

    Args:
      cfg: the configuration.
      rng: a ``numpy.random.Generator`` or int seed; by default the stream seeded by ``cfg.seed``.
      dtype: the parameters' dtype (float64 for the high-precision parity checks).
    """
    if rng is None:
        rng = np.random.default_rng([cfg.seed, _INIT_STREAM])
    elif not hasattr(rng, "random"):
        rng = np.random.default_rng(rng)
    S, C = cfg.state_size, cfg.num_classes
    return Params(
        W=rng.random((S + 1, S)).astype(dtype),
        b=np.zeros((1, S), dtype),
        W2=rng.random((S, C)).astype(dtype),
        b2=np.zeros((1, C), dtype),
    )
