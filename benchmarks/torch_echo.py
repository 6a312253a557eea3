"""The same model in PyTorch eager, for an extra benchmark row where PyTorch is installed.

Not part of the project's API and not a dependency: the benchmarks skip it without PyTorch.
It follows the tutorial step by step and uses ``torch.optim.Adagrad`` with TF1's settings
(``initial_accumulator_value=0.1``, ``eps=0``).
"""

from __future__ import annotations

import numpy as np
import torch

from jax_echo.task import EchoConfig, Params


class TorchTrainer:
    name = "torch-eager"

    def __init__(self, cfg: EchoConfig, params: Params | dict, dtype=np.float32, device="cpu"):
        params = Params.from_dict(params, cfg)
        self.cfg, self.device = cfg, device
        self.dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
            np.dtype(dtype)
        ]
        self.variables = Params(
            *(torch.tensor(p, dtype=self.dtype, device=device, requires_grad=True) for p in params)
        )
        self.optimizer = torch.optim.Adagrad(
            list(self.variables), lr=cfg.learning_rate, initial_accumulator_value=0.1, eps=0.0
        )

    def _tensor(self, a, dtype=None):
        return torch.as_tensor(np.asarray(a), dtype=dtype or self.dtype, device=self.device)

    def train_step(self, h_BxS, x_BxT, y_BxT):
        W, b, W2, b2 = self.variables
        h_BxS = self._tensor(h_BxS) if not isinstance(h_BxS, torch.Tensor) else h_BxS
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
        return h_BxS.detach(), loss.detach()

    def train_epoch(self, x, y) -> np.ndarray:
        T = self.cfg.truncated_backprop_length
        h = torch.zeros(
            self.cfg.batch_size, self.cfg.state_size, dtype=self.dtype, device=self.device
        )
        losses = []
        for i in range(self.cfg.num_batches):
            h, loss = self.train_step(h, x[:, i * T : (i + 1) * T], y[:, i * T : (i + 1) * T])
            losses.append(loss)
        return torch.stack(losses).cpu().numpy()

    @torch.no_grad()
    def predict_epoch(self, x) -> np.ndarray:
        W, b, W2, b2 = self.variables
        T = self.cfg.truncated_backprop_length
        x = self._tensor(x)
        h = torch.zeros(
            self.cfg.batch_size, self.cfg.state_size, dtype=self.dtype, device=self.device
        )
        preds = []
        for t in range(self.cfg.num_batches * T):
            h = torch.tanh(torch.cat([x[:, t : t + 1], h], 1) @ W + b)
            preds.append((h @ W2 + b2).argmax(-1))
        pred_BxNT = torch.stack(preds, 1).cpu().numpy()
        return pred_BxNT.reshape(self.cfg.batch_size, -1, T).swapaxes(0, 1).astype(np.int32)

    @property
    def params(self) -> Params:
        return Params(*(v.detach().cpu().numpy() for v in self.variables))

    def close(self) -> None:
        pass
