"""PyTorch rows: the echo model as PyTorch's documentation has a user write it, and at its best.

TF1's kernel (I+S, G*S), input rows first, gives ``weight_ih_l{k} = kernel[:I].T``,
``weight_hh_l{k} = kernel[I:].T`` and ``bias_ih_l{k} = bias``, the LSTM's gates reordered (TF1:
i, j, f, o; PyTorch: i, f, g, o). PyTorch's second bias would take its own Adagrad step, so
``bias_hh_l{k}`` is frozen at a constant: zeros, with TF1's forget bias (1.0) in the LSTM's forget
slice. ``nn.GRU`` applies the reset gate after the matmul, TF1's ``GRUCell`` before it: its layers
keep PyTorch's initialisation (``torch.manual_seed(cfg.seed)``; only ``W2``, ``b2`` are taken) and
its ``params`` are PyTorch's ``state_dict``.

Shape legend: B batch, T time steps of a window, L steps of a series row, S state, C classes,
N windows per epoch, K layers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from jax_echo.cells import LSTM_FORGET_BIAS, Params, input_width, params_from_dict, params_to_dict
from jax_echo.peers import checked_dtype, tf1_params
from jax_echo.task import EchoConfig, split_windows

# The longest unrolled window (time steps x layers) compiled with Inductor's C++ wrapper.
CPP_WRAPPER_CELL_STEPS = 64
_MODULES = {"tutorial": nn.RNN, "basic_rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
Weights = dict[str, torch.Tensor]  # TF1's flat layout
State = tuple[Any, ...]  # per layer h, or (c, h)


class EchoRNN(nn.Module):
    """The stacked recurrent layers and the output layer: window in, logits and state out."""

    def __init__(self, cfg: EchoConfig):
        super().__init__()
        module = _MODULES[cfg.cell]
        extra = {"nonlinearity": "tanh"} if module is nn.RNN else {}
        self.rnn = module(1, cfg.state_size, num_layers=cfg.num_layers, batch_first=True, **extra)
        self.linear = nn.Linear(cfg.state_size, cfg.num_classes)

    def forward(self, x_BxT: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        out_BxTxS, state = self.rnn(x_BxT[..., None], state)
        return self.linear(out_BxTxS), state


class _WindowLoop:
    """A row's ``Trainer`` methods, on host values, around its ``_train(x, y) -> loss`` (from the
    carried state, which it carries on), ``_zero_state()`` and ``_logits(x_BxL)`` (from zeros),
    on the row's device and dtype."""

    state: Any

    def __init__(self, cfg: EchoConfig, dtype: Any, device: str):
        """The row's torch dtype and device, or a ``ValueError`` naming what it cannot run."""
        self.cfg, dtype = cfg, checked_dtype("PyTorch", cfg, dtype, device)
        if device == "gpu" and not torch.cuda.is_available():
            raise ValueError("device='gpu' but PyTorch sees no CUDA device")
        self.dtype = getattr(torch, dtype.name)
        self.device = torch.device("cuda" if device == "gpu" else "cpu")

    def _tensor(self, a: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.tensor(np.asarray(a), dtype=dtype or self.dtype, device=self.device)

    def train_window(self, x_BxT: Any, y_BxT: Any, *, epoch: int = 0, window: int = 0) -> float:
        del epoch, window  # no dropout: every peer refuses keep_prob < 1
        return self._train(self._tensor(x_BxT), self._tensor(y_BxT, torch.int64)).item()

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> np.ndarray:
        del epoch  # no dropout: every peer refuses keep_prob < 1
        T = self.cfg.truncated_backprop_length
        x_NxBxT = split_windows(self._tensor(x_BxL), T).contiguous()
        y_NxBxT = split_windows(self._tensor(y_BxL, torch.int64), T).contiguous()
        self.state = self._zero_state()
        losses = [self._train(x, y) for x, y in zip(x_NxBxT, y_NxBxT, strict=True)]
        return torch.stack(losses).cpu().numpy()

    @torch.no_grad()
    def predict_epoch(self, x_BxL: Any) -> np.ndarray:
        T = self.cfg.truncated_backprop_length
        x_BxNT = self._tensor(x_BxL)[:, : self.cfg.num_batches * T]
        pred_BxNT = self._logits(x_BxNT).argmax(-1).to(torch.int32).cpu().numpy()
        return split_windows(pred_BxNT, T)


class EagerTrainer(_WindowLoop):
    """The ``torch-eager`` row: ``EchoRNN`` and ``optim.Adagrad`` with TF1's settings, one step per
    window in PyTorch eager, the state carried with ``.detach()``; on CUDA for ``device="gpu"``."""

    name = "torch-eager"

    def __init__(self, cfg: EchoConfig, params: Any, dtype: Any = np.float32, device: str = "cpu"):
        super().__init__(cfg, dtype, device)
        tf1 = params_from_dict(params, cfg)
        with torch.random.fork_rng(devices=[]):  # the GRU's default init, without global effects
            torch.manual_seed(cfg.seed)
            self.model = EchoRNN(cfg).to(self.device, self.dtype)
        with torch.no_grad():
            for name, value in _torch_weights(cfg, tf1).items():
                self.model.get_parameter(name).copy_(torch.from_numpy(value))
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(not name.startswith("rnn.bias_hh"))
        self.optimizer = torch.optim.Adagrad(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=cfg.learning_rate,
            initial_accumulator_value=0.1,  # TF1's AdagradOptimizer
            eps=0.0,
        )
        self.state = self._zero_state()

    def _zero_state(self) -> Any:
        shape = (self.cfg.num_layers, self.cfg.batch_size, self.cfg.state_size)
        h_KxBxS = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return (h_KxBxS, torch.zeros_like(h_KxBxS)) if self.cfg.cell == "lstm" else h_KxBxS

    def _step(self, x_BxT: torch.Tensor, y_BxT: torch.Tensor, state: Any) -> tuple[Any, Any]:
        """One window: forward, loss, backward and Adagrad step; the loss and the next state."""
        logits_BxTxC, state = self.model(x_BxT, state)
        loss = nn.functional.cross_entropy(logits_BxTxC.flatten(0, 1), y_BxT.flatten())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        return loss.detach(), state

    def _train(self, x_BxT: torch.Tensor, y_BxT: torch.Tensor) -> torch.Tensor:
        loss, self.state = self._step(x_BxT, y_BxT, self.state)
        return loss

    def _logits(self, x_BxL: torch.Tensor) -> torch.Tensor:
        return self.model(x_BxL, self._zero_state())[0]

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The weights as a flat TF1-layout dict; PyTorch's ``state_dict`` for the GRU."""
        weights = {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()}
        return weights if self.cfg.cell == "gru" else _tf1_weights(self.cfg, weights)

    def close(self) -> None:
        del self.model, self.optimizer, self.state


class CompiledTrainer(EagerTrainer):
    """The ``torch-compile`` row: ``EagerTrainer``'s step under ``torch.compile``.

    With Dynamo's defaults (``allow_rnn=False``) the recurrent module and ``loss.backward()`` are
    graph breaks that run eagerly; the output layer, the loss, their backward and Adagrad's step
    are compiled, on the first window. Dynamo keeps at most ``recompile_limit`` (8) versions of a
    function, then silently runs it eagerly: each trainer starts from a clean cache
    (``torch.compiler.reset()``: one built earlier recompiles) and ``close`` drops its code.
    """

    name = "torch-compile"

    def __init__(self, cfg: EchoConfig, params: Any, dtype: Any = np.float32, device: str = "cpu"):
        super().__init__(cfg, params, dtype, device)
        torch.compiler.reset()
        self._step = torch.compile(self._step)

    def close(self) -> None:
        super().close()
        del self._step
        torch.compiler.reset()


class WindowCompiledTrainer(_WindowLoop):
    """The ``torch-compile-window`` row, PyTorch at its best: one training window as one graph.

    ``window_step(cfg)``, a pure function of the weights, Adagrad's accumulators, the state and
    the window in TF1's math and layout (every cell, the GRU included), compiled by
    ``torch.compile(fullgraph=True)``: a window is one call, no graph break. Up to
    ``CPP_WRAPPER_CELL_STEPS`` cell steps (time steps x layers) Inductor's C++ wrapper launches the
    kernels (faster; g++ compiles a wrapper as long as the unrolled window); on a GPU the graph is
    a CUDA graph (``mode="reduce-overhead"``). Forms tried and left out are measured by
    ``benchmarks/torch_window.py`` (docs/performance.md). Each trainer compiles from a clean
    Dynamo cache, as ``CompiledTrainer`` does.
    """

    name = "torch-compile-window"

    def __init__(self, cfg: EchoConfig, params: Any, dtype: Any = np.float32, device: str = "cpu"):
        super().__init__(cfg, dtype, device)
        flat = params_to_dict(params_from_dict(params, cfg))
        self.weights = {k: self._tensor(v) for k, v in flat.items()}
        self.accumulators = {k: torch.full_like(v, 0.1) for k, v in self.weights.items()}
        self._graphs = self.device.type == "cuda"
        cell_steps = cfg.truncated_backprop_length * cfg.num_layers
        cpp_wrapper = not self._graphs and cell_steps <= CPP_WRAPPER_CELL_STEPS
        torch.compiler.reset()
        self._step = torch.compile(
            window_step(cfg),
            fullgraph=True,
            mode="reduce-overhead" if self._graphs else None,
            options={"cpp_wrapper": True} if cpp_wrapper else None,
        )
        self.state = self._zero_state()

    def _zero_state(self) -> State:
        return zero_state(self.cfg, self.dtype, self.device)

    def _train(self, x_BxT: torch.Tensor, y_BxT: torch.Tensor) -> torch.Tensor:
        if self._graphs:  # each call is a new step: the last one's outputs may be reused
            torch.compiler.cudagraph_mark_step_begin()
        self.weights, self.accumulators, self.state, loss = self._step(
            self.weights, self.accumulators, self.state, x_BxT, y_BxT
        )
        return loss.clone() if self._graphs else loss

    def _logits(self, x_BxL: torch.Tensor) -> torch.Tensor:  # eagerly
        logits_LxBxC, _ = window_logits(self.cfg, self.weights, self._zero_state(), x_BxL)
        return logits_LxBxC.transpose(0, 1)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in self.weights.items()}

    def close(self) -> None:
        del self.weights, self.accumulators, self.state, self._step
        torch.compiler.reset()


# --- the window as functions of tensors, TF1's math and layout ----------------------------------


def window_logits(
    cfg: EchoConfig, weights: Weights, state: State, x_BxT: torch.Tensor
) -> tuple[torch.Tensor, State]:
    """``(logits (T, B, C), final state)`` of one window; time-major, every step a Python step."""
    steps = list(x_BxT.T.unsqueeze(-1).unbind(0))  # T tensors (B, 1)
    final = []
    for k in range(cfg.num_layers):
        w, layer, out = layer_weights(cfg, weights, k), state[k], []
        for x_BxI in steps:
            layer = _CELL_STEPS[cfg.cell](w, layer, x_BxI)
            out.append(layer[1] if cfg.cell == "lstm" else layer)
        steps = out
        final.append(layer)
    logits_TxBxC = torch.stack(steps) @ weights["W2"] + weights["b2"].reshape(-1)
    return logits_TxBxC, tuple(final)


def window_loss(
    cfg: EchoConfig, weights: Weights, state: State, x_BxT: torch.Tensor, y_BxT: torch.Tensor
) -> tuple[torch.Tensor, State]:
    """``(mean cross-entropy over the window's B*T steps, final state)``."""
    logits_TxBxC, final = window_logits(cfg, weights, state, x_BxT)
    loss = nn.functional.cross_entropy(logits_TxBxC.flatten(0, 1), y_BxT.T.flatten())
    return loss, final


def window_step(
    cfg: EchoConfig, loss_fn: Callable | None = None
) -> Callable[..., tuple[Any, Any, Any, torch.Tensor]]:
    """``step(weights, accumulators, state, x_BxT, y_BxT) -> (weights, accumulators, state,
    loss)``: one window's forward, backward and TF1's Adagrad update, a pure function, over
    ``loss_fn(weights, state, x_BxT, y_BxT) -> (loss, state)`` (default ``window_loss``)."""
    loss_fn = loss_fn or (lambda w, s, x, y: window_loss(cfg, w, s, x, y))
    grad_and_loss = torch.func.grad_and_value(loss_fn, has_aux=True)
    rate = cfg.learning_rate

    def step(weights, accumulators, state, x_BxT, y_BxT):
        grads, (loss, state) = grad_and_loss(weights, state, x_BxT, y_BxT)
        accumulators = {k: a + grads[k] * grads[k] for k, a in accumulators.items()}
        weights = {k: w - rate * grads[k] / accumulators[k].sqrt() for k, w in weights.items()}
        return weights, accumulators, state, loss  # grad_and_value's aux carries no graph

    return step


def layer_weights(cfg: EchoConfig, weights: Weights, k: int) -> tuple:
    """Layer ``k``'s tensors from TF1's flat layout: ``(kernel, bias)``, or the GRU's
    ``(gates_kernel, gates_bias, candidate_kernel, candidate_bias)``; biases 1-D."""
    if cfg.cell == "tutorial":
        return weights["W"], weights["b"].reshape(-1)
    if cfg.cell == "gru":
        return tuple(
            weights[f"cell_{k}/{n}"].reshape(-1) if n.endswith("bias") else weights[f"cell_{k}/{n}"]
            for n in ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias")
        )
    return weights[f"cell_{k}/kernel"], weights[f"cell_{k}/bias"]


def _tanh_step(w: tuple, h_BxS: torch.Tensor, x_BxI: torch.Tensor) -> torch.Tensor:
    kernel, bias = w
    return torch.tanh(torch.cat([x_BxI, h_BxS], -1) @ kernel + bias)


def _lstm_step(w: tuple, state: State, x_BxI: torch.Tensor) -> State:
    kernel, bias = w
    c_BxS, h_BxS = state
    i, j, f, o = (torch.cat([x_BxI, h_BxS], -1) @ kernel + bias).chunk(4, -1)
    c_BxS = c_BxS * torch.sigmoid(f + LSTM_FORGET_BIAS) + torch.sigmoid(i) * torch.tanh(j)
    return c_BxS, torch.tanh(c_BxS) * torch.sigmoid(o)


def _gru_step(w: tuple, h_BxS: torch.Tensor, x_BxI: torch.Tensor) -> torch.Tensor:
    """TF1's GRUCell: the reset gate scales the state before the candidate's matmul."""
    gates_kernel, gates_bias, candidate_kernel, candidate_bias = w
    gates = torch.cat([x_BxI, h_BxS], -1) @ gates_kernel + gates_bias
    r_BxS, u_BxS = torch.sigmoid(gates).chunk(2, -1)
    candidate_input = torch.cat([x_BxI, r_BxS * h_BxS], -1)
    c_BxS = torch.tanh(candidate_input @ candidate_kernel + candidate_bias)
    return u_BxS * h_BxS + (1 - u_BxS) * c_BxS


# One layer's step: (layer_weights, state, x_BxI) -> state, whose h is the step's output.
_CELL_STEPS = {
    "tutorial": _tanh_step,
    "basic_rnn": _tanh_step,
    "lstm": _lstm_step,
    "gru": _gru_step,
}


def zero_state(cfg: EchoConfig, dtype: torch.dtype, device: torch.device) -> State:
    """Per layer ``h`` (B, S), or ``(c, h)`` for the LSTM: zeros."""
    zeros = functools.partial(
        torch.zeros, cfg.batch_size, cfg.state_size, dtype=dtype, device=device
    )
    return tuple(
        (zeros(), zeros()) if cfg.cell == "lstm" else zeros() for _ in range(cfg.num_layers)
    )


# --- TF1's flat layout <-> PyTorch's parameters -------------------------------------------------


def _torch_weights(cfg: EchoConfig, tf1: Params) -> dict[str, np.ndarray]:
    """PyTorch parameter name -> value for TF1's ``Params`` (only W2, b2 for the GRU)."""
    weights = {"linear.weight": tf1.W2.T, "linear.bias": tf1.b2.reshape(-1)}
    if cfg.cell == "gru":
        return weights
    for k, (kernel, bias) in enumerate(tf1.cells):
        kernel, bias = kernel[:, _gate_order(cfg)], bias.reshape(-1)[_gate_order(cfg)]
        I = input_width(k, cfg.state_size)
        weights |= {
            f"rnn.weight_ih_l{k}": kernel[:I].T,
            f"rnn.weight_hh_l{k}": kernel[I:].T,
            f"rnn.bias_ih_l{k}": bias,
            f"rnn.bias_hh_l{k}": _frozen_bias_hh(cfg, bias.dtype),
        }
    return {name: np.ascontiguousarray(value) for name, value in weights.items()}


def _tf1_weights(cfg: EchoConfig, torch_weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of ``_torch_weights`` for the exact cells: TF1's flat layout."""
    layers = []
    for k in range(cfg.num_layers):
        w_ih, w_hh = torch_weights[f"rnn.weight_ih_l{k}"], torch_weights[f"rnn.weight_hh_l{k}"]
        bias_hh = torch_weights[f"rnn.bias_hh_l{k}"]
        # bias_hh is frozen at the constant, so this adds exact zeros.
        bias = torch_weights[f"rnn.bias_ih_l{k}"] + (bias_hh - _frozen_bias_hh(cfg, bias_hh.dtype))
        kernel = np.concatenate([w_ih, w_hh], axis=1).T
        layers.append((kernel[:, _gate_order(cfg)], bias[_gate_order(cfg)]))
    return tf1_params(cfg, layers, torch_weights["linear.weight"].T, torch_weights["linear.bias"])


def _gate_order(cfg: EchoConfig) -> np.ndarray | slice:
    """Indices taking TF1's LSTM gate blocks (i, j, f, o) to PyTorch's (i, f, g, o), and back."""
    if cfg.cell != "lstm":
        return slice(None)
    return np.arange(4 * cfg.state_size).reshape(4, -1)[[0, 2, 1, 3]].reshape(-1)


def _frozen_bias_hh(cfg: EchoConfig, dtype: Any) -> np.ndarray:
    """``bias_hh``'s constant: zeros, TF1's forget bias in the LSTM's forget block (PyTorch's f)."""
    if cfg.cell != "lstm":
        return np.zeros(cfg.state_size, dtype)
    return np.repeat(np.array([0, LSTM_FORGET_BIAS, 0, 0], dtype), cfg.state_size)
