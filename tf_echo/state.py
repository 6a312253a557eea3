"""The recurrent state as both TensorFlow trainers take it in (no TensorFlow needed here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from jax_echo.cells import initial_state
from jax_echo.task import EchoConfig


def zero_state(cfg: EchoConfig, dtype: Any) -> tuple:
    """``cells.initial_state`` as TF1 feeds it: per layer a NumPy array (B, S) or a ``(c, h)``."""
    return tuple(
        tuple(np.asarray(a, dtype) for a in layer)
        if isinstance(layer, tuple)
        else np.asarray(layer, dtype)
        for layer in initial_state(cfg)
    )


def stacked_state(cfg: EchoConfig, state: Any, dtype: Any) -> np.ndarray:
    """A per-layer state tuple as one array (L, [2,] B, S); ``ValueError`` if not ``cfg``'s."""
    lstm = cfg.cell == "lstm"
    state_Lx2xBxS = np.asarray(state, dtype)  # (L, B, S) for cells without c
    expected = np.shape(zero_state(cfg, dtype))
    if state_Lx2xBxS.shape != expected:
        raise ValueError(
            f"the state must be a tuple of {cfg.num_layers} per-layer "
            f"{'(c, h) pairs' if lstm else 'arrays'} of shape (B, S) = "
            f"{expected[-2:]}, which stacks to {expected}; got {state_Lx2xBxS.shape}"
        )
    return state_Lx2xBxS
