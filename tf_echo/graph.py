"""The tutorial's TensorFlow 1.x program, faithfully, through ``tf.compat.v1``.

Placeholders for the window and the initial state, ``unstack`` over time, ``concat([x_t, state])``,
tanh, softmax, per-step ``sparse_softmax_cross_entropy_with_logits``, ``reduce_mean``,
``AdagradOptimizer(lr).minimize`` and one ``session.run`` per window, feeding the final state
back as the next window's initial state. The graph lives in its own ``tf.Graph`` and session, so
eager execution stays on for the rest of the process.

Names follow the tutorial (``batchX_placeholder``, ``current_state``, ...).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jax_echo.model import AdagradState
from jax_echo.task import EchoConfig, Params

tf1 = tf.compat.v1


class GraphTrainer:
    """The tutorial's graph and session, starting from the given weights.

    Args:
      cfg: the configuration (shapes and learning rate).
      params: initial weights (``Params`` or dict of arrays).
      dtype: float32 as in the tutorial; float64 for the high-precision parity checks.
      device: where to place the graph ("/CPU:0", "/GPU:0"); by default TensorFlow decides.
    """

    name = "tf-graph"

    def __init__(
        self, cfg: EchoConfig, params: Params | dict, dtype=np.float32, device: str | None = None
    ):
        params = Params.from_dict(params, cfg)
        B, T, S = cfg.batch_size, cfg.truncated_backprop_length, cfg.state_size
        self.cfg, self.dtype = cfg, np.dtype(dtype)
        self.graph = tf.Graph()
        with self.graph.as_default(), tf.device(device):  # None: TensorFlow's own placement
            tf_dtype = tf.as_dtype(self.dtype)
            self.batchX_placeholder = tf1.placeholder(tf_dtype, [B, T])
            self.batchY_placeholder = tf1.placeholder(tf.int32, [B, T])
            self.init_state = tf1.placeholder(tf_dtype, [B, S])

            self.W = tf.Variable(params.W, dtype=tf_dtype)
            self.b = tf.Variable(params.b, dtype=tf_dtype)
            self.W2 = tf.Variable(params.W2, dtype=tf_dtype)
            self.b2 = tf.Variable(params.b2, dtype=tf_dtype)
            self.variables = Params(self.W, self.b, self.W2, self.b2)

            # Unpack columns
            inputs_series = tf.unstack(self.batchX_placeholder, axis=1)
            labels_series = tf.unstack(self.batchY_placeholder, axis=1)

            # Forward pass
            current_state = self.init_state
            states_series = []
            for current_input in inputs_series:
                current_input = tf.reshape(current_input, [B, 1])
                input_and_state_concatenated = tf.concat([current_input, current_state], 1)
                next_state = tf.tanh(tf.matmul(input_and_state_concatenated, self.W) + self.b)
                states_series.append(next_state)
                current_state = next_state
            self.current_state = current_state

            self.logits_series = [tf.matmul(state, self.W2) + self.b2 for state in states_series]
            self.predictions_series = [tf.nn.softmax(logits) for logits in self.logits_series]
            losses = [
                tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=labels)
                for logits, labels in zip(self.logits_series, labels_series, strict=True)
            ]
            self.total_loss = tf.reduce_mean(losses)

            # TF1 turns a Python float learning rate into a float32 tensor; in float64 that
            # rounding would change every step, so it is given in the variables' dtype.
            learning_rate = tf.constant(cfg.learning_rate, dtype=tf_dtype)
            optimizer = tf1.train.AdagradOptimizer(learning_rate)
            self.train_step_op = optimizer.minimize(self.total_loss)
            self.gradients = tf.gradients(self.total_loss, list(self.variables))
            self.accumulators = Params(
                *(optimizer.get_slot(v, "accumulator") for v in self.variables)
            )
            # Assigning weights and accumulators (to resume, or to start a comparison).
            self._assign_values = [tf1.placeholder(tf_dtype, v.shape) for v in self._state_vars()]
            self._assign = [
                v.assign(p) for v, p in zip(self._state_vars(), self._assign_values, strict=True)
            ]
            init = tf1.global_variables_initializer()
        self.sess = tf1.Session(graph=self.graph)
        self.sess.run(init)

    def _state_vars(self):
        return [*self.variables, *self.accumulators]

    # --- The tutorial's verbs -----------------------------------------------------------------

    def train_step(self, h_BxS, x_BxT, y_BxT):
        """One ``session.run`` of the tutorial: returns the carried state and the loss."""
        total_loss, _, current_state, _ = self.sess.run(
            [self.total_loss, self.train_step_op, self.current_state, self.predictions_series],
            feed_dict={
                self.batchX_placeholder: x_BxT,
                self.batchY_placeholder: y_BxT,
                self.init_state: h_BxS,
            },
        )
        return current_state, total_loss

    def train_epoch(self, x, y) -> np.ndarray:
        """The tutorial's inner loop: every window, state reset at the start, then carried."""
        T = self.cfg.truncated_backprop_length
        current_state = np.zeros((self.cfg.batch_size, self.cfg.state_size), self.dtype)
        losses = np.empty(self.cfg.num_batches, self.dtype)
        for batch_idx in range(self.cfg.num_batches):
            start_idx = batch_idx * T
            end_idx = start_idx + T
            current_state, losses[batch_idx] = self.train_step(
                current_state, x[:, start_idx:end_idx], y[:, start_idx:end_idx]
            )
        return losses

    # --- Inspection, for the parity checks ------------------------------------------------------

    def _feed(self, x_BxT, h_BxS, y_BxT=None):
        feed = {self.batchX_placeholder: x_BxT, self.init_state: h_BxS}
        if y_BxT is not None:
            feed[self.batchY_placeholder] = y_BxT
        return feed

    def forward(self, x_BxT, h_BxS):
        """``(logits (B, T, C), final state)`` for one window, without training."""
        logits, h = self.sess.run(
            [self.logits_series, self.current_state], self._feed(x_BxT, h_BxS)
        )
        return np.stack(logits, axis=1), h

    def loss_and_gradients(self, x_BxT, y_BxT, h_BxS):
        """``(loss, grads as Params)`` of one window, without training."""
        loss, grads = self.sess.run(
            [self.total_loss, self.gradients], self._feed(x_BxT, h_BxS, y_BxT)
        )
        return loss, Params(*grads)

    def predict_epoch(self, x) -> np.ndarray:
        """Predictions (N, B, T) over a series with the current weights, state carried."""
        T = self.cfg.truncated_backprop_length
        h = np.zeros((self.cfg.batch_size, self.cfg.state_size), self.dtype)
        preds = []
        for i in range(self.cfg.num_batches):
            probs, h = self.sess.run(
                [self.predictions_series, self.current_state],
                self._feed(x[:, i * T : (i + 1) * T], h),
            )
            preds.append(np.argmax(np.stack(probs, axis=1), axis=-1))
        return np.stack(preds).astype(np.int32)

    # --- Weights in and out ------------------------------------------------------------------

    @property
    def params(self) -> Params:
        return Params(*self.sess.run(list(self.variables)))

    def get_state(self) -> tuple[Params, AdagradState]:
        values = self.sess.run(self._state_vars())
        lr = np.asarray(self.cfg.learning_rate, self.dtype)
        return Params(*values[:4]), AdagradState(Params(*values[4:]), lr)

    def set_state(self, params: Params, opt_state: AdagradState) -> None:
        values = [*params, *opt_state.accumulator]
        self.sess.run(self._assign, dict(zip(self._assign_values, values, strict=True)))

    def close(self) -> None:
        self.sess.close()
