"""Part 1's model in PyTorch eager, for an extra benchmark row where PyTorch is installed.

Not part of the project's API and not a dependency: the benchmarks skip it without PyTorch.
Part 1 only (the hand-written tanh RNN, no dropout). It follows the tutorial step by step,
takes the weights as the other trainers do (a flat TF1-layout dict: ``W``, ``b``, ``W2``,
``b2``), carries the state as a per-layer tuple ``(h,)`` and uses ``torch.optim.Adagrad`` with
TF1's settings (``initial_accumulator_value=0.1``, ``eps=0``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from jax_echo.cells import params_from_dict, params_to_dict
from jax_echo.task import EchoConfig, split_windows

NAMES = ("W", "b", "W2", "b2")


class TorchTrainer:
    name = "torch-eager"

    def __init__(self, cfg: EchoConfig, params: Any, dtype=np.float32, device="cpu"):
        if cfg.cell != "tutorial" or cfg.keep_prob != 1:
            raise ValueError(
                f"the PyTorch row is part 1 only (cell='tutorial', keep_prob=1), got "
                f"cell={cfg.cell!r}, keep_prob={cfg.keep_prob}"
            )
        flat = params_to_dict(params_from_dict(params, cfg))
        self.cfg, self.device = cfg, device
        self.dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
            np.dtype(dtype)
        ]
        self.variables = {
            name: torch.tensor(flat[name], dtype=self.dtype, device=device, requires_grad=True)
            for name in NAMES
        }
        self.optimizer = torch.optim.Adagrad(
            list(self.variables.values()),
            lr=cfg.learning_rate,
            initial_accumulator_value=0.1,
            eps=0.0,
        )

    def _tensor(self, a, dtype=None):
        if isinstance(a, torch.Tensor):
            return a
        a = np.asarray(a)
        if not a.flags.writeable:  # a JAX array's NumPy view: PyTorch wants to own writable memory
            a = a.copy()
        return torch.as_tensor(a, dtype=dtype or self.dtype, device=self.device)

    def _zero_state(self) -> tuple[torch.Tensor]:
        B, S = self.cfg.batch_size, self.cfg.state_size
        return (torch.zeros(B, S, dtype=self.dtype, device=self.device),)

    def train_step(self, state, x_BxT, y_BxT):
        """One window from the per-layer state ``(h,)``; returns ``((h,), loss)``."""
        W, b, W2, b2 = (self.variables[name] for name in NAMES)
        (h_BxS,) = state
        h_BxS = self._tensor(h_BxS)
        x_BxT, y_BxT = self._tensor(x_BxT), self._tensor(y_BxT, torch.int64)
        losses = []
        for t in range(x_BxT.shape[1]):
            h_BxS = torch.tanh(torch.cat([x_BxT[:, t : t + 1], h_BxS], 1) @ W + b)
            logits = h_BxS @ W2 + b2
            losses.append(torch.nn.functional.cross_entropy(logits, y_BxT[:, t]))
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return (h_BxS.detach(),), loss.detach()

    def train_epoch(self, x, y) -> np.ndarray:
        T = self.cfg.truncated_backprop_length
        state = self._zero_state()
        losses = []
        for x_BxT, y_BxT in zip(split_windows(x, T), split_windows(y, T), strict=True):
            state, loss = self.train_step(state, x_BxT, y_BxT)
            losses.append(loss)
        return torch.stack(losses).cpu().numpy()

    @torch.no_grad()
    def predict_epoch(self, x) -> np.ndarray:
        W, b, W2, b2 = (self.variables[name] for name in NAMES)
        T = self.cfg.truncated_backprop_length
        x = self._tensor(x)
        (h,) = self._zero_state()
        preds = []
        for t in range(self.cfg.num_batches * T):
            h = torch.tanh(torch.cat([x[:, t : t + 1], h], 1) @ W + b)
            preds.append((h @ W2 + b2).argmax(-1))
        pred_BxNT = torch.stack(preds, 1).cpu().numpy()
        return pred_BxNT.reshape(self.cfg.batch_size, -1, T).swapaxes(0, 1).astype(np.int32)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The weights, as a flat TF1-layout dict."""
        return {name: v.detach().cpu().numpy() for name, v in self.variables.items()}

    def close(self) -> None:
        pass
