"""The libraries a user would pick instead of jax_echo, as benchmark rows: PyTorch, Flax, Keras.

Each row trains the task of ``jax_echo.task`` on the same data and, where the library's cell has
TF1's math, from the same weights (a flat TF1-layout dict, ``jax_echo.cells.params_to_dict``).
Every row is written the way its library's documentation has a user write it, beside that
library's fastest honest form. A row whose cell differs in math (PyTorch's and Flax's GRU apply
the reset gate after the matmul; TF1's GRUCell before it) is timed and labelled, never
parity-tested: ``Peer.exact_cells`` lists the cells whose math is TF1's.

Every peer is a ``jax_echo.registry.Trainer``, as JAX and TensorFlow are: it carries its
recurrent state itself, as the tutorial does (zeros at the start of an epoch, then carried from
window to window), and returns host values, so every call ends synchronised. It is built as
``Factory(cfg, params, dtype=np.float32, device="cpu")``: ``params`` a flat TF1-layout dict (or
``Params``), ``device`` "cpu" or "gpu"; the constructor raises ``ValueError`` naming what it
cannot run (a cell, a keep_prob below 1, float64 on a library without it).

Nothing here is a dependency of jax_echo: ``make bench`` installs the ``peers`` extra, and a row
whose library is missing is skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
from typing import Any

import numpy as np

from jax_echo.registry import Trainer
from jax_echo.task import EchoConfig

# Keras picks its backend once per process, on import: JAX unless the caller chose. ``make bench``
# runs the Keras rows again in a process of their own with KERAS_BACKEND=tensorflow.
os.environ.setdefault("KERAS_BACKEND", "jax")


@dataclasses.dataclass(frozen=True)
class Peer:
    """One benchmark row of another library."""

    name: str  # the row's name in every table
    library: str  # the module to import; the row is skipped without it
    module: str  # where its factory lives
    factory: str  # the trainer class in ``module`` (a ``registry.Trainer``)
    per_epoch: bool  # True: the timed call trains one epoch; False: one window
    exact_cells: tuple[str, ...]  # cells with TF1's math: parity-tested, same initial weights
    backend: str | None = None  # Keras: the backend this row needs (one per process)
    form: str = "idiomatic"  # "best": the library's fastest honest form; else as its docs teach
    note: str = ""  # how the row is written

    def available(self) -> str | None:
        """``None`` when the row can run in this process, else the reason it cannot."""
        if importlib.util.find_spec(self.library) is None:
            return f"{self.library} is not installed (the peers extra)"
        if self.backend is not None and keras_backend() != self.backend:
            return (
                f"Keras runs one backend per process: this one is {keras_backend()!r}; "
                f"run with KERAS_BACKEND={self.backend}"
            )
        return None

    def make(self, cfg: EchoConfig, params: Any, dtype=np.float32, device: str = "cpu") -> Trainer:
        """The row's trainer on ``cfg`` from ``params``."""
        factory = getattr(importlib.import_module(self.module), self.factory)
        return factory(cfg, params, dtype=dtype, device=device)


def keras_backend() -> str:
    """The backend Keras uses in this process (it reads ``KERAS_BACKEND`` once, on import)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ["KERAS_BACKEND"]


# PyTorch's and Flax's GRUs apply the reset gate after the matmul: every other cell is TF1's.
ALL_BUT_GRU = ("tutorial", "basic_rnn", "lstm")

PEERS = (
    Peer(
        "torch-eager",
        "torch",
        "jax_echo.peers.torch_peer",
        "EagerTrainer",
        per_epoch=False,
        exact_cells=ALL_BUT_GRU,
        note="nn.RNN / nn.LSTM / nn.GRU, optim.Adagrad, one step per window",
    ),
    Peer(
        "torch-compile",
        "torch",
        "jax_echo.peers.torch_peer",
        "CompiledTrainer",
        per_epoch=False,
        exact_cells=ALL_BUT_GRU,
        note="the same step under torch.compile (the nn.LSTM call stays eager)",
    ),
    Peer(
        "torch-compile-window",
        "torch",
        "jax_echo.peers.torch_peer",
        "WindowCompiledTrainer",
        per_epoch=False,
        exact_cells=("tutorial", "basic_rnn", "lstm", "gru"),
        form="best",
        note="the window as a function: torch.func.grad_and_value + Adagrad in one "
        "torch.compile(fullgraph=True) graph, C++ wrapper; CUDA graphs on a GPU",
    ),
    Peer(
        "flax-nnx-jit",
        "flax",
        "jax_echo.peers.flax_peer",
        "NnxJitTrainer",
        per_epoch=False,
        exact_cells=ALL_BUT_GRU,
        note="nnx.RNN of nnx cells, nnx.Optimizer(optax.adagrad), nnx.jit step per window",
    ),
    Peer(
        "flax-nnx-scan",
        "flax",
        "jax_echo.peers.flax_peer",
        "NnxScanTrainer",
        per_epoch=True,
        exact_cells=ALL_BUT_GRU,
        form="best",
        note="the same model split into (graphdef, state), one jit scanning an epoch",
    ),
    *(
        Peer(
            f"keras-{backend}-{form}",
            "keras",
            "jax_echo.peers.keras_peer",
            factory,
            per_epoch=per_epoch,
            exact_cells=("tutorial", "basic_rnn", "lstm", "gru"),
            backend=backend,
            form="best" if form == "fit-steps" else "idiomatic",
            note=note,
        )
        for backend in ("jax", "tensorflow")
        for form, factory, per_epoch, note in (
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
PEER_NAMES = tuple(p.name for p in PEERS)


def peer(name: str) -> Peer:
    """The row called ``name``."""
    for p in PEERS:
        if p.name == name:
            return p
    raise ValueError(f"unknown peer {name!r}; expected one of {', '.join(PEER_NAMES)}")
