"""The Flax rows: the echo model in Flax NNX, as its documentation has a user write it.

TF1 weights map exactly (``to_flax`` / ``to_tf1``): a kernel's input rows go to
``dense_i.kernel``, its state rows to ``dense_h.kernel``, the bias to ``dense_i.bias``; the
LSTM's gate columns i, j, f, o to Flax's per-gate ``Linear`` pairs (``LSTM_GATES``; Flax's g is
TF1's j), each gate's bias on the hidden side, with TF1's run-time forget bias 1.0 folded into
``hf.bias`` (so in float32 it is rounded at float32's resolution near 1.0, ~1e-7, not near 0);
``W2``, ``b2`` are ``out``. ``nnx.GRUCell`` applies the reset gate after the hidden matmul, TF1's
before: it keeps Flax's initialisers (``nnx.Rngs(cfg.seed)``) and its ``params`` are Flax's own.

Shape legend: B batch, T time steps of a window, S state, C classes, N windows, L series steps.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

from jax_echo.cells import LSTM_FORGET_BIAS, input_width, params_from_dict
from jax_echo.peers import checked_dtype, jax_device, tf1_params
from jax_echo.task import EchoConfig, split_windows

# TF1's LSTM gate columns i, j, f, o as Flax's (input-side, hidden-side) Linear layers.
LSTM_GATES = (("ii", "hi"), ("ig", "hg"), ("if_", "hf"), ("io", "ho"))
FORGET_GATE = 2  # f's place in TF1's column order


class EchoRNN(nnx.Module):
    """``cfg.num_layers`` ``nnx.RNN(cell, return_carry=True)`` over ``nnx.SimpleCell`` (tanh),
    ``nnx.LSTMCell`` or ``nnx.GRUCell`` and the 1-wide series, then ``nnx.Linear`` to C classes."""

    def __init__(self, cfg: EchoConfig, dtype: Any, rngs: nnx.Rngs):
        S = cfg.state_size
        cell = {"tutorial": nnx.SimpleCell, "basic_rnn": nnx.SimpleCell}.get(cfg.cell)
        cell = cell or {"lstm": nnx.LSTMCell, "gru": nnx.GRUCell}[cfg.cell]
        self.layers = nnx.List(
            nnx.RNN(
                cell(input_width(k, S), S, dtype=dtype, param_dtype=dtype, rngs=rngs),
                return_carry=True,
                rngs=False,  # no random carry: the carry is always passed in
            )
            for k in range(cfg.num_layers)
        )
        self.out = nnx.Linear(S, cfg.num_classes, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x_BxT: jax.Array, carry: tuple[Any, ...]) -> tuple[jax.Array, tuple]:
        """Logits (B, T, C) from the carry of every layer, and the carry after the last step."""
        out_BxTxS = x_BxT[..., None].astype(self.out.kernel.dtype)
        new_carry = []
        for layer, layer_carry in zip(self.layers, carry, strict=True):
            layer_carry, out_BxTxS = layer(out_BxTxS, initial_carry=layer_carry)
            new_carry.append(layer_carry)
        return self.out(out_BxTxS), tuple(new_carry)


def to_flax(model: EchoRNN, cfg: EchoConfig, params: Any) -> None:
    """Sets every weight of the (possibly abstract) model from flat TF1-layout weights."""
    flat = params_from_dict(params, cfg)  # checks names and shapes
    dtype = model.out.kernel.dtype

    def put(variable: nnx.Variable, a: Any) -> None:
        variable.set_value(jnp.asarray(np.asarray(a, dtype)))

    for k, (layer, tf1) in enumerate(zip(model.layers, flat.cells, strict=True)):
        I, S, cell = input_width(k, cfg.state_size), cfg.state_size, layer.cell
        kernel, bias = np.asarray(tf1[0], dtype), np.asarray(tf1[1], dtype).reshape(-1)
        if cfg.cell == "lstm":
            bias = bias.copy()
            bias[FORGET_GATE * S : (FORGET_GATE + 1) * S] += LSTM_FORGET_BIAS
            for g, (i_name, h_name) in enumerate(LSTM_GATES):
                put(getattr(cell, i_name).kernel, kernel[:I, g * S : (g + 1) * S])
                put(getattr(cell, h_name).kernel, kernel[I:, g * S : (g + 1) * S])
                put(getattr(cell, h_name).bias, bias[g * S : (g + 1) * S])
        else:
            put(cell.dense_i.kernel, kernel[:I])
            put(cell.dense_h.kernel, kernel[I:])
            put(cell.dense_i.bias, bias)
    put(model.out.kernel, flat.W2)
    put(model.out.bias, np.reshape(flat.b2, -1))


def to_tf1(model: EchoRNN, cfg: EchoConfig) -> dict[str, np.ndarray]:
    """The model's weights as a flat TF1-layout dict (Flax's own layout for the GRU)."""
    get = lambda variable: np.asarray(variable.get_value())  # noqa: E731
    if cfg.cell == "gru":
        params = nnx.to_flat_state(nnx.state(model, nnx.Param))
        return {"/".join(map(str, path)): get(v) for path, v in params}
    layers, S = [], cfg.state_size
    for layer in model.layers:
        cell = layer.cell
        if cfg.cell == "lstm":
            pairs = [(getattr(cell, i), getattr(cell, h)) for i, h in LSTM_GATES]
            kernel = np.concatenate(
                [np.concatenate([get(i.kernel), get(h.kernel)]) for i, h in pairs], 1
            )
            bias = np.concatenate([get(h.bias) for _, h in pairs])
            bias[FORGET_GATE * S : (FORGET_GATE + 1) * S] -= LSTM_FORGET_BIAS
        else:
            kernel = np.concatenate([get(cell.dense_i.kernel), get(cell.dense_h.kernel)])
            bias = get(cell.dense_i.bias)
        layers.append((kernel, bias))
    return tf1_params(cfg, layers, get(model.out.kernel), get(model.out.bias))


def train_step(
    model: EchoRNN, optimizer: nnx.Optimizer, carry: tuple, x_BxT: jax.Array, y_BxT: jax.Array
) -> tuple[jax.Array, tuple]:
    """One window: loss (mean over B*T), gradient, Adagrad update; the loss and the last carry."""

    def loss_fn(model: EchoRNN) -> tuple[jax.Array, tuple]:
        logits_BxTxC, last_carry = model(x_BxT, carry)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxC, y_BxT).mean()
        return loss, last_carry

    (loss, carry), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return loss, carry


jit_train_step = nnx.jit(train_step)


@nnx.jit
def predict_series(model: EchoRNN, x_BxL: jax.Array, carry: tuple) -> jax.Array:
    """Predicted symbols (B, L) over a whole series, the carry running through it."""
    logits_BxLxC, _ = model(x_BxL, carry)
    return jnp.argmax(logits_BxLxC, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=(1, 2))
def scan_epoch(graphdef: nnx.GraphDef, state: nnx.State, carry, x_NxBxT, y_NxBxT):
    """Every window of an epoch in one ``lax.scan`` over the split ``(model, optimizer)``: the
    new state, the last carry and the losses (N,)."""

    def window(state_carry, x_y):
        state, carry = state_carry
        model, optimizer = nnx.merge(graphdef, state)
        loss, carry = train_step(model, optimizer, carry, *x_y)
        return (nnx.state((model, optimizer)), carry), loss

    (state, carry), losses_N = lax.scan(window, (state, carry), (x_NxBxT, y_NxBxT))
    return state, carry, losses_N


@functools.cache
def tf1_adagrad(learning_rate: float) -> optax.GradientTransformation:
    """TF1's ``AdagradOptimizer``, one object per rate: equal models share a graphdef (of which
    the transformation is a static part) and so their compiled programs."""
    return optax.adagrad(learning_rate, initial_accumulator_value=0.1, eps=0.0)


class _NnxTrainer:
    """Construction, weights, predictions and device placement shared by both Flax rows."""

    def __init__(self, cfg: EchoConfig, params: Any, dtype: Any = np.float32, device: str = "cpu"):
        self.dtype = checked_dtype("Flax", cfg, dtype, device)
        self.cfg, self.device = cfg, jax_device(device)
        with self._placed():
            build = lambda: EchoRNN(cfg, self.dtype, nnx.Rngs(cfg.seed))  # noqa: E731
            if cfg.cell == "gru":  # Flax's GRU is not TF1's: its own initial weights
                params_from_dict(params, cfg)
                self.model = build()
            else:  # every weight comes from params: build it abstractly (no initialiser runs)
                self.model = nnx.eval_shape(build)
                to_flax(self.model, cfg, params)
            self.optimizer = nnx.Optimizer(
                self.model, tf1_adagrad(cfg.learning_rate), wrt=nnx.Param
            )
            self.carry = self._zero_carry()

    @contextlib.contextmanager
    def _placed(self) -> Iterator[None]:
        """Runs on the trainer's device, with 64-bit floats exactly when the dtype is float64."""
        with jax.default_device(self.device), jax.enable_x64(self.dtype == np.float64):
            yield

    def _zero_carry(self) -> tuple:
        B, S = self.cfg.batch_size, self.cfg.state_size
        zeros = lambda: jnp.zeros((B, S), self.dtype)  # noqa: E731
        lstm = self.cfg.cell == "lstm"
        return tuple((zeros(), zeros()) if lstm else zeros() for _ in range(self.cfg.num_layers))

    def _windows(self, a_BxL: Any) -> np.ndarray:
        return split_windows(np.asarray(a_BxL, np.int32), self.cfg.truncated_backprop_length)

    def _model(self) -> EchoRNN:
        return self.model

    def train_window(self, x_BxT: Any, y_BxT: Any, *, epoch: int = 0, window: int = 0) -> float:
        del epoch, window  # no dropout: every peer refuses keep_prob < 1
        with self._placed():
            return float(self._train(np.asarray(x_BxT, np.int32), np.asarray(y_BxT, np.int32)))

    def predict_epoch(self, x_BxL: Any) -> np.ndarray:
        T = self.cfg.truncated_backprop_length
        x_BxL = np.asarray(x_BxL, self.dtype)
        N = x_BxL.shape[1] // T
        with self._placed():
            pred_BxNT = predict_series(self._model(), x_BxL[:, : N * T], self._zero_carry())
        return split_windows(np.asarray(pred_BxNT), T)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The weights as a flat TF1-layout dict (for the GRU: Flax's own layout)."""
        with self._placed():
            return to_tf1(self._model(), self.cfg)

    def close(self) -> None:
        self.model = self.optimizer = self.carry = None


class NnxJitTrainer(_NnxTrainer):
    """``@nnx.jit`` step per window, the carry returned and passed back in (``flax-nnx-jit``)."""

    name = "flax-nnx-jit"

    def _train(self, x_BxT: Any, y_BxT: Any) -> jax.Array:
        loss, self.carry = jit_train_step(self.model, self.optimizer, self.carry, x_BxT, y_BxT)
        return loss

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> np.ndarray:
        del epoch  # no dropout: every peer refuses keep_prob < 1
        with self._placed():
            self.carry = self._zero_carry()
            windows = zip(self._windows(x_BxL), self._windows(y_BxL), strict=True)
            losses = [self._train(x_BxT, y_BxT) for x_BxT, y_BxT in windows]
            return np.asarray(jax.device_get(losses))


class NnxScanTrainer(_NnxTrainer):
    """The same model split once into ``(graphdef, state)``; one ``jax.jit`` scans an epoch's
    windows (``flax-nnx-scan``)."""

    name = "flax-nnx-scan"

    def __init__(self, cfg: EchoConfig, params: Any, dtype: Any = np.float32, device: str = "cpu"):
        super().__init__(cfg, params, dtype, device)
        self.graphdef, self.state = nnx.split((self.model, self.optimizer))
        self.model = self.optimizer = None  # their arrays are the state's, donated on each call

    def _model(self) -> EchoRNN:
        model, _ = nnx.merge(self.graphdef, self.state)
        return model

    def _train(self, x_BxT: Any, y_BxT: Any) -> jax.Array:
        """One window through ``NnxJitTrainer``'s step (the same compiled program)."""
        model, optimizer = nnx.merge(self.graphdef, self.state)
        loss, self.carry = jit_train_step(model, optimizer, self.carry, x_BxT, y_BxT)
        self.state = nnx.state((model, optimizer))
        return loss

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> np.ndarray:
        del epoch  # no dropout: every peer refuses keep_prob < 1
        with self._placed():
            x_NxBxT, y_NxBxT = self._windows(x_BxL), self._windows(y_BxL)
            self.state, self.carry, losses_N = scan_epoch(
                self.graphdef, self.state, self._zero_carry(), x_NxBxT, y_NxBxT
            )
        return np.asarray(losses_N)

    def close(self) -> None:
        super().close()
        self.state = None
