"""Every implementation and peer library as one row record, and the one interface they share.

``ROWS`` is the one table of what can be trained and timed: JAX's programs, TensorFlow's
(``tf_echo``) and every peer library's (``jax_echo.peers``); no framework is imported here, and
which row is a library's fastest is decided from measurements (``fastest``), never here. Weights
cross between implementations as flat dicts in TF1's layout (``cells.params_to_dict``); a
recurrent state as a tuple with one entry per layer: (B, S), or ``(c, h)`` for the LSTM.

>>> [(r.library, r.form, r.per_epoch) for r in map(row, ["jax-step", "flax-nnx-scan"])]
[('jax', 'idiomatic', False), ('flax', 'tuned', True)]
>>> row("tf-function-xla-no-small-loops").library
'tensorflow'
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from collections.abc import Mapping
from typing import Any, Protocol

from jax_echo.xla_flags import SUFFIX as UNLOOPED  # NAME-no-small-loops: without the option

REFERENCE = "tf-graph"  # the tutorial's own program (static_rnn; dynamic_rnn for parts 5-6)
FALLBACK_REFERENCE = "jax-epoch"  # the reference where TensorFlow is not installed
# Parts whose TF1 program runs its cells through dynamic_rnn rather than static_rnn.
DYNAMIC_RNN_PARTS = (5, 6)
EVERY_CELL = ("tutorial", "basic_rnn", "lstm", "gru")
# PyTorch's and Flax's GRUs apply the reset gate after the matmul: every other cell is TF1's.
ALL_BUT_GRU = ("tutorial", "basic_rnn", "lstm")


@dataclasses.dataclass(frozen=True)
class Row:
    """One implementation or peer library: everything a table, a test or a timing needs."""

    name: str  # the row's name in every table and on every command line
    library: str  # "jax", "tensorflow", "torch", "flax", "keras"
    form: str  # "idiomatic": as the library's documentation teaches; "tuned": written for speed
    per_epoch: bool  # the timed call trains an epoch (else one window, the state carried)
    build: str  # "module:callable", called (cfg, params, dtype=, device=, **options)
    options: tuple[tuple[str, Any], ...] = ()  # keywords of ``build`` that make this row
    exact_cells: tuple[str, ...] | None = None  # cells whose math is TF1's; None: every cell
    role: str = "peer"  # "implementation" (compare, parity), "variant" (benchmarks), "peer"
    placement: str = "own"  # "jax": jax.default_device; "tensorflow": tf.device; "own": itself
    memory: str = "none"  # peak memory: "xla" (peak_bytes), "torch-cuda" (on a GPU), "none"
    backend: str | None = None  # Keras' backend: the process it runs in
    by_part: bool = False  # its program depends on the part (TF1's dynamic_rnn for 5 and 6)
    unlooped: bool = False  # TensorFlow's XLA: also timed without XLA:CPU's small-loop option

    def exact(self, cell: str) -> bool:
        """Whether this row's ``cell`` has TF1's math (same weights, parity-tested)."""
        return self.exact_cells is None or cell in self.exact_cells

    @property
    def libraries(self) -> set[str]:
        """The libraries a process running this row loads (Keras: and its backend's)."""
        return {self.library, self.backend or self.library}

    def missing(self) -> str | None:
        """Why this row's library cannot be imported here (the extra to install), or ``None``."""
        needed = "tensorflow" if self.backend == "tensorflow" else self.library
        if importlib.util.find_spec(needed) is None:
            extra = "tf" if self.library == "tensorflow" else "peers"
            return f"{needed} is not installed (pip install 'jax-echo[{extra}]')"
        return None

    def available(self) -> str | None:
        """Why the row cannot run in this process (``missing``, or Keras on another backend)."""
        reason = self.missing()
        if reason is None and self.backend is not None and keras_backend() != self.backend:
            return (
                f"Keras runs one backend per process: this one is {keras_backend()!r}; "
                f"run with KERAS_BACKEND={self.backend}"
            )
        return reason


def keras_backend() -> str:
    """The backend Keras uses in this process (read from ``KERAS_BACKEND`` once, on import)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "jax")


def _jax(name: str, form: str, per_epoch: bool, role: str, **options: Any) -> Row:
    build = "jax_echo.trainers:jax_trainer"
    options = tuple({"per_epoch": per_epoch, **options}.items())
    kind = {"role": role, "placement": "jax", "memory": "xla" if per_epoch else "none"}
    return Row(name, "jax", form, per_epoch, build, options, **kind)


def _tf(impl: str, form: str, per_epoch: bool) -> Row:
    build = "jax_echo.trainers:tf_trainer"
    kind = {"role": "implementation", "placement": "tensorflow", "by_part": True}
    xla = impl.endswith("-xla")
    return Row(
        f"tf-{impl}", "tensorflow", form, per_epoch, build, (("impl", impl),), **kind, unlooped=xla
    )


def _peer(
    name: str, factory: str, per_epoch: bool, exact=ALL_BUT_GRU, form="idiomatic", backend=None
) -> Row:
    library = name.split("-")[0]
    build = f"jax_echo.peers.{library}_peer:{factory}"
    memory = "torch-cuda" if library == "torch" else "none"
    return Row(
        name, library, form, per_epoch, build, exact_cells=exact, memory=memory, backend=backend
    )


ROWS: tuple[Row, ...] = (
    _jax("jax-step", "idiomatic", False, "implementation"),
    _jax("jax-epoch", "tuned", True, "implementation"),
    _jax("jax-epoch-remat", "tuned", True, "variant", remat=True),
    # The batch split over every device of the platform (on a CPU: one device per core).
    _jax("jax-epoch-data-parallel", "tuned", True, "variant", data_parallel=True),
    _tf("graph", "idiomatic", False),
    _tf("function", "idiomatic", False),
    _tf("function-xla", "tuned", False),
    _tf("function-epoch", "tuned", True),
    _tf("function-epoch-xla", "tuned", True),
    # nn.RNN / nn.LSTM / nn.GRU, optim.Adagrad, one step per window
    _peer("torch-eager", "EagerTrainer", False),
    # the same step under torch.compile (the nn.LSTM call stays eager)
    _peer("torch-compile", "CompiledTrainer", False),
    # the window as a function: torch.func.grad_and_value + Adagrad in one
    # torch.compile(fullgraph=True) graph, C++ wrapper; CUDA graphs on a GPU
    _peer("torch-compile-window", "WindowCompiledTrainer", False, EVERY_CELL, "tuned"),
    # nnx.RNN of nnx cells, nnx.Optimizer(optax.adagrad), nnx.jit step per window
    _peer("flax-nnx-jit", "NnxJitTrainer", False),
    # the same model split into (graphdef, state), one jit scanning an epoch
    _peer("flax-nnx-scan", "NnxScanTrainer", True, form="tuned"),
    # Keras' stateful layers on each backend: train_on_batch per window, fit over an epoch, and
    # fit with steps_per_execution = the epoch's windows
    *(
        _peer(f"keras-{backend}-{written}", factory, per_epoch, EVERY_CELL, form, backend)
        for backend in ("jax", "tensorflow")
        for written, factory, per_epoch, form in (
            ("batch", "TrainOnBatchTrainer", False, "idiomatic"),
            ("fit", "FitTrainer", True, "idiomatic"),
            ("fit-steps", "FitStepsTrainer", True, "tuned"),
        )
    ),
)
BY_NAME: Mapping[str, Row] = {r.name: r for r in ROWS}
IMPLEMENTATIONS = tuple(r.name for r in ROWS if r.role == "implementation")  # compare, parity
JAX_IMPLEMENTATIONS = tuple(n for n in IMPLEMENTATIONS if BY_NAME[n].library == "jax")
TF_IMPLEMENTATIONS = tuple(r.name for r in ROWS if r.library == "tensorflow")
PEER_ROWS = tuple(r for r in ROWS if r.role == "peer")
BENCH_NAMES = (*IMPLEMENTATIONS, *(r.name for r in PEER_ROWS))  # jax-echo bench's rows
DATA_PARALLEL = "jax-epoch-data-parallel"


def row(name: str) -> Row:
    """The row called ``name``; a TF XLA row measured without the small-loop option
    (``NAME-no-small-loops``) is its row under that name."""
    found = BY_NAME.get(name)
    if found is None and name.endswith(UNLOOPED):
        found = BY_NAME.get(name.removesuffix(UNLOOPED))
        found = found and dataclasses.replace(found, name=name)
    if found is None:
        raise ValueError(f"unknown implementation {name!r}; choose from {', '.join(BY_NAME)}")
    return found


def reference_for(r: Row, cell: str, keep_prob: float, tensorflow: bool) -> Row | None:
    """The first of ``tf-graph`` (where ``tensorflow`` runs), ``jax-epoch``, ``jax-step`` that is
    not ``r`` and is ``comparable`` with it; ``None``: none is (a peer's own GRU)."""
    for name in (REFERENCE, FALLBACK_REFERENCE, "jax-step"):
        ref = BY_NAME[name]
        usable = name != r.name and (tensorflow or ref.library != "tensorflow")
        if usable and comparable(r, ref, cell, keep_prob):
            return ref
    return None


def comparable(r: Row, reference: Row, cell: str, keep_prob: float) -> bool:
    """Whether ``r``'s first-epoch losses must equal ``reference``'s on the same weights: its
    cell has TF1's math and, with dropout, both libraries draw the same units (the same one)."""
    return r.exact(cell) and (keep_prob == 1 or r.library == reference.library)


def fastest(times: Mapping[str, float]) -> dict[str, str]:
    """Each library's fastest measured row, whatever its form: ``{library: name}``.

    >>> fastest({"jax-step": 150.0, "jax-epoch": 4.0, "tf-graph": 16.3, "tf-function-xla": 22.8})
    {'jax': 'jax-epoch', 'tensorflow': 'tf-graph'}
    """
    best: dict[str, str] = {}
    for name in sorted(times, key=times.__getitem__):
        best.setdefault(row(name).library, name)
    return best


class MissingExtraError(RuntimeError):
    """An optional dependency (an extra of the package, like ``tf``) is not installed."""


class Trainer(Protocol):
    """One implementation or peer library, trained from given weights: the interface of every
    row. Arrays in are NumPy-like; results may be the library's own (``jax.Array``,
    ``torch.Tensor``): wait for them with ``trainers.block``.

    The trainer carries the recurrent state from window to window, as the tutorial's loop does.
    Dropout is drawn from the ``epoch`` and ``window`` passed in, so window ``i`` of epoch ``e``
    drops the same units alone or in its epoch (JAX; TensorFlow draws from its own stream).
    """

    name: str

    def train_window(self, x_BxT: Any, y_BxT: Any, *, epoch: int = 0, window: int = 0) -> Any:
        """One training window from the carried state (zeros when built), carried on; the loss."""

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> Any:
        """Every window of a series, state reset to zeros, then carried; losses (N,)."""

    def predict_epoch(self, x_BxL: Any) -> Any:
        """Predicted symbols (N, B, T) over a series, state carried from zeros, without dropout."""

    @property
    def params(self) -> dict[str, Any]:
        """The weights, as a flat TF1-layout dict."""

    def close(self) -> None:
        """Frees the implementation's resources (a TF1 session, compiled programs)."""


class ReferenceTrainer(Trainer, Protocol):
    """A ``Trainer`` whose every intermediate can be checked against TF1's (JAX's, TF's)."""

    def train_step(self, state: Any, x_BxT: Any, y_BxT: Any) -> tuple[Any, Any]:
        """One window from the given ``state`` (the author's ``session.run``); ``(state, loss)``."""

    def forward(self, x_BxT: Any, state: Any) -> tuple[Any, Any]:
        """``(logits (B, T, C), final state)`` of one window, without dropout."""

    def loss_and_gradients(self, x_BxT: Any, y_BxT: Any, state: Any) -> tuple[Any, dict]:
        """``(loss, gradients as a flat TF1-layout dict)`` of one window, without dropout."""

    @property
    def accumulators(self) -> dict[str, Any]:
        """Adagrad's accumulators, as a flat TF1-layout dict."""

    def get_state(self) -> tuple[dict[str, Any], Any]:
        """``(params, optimizer state)``: what a checkpoint of this implementation holds."""

    def set_state(self, params: dict[str, Any], opt_state: Any) -> None:
        """Restores ``get_state()``'s result."""


def tf_impl(name: str) -> str:
    """``tf-function-xla`` -> ``function-xla``: the name ``tf-echo train --impl`` takes."""
    return name.removeprefix("tf-")
