"""The recurrent state as both TensorFlow trainers take it in (no TensorFlow needed here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from jax_echo.task import EchoConfig


def stacked_state(cfg: EchoConfig, state: Any, dtype: Any) -> np.ndarray:
    """A per-layer state tuple (``h``, or ``(c, h)`` per layer) as one array (L, [2,] B, S).

    Raises ``ValueError`` naming the expected structure when the shapes do not match ``cfg``.
    """
    lstm = cfg.cell == "lstm"
    state_Lx2xBxS = np.asarray(state, dtype)  # (L, B, S) for cells without c
    expected = (cfg.num_layers, *((2,) if lstm else ()), cfg.batch_size, cfg.state_size)
    if state_Lx2xBxS.shape != expected:
        raise ValueError(
            f"the state must be a tuple of {cfg.num_layers} per-layer "
            f"{'(c, h) pairs' if lstm else 'arrays'} of shape (B, S) = "
            f"{expected[-2:]}, which stacks to {expected}; got {state_Lx2xBxS.shape}"
        )
    return state_Lx2xBxS
