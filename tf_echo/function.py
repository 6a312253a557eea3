"""The same model in modern TensorFlow: ``tf.Variable``s, ``GradientTape``, ``tf.function``.

The fair peer of the JAX version: one compiled call per window (``train_step``) or per epoch
(``train_epoch``, a ``tf.range`` loop over windows inside one ``tf.function``), each with or
without XLA (``jit_compile=True``). Adagrad is written out as TF1's kernel computes it
(accumulator starting at 0.1, no epsilon, ``var -= grad * lr * rsqrt(accum)``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jax_echo.model import AdagradState
from jax_echo.task import EchoConfig, Params, split_windows


class FunctionTrainer:
    """TF2 training from the given weights.

    Args:
      cfg: the configuration (shapes and learning rate).
      params: initial weights (``Params`` or dict of arrays).
      dtype: float32, or float64 for the high-precision parity checks.
      jit_compile: compile the ``tf.function``s with XLA.
      per_epoch: ``train_epoch`` is one ``tf.function`` over all windows; otherwise a Python loop
        over the per-window ``tf.function``.
    """

    def __init__(
        self,
        cfg: EchoConfig,
        params: Params | dict,
        dtype=np.float32,
        jit_compile: bool = False,
        per_epoch: bool = False,
    ):
        params = Params.from_dict(params, cfg)
        self.cfg, self.dtype, self.per_epoch = cfg, np.dtype(dtype), per_epoch
        self.name = (
            "tf-function" + ("-epoch" if per_epoch else "") + ("-xla" if jit_compile else "")
        )
        self.variables = Params(*(tf.Variable(p.astype(self.dtype)) for p in params))
        self.accumulators = Params(
            *(tf.Variable(tf.fill(p.shape, tf.constant(0.1, self.dtype))) for p in params)
        )
        self.learning_rate = tf.constant(cfg.learning_rate, self.dtype)
        B, T, S = cfg.batch_size, cfg.truncated_backprop_length, cfg.state_size
        window = [
            tf.TensorSpec([B, S], self.dtype),
            tf.TensorSpec([B, T], self.dtype),
            tf.TensorSpec([B, T], tf.int32),
        ]
        self._train_step = tf.function(
            self._train_window, jit_compile=jit_compile, input_signature=window
        )
        self._train_epoch = tf.function(
            self._train_all_windows,
            jit_compile=jit_compile,
            input_signature=[
                tf.TensorSpec([None, B, T], self.dtype),
                tf.TensorSpec([None, B, T], tf.int32),
            ],
        )
        self._forward = tf.function(self._logits_and_state, jit_compile=jit_compile)

    # --- The model, in TF ops --------------------------------------------------------------

    def _logits_and_state(self, x_BxT, h_BxS):
        W, b, W2, b2 = self.variables
        states = []
        for x_B in tf.unstack(x_BxT, axis=1):
            h_BxS = tf.tanh(tf.matmul(tf.concat([x_B[:, None], h_BxS], 1), W) + b)
            states.append(h_BxS)
        logits_TxBxC = tf.matmul(tf.stack(states), W2) + b2
        return logits_TxBxC, h_BxS

    def _loss(self, h_BxS, x_BxT, y_BxT):
        logits_TxBxC, h_BxS = self._logits_and_state(x_BxT, h_BxS)
        losses_TxB = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.transpose(y_BxT), logits=logits_TxBxC
        )
        return tf.reduce_mean(losses_TxB), h_BxS

    def _train_window(self, h_BxS, x_BxT, y_BxT):
        with tf.GradientTape() as tape:
            loss, h_BxS = self._loss(h_BxS, x_BxT, y_BxT)
        grads = tape.gradient(loss, list(self.variables))
        for var, accum, grad in zip(self.variables, self.accumulators, grads, strict=True):
            accum.assign_add(grad * grad)
            var.assign_sub(grad * self.learning_rate * tf.math.rsqrt(accum))
        return h_BxS, loss

    def _train_all_windows(self, x_NxBxT, y_NxBxT):
        n = tf.shape(x_NxBxT)[0]
        h_BxS = tf.zeros([self.cfg.batch_size, self.cfg.state_size], self.dtype)
        losses = tf.TensorArray(self.dtype, size=n)
        for i in tf.range(n):
            h_BxS, loss = self._train_window(h_BxS, x_NxBxT[i], y_NxBxT[i])
            losses = losses.write(i, loss)
        return losses.stack()

    # --- The verbs -------------------------------------------------------------------------

    def train_step(self, h_BxS, x_BxT, y_BxT):
        """One window in one compiled call; returns the carried state and the loss (tensors)."""
        return self._train_step(h_BxS, x_BxT, y_BxT)

    def train_epoch(self, x, y) -> np.ndarray:
        """Every window of the epoch, state reset at the start, then carried."""
        x_NxBxT = self._windows(np.asarray(x, self.dtype))
        y_NxBxT = self._windows(np.asarray(y, np.int32))
        if self.per_epoch:
            return self._train_epoch(x_NxBxT, y_NxBxT).numpy()
        h_BxS = tf.zeros([self.cfg.batch_size, self.cfg.state_size], self.dtype)
        losses = []
        for x_BxT, y_BxT in zip(x_NxBxT, y_NxBxT, strict=True):
            h_BxS, loss = self._train_step(h_BxS, x_BxT, y_BxT)
            losses.append(loss)
        return tf.stack(losses).numpy()

    def _windows(self, a_BxL):
        return np.ascontiguousarray(split_windows(a_BxL, self.cfg.truncated_backprop_length))

    # --- Inspection, for the parity checks ------------------------------------------------------

    def forward(self, x_BxT, h_BxS):
        logits_TxBxC, h = self._forward(
            tf.constant(x_BxT, self.dtype), tf.constant(h_BxS, self.dtype)
        )
        return np.swapaxes(logits_TxBxC.numpy(), 0, 1), h.numpy()

    def loss_and_gradients(self, x_BxT, y_BxT, h_BxS):
        with tf.GradientTape() as tape:
            loss, _ = self._loss(
                tf.constant(h_BxS, self.dtype), tf.constant(x_BxT, self.dtype), tf.constant(y_BxT)
            )
        grads = tape.gradient(loss, list(self.variables))
        return loss.numpy(), Params(*(g.numpy() for g in grads))

    def predict_epoch(self, x) -> np.ndarray:
        x_NxBxT = self._windows(np.asarray(x, self.dtype))
        h = tf.zeros([self.cfg.batch_size, self.cfg.state_size], self.dtype)
        preds = []
        for x_BxT in x_NxBxT:
            logits_TxBxC, h = self._forward(tf.constant(x_BxT), h)
            preds.append(np.argmax(logits_TxBxC.numpy(), axis=-1).T)
        return np.stack(preds).astype(np.int32)

    # --- Weights in and out ------------------------------------------------------------------

    @property
    def params(self) -> Params:
        return Params(*(v.numpy() for v in self.variables))

    def get_state(self) -> tuple[Params, AdagradState]:
        lr = np.asarray(self.cfg.learning_rate, self.dtype)
        return self.params, AdagradState(Params(*(a.numpy() for a in self.accumulators)), lr)

    def set_state(self, params: Params, opt_state: AdagradState) -> None:
        for var, value in zip(self.variables, params, strict=True):
            var.assign(np.asarray(value, self.dtype))
        for accum, value in zip(self.accumulators, opt_state.accumulator, strict=True):
            accum.assign(np.asarray(value, self.dtype))

    def close(self) -> None:
        pass
