"""Every implementation and peer library as one row record, and the one interface they share.

``ROWS`` is the one table of what can be trained and timed: JAX's programs, TensorFlow's
(``tf_echo``) and every peer library's (``jax_echo.peers``), each a ``Row`` saying its library,
how it is written (``form``), whether its timed call trains a window or an epoch, which cells
have TF1's math, how to build it, where it is placed and how its peak memory is read.
``compare``, ``jax-echo bench`` and the benchmark suite read it; no framework is imported here.
Which row is a library's fastest is decided from measurements (``fastest``), never here.

Every row builds a ``Trainer``; JAX and TensorFlow also follow ``ReferenceTrainer``, which
exposes each step for parity. Weights cross between implementations as flat dicts in TF1's
layout (``cells.params_to_dict``); a recurrent state crosses as a tuple with one entry per
layer: an array (B, S), or a pair ``(c, h)`` for the LSTM (``cells.state_from_layers`` makes it
JAX's ``LSTMState(c, h)``).

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
    memory: str = "none"  # peak memory: "xla" (memory_analysis), "torch-cuda" (on a GPU), "none"
    backend: str | None = None  # Keras' backend: the process it runs in
    by_part: bool = False  # its program depends on the part (TF1's dynamic_rnn for 5 and 6)
    unlooped: bool = False  # TensorFlow's XLA: also timed without XLA:CPU's small-loop option
    note: str = ""  # how the row is written

    def exact(self, cell: str) -> bool:
        """Whether this row's ``cell`` has TF1's math (same weights, parity-tested)."""
        return self.exact_cells is None or cell in self.exact_cells

    @property
    def libraries(self) -> set[str]:
        """The libraries a process running this row loads (Keras: and its backend's)."""
        return {self.library, self.backend or self.library}

    @property
    def extra(self) -> str:
        """The install command of the extra this row's library comes with."""
        return "pip install 'jax-echo[tf]'" if self.library == "tensorflow" else PEERS_EXTRA

    def missing(self) -> str | None:
        """Why this row's library cannot be imported here, or ``None``."""
        needed = "tensorflow" if self.backend == "tensorflow" else self.library
        if importlib.util.find_spec(needed) is None:
            return f"{needed} is not installed ({self.extra})"
        return None

    def available(self) -> str | None:
        """``None`` when the row can run in this process, else the reason it cannot (its
        library missing, or Keras already on another backend)."""
        reason = self.missing()
        if reason is None and self.backend is not None and keras_backend() != self.backend:
            return (
                f"Keras runs one backend per process: this one is {keras_backend()!r}; "
                f"run with KERAS_BACKEND={self.backend}"
            )
        return reason


PEERS_EXTRA = "pip install 'jax-echo[peers]'"


def keras_backend() -> str:
    """The backend Keras uses in this process (it reads ``KERAS_BACKEND`` once, on import;
    ``jax_echo.peers`` sets JAX unless the caller chose)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "jax")


def _jax(name: str, form: str, per_epoch: bool, role: str, **options: Any) -> Row:
    return Row(
        name,
        "jax",
        form,
        per_epoch,
        "jax_echo.trainers:jax_trainer",
        tuple({"per_epoch": per_epoch, **options}.items()),
        role=role,
        placement="jax",
        memory="xla" if per_epoch else "none",
    )


def _tf(impl: str, form: str, per_epoch: bool) -> Row:
    return Row(
        f"tf-{impl}",
        "tensorflow",
        form,
        per_epoch,
        "jax_echo.trainers:tf_trainer",
        (("impl", impl),),
        role="implementation",
        placement="tensorflow",
        by_part=True,
        unlooped=impl.endswith("-xla"),
    )


def _peer(name, library, module, factory, per_epoch, exact, form="idiomatic", **fields) -> Row:
    return Row(
        name,
        library,
        form,
        per_epoch,
        f"jax_echo.peers.{module}:{factory}",
        exact_cells=exact,
        memory="torch-cuda" if library == "torch" else "none",
        **fields,
    )


EVERY_CELL = ("tutorial", "basic_rnn", "lstm", "gru")
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
    _peer(
        "torch-eager",
        "torch",
        "torch_peer",
        "EagerTrainer",
        False,
        ALL_BUT_GRU,
        note="nn.RNN / nn.LSTM / nn.GRU, optim.Adagrad, one step per window",
    ),
    _peer(
        "torch-compile",
        "torch",
        "torch_peer",
        "CompiledTrainer",
        False,
        ALL_BUT_GRU,
        note="the same step under torch.compile (the nn.LSTM call stays eager)",
    ),
    _peer(
        "torch-compile-window",
        "torch",
        "torch_peer",
        "WindowCompiledTrainer",
        False,
        EVERY_CELL,
        form="tuned",
        note="the window as a function: torch.func.grad_and_value + Adagrad in one "
        "torch.compile(fullgraph=True) graph, C++ wrapper; CUDA graphs on a GPU",
    ),
    _peer(
        "flax-nnx-jit",
        "flax",
        "flax_peer",
        "NnxJitTrainer",
        False,
        ALL_BUT_GRU,
        note="nnx.RNN of nnx cells, nnx.Optimizer(optax.adagrad), nnx.jit step per window",
    ),
    _peer(
        "flax-nnx-scan",
        "flax",
        "flax_peer",
        "NnxScanTrainer",
        True,
        ALL_BUT_GRU,
        form="tuned",
        note="the same model split into (graphdef, state), one jit scanning an epoch",
    ),
    *(
        _peer(
            f"keras-{backend}-{written}",
            "keras",
            "keras_peer",
            factory,
            per_epoch,
            EVERY_CELL,
            form="tuned" if written == "fit-steps" else "idiomatic",
            backend=backend,
            note=note,
        )
        for backend in ("jax", "tensorflow")
        for written, factory, per_epoch, note in (
            ("batch", "TrainOnBatchTrainer", False, "stateful layers, train_on_batch per window"),
            ("fit", "FitTrainer", True, "stateful layers, fit over an epoch"),
            (
                "fit-steps",
                "FitStepsTrainer",
                True,
                "stateful layers, fit with steps_per_execution = the epoch's windows",
            ),
        )
    ),
)
BY_NAME: Mapping[str, Row] = {r.name: r for r in ROWS}
JAX_IMPLEMENTATIONS = tuple(
    r.name for r in ROWS if r.role == "implementation" and r.library == "jax"
)
TF_IMPLEMENTATIONS = tuple(r.name for r in ROWS if r.library == "tensorflow")
IMPLEMENTATIONS = JAX_IMPLEMENTATIONS + TF_IMPLEMENTATIONS  # what compare and parity run
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
    """The row ``r``'s first-epoch losses are checked against: ``tf-graph`` (where
    ``tensorflow`` runs), else ``jax-epoch``, else ``jax-step``; the first that is not ``r``
    and is ``comparable`` with it. ``None``: none is (a peer's own GRU)."""
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
    """Each library's fastest measured row: ``{library: name}`` from ``{name: time}``, whatever
    its form.

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
    """One implementation or peer library, trained from given weights: the one interface that
    every test and benchmark row runs. Arrays in are NumPy-like; results may be the library's
    own (``jax.Array``, ``torch.Tensor``): wait for them with ``compare.block``.

    The trainer carries the recurrent state, as the tutorial's loop does: zeros when it is built,
    then fed from each window to the next; ``train_epoch`` starts from zeros. Dropout is drawn
    from the ``epoch`` (and ``window``) passed in, never from a count kept inside, so window
    ``i`` of epoch ``e`` drops the same units whether it is trained alone or in its epoch (JAX;
    TensorFlow draws from its own stream).
    """

    name: str

    def train_window(self, x_BxT: Any, y_BxT: Any, *, epoch: int = 0, window: int = 0) -> Any:
        """One training window from the carried state, which it carries on; the loss."""

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
    """A ``Trainer`` whose every intermediate can be checked against TF1's: ``jax_echo``'s and
    ``tf_echo``'s. A state crosses as a tuple with one entry per layer: (B, S), or ``(c, h)``."""

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
