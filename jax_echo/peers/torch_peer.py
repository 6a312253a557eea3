"""PyTorch benchmark rows: the echo model as PyTorch's documentation has a user write it.

An ``nn.Module`` of ``nn.RNN(nonlinearity="tanh")`` / ``nn.LSTM`` / ``nn.GRU`` (``num_layers``
stacked, ``batch_first``) and an ``nn.Linear`` output, ``optim.Adagrad`` with TF1's settings
(``initial_accumulator_value=0.1``, ``eps=0``), the mean cross-entropy over the window's B*T
steps, one optimizer step per window and the state carried to the next window with
``.detach()`` (zeros at the start of an epoch). ``EagerTrainer`` runs it eagerly;
``CompiledTrainer`` runs the same training step under ``torch.compile``.

Weights enter from TF1's flat layout (``jax_echo.cells.params_to_dict``), where a kernel is
(I+S, G*S) with the input rows first: ``weight_ih_l{k} = kernel[:I].T``,
``weight_hh_l{k} = kernel[I:].T``, ``bias_ih_l{k} = bias``. TF1's LSTM gate columns are
(i, j, f, o), PyTorch's rows (i, f, g, o), so the gates are reordered. TF1's cells have one bias,
PyTorch's two; each would take its own full Adagrad step, so ``bias_hh_l{k}`` is frozen
(``requires_grad=False``) as a constant: zeros, or for the LSTM TF1's run-time forget bias
(1.0) in the forget slice. ``params`` undoes all of this.

The GRU is timed only: ``nn.GRU`` applies the reset gate after the matmul, TF1's ``GRUCell``
before it, so no weights map between them. Its recurrent layers keep PyTorch's default
initialisation, drawn from ``torch.manual_seed(cfg.seed)`` (the output layer still takes ``W2``,
``b2``), and its ``params`` are PyTorch's ``state_dict`` names and layout, not TF1's.

Shape legend: B batch, T time steps of a window, L steps of a series row, S state, C classes,
N windows per epoch, K layers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from jax_echo.cells import LSTM_FORGET_BIAS, input_width, params_from_dict, params_to_dict
from jax_echo.task import EchoConfig, split_windows

_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
_DEVICES = {"cpu": "cpu", "gpu": "cuda"}
_MODULES = {"tutorial": nn.RNN, "basic_rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


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


class EagerTrainer:
    """The ``torch-eager`` row: one ``PeerTrainer`` (``jax_echo.peers``) in PyTorch eager.

    Args:
      cfg: the configuration; ``keep_prob`` must be 1 (dropout rows are not compared).
      params: a flat TF1-layout dict or ``jax_echo.cells.Params`` (for the GRU only ``W2``,
        ``b2`` are used).
      dtype: ``np.float32`` or ``np.float64``.
      device: ``"cpu"`` or ``"gpu"`` (CUDA).
    """

    name = "torch-eager"

    def __init__(self, cfg: EchoConfig, params: Any, dtype: Any = np.float32, device: str = "cpu"):
        if cfg.keep_prob != 1:
            raise ValueError(
                f"the PyTorch rows have no dropout (keep_prob={cfg.keep_prob}): nn.LSTM's dropout "
                "is not TF1's DropoutWrapper, and dropout rows are not compared"
            )
        if np.dtype(dtype) not in _DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        if device not in _DEVICES:
            raise ValueError(f"device must be one of {list(_DEVICES)}, got {device!r}")
        if device == "gpu" and not torch.cuda.is_available():
            raise ValueError("device='gpu' but PyTorch sees no CUDA device")
        self.cfg, self.dtype = cfg, _DTYPES[np.dtype(dtype)]
        self.device = torch.device(_DEVICES[device])
        flat = params_to_dict(params_from_dict(params, cfg))
        with torch.random.fork_rng(devices=[]):  # the GRU's default init, without global effects
            torch.manual_seed(cfg.seed)
            self.model = EchoRNN(cfg).to(self.device, self.dtype)
        with torch.no_grad():
            for name, value in _torch_weights(cfg, flat).items():
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

    def _tensor(self, a: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.tensor(np.asarray(a), dtype=dtype or self.dtype, device=self.device)

    def _step(self, x_BxT: torch.Tensor, y_BxT: torch.Tensor, state: Any) -> tuple[Any, Any]:
        """One window: forward, loss, backward and Adagrad step; the loss and the next state."""
        logits_BxTxC, state = self.model(x_BxT, state)
        loss = nn.functional.cross_entropy(logits_BxTxC.flatten(0, 1), y_BxT.flatten())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if isinstance(state, tuple):
            return loss.detach(), tuple(s.detach() for s in state)
        return loss.detach(), state.detach()

    def train_window(self, x_BxT: Any, y_BxT: Any, *, epoch: int = 0, window: int = 0) -> float:
        """One training step from the carried state; the loss, on the host."""
        del epoch, window  # no dropout: every peer refuses keep_prob < 1
        loss, self.state = self._step(
            self._tensor(x_BxT), self._tensor(y_BxT, torch.int64), self.state
        )
        return loss.item()

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> np.ndarray:
        """Every window of a series from a zero state; the losses (N,), on the host."""
        del epoch  # no dropout: every peer refuses keep_prob < 1
        T = self.cfg.truncated_backprop_length
        x_NxBxT = split_windows(self._tensor(x_BxL), T).contiguous()
        y_NxBxT = split_windows(self._tensor(y_BxL, torch.int64), T).contiguous()
        self.state = self._zero_state()
        losses = []
        for x_BxT, y_BxT in zip(x_NxBxT, y_NxBxT, strict=True):
            loss, self.state = self._step(x_BxT, y_BxT, self.state)
            losses.append(loss)
        return torch.stack(losses).cpu().numpy()

    @torch.no_grad()
    def predict_epoch(self, x_BxL: Any) -> np.ndarray:
        """Predicted symbols (N, B, T), int32: the whole series from a zero state, no training."""
        T = self.cfg.truncated_backprop_length
        x_BxNT = self._tensor(x_BxL)[:, : self.cfg.num_batches * T]
        logits_BxNTxC, _ = self.model(x_BxNT, self._zero_state())
        pred_BxNT = logits_BxNTxC.argmax(-1).to(torch.int32).cpu().numpy()
        return split_windows(pred_BxNT, T)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The weights as a flat TF1-layout dict; PyTorch's ``state_dict`` layout for the GRU."""
        torch_weights = {
            k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()
        }
        if self.cfg.cell == "gru":
            return torch_weights
        return _tf1_weights(self.cfg, torch_weights)

    def close(self) -> None:
        del self.model, self.optimizer, self.state


class CompiledTrainer(EagerTrainer):
    """The ``torch-compile`` row: ``EagerTrainer`` with its training step under ``torch.compile``.

    With Dynamo's defaults (``allow_rnn=False``) the ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` call
    is a graph break and runs eagerly, as does ``loss.backward()``; the output layer, the loss,
    their backward and the Adagrad step are compiled. The first window compiles (seconds).

    Dynamo guards the step on the trainer it belongs to and keeps at most ``recompile_limit``
    (8) versions of one function, then silently runs it eagerly; so each trainer starts from
    a clean cache (``torch.compiler.reset()``, which makes a trainer built earlier recompile on
    its next call) and ``close`` drops its compiled code.
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


# --- TF1's flat layout <-> PyTorch's parameters -------------------------------------------------


def _torch_weights(cfg: EchoConfig, flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyTorch parameter name -> value for TF1-layout ``flat`` (only W2, b2 for the GRU)."""
    weights = {"linear.weight": flat["W2"].T, "linear.bias": flat["b2"].reshape(-1)}
    if cfg.cell == "gru":
        return weights
    for k in range(cfg.num_layers):
        if cfg.cell == "tutorial":
            kernel, bias = flat["W"], flat["b"].reshape(-1)
        else:
            kernel, bias = flat[f"cell_{k}/kernel"], flat[f"cell_{k}/bias"]
        if cfg.cell == "lstm":  # TF1's gate columns to PyTorch's gate order
            order = _lstm_gate_order(cfg.state_size)
            kernel, bias = kernel[:, order], bias[order]
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
    flat = {}
    for k in range(cfg.num_layers):
        w_ih, w_hh = torch_weights[f"rnn.weight_ih_l{k}"], torch_weights[f"rnn.weight_hh_l{k}"]
        kernel = np.concatenate([w_ih, w_hh], axis=1).T
        bias_hh = torch_weights[f"rnn.bias_hh_l{k}"]
        # bias_hh is frozen at the constant, so this adds exact zeros.
        bias = torch_weights[f"rnn.bias_ih_l{k}"] + (bias_hh - _frozen_bias_hh(cfg, bias_hh.dtype))
        if cfg.cell == "lstm":  # the gate permutation is its own inverse
            order = _lstm_gate_order(cfg.state_size)
            kernel, bias = kernel[:, order], bias[order]
        if cfg.cell == "tutorial":
            flat |= {"W": kernel, "b": bias[None]}
        else:
            flat |= {f"cell_{k}/kernel": kernel, f"cell_{k}/bias": bias}
    flat |= {"W2": torch_weights["linear.weight"].T, "b2": torch_weights["linear.bias"][None]}
    return {name: np.ascontiguousarray(value) for name, value in flat.items()}


def _lstm_gate_order(S: int) -> np.ndarray:
    """Indices taking TF1's gate blocks (i, j, f, o) to PyTorch's (i, f, g, o), and back."""
    return np.concatenate([np.arange(g * S, (g + 1) * S) for g in (0, 2, 1, 3)])


def _frozen_bias_hh(cfg: EchoConfig, dtype: Any) -> np.ndarray:
    """``bias_hh``'s constant: zeros; for the LSTM, TF1's run-time forget bias in PyTorch's
    forget slice (rows S:2S)."""
    G = 4 if cfg.cell == "lstm" else 1
    bias_hh = np.zeros(G * cfg.state_size, dtype)
    if cfg.cell == "lstm":
        bias_hh[cfg.state_size : 2 * cfg.state_size] = LSTM_FORGET_BIAS
    return bias_hh
