"""The echo RNN of every part of the series, and its training, as pure functions of pytrees.

The model is an ``(init, apply)`` pair over any cell of ``cells.CELLS``: ``init_params(cfg,
rng) -> Params`` and ``forward(params, x_BxT, state, cfg) -> (logits_BxTxC, state)``, where
``state`` is a tuple with one entry per layer (``h``, or ``LSTMState(c, h)``). The loss,
predictions, one jitted training window (``train_step``) and one jitted epoch (``train_epoch``, a
``lax.scan`` over windows carrying the state) are built on the same window function;
``make_train_epoch`` returns the epoch as a plain function, to ``vmap`` or ``jit``. Dropout
(``cfg.keep_prob < 1``) takes an explicit key, split per window, folded in per step and layer.

How XLA computes the math (products, unrolling, members side by side, rows over devices) is the
speed policy's: it reaches every function here as one static value, a ``policy.Program``
(default ``policy.program(cfg)``). Float64 params and data compute in float64.

Shape legend: B batch, T time steps of a window, S state, C classes, N windows per epoch. The
inner functions, which a ``Program`` with members in lanes runs with a trailing member axis on
every array, name arrays by their role and give shapes in comments.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jax_echo import optim, policy
from jax_echo.cells import CELLS, Params, check_state, stack_step, zero_state
from jax_echo.policy import Program
from jax_echo.task import DROPOUT_STREAM, EchoConfig, prediction_accuracies, split_windows

# TF1's Adagrad reads its rate from the optimizer state: one program serves every rate.
_TF1_ADAGRAD = optim.tf1_adagrad(0.3)


class _Spec(NamedTuple):
    """What the compiled functions read from the config; value-only fields never recompile."""

    cell: str
    keep_prob: float
    window: int
    remat: bool = False
    optimizer: optax.GradientTransformation = _TF1_ADAGRAD


def _spec(cfg: EchoConfig, remat: bool = False, optimizer=None) -> _Spec:
    window = cfg.truncated_backprop_length
    return _Spec(cfg.cell, cfg.keep_prob, window, remat, optimizer or _TF1_ADAGRAD)


def epoch_key(cfg: EchoConfig, epoch: int) -> jax.Array:
    """The dropout key of an epoch, a pure function of ``(cfg.seed, epoch)``: resume is exact."""
    return dropout_key(cfg.seed, epoch)


def window_key(cfg: EchoConfig, epoch: int, window: int) -> jax.Array:
    """The dropout key of one window: the one ``train_epoch`` gives it from ``epoch_key``."""
    return _window_key(epoch_key(cfg, epoch), cfg.num_batches, window)


@functools.partial(jax.jit, static_argnums=1)
def _window_key(key: jax.Array, windows: int, window: Any) -> jax.Array:
    return jax.random.split(key, windows)[window]


@jax.jit
def dropout_key(seed: Any, epoch: Any) -> jax.Array:
    """``epoch_key`` from a seed (one compiled call; ``vmap`` it over a population's seeds)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), DROPOUT_STREAM), epoch)


# --- One window -------------------------------------------------------------------------------


def _logits(params: Params, x, state, spec: _Spec, program: Program, key=None) -> tuple[Any, Any]:
    """The stacked cells over the window, then the output layer: logits (T, B, C), last state."""
    dtype = params.W2.dtype
    inputs = jnp.moveaxis(x, 1, 0)[:, :, None].astype(dtype)  # (T, B, 1)
    T, B = inputs.shape[:2]
    check_state(state, _zero_state(spec, params, B))
    state = jax.tree.map(lambda s: jnp.asarray(s, dtype), state)
    L, S = len(params.cells), params.W2.shape[0]
    masks = None  # (T, L, B, S)
    if key is not None and spec.keep_prob < 1:
        masks = program.dropout_masks(key, T, L, B, S, spec.keep_prob, dtype)
    cell = CELLS[spec.cell]

    def step(state, inputs_and_masks):
        return stack_step(cell, params.cells, state, *inputs_and_masks, product=program.product())

    if spec.remat:  # keep only each step's carry for the backward pass; recompute the rest
        step = jax.checkpoint(step)
    state, outputs = lax.scan(step, state, (inputs, masks), unroll=program.unroll(T, L))
    return program.product()([outputs], params.W2, params.b2), state  # outputs: (T, B, S)


def _zero_state(spec: _Spec, params: Params, B: int) -> tuple[Any, ...]:
    """``cells.zero_state`` shaped from the params (with lanes, a trailing member axis)."""
    S, members = params.W2.shape[0], params.W2.shape[2:]
    return zero_state(spec.cell, len(params.cells), B, S, params.W2.dtype, members)


def _loss(params, x, y, state, spec, program, key=None):
    logits, state = _logits(params, x, state, spec, program, key)
    log_p = jax.nn.log_softmax(logits, axis=2)  # (T, B, C)
    # The label's log-probability as a sum against its one-hot row (same numbers), not a gather,
    # whose gradient, a scatter, XLA:CPU runs kernel by kernel in a loop even with small loops.
    one_hot = jax.nn.one_hot(jnp.moveaxis(y, 1, 0), logits.shape[2], axis=2, dtype=log_p.dtype)
    nll = -jnp.sum(log_p * one_hot, axis=2)  # (T, B)
    return jnp.mean(nll, axis=(0, 1)), state  # one loss per member with lanes


def forward(
    params: Params, x_BxT: jax.Array, state: Any, cfg: EchoConfig, *, key: jax.Array | None = None
) -> tuple[jax.Array, Any]:
    """Runs one window from ``state``: ``(logits_BxTxC, state after the last step)``.

    Args:
      params: the weights (``init_params(cfg)``).
      x_BxT: the window's input symbols (any numeric dtype; computed in the params' dtype).
      state: the state carried in from the previous window (``cells.initial_state(cfg)``).
      cfg: the configuration (its cell and keep_prob).
      key: a dropout key; ``None`` (the default) drops nothing.
    """
    logits_TxBxC, state = _logits(params, x_BxT, state, _spec(cfg), policy.program(cfg), key)
    return jnp.swapaxes(logits_TxBxC, 0, 1), state


def loss_fn(
    params: Params,
    x_BxT: jax.Array,
    y_BxT: jax.Array,
    state: Any,
    cfg: EchoConfig,
    *,
    key: jax.Array | None = None,
    remat: bool = False,
) -> tuple[jax.Array, Any]:
    """The tutorial's loss (mean sparse softmax cross-entropy over B*T steps), the last state;
    ``remat=True`` recomputes each step in the backward pass (``jax.checkpoint``): less memory."""
    return _loss(params, x_BxT, y_BxT, state, _spec(cfg, remat), policy.program(cfg), key)


def predict(params: Params, x_BxT: jax.Array, state: Any, cfg: EchoConfig) -> tuple[jax.Array, Any]:
    """Predicted symbols (B, T), the most probable class (for two, the tutorial's ``1 if p[0] <
    0.5 else 0``), and the last state; without dropout."""
    logits_BxTxC, state = forward(params, x_BxT, state, cfg)
    return jnp.argmax(logits_BxTxC, axis=-1).astype(jnp.int32), state


def accuracy(
    params: Params, x_BxT: jax.Array, y_BxT: jax.Array, state: Any, cfg: EchoConfig
) -> tuple[jax.Array, Any]:
    """Fraction of correctly predicted steps in the window, and the last state."""
    pred_BxT, state = predict(params, x_BxT, state, cfg)
    return jnp.mean(pred_BxT == y_BxT), state


# --- Training ---------------------------------------------------------------------------------


def _train_window(params, opt_state, state, x, y, key, spec: _Spec, program: Program):
    def total(params):  # with lanes the members' losses, whose sum has each member's gradient
        loss, state_out = _loss(params, x, y, state, spec, program, key)
        return jnp.sum(loss), (loss, state_out)

    # Over a mesh: this device's gradient, taken at its own copy of the params, then the mean.
    at = program.per_device(params)
    (_, (loss, state)), grads = jax.value_and_grad(total, has_aux=True)(at)
    grads, loss = program.device_mean((grads, loss))
    updates, opt_state = spec.optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, state, loss


def _check_series(x: Any, y: Any, ndim: int = 2) -> None:  # while tracing: free at run time
    if jnp.ndim(x) != ndim or jnp.shape(y) != jnp.shape(x):
        shapes = f"x {jnp.shape(x)} and y {jnp.shape(y)}"
        raise ValueError(f"x and y must be (batch, time) arrays of one shape, got {shapes}")


def _check_training(cfg: EchoConfig, opt_state: Any, key: Any) -> Any:
    """Refuses dropout without a key and another learning rate; the rate's host copy, if any."""
    if cfg.keep_prob < 1 and key is None:
        raise ValueError(
            f"EchoConfig.keep_prob is {cfg.keep_prob}: dropout needs a key "
            "(key=jax.random.key(...); fit uses epoch_key(cfg, epoch))"
        )
    return optim.checked_rate(opt_state, cfg.learning_rate)


@functools.cache
def _compiled(make: Callable, spec: _Spec, program: Program, donate: tuple[int, ...]) -> Callable:
    return jax.jit(make(spec, program), donate_argnums=donate)


def _step_function(spec: _Spec, program: Program) -> Callable:
    def step(params, opt_state, state, x_BxT, y_BxT, key):
        _check_series(x_BxT, y_BxT)
        return _train_window(params, opt_state, state, x_BxT, y_BxT, key, spec, program)

    return step


def train_step(
    params: Params,
    opt_state: Any,
    state: Any,
    x_BxT: jax.Array,
    y_BxT: jax.Array,
    cfg: EchoConfig,
    *,
    key: jax.Array | None = None,
    optimizer: optax.GradientTransformation | None = None,
) -> tuple[Params, Any, Any, jax.Array]:
    """One training window: forward, gradient and optimizer update in one compiled call.

    Args:
      params, opt_state: the weights and their optimizer state (``make_optimizer(cfg).init``).
      state: the state carried in from the previous window (zeros at the start of an epoch).
      x_BxT, y_BxT: the window's inputs and int targets.
      cfg: the configuration (cell, keep_prob; the learning rate must be ``opt_state``'s).
      key: the window's dropout key; required when ``cfg.keep_prob < 1``.
      optimizer: any optax transformation (default TF1's Adagrad); create it once.

    Returns:
      ``(params, opt_state, state, loss)``, ``state`` to carry into the next window (a value: no
      gradient crosses the window edge). ``params``, ``opt_state`` and ``state`` are donated.
    """
    rate = _check_training(cfg, opt_state, key)
    spec = _spec(cfg, optimizer=optimizer)
    step = _compiled(_step_function, spec, policy.program(cfg), (0, 1, 2))
    params, opt_state, state, loss = step(params, opt_state, state, x_BxT, y_BxT, key)
    return params, optim.with_learning_rate(opt_state, rate), state, loss


def make_train_epoch(
    cfg: EchoConfig,
    *,
    optimizer: optax.GradientTransformation | None = None,
    remat: bool = False,
    program: Program | None = None,
    members: int = 1,
) -> Callable:
    """``train_epoch`` as a plain function ``(params, opt_state, x_BxL, y_BxL, key) -> (params,
    opt_state, losses_N)``, to ``jit``, or to ``vmap`` over a population. ``program``: how XLA
    computes it (default ``policy.program(cfg, members=members)``, for ``members`` models side by
    side under one ``vmap``); the numbers are the same either way."""
    program = program or policy.program(cfg, members=members)
    return _epoch_function(_spec(cfg, remat, optimizer), program)


def _epoch_function(spec: _Spec, program: Program) -> Callable:
    def train_epoch(params, opt_state, x, y, key):  # x, y: (B, L)
        _check_series(x, y, ndim=2 + program.lanes)
        xs, ys = split_windows(x, spec.window), split_windows(y, spec.window)  # (N, B, T)
        keys = None
        if key is not None and spec.keep_prob < 1:
            keys = program.window_keys(key, xs.shape[0])

        def step(carry, window):
            params, opt_state, state = carry
            params, opt_state, state, loss = _train_window(
                params, opt_state, state, *window, spec, program
            )
            return (params, opt_state, state), loss

        state = program.per_device(_zero_state(spec, params, x.shape[0]))  # each its rows'
        (params, opt_state, _), losses = lax.scan(step, (params, opt_state, state), (xs, ys, keys))
        return params, opt_state, losses

    return train_epoch


def train_epoch(
    params: Params,
    opt_state: Any,
    x: jax.Array,
    y: jax.Array,
    cfg: EchoConfig,
    *,
    key: jax.Array | None = None,
    optimizer: optax.GradientTransformation | None = None,
    remat: bool = False,
) -> tuple[Params, Any, jax.Array]:
    """One epoch as one compiled call: a ``lax.scan`` of the training window over the windows.

    The state starts at zeros and is carried from window to window, as in the tutorial: a Python
    loop over ``train_step``, up to float rounding. Seed and learning rate never recompile.

    Args:
      params, opt_state, cfg, optimizer: as for ``train_step`` (params, opt_state donated).
      x, y: one epoch's series, shape (batch_size, total_series_length // batch_size).
      key: the epoch's dropout key (``epoch_key(cfg, epoch)``), split into one per window;
        required when ``cfg.keep_prob < 1``.
      remat: as for ``loss_fn``; the same numbers.

    Returns:
      ``(params, opt_state, losses)``, ``losses`` of shape (num_batches,): one per window.

    >>> from jax_echo import epoch_data, init_params, make_optimizer
    >>> cfg = EchoConfig.for_part(3, total_series_length=750)
    >>> params = init_params(cfg)
    >>> params, opt_state, losses = train_epoch(params, make_optimizer(cfg).init(params),
    ...                                         *epoch_data(cfg, 0), cfg)
    >>> losses.shape
    (10,)
    """
    rate = _check_training(cfg, opt_state, key)
    epoch = _compiled(_epoch_function, _spec(cfg, remat, optimizer), policy.program(cfg), (0, 1))
    params, opt_state, losses = epoch(params, opt_state, x, y, key)
    return params, optim.with_learning_rate(opt_state, rate), losses


def make_predict_epoch(
    cfg: EchoConfig, *, program: Program | None = None, members: int = 1
) -> Callable:
    """``predict_epoch`` as a plain function ``(params, x_BxL) -> (N, B, T)``; ``program`` and
    ``members`` as for ``make_train_epoch``."""
    return _predict_function(_spec(cfg), program or policy.program(cfg, members=members))


def _predict_function(spec: _Spec, program: Program) -> Callable:
    def predict_epoch(params, x_BxL):
        def step(state, x_BxT):
            logits_TxBxC, state = _logits(params, x_BxT, state, spec, program)
            return state, jnp.swapaxes(jnp.argmax(logits_TxBxC, axis=-1), 0, 1).astype(jnp.int32)

        state = _zero_state(spec, params, x_BxL.shape[0])
        _, pred_NxBxT = lax.scan(step, state, split_windows(x_BxL, spec.window))
        return pred_NxBxT

    return predict_epoch


def predict_epoch(params: Params, x: jax.Array, cfg: EchoConfig) -> jax.Array:
    """Predictions for every window of a series, state carried as in training: (N, B, T)."""
    return _compiled(_predict_function, _spec(cfg), policy.program(cfg), ())(params, x)


def window_accuracies(params: Params, x: jax.Array, y: jax.Array, cfg: EchoConfig) -> jax.Array:
    """Per-window accuracy (N,) of fixed params over a series, state carried from window to window
    (window 0 is the one the tutorial explains cannot be fully predicted); compared on the host."""
    return prediction_accuracies(np.asarray(predict_epoch(params, x, cfg)), np.asarray(y))
