"""The echo RNN and its training step as pure functions of pytrees.

The model is an ``(init, apply)`` pair: ``init_params(cfg, rng) -> Params`` (in ``task.py``) and
``forward(params, x_BxT, h0_BxS) -> (logits_BxTxC, h_BxS)``. Everything else is built from
``forward``: the loss, predictions, one jitted training window (``train_step``) and one jitted
epoch (``train_epoch``, a ``lax.scan`` over windows carrying the state).

Every function is dtype-generic (float64 params and data compute in float64 under
``jax_enable_x64``) and works under ``jax.vmap`` over a leading population axis.

Shape legend: B batch, T time steps of a window, S state, C classes, N windows per epoch.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jax_echo.task import EchoConfig, Params, prediction_accuracies, split_windows

# Contractions whose broadcast product has at most this many elements are written as a multiply
# and a sum, which XLA:CPU fuses with the surrounding elementwise work; larger ones go to a dot.
# At the tutorial's 4-unit state a dot's fixed cost per call dominates: a 15-step window costs
# ~40 us with dots and ~7 us fused (2-core CPU). Beyond ~2k elements the dot wins (see README).
_FUSED_CONTRACTION_LIMIT = 2048
# Windows up to this length are unrolled completely, so the whole window compiles to one
# straight-line block; longer windows keep a rolled loop to bound compile time.
_FULL_UNROLL_LIMIT = 32


def _dense(a: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ w + b`` for ``a`` of shape (..., K), ``w`` (K, M) and ``b`` (1, M)."""
    lead = (1,) * (a.ndim - 1)
    if a.size * w.shape[-1] <= _FUSED_CONTRACTION_LIMIT:
        out = jnp.sum(a[..., :, None] * w.reshape(lead + w.shape), axis=-2)
    else:
        out = a @ w
    return out + b.reshape(lead + b.shape[-1:])


def _states(
    params: Params, x_BxT: jax.Array, h0_BxS: jax.Array, remat: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Runs the cell over the window; returns every state (T, B, S) and the last one."""
    x_TxB = jnp.swapaxes(x_BxT, -1, -2).astype(params.W.dtype)
    h0_BxS = jnp.asarray(h0_BxS, params.W.dtype)

    def cell(h_BxS, x_B):
        # The tutorial's step: input first, then state, through one matrix.
        input_and_state = jnp.concatenate([x_B[:, None], h_BxS], axis=1)
        h_BxS = jnp.tanh(_dense(input_and_state, params.W, params.b))
        return h_BxS, h_BxS

    if remat:  # keep only each step's carry for the backward pass; recompute the rest
        cell = jax.checkpoint(cell)
    T = x_TxB.shape[0]
    h_BxS, h_TxBxS = lax.scan(cell, h0_BxS, x_TxB, unroll=T if T <= _FULL_UNROLL_LIMIT else 1)
    return h_TxBxS, h_BxS


def forward(params: Params, x_BxT: jax.Array, h0_BxS: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Runs one window from the state ``h0_BxS``.

    Args:
      params: the weights.
      x_BxT: the window's input symbols (any numeric dtype; computed in the params' dtype).
      h0_BxS: the state carried in from the previous window.

    Returns:
      ``(logits_BxTxC, h_BxS)``: per-step logits and the state after the last step.
    """
    h_TxBxS, h_BxS = _states(params, x_BxT, h0_BxS)
    logits_TxBxC = _dense(h_TxBxS, params.W2, params.b2)
    return jnp.swapaxes(logits_TxBxC, 0, 1), h_BxS


def loss_fn(
    params: Params, x_BxT: jax.Array, y_BxT: jax.Array, h0_BxS: jax.Array, *, remat: bool = False
) -> tuple[jax.Array, jax.Array]:
    """The tutorial's loss (mean sparse softmax cross-entropy over B*T steps) and the last state.

    ``remat=True`` rematerialises each time step in the backward pass (``jax.checkpoint``):
    less memory for long windows, some more compute.
    """
    h_TxBxS, h_BxS = _states(params, x_BxT, h0_BxS, remat)
    logits_TxBxC = _dense(h_TxBxS, params.W2, params.b2)
    log_p = jax.nn.log_softmax(logits_TxBxC)
    y_TxB = jnp.swapaxes(y_BxT, -1, -2)
    nll_TxB = -jnp.take_along_axis(log_p, y_TxB[..., None], axis=-1)[..., 0]
    return jnp.mean(nll_TxB), h_BxS


def predict(params: Params, x_BxT: jax.Array, h0_BxS: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Predicted symbols (B, T) and the last state.

    The most probable class; for two classes this is the tutorial's ``1 if p[0] < 0.5 else 0``.
    """
    logits_BxTxC, h_BxS = forward(params, x_BxT, h0_BxS)
    return jnp.argmax(logits_BxTxC, axis=-1).astype(jnp.int32), h_BxS


def accuracy(
    params: Params, x_BxT: jax.Array, y_BxT: jax.Array, h0_BxS: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Fraction of correctly predicted steps in the window, and the last state."""
    pred_BxT, h_BxS = predict(params, x_BxT, h0_BxS)
    return jnp.mean(pred_BxT == y_BxT), h_BxS


# --- Optimizer -------------------------------------------------------------------------------


class AdagradState(NamedTuple):
    """State of TF1's Adagrad."""

    accumulator: Params  # running sum of squared gradients, starting at 0.1
    learning_rate: jax.Array  # a leaf, so a vmapped population can train one rate per member


def make_optimizer(cfg: EchoConfig) -> optax.GradientTransformation:
    """``tf.train.AdagradOptimizer(cfg.learning_rate)`` as an optax transformation.

    TF1 starts the accumulator at 0.1, has no epsilon and updates
    ``accum += g * g; var -= g * lr * rsqrt(accum)``; this is ``optax.adagrad(lr,
    initial_accumulator_value=0.1, eps=0.0)`` with that exact expression. The learning rate is
    kept in the state, in the params' dtype, so ``train_step`` needs no configuration.

    >>> cfg = EchoConfig()
    >>> opt_state = make_optimizer(cfg).init(init_params(cfg))
    """

    def init(params: Params) -> AdagradState:
        dtype = jax.tree.leaves(params)[0].dtype
        return AdagradState(
            accumulator=jax.tree.map(lambda p: jnp.full_like(p, 0.1), params),
            learning_rate=jnp.asarray(cfg.learning_rate, dtype),
        )

    return optax.GradientTransformation(init, _adagrad_update)


def _adagrad_update(
    grads: Params, state: AdagradState, params: Params | None = None
) -> tuple[Params, AdagradState]:
    del params
    accumulator = jax.tree.map(lambda a, g: a + g * g, state.accumulator, grads)
    updates = jax.tree.map(
        lambda g, a: -(g * state.learning_rate * lax.rsqrt(a)), grads, accumulator
    )
    return updates, AdagradState(accumulator, state.learning_rate)


# --- Training --------------------------------------------------------------------------------


def _train_window(
    params: Params,
    opt_state: AdagradState,
    h_BxS: jax.Array,
    x_BxT: jax.Array,
    y_BxT: jax.Array,
    remat: bool = False,
) -> tuple[Params, AdagradState, jax.Array, jax.Array]:
    (loss, h_BxS), grads = jax.value_and_grad(partial(loss_fn, remat=remat), has_aux=True)(
        params, x_BxT, y_BxT, h_BxS
    )
    updates, opt_state = _adagrad_update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, h_BxS, loss


def _check_shapes(params: Params, x: Any, y: Any, h_BxS: Any = None) -> None:
    """Raises ``ValueError`` for mismatched shapes; called while tracing, so free at run time."""
    if jnp.ndim(x) != 2 or jnp.shape(y) != jnp.shape(x):
        raise ValueError(
            f"x and y must be (batch, time) arrays of one shape, "
            f"got x {jnp.shape(x)} and y {jnp.shape(y)}"
        )
    expected = (jnp.shape(x)[0], params.W.shape[-1])
    if h_BxS is not None and jnp.shape(h_BxS) != expected:
        raise ValueError(
            f"state has shape {jnp.shape(h_BxS)}, expected (batch, state_size) = {expected}"
        )


@partial(jax.jit, donate_argnums=(0, 1, 2))
def train_step(
    params: Params, opt_state: AdagradState, h_BxS: jax.Array, x_BxT: jax.Array, y_BxT: jax.Array
) -> tuple[Params, AdagradState, jax.Array, jax.Array]:
    """One training window: forward, gradient and Adagrad update in one compiled call.

    Args:
      params: the weights.
      opt_state: from ``make_optimizer(cfg).init(params)``.
      h_BxS: the state carried in from the previous window (zeros at the start of an epoch).
      x_BxT: the window's inputs. y_BxT: its int targets.

    Returns:
      ``(params, opt_state, h_BxS, loss)``; ``h_BxS`` is the state to carry into the next window
      (a value: no gradient flows across the window edge). ``params``, ``opt_state`` and
      ``h_BxS`` are donated, so their input buffers must not be used afterwards.
    """
    _check_shapes(params, x_BxT, y_BxT, h_BxS)
    return _train_window(params, opt_state, h_BxS, x_BxT, y_BxT)


@partial(jax.jit, static_argnames=("window", "remat"), donate_argnums=(0, 1))
def _train_epoch(params, opt_state, x_BxL, y_BxL, window, remat=False):
    _check_shapes(params, x_BxL, y_BxL)

    def step(carry, xy_BxT):
        params, opt_state, h_BxS = carry
        params, opt_state, h_BxS, loss = _train_window(params, opt_state, h_BxS, *xy_BxT, remat)
        return (params, opt_state, h_BxS), loss

    h0_BxS = jnp.zeros((x_BxL.shape[0], params.W.shape[-1]), params.W.dtype)
    windows = (split_windows(x_BxL, window), split_windows(y_BxL, window))
    (params, opt_state, _), losses_N = lax.scan(step, (params, opt_state, h0_BxS), windows)
    return params, opt_state, losses_N


def train_epoch(
    params: Params,
    opt_state: AdagradState,
    x: jax.Array,
    y: jax.Array,
    cfg: EchoConfig,
    *,
    remat: bool = False,
) -> tuple[Params, AdagradState, jax.Array]:
    """One epoch as one compiled call: a ``lax.scan`` of ``train_step`` over the windows.

    The state starts at zeros and is carried from window to window, as in the tutorial. Equal to
    a Python loop over ``train_step`` up to float rounding; only ``truncated_backprop_length`` is
    read from ``cfg`` (so other fields, like the seed, never cause a recompilation).

    Args:
      params, opt_state: as for ``train_step`` (both donated).
      x, y: one epoch's series, shape (batch_size, total_series_length // batch_size).
      cfg: the configuration.
      remat: rematerialise time steps in the backward pass (``jax.checkpoint``), trading compute
        for memory on long windows; same numbers.

    Returns:
      ``(params, opt_state, losses)``, ``losses`` of shape (num_batches,): one per window.
    """
    return _train_epoch(params, opt_state, x, y, window=cfg.truncated_backprop_length, remat=remat)


@partial(jax.jit, static_argnames="window")
def _predict_epoch(params, x_BxL, window):
    def step(h_BxS, x_BxT):
        pred_BxT, h_BxS = predict(params, x_BxT, h_BxS)
        return h_BxS, pred_BxT

    h0_BxS = jnp.zeros((x_BxL.shape[0], params.W.shape[-1]), params.W.dtype)
    _, pred_NxBxT = lax.scan(step, h0_BxS, split_windows(x_BxL, window))
    return pred_NxBxT


def predict_epoch(params: Params, x: jax.Array, cfg: EchoConfig) -> jax.Array:
    """Predictions for every window of a series, state carried as in training: (N, B, T)."""
    return _predict_epoch(params, x, window=cfg.truncated_backprop_length)


def window_accuracies(params: Params, x: jax.Array, y: jax.Array, cfg: EchoConfig) -> jax.Array:
    """Per-window accuracy (N,) of fixed params over a series, state carried from window to window.

    Window 0 is the one the tutorial explains cannot be fully predicted.
    """
    return prediction_accuracies(predict_epoch(params, x, cfg), jnp.asarray(y))
