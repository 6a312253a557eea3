"""Keras 3 rows: stateful ``SimpleRNN`` / ``LSTM`` / ``GRU`` layers, as the Keras docs write them.

The model is ``keras.Input(batch_shape=(B, None, 1))``, ``cfg.num_layers`` recurrent layers with
``stateful=True, return_sequences=True``, then ``Dense(num_classes)``; compiled with
``Adagrad(initial_accumulator_value=0.1, epsilon=0)`` (Keras' update is TF1's: ``acc += g*g;
var -= lr * g / sqrt(acc + eps)``) and ``SparseCategoricalCrossentropy(from_logits=True)``,
whose default reduction is the tutorial's mean over B*T. A stateful layer keeps its last state
in a variable and starts the next call from it: the tutorial's carried state, with gradients cut
at the window edge; ``reset_states()`` zeros it at the start of an epoch.

``TrainOnBatchTrainer`` calls ``train_on_batch`` once per window. ``FitTrainer`` runs
``fit(shuffle=False)`` over an epoch whose windows are laid out (N, B, T) -> (N*B, T, 1), so
batch k is window k and row b of every batch is the same row of the series.

The cells map exactly onto TF1's (kernel rows: input, then state; Keras splits them into
``kernel`` and ``recurrent_kernel``): ``SimpleRNN`` is ``BasicRNNCell`` and part 1's layer;
``LSTM`` has gate columns i, f, c, o (TF1: i, j, f, o) and TF1's run-time forget bias 1.0 is
folded into the Keras bias (subtracted again in ``params``); ``GRU(reset_after=False)`` has
columns z, r, h with ``h = z * h + (1 - z) * tanh(x Wh + (r * h) Uh + bh)``, TF1's GRUCell with
z = u. The row runs under whichever backend this process' Keras uses (``keras_backend()``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import keras
import numpy as np

from jax_echo.cells import LSTM_FORGET_BIAS, params_from_dict, params_to_dict
from jax_echo.task import EchoConfig, split_windows

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf


def _carried(rnn: type[keras.layers.RNN]) -> type[keras.layers.RNN]:
    """``rnn`` with its stateful state made a tracked (non-trainable) weight, on JAX only.

    Keras' JAX trainer threads only tracked variables through its compiled step, and the RNN
    layer creates ``rnn_state`` untracked: its update is dropped after every ``train_on_batch``
    or ``fit`` step, so each window would silently start from zeros (Keras 3.15; one call over
    many steps, as ``predict_epoch`` makes, carries it within the call). TensorFlow's trainer
    assigns the variable itself and needs no change.
    """
    if BACKEND != "jax":
        return rnn

    class Carried(rnn):
        def build(self, sequences_shape: Any, initial_state_shape: Any = None) -> None:
            super().build(sequences_shape, initial_state_shape)
            self.states = [
                self.add_weight(shape=v.shape, initializer="zeros", trainable=False, name=v.name)
                for v in self.states
            ]

    return Carried


_LAYERS = {
    "tutorial": _carried(keras.layers.SimpleRNN),
    "basic_rnn": _carried(keras.layers.SimpleRNN),
    "lstm": _carried(keras.layers.LSTM),  # recurrent_activation="sigmoid" by default, as TF1's
    "gru": functools.partial(_carried(keras.layers.GRU), reset_after=False),
}


def _swap_lstm_gates(a: np.ndarray) -> np.ndarray:
    """TF1's gate blocks i, j, f, o <-> Keras' i, f, c, o (c = j), on the last axis."""
    i, j, f, o = np.split(a, 4, -1)
    return np.concatenate([i, f, j, o], -1)


def _device_scope(device: str) -> Callable[[], Any]:
    """A context-manager factory placing Keras' arrays on ``device``; ``ValueError`` if absent."""
    if BACKEND == "jax":
        try:
            found = jax.devices(device)
        except RuntimeError:
            found = []
        if found:
            return lambda: jax.default_device(found[0])
    elif BACKEND == "tensorflow":
        found = tf.config.list_logical_devices(device.upper())
        if found:
            return lambda: tf.device(found[0].name)
    else:
        raise ValueError(f"the Keras rows run on the jax or tensorflow backend, not {BACKEND!r}")
    raise ValueError(f"no {device!r} device for Keras' {BACKEND} backend in this process")


@contextlib.contextmanager
def _float64() -> Iterator[None]:
    """floatx float64, for what Keras makes in floatx: the learning rate, the loss tracker."""
    floatx = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)


def _to_keras(cfg: EchoConfig, flat: dict[str, np.ndarray], layer: int) -> list[np.ndarray]:
    """One layer's TF1 weights as the Keras layer's ``[kernel, recurrent_kernel, bias]``."""
    p, I = f"cell_{layer}/", 1 if layer == 0 else cfg.state_size
    if cfg.cell == "tutorial":
        K, b = flat["W"], flat["b"][0]
    elif cfg.cell == "basic_rnn":
        K, b = flat[p + "kernel"], flat[p + "bias"]
    elif cfg.cell == "lstm":
        K, b = flat[p + "kernel"], flat[p + "bias"].copy()
        b[2 * cfg.state_size : 3 * cfg.state_size] += LSTM_FORGET_BIAS  # TF1's f block
        K, b = _swap_lstm_gates(K), _swap_lstm_gates(b)
    else:  # gru: Keras z, r, h = TF1 u, r, candidate
        Kr, Ku = np.split(flat[p + "gates/kernel"], 2, 1)
        br, bu = np.split(flat[p + "gates/bias"], 2)
        K = np.concatenate([Ku, Kr, flat[p + "candidate/kernel"]], 1)
        b = np.concatenate([bu, br, flat[p + "candidate/bias"]])
    return [K[:I], K[I:], b]


def _to_tf1(cfg: EchoConfig, weights: list[np.ndarray], layer: int) -> dict[str, np.ndarray]:
    """The inverse of ``_to_keras``."""
    p, (kernel, recurrent, b) = f"cell_{layer}/", weights
    K = np.concatenate([kernel, recurrent], 0)
    if cfg.cell == "tutorial":
        return {"W": K, "b": b[None]}
    if cfg.cell == "basic_rnn":
        return {p + "kernel": K, p + "bias": b}
    if cfg.cell == "lstm":
        K, b = _swap_lstm_gates(K), _swap_lstm_gates(b)
        b[2 * cfg.state_size : 3 * cfg.state_size] -= LSTM_FORGET_BIAS
        return {p + "kernel": K, p + "bias": b}
    (Ku, Kr, Kc), (bu, br, bc) = np.split(K, 3, 1), np.split(b, 3)
    return {
        p + "gates/kernel": np.concatenate([Kr, Ku], 1),
        p + "gates/bias": np.concatenate([br, bu]),
        p + "candidate/kernel": Kc,
        p + "candidate/bias": bc,
    }


class TrainOnBatchTrainer:
    """Stateful Keras layers, one ``train_on_batch`` per window (``PeerTrainer``)."""

    name = f"keras-{BACKEND}-batch"

    def __init__(self, cfg: EchoConfig, params: Any, dtype: Any = np.float32, device: str = "cpu"):
        if cfg.keep_prob < 1:
            raise ValueError(f"the Keras rows have no output dropout: keep_prob={cfg.keep_prob}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"the Keras rows run float32 or float64, not {self.dtype}")
        if self.dtype == np.float64 and BACKEND == "jax":
            # keras.backend.result_type maps 64-bit to 32-bit on JAX even under jax_enable_x64
            # (keras-team/keras#21604), so ops.tanh turns a float64 state into float32.
            raise ValueError("Keras' JAX backend has no float64 (its ops compute in float32)")
        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
        self.cfg, self._device = cfg, _device_scope(device)
        flat = {
            k: np.asarray(v, self.dtype)
            for k, v in params_to_dict(params_from_dict(params, cfg)).items()
        }
        with self._scope():
            self.model = self._build(flat, device)
        self._rnns = self.model.layers[1:-1]

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        """Every Keras call runs here: on the device, float64's floatx, JAX's rank promotion."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._device())
            if BACKEND == "jax":  # Keras' ops broadcast ranks; a caller may forbid it (our tests)
                stack.enter_context(jax.numpy_rank_promotion("allow"))
            if self.dtype == np.float64:
                stack.enter_context(_float64())
            yield

    def _build(self, flat: dict[str, np.ndarray], device: str) -> keras.Model:
        cfg, dtype = self.cfg, self.dtype.name
        # Keras picks the LSTM's cuDNN kernel by the backend's platform, not by the device: a
        # "cpu" LSTM on a GPU machine would fail to compile it ("rnn_fwd" has no CPU rule).
        extra = {"use_cudnn": "auto" if device == "gpu" else False} if cfg.cell == "lstm" else {}
        inputs = h = keras.Input(batch_shape=(cfg.batch_size, None, 1), dtype=dtype)
        for layer in range(cfg.num_layers):
            rnn = _LAYERS[cfg.cell](
                cfg.state_size, stateful=True, return_sequences=True, dtype=dtype, **extra
            )
            h = rnn(h)
            rnn.cell.set_weights(_to_keras(cfg, flat, layer))
        dense = keras.layers.Dense(cfg.num_classes, dtype=dtype)
        model = keras.Model(inputs, dense(h))
        dense.set_weights([flat["W2"], flat["b2"][0]])
        model.compile(
            optimizer=keras.optimizers.Adagrad(
                float(cfg.learning_rate),
                # A NumPy scalar: a Python 0.1 reaches a float64 accumulator through float32
                # on TensorFlow (0.10000000149...).
                initial_accumulator_value=self.dtype.type(0.1),
                epsilon=0.0,
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        return model

    def _reset_states(self) -> None:
        for rnn in self._rnns:  # Keras 3 has no Model.reset_states
            rnn.reset_states()

    def _inputs(self, x: Any) -> np.ndarray:
        return np.asarray(x, self.dtype)[..., None]

    def train_window(self, x_BxT: Any, y_BxT: Any, *, epoch: int = 0, window: int = 0) -> float:
        del epoch, window  # no dropout: every peer refuses keep_prob < 1
        with self._scope():
            return float(self.model.train_on_batch(self._inputs(x_BxT), np.asarray(y_BxT)))

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> np.ndarray:
        del epoch  # no dropout: every peer refuses keep_prob < 1
        T = self.cfg.truncated_backprop_length
        with self._scope():
            self._reset_states()
        windows = zip(split_windows(x_BxL, T), split_windows(y_BxL, T), strict=True)
        return np.array([self.train_window(x_BxT, y_BxT) for x_BxT, y_BxT in windows])

    def predict_epoch(self, x_BxL: Any) -> np.ndarray:
        """One call over the whole series (the N*T steps), from zeros; the carried state is kept."""
        N, T = self.cfg.num_batches, self.cfg.truncated_backprop_length
        with self._scope():
            states = [keras.ops.convert_to_numpy(v) for rnn in self._rnns for v in rnn.states]
            self._reset_states()
            logits_BxNTxC = self.model.predict_on_batch(self._inputs(np.asarray(x_BxL)[:, : N * T]))
            for v, value in zip((v for rnn in self._rnns for v in rnn.states), states, strict=True):
                v.assign(value)
        return split_windows(np.argmax(logits_BxNTxC, -1).astype(np.int32), T)

    @property
    def params(self) -> dict[str, np.ndarray]:
        flat = {}
        for layer, rnn in enumerate(self._rnns):
            flat |= _to_tf1(self.cfg, rnn.cell.get_weights(), layer)
        W2, b2 = self.model.layers[-1].get_weights()
        return flat | {"W2": W2, "b2": b2[None]}

    def close(self) -> None:
        del self.model, self._rnns


class _WindowLosses(keras.callbacks.Callback):
    """Per-window losses from ``fit``'s logs, which hold the epoch's running mean of the loss.

    ``async_safe``: Keras may call it from a worker thread, so that reading the loss does not
    stall the training loop on every step (as a callback without it would); keyed by batch.
    """

    async_safe = True

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.means: dict[int, float] = {}

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.means[batch] = float(logs["loss"])

    def losses(self) -> np.ndarray:
        """loss_k = k m_k - (k-1) m_(k-1): exact up to the tracker's rounding (float32: ~k ulp)."""
        means = np.array([self.means[k] for k in range(len(self.means))], np.float64)
        return np.diff(np.arange(1, len(means) + 1) * means, prepend=0.0)


class FitTrainer(TrainOnBatchTrainer):
    """The same model trained by ``fit(shuffle=False)`` over an epoch (``PeerTrainer``).

    ``train_window`` is the inherited ``train_on_batch``: ``fit`` has no per-window form.
    """

    name = f"keras-{BACKEND}-fit"

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> np.ndarray:
        del epoch  # no dropout: every peer refuses keep_prob < 1
        cfg, T = self.cfg, self.cfg.truncated_backprop_length
        x_NBxTx1 = self._inputs(split_windows(np.asarray(x_BxL), T)).reshape(-1, T, 1)
        y_NBxT = split_windows(np.asarray(y_BxL), T).reshape(-1, T)
        recorder = _WindowLosses()
        with self._scope():
            self._reset_states()
            self.model.fit(
                x_NBxTx1,
                y_NBxT,
                batch_size=cfg.batch_size,
                epochs=1,
                shuffle=False,
                verbose=0,
                callbacks=[recorder],
            )
        return recorder.losses()
