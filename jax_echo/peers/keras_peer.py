"""Keras 3 rows: stateful ``SimpleRNN`` / ``LSTM`` / ``GRU`` layers, as the Keras docs write them.

A stateful layer starts each call from its last state: the tutorial's carried state, cut at the
window edge, zeroed by ``reset_states()`` at an epoch's start. The rows run on this process' Keras
backend (``keras_backend()``).

The cells are TF1's (kernel rows input then state, split into ``kernel`` and
``recurrent_kernel``): ``SimpleRNN`` is ``BasicRNNCell``; ``LSTM``'s gate columns are i, f, c, o
(TF1's i, j, f, o), TF1's forget bias 1.0 folded into its bias; ``GRU(reset_after=False)`` has
columns z, r, h: TF1's GRUCell with z = u.

``params_to_keras_weights`` / ``params_from_keras_weights`` write and read the ``.weights.h5`` of
the model as a Keras user builds it (``build_model(..., carried=False)``; a part-6 config's is part
4's: dropout has no weights). A round trip is exact but for the LSTM's forget bias, held as
``b + 1.0`` in float32 (``b`` comes back within 6e-8).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import jax
import keras
import numpy as np

from jax_echo.cells import LSTM_FORGET_BIAS, Params, init_params, input_width, params_from_dict
from jax_echo.io import CheckpointError, atomic_write
from jax_echo.peers import checked_dtype, jax_device, tf1_params
from jax_echo.task import EchoConfig, split_windows

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf


def _carried(rnn: type[keras.layers.RNN]) -> type[keras.layers.RNN]:
    """``rnn`` with its stateful state made a tracked (non-trainable) weight, on JAX only.

    Keras' JAX trainer threads only tracked variables through its compiled step, and the RNN
    layer creates ``rnn_state`` untracked: its update is dropped after every ``train_on_batch``
    or ``fit`` step, so each window would silently start from zeros (Keras 3.15). TensorFlow's
    trainer assigns the variable itself.
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


_KERAS_LAYERS = {
    "tutorial": keras.layers.SimpleRNN,
    "basic_rnn": keras.layers.SimpleRNN,
    "lstm": keras.layers.LSTM,  # recurrent_activation="sigmoid" by default, as TF1's
    "gru": keras.layers.GRU,
}
_CARRIED_LAYERS = {cell: _carried(layer) for cell, layer in _KERAS_LAYERS.items()}


# Keras' column blocks by TF1's, a permutation that is its own inverse: the LSTM's i, f, c, o from
# TF1's i, j, f, o; the GRU's z, r, h from TF1's gates r, u then its candidate.
_KERAS_BLOCKS = {"lstm": (0, 2, 1, 3), "gru": (1, 0, 2)}


def _keras_columns(cfg: EchoConfig, a: np.ndarray) -> np.ndarray:
    """``a``'s column blocks (last axis) from TF1's order to Keras', and back."""
    if cfg.cell not in _KERAS_BLOCKS:
        return a
    blocks = np.split(a, len(_KERAS_BLOCKS[cfg.cell]), -1)
    return np.concatenate([blocks[i] for i in _KERAS_BLOCKS[cfg.cell]], -1)


def _device_scope(device: str) -> Callable[[], Any]:
    """A context-manager factory placing Keras' arrays on ``device``; ``ValueError`` if absent."""
    if BACKEND == "jax":
        found = jax_device(device)
        return lambda: jax.default_device(found)
    if BACKEND == "tensorflow":
        found = tf.config.list_logical_devices(device.upper())
        if not found:
            raise ValueError(f"no {device!r} device for Keras' {BACKEND} backend in this process")
        return lambda: tf.device(found[0].name)
    raise ValueError(f"the Keras rows run on the jax or tensorflow backend, not {BACKEND!r}")


def _to_keras(cfg: EchoConfig, cell: Any, layer: int) -> list[np.ndarray]:
    """One layer's TF1 weights (a ``Params`` cell) as the Keras layer's
    ``[kernel, recurrent_kernel, bias]``."""
    S, I = cfg.state_size, input_width(layer, cfg.state_size)
    # A cell's fields alternate kernel and bias: the GRU's gates', then its candidate's.
    K = np.concatenate(cell[0::2], 1)
    b = np.concatenate([np.reshape(bias, -1) for bias in cell[1::2]])
    if cfg.cell == "lstm":
        b[2 * S : 3 * S] += LSTM_FORGET_BIAS  # TF1's f block
    K, b = _keras_columns(cfg, K), _keras_columns(cfg, b)
    return [K[:I], K[I:], b]


def _to_tf1(cfg: EchoConfig, weights: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The inverse of ``_to_keras``: one layer's arrays in TF1's order."""
    kernel, recurrent, b = weights
    K, b = _keras_columns(cfg, np.concatenate([kernel, recurrent])), _keras_columns(cfg, b)
    S = cfg.state_size
    if cfg.cell == "lstm":
        b[2 * S : 3 * S] -= LSTM_FORGET_BIAS
    if cfg.cell == "gru":
        return K[:, : 2 * S], b[: 2 * S], K[:, 2 * S :], b[2 * S :]
    return K, b


def build_model(
    cfg: EchoConfig,
    params: Any,
    dtype: Any = np.float32,
    *,
    carried: bool = True,
    use_cudnn: bool | str = False,
) -> keras.Model:
    """The rows' model, uncompiled, holding ``params`` (TF1 layout, cast to ``dtype``).

    ``carried``: on JAX, layers whose state is a tracked weight (``_carried``), which training
    needs; ``False``: Keras' own layers (the same math and weights), as a user builds them and as
    ``.weights.h5`` files name them. The LSTM takes ``use_cudnn``. Call it where the caller's
    device and dtype scope apply.
    """
    dtype = np.dtype(dtype)
    tf1 = jax.tree.map(lambda a: np.asarray(a, dtype), params_from_dict(params, cfg))
    layers = _CARRIED_LAYERS if carried else _KERAS_LAYERS
    # TF1's GRUCell applies the reset gate before the matmul: reset_after=False.
    extra = {"lstm": {"use_cudnn": use_cudnn}, "gru": {"reset_after": False}}.get(cfg.cell, {})
    inputs = h = keras.Input(batch_shape=(cfg.batch_size, None, 1), dtype=dtype.name)
    for layer in range(cfg.num_layers):
        rnn = layers[cfg.cell](
            cfg.state_size, stateful=True, return_sequences=True, dtype=dtype.name, **extra
        )
        h = rnn(h)
        rnn.cell.set_weights(_to_keras(cfg, tf1.cells[layer], layer))
    dense = keras.layers.Dense(cfg.num_classes, dtype=dtype.name)
    model = keras.Model(inputs, dense(h))
    dense.set_weights([tf1.W2, tf1.b2[0]])
    return model


def model_params(cfg: EchoConfig, model: keras.Model) -> dict[str, np.ndarray]:
    """The weights of a ``build_model`` model of ``cfg``, as a flat TF1-layout dict."""
    layers = [_to_tf1(cfg, rnn.cell.get_weights()) for rnn in model.layers[1:-1]]
    W2, b2 = model.layers[-1].get_weights()
    return tf1_params(cfg, layers, W2, b2)


class TrainOnBatchTrainer:
    """Stateful Keras layers, one ``train_on_batch`` per window (``keras-BACKEND-batch``), with
    TF1's Adagrad and the mean cross-entropy over B*T."""

    name = f"keras-{BACKEND}-batch"

    def __init__(self, cfg: EchoConfig, params: Any, dtype: Any = np.float32, device: str = "cpu"):
        self.dtype = checked_dtype("Keras", cfg, dtype, device)
        if self.dtype == np.float64 and BACKEND == "jax":
            # keras.backend.result_type maps 64-bit to 32-bit on JAX even under jax_enable_x64
            # (keras-team/keras#21604), so ops.tanh turns a float64 state into float32.
            raise ValueError("Keras' JAX backend has no float64 (its ops compute in float32)")
        self.cfg, self._device = cfg, _device_scope(device)
        # Keras picks the LSTM's cuDNN kernel by the backend's platform, not by the device: a
        # "cpu" LSTM on a GPU machine would fail to compile it ("rnn_fwd" has no CPU rule).
        use_cudnn = "auto" if device == "gpu" else False
        with self._scope():
            self.model = build_model(cfg, params, self.dtype, use_cudnn=use_cudnn)
            self.model.compile(
                optimizer=keras.optimizers.Adagrad(
                    float(cfg.learning_rate),
                    # A NumPy scalar: a Python 0.1 reaches a float64 accumulator through float32
                    # on TensorFlow (0.10000000149...).
                    initial_accumulator_value=self.dtype.type(0.1),
                    epsilon=0.0,
                ),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                **self._compile_options(),
            )
        self._rnns = self.model.layers[1:-1]

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        """Every Keras call runs here: on the device, float64's floatx, JAX's rank promotion."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._device())
            if BACKEND == "jax":  # Keras' ops broadcast ranks; a caller may forbid it (our tests)
                stack.enter_context(jax.numpy_rank_promotion("allow"))
            if self.dtype == np.float64:  # floatx: Keras makes the rate and loss tracker in it
                stack.callback(keras.config.set_floatx, keras.config.floatx())
                keras.config.set_floatx("float64")
            yield

    def _compile_options(self) -> dict[str, Any]:
        return {}

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
        return model_params(self.cfg, self.model)

    def close(self) -> None:
        del self.model, self._rnns


class _WindowLosses(keras.callbacks.Callback):
    """Per-window losses from ``fit``'s logs, which hold the epoch's running mean of the loss.

    ``async_safe``: Keras may call it from a worker thread, so that reading the loss does not
    stall the training loop on every step; keyed by batch.
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


class _WindowLoss(keras.metrics.Metric):
    """Each step's loss in slot ``step`` of a (N,) variable, written inside the compiled step
    (callbacks see one execution of N steps as one batch); recomputed from the logits."""

    def __init__(self, num_windows: int, dtype: str):
        super().__init__(name="window_loss", dtype=dtype)
        self.values = self.add_variable((num_windows,), initializer="zeros", name="values")
        self.step = self.add_variable((), initializer="zeros", dtype="int32", name="step")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        loss = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        )
        step, values = self.step.value, self.values.value
        one_hot = keras.ops.one_hot(step, values.shape[0], dtype=self.dtype)
        self.values.assign(values * (1 - one_hot) + loss * one_hot)
        self.step.assign(step + 1)

    def result(self) -> Any:
        return keras.ops.convert_to_tensor(self.values)


class FitTrainer(TrainOnBatchTrainer):
    """The same model trained by ``fit(shuffle=False)`` over an epoch (``keras-BACKEND-fit``);
    ``train_window`` is ``train_on_batch``: ``fit`` has no per-window form."""

    name = f"keras-{BACKEND}-fit"

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> np.ndarray:
        del epoch  # no dropout: every peer refuses keep_prob < 1
        recorder = _WindowLosses()
        self._fit_epoch(x_BxL, y_BxL, callbacks=[recorder])
        return recorder.losses()

    def _fit_epoch(self, x_BxL: Any, y_BxL: Any, callbacks: list) -> None:
        """One ``fit`` epoch over the series' windows, from a zero state: batch k is window k."""
        T = self.cfg.truncated_backprop_length
        x_NBxTx1 = self._inputs(split_windows(np.asarray(x_BxL), T)).reshape(-1, T, 1)
        y_NBxT = split_windows(np.asarray(y_BxL), T).reshape(-1, T)
        with self._scope():
            self._reset_states()
            self.model.fit(
                x_NBxTx1,
                y_NBxT,
                batch_size=self.cfg.batch_size,
                epochs=1,
                shuffle=False,
                verbose=0,
                callbacks=callbacks,
            )


class FitStepsTrainer(FitTrainer):
    """Keras at its best: ``fit`` with ``compile(steps_per_execution=N)``, an epoch in one
    execution (``keras-BACKEND-fit-steps``); its per-window losses come from ``_WindowLoss``."""

    name = f"keras-{BACKEND}-fit-steps"

    def _compile_options(self) -> dict[str, Any]:
        self._window_loss = _WindowLoss(self.cfg.num_batches, self.dtype.name)
        return {"metrics": [self._window_loss], "steps_per_execution": self.cfg.num_batches}

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> np.ndarray:
        del epoch  # no dropout: every peer refuses keep_prob < 1
        self._fit_epoch(x_BxL, y_BxL, callbacks=[])
        with self._scope():
            return keras.ops.convert_to_numpy(self._window_loss.values).astype(np.float64)


# --- Keras weights files ------------------------------------------------------------------

SUFFIX = ".weights.h5"  # Keras 3 reads and writes weights files by this name only


def params_to_keras_weights(params: Params | dict, cfg: EchoConfig, path: str | os.PathLike) -> str:
    """Writes ``params`` as the ``.weights.h5`` of the Keras model of ``cfg``; returns ``path``.

    The weights are float32 (Keras' default), written by the model's ``save_weights`` and moved
    into place with ``io.atomic_write`` (an existing file is replaced whole, or kept).
    ``ValueError`` for params that are not ``cfg``'s or a name not ending in ``.weights.h5``.
    """
    path = _checked(path)
    with jax.numpy_rank_promotion("allow"):
        data = _weights_file(build_model(cfg, params, np.float32, carried=False))
    atomic_write(path, lambda f: f.write(data))
    return os.fspath(path)


def params_from_keras_weights(path: str | os.PathLike, cfg: EchoConfig) -> Params:
    """The weights of a ``.weights.h5`` of the Keras model of ``cfg``, as float32 ``Params``.

    Raises:
      ValueError: a Keras model whose cell's math is not TF1's (Keras' default GRU).
      CheckpointError (a ``ValueError``): not a weights file, or one of another model (other
        layers, cell or sizes), naming what differs.
    """
    path = _checked(path)
    try:
        held = _layout(path)
    except OSError as e:
        raise CheckpointError(f"{path} is not a readable Keras weights file: {e}") from e
    with jax.numpy_rank_promotion("allow"):
        model = build_model(cfg, init_params(cfg), np.float32, carried=False)
        _check_layout(path, held, _layout(io.BytesIO(_weights_file(model))), cfg)
        model.load_weights(path)
        return params_from_dict(model_params(cfg, model), cfg)


def _checked(path: str | os.PathLike) -> Path:
    if not os.fspath(path).endswith(SUFFIX):
        raise ValueError(f"Keras weights files are named *{SUFFIX}, got {os.fspath(path)!r}")
    return Path(path)


def _weights_file(model: keras.Model) -> bytes:
    """What ``model.save_weights`` writes (only to a file named ``*.weights.h5``)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_weights(Path(tmp, "model" + SUFFIX))
        return Path(tmp, "model" + SUFFIX).read_bytes()


def _layout(path: Path | io.BytesIO) -> dict[str, tuple[int, ...]]:
    """Every array of a weights file, by its path in the file, with its shape."""
    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visit(names.append)
        return {name: f[name].shape for name in names if isinstance(f[name], h5py.Dataset)}


def _check_layout(path: Path, held: dict, expected: dict, cfg: EchoConfig) -> None:
    """Refuses a file whose arrays are not those of ``cfg``'s model, saying how they differ."""
    if held == expected:
        return
    model = f"cell={cfg.cell!r} with {cfg.num_layers} layer(s), state_size={cfg.state_size}"
    reset_after = {
        name: (2, *shape)
        if name.startswith("layers/gru") and shape == (3 * cfg.state_size,)
        else shape
        for name, shape in expected.items()
    }
    if cfg.cell == "gru" and held == reset_after:
        raise ValueError(
            f"{path} holds Keras' default GRU (reset_after=True: two bias rows), which applies "
            "the reset gate after the matmul; TF1's GRUCell applies it before, so no TF1 weights "
            "compute the same: build the Keras GRU with reset_after=False"
        )
    missing = [f"{n} {expected[n]}" for n in expected if n not in held]
    unexpected = [f"{n} {held[n]}" for n in held if n not in expected]
    shapes = [f"{n} {held[n]} (expected {s})" for n, s in expected.items() if held.get(n, s) != s]
    problems = [
        f"{what} {', '.join(items)}"
        for what, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
        if items
    ]
    raise CheckpointError(f"{path} does not hold the Keras model of {model}: {'; '.join(problems)}")
