"""The same models in modern TensorFlow: ``tf.Variable``s, ``GradientTape``, ``tf.function``.

The fair peer of the JAX version: one compiled call per window or per epoch (a ``tf.while_loop``
over windows), with or without XLA (``jit_compile=True``). The cells are TF ops with TF1's math
(docs/tutorial.md), stacked per time step over layers; with ``keep_prob < 1`` each layer's output
(never the carried state) is dropped while training, by stateless masks drawn from
``(cfg.seed, windows trained so far)``. Adagrad is TF1's kernel (accumulators from 0.1, no
epsilon, ``var -= grad * lr * rsqrt(accum)``). Variables are named by their flat TF1-layout keys.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf

from jax_echo import xla_flags
from jax_echo.cells import LSTM_FORGET_BIAS, flat_names, params_from_dict, params_to_dict
from jax_echo.task import EchoConfig, split_windows
from jax_echo.tf_checkpoint import params_to_tf_checkpoint
from tf_echo.state import state_layers, zero_state

# Windows of at most this many steps are unrolled in Python, as static_rnn builds them (XLA fuses
# across steps); longer ones run a while loop, whose compile time does not grow with the window
# (docs/performance.md). Under XLA with its small-loop option (``jax_echo.xla_flags``), the cells
# of ``xla_flags.ROLLED_WITH_SMALL_LOOPS`` run the loop at every length, as jax_echo's do.
UNROLL_MAX_STEPS = 50


def _matmul_dense(a_BxK, w_KxM, b_M):
    return tf.matmul(a_BxK, w_KxM) + b_M


def _fused_dense(a_BxK, w_KxM, b_M):
    """For XLA: a contraction of at most ``xla_flags.FUSED_PRODUCT_LIMIT`` elements as a multiply
    and a sum, which XLA:CPU fuses with the work around it (without XLA one matmul is faster)."""
    if a_BxK.shape[0] * w_KxM.shape[0] * w_KxM.shape[1] > xla_flags.FUSED_PRODUCT_LIMIT:
        return _matmul_dense(a_BxK, w_KxM, b_M)
    return tf.reduce_sum(a_BxK[:, :, None] * w_KxM[None], axis=1) + b_M


# --- The cells, in TF ops: step(params, state, x_BxI, dense) -> (state, out_BxS) ---------------


def _tanh_step(params, h_BxS, x_BxI, dense):
    """Parts 1 and 2: ``h = tanh(concat([x, h]) @ W + b)``; the output is the state."""
    kernel, bias = params
    h_BxS = tf.tanh(dense(tf.concat([x_BxI, h_BxS], 1), kernel, bias))
    return h_BxS, h_BxS


def _lstm_step(params, state, x_BxI, dense):
    """``BasicLSTMCell`` / ``LSTMCell``: gate columns i, j, f, o; state ``(c, h)``."""
    kernel, bias = params
    c_BxS, h_BxS = state
    z_Bx4S = dense(tf.concat([x_BxI, h_BxS], 1), kernel, bias)
    i, j, f, o = tf.split(z_Bx4S, 4, axis=1)
    c_BxS = c_BxS * tf.sigmoid(f + LSTM_FORGET_BIAS) + tf.sigmoid(i) * tf.tanh(j)
    h_BxS = tf.tanh(c_BxS) * tf.sigmoid(o)
    return (c_BxS, h_BxS), h_BxS


def _gru_step(params, h_BxS, x_BxI, dense):
    """TF1's ``GRUCell``: the reset gate scales the state before the candidate's matmul."""
    gates_kernel, gates_bias, candidate_kernel, candidate_bias = params
    gates_Bx2S = tf.sigmoid(dense(tf.concat([x_BxI, h_BxS], 1), gates_kernel, gates_bias))
    r_BxS, u_BxS = tf.split(gates_Bx2S, 2, axis=1)
    candidate_input = tf.concat([x_BxI, r_BxS * h_BxS], 1)
    c_BxS = tf.tanh(dense(candidate_input, candidate_kernel, candidate_bias))
    h_BxS = u_BxS * h_BxS + (1 - u_BxS) * c_BxS
    return h_BxS, h_BxS


_STEPS = {"tutorial": _tanh_step, "basic_rnn": _tanh_step, "lstm": _lstm_step, "gru": _gru_step}


def _loop(n, body, state, dtype):
    """``for i in range(n): state, outs[i] = body(i, state)`` as one ``tf.while_loop`` (the loop
    AutoGraph would write): the last state, its nesting kept, and the outs stacked."""

    def step(i, state, outs):
        new_state, out = body(i, state)
        new_state = tf.nest.pack_sequence_as(state, tf.nest.flatten(new_state))
        return i + 1, new_state, outs.write(i, out)

    start = (tf.constant(0), state, tf.TensorArray(dtype, size=n))
    # maximum_iterations: XLA's fixed TensorArray size
    _, state, outs = tf.while_loop(lambda i, *_: i < n, step, start, maximum_iterations=n)
    return state, outs.stack()


class FunctionTrainer:
    """TF2 training from the given weights.

    Args:
      cfg: the configuration (cell, layers, keep_prob, shapes, learning rate, seed).
      params: initial weights, a flat TF1-layout dict (or ``jax_echo.cells.Params``).
      dtype: float32, or float64 for the high-precision parity checks.
      jit_compile: compile the ``tf.function``s with XLA.
      per_epoch: ``train_epoch`` is one ``tf.function`` over all windows; otherwise a Python loop
        over the per-window ``tf.function``.
    """

    def __init__(
        self,
        cfg: EchoConfig,
        params: Any,
        dtype: Any = np.float32,
        jit_compile: bool = False,
        per_epoch: bool = False,
    ):
        structured = params_from_dict(params, cfg)
        flat = params_to_dict(structured)
        self.cfg, self.dtype, self.per_epoch = cfg, np.dtype(dtype), per_epoch
        self.jit_compile = jit_compile
        self.name = f"tf-function{'-epoch' if per_epoch else ''}{'-xla' if jit_compile else ''}"
        self._variables = {
            name: tf.Variable(value.astype(self.dtype), name=name) for name, value in flat.items()
        }
        self._accumulators = {
            name: tf.Variable(tf.fill(value.shape, tf.constant(0.1, self.dtype)))
            for name, value in flat.items()
        }
        self._layers = [
            tuple(self._variables[name] for name in flat_names(cell_params, layer))
            for layer, cell_params in enumerate(structured.cells)
        ]
        self._step = _STEPS[cfg.cell]
        self._dense = _fused_dense if jit_compile else _matmul_dense
        rolls = cfg.cell in xla_flags.ROLLED_WITH_SMALL_LOOPS
        self._rolled = jit_compile and xla_flags.SMALL_LOOPS and rolls
        self._learning_rate = tf.constant(cfg.learning_rate, self.dtype)
        self._seed = tf.constant(cfg.seed, tf.int64)
        self._windows_trained = tf.Variable(0, dtype=tf.int64)  # counts the dropout draws

        self._carried = self._zero_state()  # train_window's state

        B, T = cfg.batch_size, cfg.truncated_backprop_length
        state_spec = tf.nest.map_structure(tf.TensorSpec.from_tensor, self._carried)
        x_spec = tf.TensorSpec([B, T], self.dtype)
        y_spec = tf.TensorSpec([B, T], tf.int32)
        x_windows = tf.TensorSpec([None, B, T], self.dtype)
        y_windows = tf.TensorSpec([None, B, T], tf.int32)

        def compiled(fn, *signature):
            # autograph=False: the loops are tf.while_loop already (AutoGraph cannot convert
            # Python loops on every Python TensorFlow runs on, e.g. 3.13 with TF 2.21).
            return tf.function(
                fn, jit_compile=jit_compile, input_signature=signature, autograph=False
            )

        self._train_step = compiled(self._train_window, state_spec, x_spec, y_spec)
        self._train_epoch = compiled(self._train_all_windows, x_windows, y_windows)
        self._forward = compiled(self._logits_and_state, state_spec, x_spec)
        self._loss_and_grads = compiled(self._loss_state_and_gradients, state_spec, x_spec, y_spec)
        self._predict_epoch = compiled(self._predict_all_windows, x_windows)

    # --- The model, in TF ops -----------------------------------------------------------------

    def _zero_state(self):
        return tf.nest.map_structure(tf.convert_to_tensor, zero_state(self.cfg, self.dtype))

    def _logits_and_state(self, state, x_BxT, dropout_seed=None):
        """Logits (T, B, C) and the final state; dropout only when given a seed."""
        cfg = self.cfg
        keep_prob, u_TxLxBxS = cfg.keep_prob, None
        if dropout_seed is not None:  # one draw per window (T, layers, B, S); XLA's differs
            shape = [cfg.truncated_backprop_length, cfg.num_layers, cfg.batch_size, cfg.state_size]
            u_TxLxBxS = tf.random.stateless_uniform(
                shape, dropout_seed, dtype=self.dtype, alg="philox"
            )

        def step(t, x_B, state):
            out_BxS, new_state = x_B[:, None], []
            for layer, (params, layer_state) in enumerate(zip(self._layers, state, strict=True)):
                layer_state, out_BxS = self._step(params, layer_state, out_BxS, self._dense)
                if u_TxLxBxS is not None:  # DropoutWrapper(output_keep_prob=keep_prob)
                    keep = u_TxLxBxS[t, layer] < keep_prob
                    out_BxS = tf.where(keep, out_BxS / keep_prob, tf.zeros_like(out_BxS))
                new_state.append(layer_state)
            return tuple(new_state), out_BxS

        T, B = cfg.truncated_backprop_length, cfg.batch_size
        if T <= UNROLL_MAX_STEPS and not self._rolled:  # unrolled in Python, as static_rnn does
            outs = []
            for t, x_B in enumerate(tf.unstack(x_BxT, axis=1)):
                state, out_BxS = step(t, x_B, state)
                outs.append(out_BxS)
            outs_TBxS = tf.concat(outs, 0)
        else:  # a while loop over time
            x_TxB = tf.transpose(x_BxT)
            state, outs_TxBxS = _loop(
                T, lambda t, state: step(t, x_TxB[t], state), state, self.dtype
            )
            outs_TBxS = tf.reshape(outs_TxBxS, [T * B, cfg.state_size])
        W2, b2 = self._variables["W2"], self._variables["b2"]
        logits_TBxC = self._dense(outs_TBxS, W2, b2)
        return tf.reshape(logits_TBxC, [T, B, cfg.num_classes]), state

    def _loss_state_and_gradients(self, state, x_BxT, y_BxT, dropout_seed=None):
        with tf.GradientTape() as tape:
            logits_TxBxC, state = self._logits_and_state(state, x_BxT, dropout_seed)
            losses_TxB = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.transpose(y_BxT), logits=logits_TxBxC
            )
            loss = tf.reduce_mean(losses_TxB)
        return loss, state, tape.gradient(loss, list(self._variables.values()))

    def _train_window(self, state, x_BxT, y_BxT):
        dropout_seed = None
        if self.cfg.keep_prob < 1:
            dropout_seed = tf.stack([self._seed, self._windows_trained.assign_add(1)])
        loss, state, grads = self._loss_state_and_gradients(state, x_BxT, y_BxT, dropout_seed)
        variables = self._variables.values()
        for var, accum, grad in zip(variables, self._accumulators.values(), grads, strict=True):
            accum.assign_add(grad * grad)
            var.assign_sub(grad * self._learning_rate * tf.math.rsqrt(accum))
        return state, loss

    def _train_all_windows(self, x_NxBxT, y_NxBxT):
        def window(i, state):
            return self._train_window(state, x_NxBxT[i], y_NxBxT[i])

        _, losses_N = _loop(tf.shape(x_NxBxT)[0], window, self._zero_state(), self.dtype)
        return losses_N

    def _predict_all_windows(self, x_NxBxT):
        def window(i, state):
            logits_TxBxC, state = self._logits_and_state(state, x_NxBxT[i])
            return state, tf.transpose(tf.argmax(logits_TxBxC, -1, tf.int32))

        _, preds_NxBxT = _loop(tf.shape(x_NxBxT)[0], window, self._zero_state(), tf.int32)
        return preds_NxBxT

    # --- The verbs ----------------------------------------------------------------------------

    def train_step(self, state: Any, x_BxT: Any, y_BxT: Any) -> tuple[tuple, np.ndarray]:
        """One window in one compiled call: the state to carry and the loss."""
        state, loss = self._train_step(self._state_in(state), *self._cast(x_BxT, y_BxT))
        return _numpy(state), loss.numpy()

    def train_window(self, x_BxT: Any, y_BxT: Any, *, epoch: int = 0, window: int = 0):
        """One window from the carried state (zeros at first, kept as tensors); the loss."""
        del epoch, window  # dropout masks come from the windows trained so far
        self._carried, loss = self._train_step(self._carried, *self._cast(x_BxT, y_BxT))
        return loss.numpy()

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> np.ndarray:
        del epoch  # dropout masks come from the windows trained so far
        x_NxBxT, y_NxBxT = self._epoch_windows(x_BxL, y_BxL)
        if self.per_epoch:
            return self._train_epoch(x_NxBxT, y_NxBxT).numpy()
        state = self._zero_state()
        losses = []
        for x_BxT, y_BxT in zip(x_NxBxT, y_NxBxT, strict=True):
            state, loss = self._train_step(state, x_BxT, y_BxT)
            losses.append(loss)
        self._carried = state
        return tf.stack(losses).numpy()

    def forward(self, x_BxT: Any, state: Any) -> tuple[np.ndarray, tuple]:
        logits_TxBxC, state = self._forward(self._state_in(state), np.asarray(x_BxT, self.dtype))
        return np.swapaxes(logits_TxBxC.numpy(), 0, 1), _numpy(state)

    def loss_and_gradients(self, x_BxT: Any, y_BxT: Any, state: Any) -> tuple[np.ndarray, dict]:
        loss, _, grads = self._loss_and_grads(self._state_in(state), *self._cast(x_BxT, y_BxT))
        return loss.numpy(), {n: g.numpy() for n, g in zip(self._variables, grads, strict=True)}

    def predict_epoch(self, x_BxL: Any) -> np.ndarray:
        """Predictions (N, B, T) over a series in one compiled call, state carried, no dropout."""
        return self._predict_epoch(self._windows(np.asarray(x_BxL, self.dtype))).numpy()

    def epoch_hlo(self, x_BxL: Any, y_BxL: Any) -> str:
        """XLA's optimized HLO of the compiled epoch on this series (``-epoch-xla`` only)."""
        if not (self.per_epoch and self.jit_compile):
            raise ValueError(f"{self.name} is not compiled by XLA as one epoch")
        windows = self._epoch_windows(x_BxL, y_BxL)
        return self._train_epoch.experimental_get_compiler_ir(*windows)(stage="optimized_hlo")

    def _epoch_windows(self, x_BxL: Any, y_BxL: Any) -> tuple[np.ndarray, np.ndarray]:
        """A series' inputs and labels as ``train_epoch``'s tf.function takes them: (N, B, T)."""
        x_BxL, y_BxL = self._cast(x_BxL, y_BxL)
        return self._windows(x_BxL), self._windows(y_BxL)

    def _state_in(self, state: Any) -> tuple:
        return state_layers(self.cfg, state, self.dtype)

    def _cast(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(x, self.dtype), np.asarray(y, np.int32)

    def _windows(self, a_BxL: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(split_windows(a_BxL, self.cfg.truncated_backprop_length))

    # --- Weights in and out -------------------------------------------------------------------

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {name: v.numpy() for name, v in self._variables.items()}

    @property
    def accumulators(self) -> dict[str, np.ndarray]:
        return {name: a.numpy() for name, a in self._accumulators.items()}

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return self.params, self.accumulators

    def set_state(self, params: Any, accumulators: Any) -> None:
        for targets, values in ((self._variables, params), (self._accumulators, accumulators)):
            flat = params_to_dict(params_from_dict(values, self.cfg))
            for name, var in targets.items():
                var.assign(np.asarray(flat[name], self.dtype))

    def save_tf_checkpoint(self, path: str | os.PathLike) -> str:
        """The weights as the author's checkpoint, Adagrad's slots at 0.1; ``path``."""
        return params_to_tf_checkpoint(self.params, self.cfg, path)

    def close(self) -> None:
        """Nothing to free: the variables go with the trainer."""


def _numpy(state) -> tuple:
    return tf.nest.map_structure(lambda t: t.numpy(), state)
