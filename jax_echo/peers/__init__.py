"""The libraries a user would pick instead of jax_echo, as benchmark rows: PyTorch, Flax, Keras.

Every peer is a row of ``jax_echo.registry.ROWS`` and a ``jax_echo.registry.Trainer``, built by
``trainers.make_trainer(name, ...)`` as ``Factory(cfg, params, dtype=np.float32, device="cpu")``
from a flat TF1-layout dict (or ``Params``) on "cpu" or "gpu". Each library's documented form
stands beside its fastest honest form, on the task's data and, where the cell has TF1's math
(``Row.exact_cells``), from the same weights. A peer returns host values. None is a dependency of
jax_echo: ``make bench`` installs the ``peers`` extra; a missing library's rows are skipped with
the reason.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jax_echo.cells import Params, layer_shapes, params_to_dict
from jax_echo.registry import PEER_ROWS, Row, keras_backend
from jax_echo.task import EchoConfig

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


def checked_dtype(library: str, cfg: EchoConfig, dtype: Any, device: str) -> np.dtype:
    """``dtype`` as NumPy's, or a ``ValueError`` naming what no peer runs: dropout (its rows are
    not compared), a dtype but float32 and float64, a device but "cpu" and "gpu"."""
    if cfg.keep_prob != 1:
        raise ValueError(f"the {library} rows have no dropout: keep_prob={cfg.keep_prob}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    return np.dtype(dtype)


def jax_device(device: str) -> jax.Device:
    """JAX's first "cpu" or "gpu" device, or a ``ValueError`` saying that JAX sees none."""
    try:
        return jax.devices(device)[0]
    except RuntimeError as e:
        raise ValueError(f"JAX sees no {device!r} device in this process: {e}") from e


def tf1_params(cfg: EchoConfig, layers: Any, W2: Any, b2: Any) -> dict[str, np.ndarray]:
    """The flat TF1-layout dict of ``cfg``'s model from each layer's arrays in TF1's order and
    columns (biases of any shape, ``b2`` too) and ``W2`` (S, C)."""
    cells = tuple(
        type(shapes)(*map(np.reshape, arrays, shapes))
        for arrays, shapes in zip(layers, layer_shapes(cfg), strict=True)
    )
    flat = params_to_dict(Params(cells, W2, np.reshape(b2, (1, -1))))
    return {name: np.ascontiguousarray(value) for name, value in flat.items()}
