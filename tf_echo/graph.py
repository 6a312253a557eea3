"""The tutorial series' TensorFlow 1.x programs, faithfully, through ``tf.compat.v1``.

Part 1 is the hand-written tanh RNN; parts 2-6 use TF1's cells (each optionally in a
``DropoutWrapper``) through ``static_rnn``, or ``dynamic_rnn`` with ``dynamic=True`` (parts 5-6);
then ``AdagradOptimizer(lr).minimize`` and one ``session.run`` per window, the final state fed back
as the next window's. Each program has its own ``tf.Graph`` and session, so eager execution stays
on for the rest of the process. The published code's corrections are docs/tutorial.md's; dropout's
keep probability is a ``placeholder_with_default`` fed 1.0 to predict and inspect. Names are the
author's, TF1's variable names too (``jax_echo.tf_checkpoint``), so checkpoints are the author's.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

import numpy as np
import tensorflow as tf

# TF1's cell classes; tf.compat.v1.nn.rnn_cell refuses to run under Keras 3 (docs/tutorial.md).
from tensorflow.python.ops import rnn_cell_impl

from jax_echo.cells import params_from_dict, params_to_dict
from jax_echo.io import CheckpointError
from jax_echo.task import EchoConfig, split_windows
from jax_echo.tf_checkpoint import params_from_tf_checkpoint, tf1_variable_names, write_with_saver
from tf_echo.state import state_layers, zero_state

tf1 = tf.compat.v1


class GraphTrainer:
    """The author's graph and session for ``cfg``'s part, starting from the given weights.

    Args:
      cfg: the configuration (cell, layers, keep_prob, shapes, learning rate, seed).
      params: initial weights, a flat TF1-layout dict (or ``jax_echo.cells.Params``).
      dtype: float32 as in the tutorial; float64 for the high-precision parity checks.
      device: where to place the graph ("/CPU:0", "/GPU:0"); by default TensorFlow decides.
      dynamic: ``dynamic_rnn`` (parts 5-6) instead of ``static_rnn``; not for part 1's cell.
    """

    name = "tf-graph"

    def __init__(
        self,
        cfg: EchoConfig,
        params: Any,
        dtype: Any = np.float32,
        device: str | None = None,
        dynamic: bool = False,
    ):
        if dynamic and cfg.cell == "tutorial":
            raise ValueError("dynamic=True needs a TF1 cell: part 1 is written out by hand")
        flat = params_to_dict(params_from_dict(params, cfg))
        self.cfg, self.dtype, self.dynamic = cfg, np.dtype(dtype), dynamic
        self.graph = tf.Graph()
        with self.graph.as_default(), tf.device(device), warnings.catch_warnings():
            # TF1's cells warn that they are deprecated, on every construction.
            warnings.filterwarnings("ignore", r".*deprecated", UserWarning)
            tf1.set_random_seed(cfg.seed)  # dropout masks repeat from run to run
            self._build(flat, tf.as_dtype(self.dtype))
        self.sess = tf1.Session(graph=self.graph)
        self.sess.run(self._init)
        self._load(self.variables, flat)
        self._carried = zero_state(self.cfg, self.dtype)  # train_window's state

    # --- The author's programs ----------------------------------------------------------------

    def _build(self, flat: dict[str, np.ndarray], tf_dtype: tf.DType) -> None:
        cfg = self.cfg
        B, T = cfg.batch_size, cfg.truncated_backprop_length
        self.batchX_placeholder = tf1.placeholder(tf_dtype, [B, T])
        self.batchY_placeholder = tf1.placeholder(tf.int32, [B, T])
        self.keep_prob = None  # keep_prob 1.0 builds no dropout op at all
        if cfg.keep_prob < 1:
            self.keep_prob = tf1.placeholder_with_default(tf.constant(cfg.keep_prob, tf_dtype), [])

        if cfg.cell == "tutorial":
            losses = self._build_part1(flat, tf_dtype)
        else:
            losses = self._build_cells(flat, tf_dtype)
        by_name = {v.op.name: v for v in tf1.global_variables()}  # before the optimizer's slots
        self.variables = {
            name: by_name[tf1_name] for name, tf1_name in tf1_variable_names(cfg).items()
        }
        self.total_loss = tf.reduce_mean(losses)

        # TF1 turns a Python float learning rate into a float32 tensor; in float64 that
        # rounding would change every step, so it is given in the variables' dtype.
        learning_rate = tf.constant(cfg.learning_rate, dtype=tf_dtype)
        optimizer = tf1.train.AdagradOptimizer(learning_rate)
        self.train_step_op = optimizer.minimize(self.total_loss)
        grads = tf.gradients(self.total_loss, [*self.variables.values()])
        self.gradients = dict(zip(self.variables, grads, strict=True))
        self._accumulators = {
            name: optimizer.get_slot(var, "accumulator") for name, var in self.variables.items()
        }
        self._init = tf1.global_variables_initializer()

    def _build_part1(self, flat, tf_dtype):
        """Part 1, written out by hand; the per-step losses."""
        B = self.cfg.batch_size
        self.init_state = tf1.placeholder(tf_dtype, [B, self.cfg.state_size])

        self.W = tf.Variable(flat["W"], dtype=tf_dtype)
        self.b = tf.Variable(flat["b"], dtype=tf_dtype)
        self.W2 = tf.Variable(flat["W2"], dtype=tf_dtype)
        self.b2 = tf.Variable(flat["b2"], dtype=tf_dtype)

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
        if self.keep_prob is not None:  # as DropoutWrapper: the output, never the carried state
            states_series = [tf.nn.dropout(s, rate=1 - self.keep_prob) for s in states_series]

        return self._per_step_losses(states_series, labels_series, self.W2, self.b2)

    def _build_cells(self, flat, tf_dtype):
        """Parts 2-6 with TF1's cells; the losses."""
        cfg = self.cfg
        B, T, C = cfg.batch_size, cfg.truncated_backprop_length, cfg.num_classes
        S, L = cfg.state_size, cfg.num_layers
        if cfg.cell == "lstm" and L == 1:  # part 3
            self.cell_state = tf1.placeholder(tf_dtype, [B, S])
            self.hidden_state = tf1.placeholder(tf_dtype, [B, S])
            rnn_tuple_state = rnn_cell_impl.LSTMStateTuple(self.cell_state, self.hidden_state)
        elif cfg.cell == "lstm":  # parts 4-6
            self.init_state = tf1.placeholder(tf_dtype, [L, 2, B, S])
            state_per_layer_list = tf.unstack(self.init_state, axis=0)
            rnn_tuple_state = tuple(
                rnn_cell_impl.LSTMStateTuple(
                    state_per_layer_list[idx][0], state_per_layer_list[idx][1]
                )
                for idx in range(L)
            )
        elif L == 1:  # part 2
            self.init_state = tf1.placeholder(tf_dtype, [B, S])
            rnn_tuple_state = self.init_state
        else:  # stacked basic_rnn or gru cells: one (B, S) state per layer
            self.init_state = tf1.placeholder(tf_dtype, [L, B, S])
            rnn_tuple_state = tuple(tf.unstack(self.init_state, axis=0))

        W2 = tf.Variable(flat["W2"], dtype=tf_dtype)
        b2 = tf.Variable(flat["b2"], dtype=tf_dtype)

        # Forward passes
        cells = [self._make_cell(tf_dtype) for _ in range(L)]
        cell = cells[0] if L == 1 else rnn_cell_impl.MultiRNNCell(cells, state_is_tuple=True)
        if self.dynamic:  # parts 5-6
            # A dropout mask's random op does not wait for the state: with several loop
            # iterations in flight, masks would land on time steps in a varying order.
            parallel = {} if self.keep_prob is None else {"parallel_iterations": 1}
            states_series, self.current_state = tf1.nn.dynamic_rnn(
                cell,
                tf.expand_dims(self.batchX_placeholder, -1),
                initial_state=rnn_tuple_state,
                **parallel,
            )
            states_series = tf.reshape(states_series, [-1, S])
            logits = tf.matmul(states_series, W2) + b2  # Broadcasted addition
            labels = tf.reshape(self.batchY_placeholder, [-1])
            self.logits_BxTxC = tf.reshape(logits, [B, T, C])
            logits_series = tf.unstack(self.logits_BxTxC, axis=1)
            self.predictions_series = [tf.nn.softmax(logit) for logit in logits_series]
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=labels)
        else:  # parts 2-4 (and 6 as static_rnn)
            inputs_series = tf.split(self.batchX_placeholder, T, axis=1)
            labels_series = tf.unstack(self.batchY_placeholder, axis=1)
            states_series, self.current_state = tf1.nn.static_rnn(
                cell, inputs_series, rnn_tuple_state
            )
            losses = self._per_step_losses(states_series, labels_series, W2, b2)
        return losses

    def _per_step_losses(self, states_series, labels_series, W2, b2):
        """The output layer and the losses, one op per time step (part 1, ``static_rnn``)."""
        logits_series = [tf.matmul(state, W2) + b2 for state in states_series]
        self.predictions_series = [tf.nn.softmax(logits) for logits in logits_series]
        self.logits_BxTxC = tf.stack(logits_series, axis=1)
        losses = [
            tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=labels)
            for logits, labels in zip(logits_series, labels_series, strict=True)
        ]
        return losses

    def _make_cell(self, tf_dtype):
        """One layer's cell, in a ``DropoutWrapper`` when ``keep_prob < 1``."""
        cfg, S = self.cfg, self.cfg.state_size
        if cfg.cell == "basic_rnn":
            cell = rnn_cell_impl.BasicRNNCell(S, dtype=tf_dtype)
        elif cfg.cell == "gru":
            cell = rnn_cell_impl.GRUCell(S, dtype=tf_dtype)
        elif cfg.num_layers == 1:
            cell = rnn_cell_impl.BasicLSTMCell(S, state_is_tuple=True, dtype=tf_dtype)
        else:
            cell = rnn_cell_impl.LSTMCell(S, state_is_tuple=True, dtype=tf_dtype)
        if self.keep_prob is not None:
            cell = rnn_cell_impl.DropoutWrapper(cell, output_keep_prob=self.keep_prob)
        return cell

    # --- The author's loop --------------------------------------------------------------------

    def train_step(self, state: Any, x_BxT: Any, y_BxT: Any) -> tuple[tuple, np.ndarray]:
        """One ``session.run`` of the author's loop: the state to carry and the loss."""
        total_loss, _, current_state, _ = self.sess.run(
            [self.total_loss, self.train_step_op, self.current_state, self.predictions_series],
            feed_dict=self._feed(x_BxT, state, y_BxT),
        )
        return self._layers(current_state), total_loss

    def train_window(self, x_BxT: Any, y_BxT: Any, *, epoch: int = 0, window: int = 0):
        """``train_step`` from the carried state (zeros at first), which it carries on; the loss."""
        del epoch, window  # TensorFlow's own random stream draws the dropout masks
        self._carried, loss = self.train_step(self._carried, x_BxT, y_BxT)
        return loss

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> np.ndarray:
        """The author's inner loop: every window, state reset to zeros, then fed back."""
        del epoch  # TensorFlow's own random stream draws the dropout masks
        x_NxBxT = split_windows(np.asarray(x_BxL), self.cfg.truncated_backprop_length)
        y_NxBxT = split_windows(np.asarray(y_BxL), self.cfg.truncated_backprop_length)
        current_state = zero_state(self.cfg, self.dtype)
        losses = np.empty(len(x_NxBxT), self.dtype)
        for batch_idx, (batchX, batchY) in enumerate(zip(x_NxBxT, y_NxBxT, strict=True)):
            current_state, losses[batch_idx] = self.train_step(current_state, batchX, batchY)
        self._carried = current_state
        return losses

    # --- Inspection, without dropout ----------------------------------------------------------

    def forward(self, x_BxT: Any, state: Any) -> tuple[np.ndarray, tuple]:
        logits_BxTxC, current_state = self.sess.run(
            [self.logits_BxTxC, self.current_state], self._feed(x_BxT, state, dropout=False)
        )
        return logits_BxTxC, self._layers(current_state)

    def loss_and_gradients(self, x_BxT: Any, y_BxT: Any, state: Any) -> tuple[np.ndarray, dict]:
        return self.sess.run(
            (self.total_loss, self.gradients), self._feed(x_BxT, state, y_BxT, dropout=False)
        )

    def predict_epoch(self, x_BxL: Any) -> np.ndarray:
        """Predictions (N, B, T) over a series with the current weights, state carried."""
        current_state = zero_state(self.cfg, self.dtype)
        preds = []
        for batchX in split_windows(np.asarray(x_BxL), self.cfg.truncated_backprop_length):
            predictions_series, current_state = self.sess.run(
                [self.predictions_series, self.current_state],
                self._feed(batchX, current_state, dropout=False),
            )
            current_state = self._layers(current_state)
            preds.append(np.argmax(np.stack(predictions_series, axis=1), axis=-1))
        return np.stack(preds).astype(np.int32)

    # --- Feeding and fetching the state -------------------------------------------------------

    def _feed(self, x_BxT, state, y_BxT=None, dropout=True) -> dict:
        """The feed of one window; the state goes into the placeholders as the author feeds it."""
        cfg = self.cfg
        layers = state_layers(cfg, state, self.dtype)
        feed = {self.batchX_placeholder: x_BxT}
        if cfg.cell == "lstm" and cfg.num_layers == 1:
            feed[self.cell_state], feed[self.hidden_state] = layers[0]
        else:
            feed[self.init_state] = layers[0] if cfg.num_layers == 1 else layers
        if y_BxT is not None:
            feed[self.batchY_placeholder] = y_BxT
        if self.keep_prob is not None and not dropout:
            feed[self.keep_prob] = 1.0
        return feed

    def _layers(self, current_state) -> tuple:
        """A fetched ``current_state`` as one entry per layer, ``(c, h)`` for the LSTM."""
        one_layer = self.cfg.num_layers == 1
        return state_layers(self.cfg, [current_state] if one_layer else current_state, self.dtype)

    # --- Weights in and out -------------------------------------------------------------------

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.sess.run(self.variables)

    @property
    def accumulators(self) -> dict[str, np.ndarray]:
        return self.sess.run(self._accumulators)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return self.sess.run((self.variables, self._accumulators))

    def set_state(self, params: Any, accumulators: Any) -> None:
        self._load(self.variables, params)
        self._load(self._accumulators, accumulators)

    def save_tf_checkpoint(self, path: str | os.PathLike) -> str:
        """The weights and Adagrad's slots as the author's checkpoint (TF1's Saver); ``path``."""
        return write_with_saver(self._saver, self.sess, path)

    def restore_tf_checkpoint(self, path: str | os.PathLike) -> None:
        """Restores a checkpoint of this program, its weights checked first, with TF1's
        ``Saver``; Adagrad's slots where it has them, else 0.1."""
        params = params_from_tf_checkpoint(path, self.cfg)
        dtypes = {np.asarray(value).dtype for value in params_to_dict(params).values()}
        if dtypes != {self.dtype}:
            raise CheckpointError(
                f"{path} holds {'/'.join(sorted(map(str, dtypes)))} weights, but this program "
                f"runs in {self.dtype}: build the trainer with the checkpoint's dtype"
            )
        held = tf.train.load_checkpoint(os.fspath(path)).get_variable_to_shape_map()
        saver = self._saver
        slots = list(self._accumulators.values())
        with self.graph.as_default():
            if any(slot.op.name not in held for slot in slots):
                self.sess.run([slot.initializer for slot in slots])
                saver = tf1.train.Saver(list(self.variables.values()))
            saver.restore(self.sess, os.fspath(path))

    @functools.cached_property
    def _saver(self):
        """TF1's ``Saver`` of every variable, built into the graph on first use."""
        with self.graph.as_default():
            return tf1.train.Saver()

    def _load(self, variables: dict, values: Any) -> None:
        """Writes flat TF1-layout ``values`` into ``variables`` in one ``session.run``, as TF1's
        ``Variable.load`` does: their initializers run, fed the values as initial ones."""
        flat = params_to_dict(params_from_dict(values, self.cfg))
        feed = {var.initializer.inputs[1]: flat[name] for name, var in variables.items()}
        self.sess.run([var.initializer for var in variables.values()], feed)

    def close(self) -> None:
        self.sess.close()
