"""The recurrent state as both TensorFlow trainers take it in (no TensorFlow needed here): per
layer a NumPy array (B, S), or a ``(c, h)`` pair for the LSTM, as TF1 feeds and fetches it."""

from __future__ import annotations

from typing import Any

import numpy as np

from jax_echo.task import EchoConfig


def zero_state(cfg: EchoConfig, dtype: Any) -> tuple:
    """The zero state (``cells.initial_state``) in ``dtype``."""
    return state_layers(cfg, np.zeros(_stacked_shape(cfg)), dtype)


def state_layers(cfg: EchoConfig, state: Any, dtype: Any) -> tuple:
    """A per-layer state of array-likes as NumPy arrays in ``dtype``; ``ValueError`` if it is
    not ``cfg``'s."""
    lstm = cfg.cell == "lstm"
    state_Lx2xBxS = np.asarray(state, dtype)
    expected = _stacked_shape(cfg)
    if state_Lx2xBxS.shape != expected:
        raise ValueError(
            f"the state must be a tuple of {cfg.num_layers} per-layer "
            f"{'(c, h) pairs' if lstm else 'arrays'} of shape (B, S) = "
            f"{expected[-2:]}, which stacks to {expected}; got {state_Lx2xBxS.shape}"
        )
    return tuple(tuple(layer) if lstm else layer for layer in state_Lx2xBxS)


def _stacked_shape(cfg: EchoConfig) -> tuple[int, ...]:
    """(L, 2, B, S) for the LSTM's ``(c, h)``, else (L, B, S)."""
    c_and_h = (2,) if cfg.cell == "lstm" else ()
    return (cfg.num_layers, *c_and_h, cfg.batch_size, cfg.state_size)
