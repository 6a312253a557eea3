"""The libraries a user would pick instead of jax_echo, as benchmark rows: PyTorch, Flax, Keras.

Each row trains the task of ``jax_echo.task`` on the same data and, where the library's cell has
TF1's math, from the same weights (a flat TF1-layout dict, ``jax_echo.cells.params_to_dict``).
Every row is written the way its library's documentation has a user write it, beside that
library's fastest honest form. A row whose cell differs in math (PyTorch's and Flax's GRU apply
the reset gate after the matmul; TF1's GRUCell before it) is timed and labelled, never
parity-tested: ``Row.exact_cells`` lists the cells whose math is TF1's.

Every peer is a row of ``jax_echo.registry.ROWS`` (its name, form, factory and the cells with
TF1's math are registered there, beside JAX's and TensorFlow's) and a
``jax_echo.registry.Trainer``, as JAX and TensorFlow are: it carries its
recurrent state itself, as the tutorial does (zeros at the start of an epoch, then carried from
window to window), and returns host values, so every call ends synchronised.
``trainers.make_trainer(name, ...)`` builds it as ``Factory(cfg, params, dtype=np.float32,
device="cpu")``: ``params`` a flat TF1-layout dict (or ``Params``), ``device`` "cpu" or "gpu";
the constructor raises ``ValueError`` naming what it
cannot run (a cell, a keep_prob below 1, float64 on a library without it).

Nothing here is a dependency of jax_echo: ``make bench`` installs the ``peers`` extra, and a row
whose library is missing is skipped with the reason.
"""

from __future__ import annotations

import os

from jax_echo.registry import PEER_ROWS, Row, keras_backend

# Keras picks its backend once per process, on import: JAX unless the caller chose. ``make bench``
# runs the Keras rows again in a process of their own with KERAS_BACKEND=tensorflow.
os.environ.setdefault("KERAS_BACKEND", "jax")

__all__ = ["PEERS", "PEER_NAMES", "keras_backend", "peer"]

PEERS = PEER_ROWS
PEER_NAMES = tuple(p.name for p in PEERS)


def peer(name: str) -> Row:
    """The peer row called ``name``."""
    for p in PEERS:
        if p.name == name:
            return p
    raise ValueError(f"unknown peer {name!r}; expected one of {', '.join(PEER_NAMES)}")
