"""tf-echo: the TensorFlow reference for jax-echo.

``GraphTrainer`` is the tutorial's own TF1 program (``tf.compat.v1`` graph and session);
``FunctionTrainer`` is modern TF2 (``tf.function``, optionally XLA). Both start from given
weights and share one interface with the JAX adapters in ``jax_echo.compare``:
``train_step(h, x, y) -> (h, loss)``, ``train_epoch(x, y) -> losses``, ``params``,
``forward``, ``loss_and_gradients``, ``predict_epoch``, ``get_state``/``set_state``.
TensorFlow does the computing; ``jax_echo`` only supplies the task (config, data, weights).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jax_echo.compare import TF_IMPLEMENTATIONS
from jax_echo.task import EchoConfig, Params, init_params, prediction_accuracies
from jax_echo.train import run_epochs
from tf_echo.function import FunctionTrainer
from tf_echo.graph import GraphTrainer

# jax_echo.compare lists every implementation; these are its TensorFlow ones without "tf-".
IMPLEMENTATIONS = tuple(name.removeprefix("tf-") for name in TF_IMPLEMENTATIONS)


def make_trainer(
    impl: str, cfg: EchoConfig, params: Params | dict, dtype=np.float32, device: str | None = None
):
    """A trainer for one of ``IMPLEMENTATIONS`` from the given weights.

    ``device`` places the TF1 graph; TF2 trainers run under the caller's ``tf.device`` scope.
    """
    if impl == "graph":
        return GraphTrainer(cfg, params, dtype, device)
    if impl in IMPLEMENTATIONS:
        return FunctionTrainer(
            cfg, params, dtype, jit_compile=impl.endswith("-xla"), per_epoch="-epoch" in impl
        )
    raise ValueError(f"unknown TensorFlow implementation {impl!r}; choose from {IMPLEMENTATIONS}")


def fit(
    cfg: EchoConfig,
    impl: str = "graph",
    *,
    params: Params | dict | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    quiet: bool = False,
    progress: bool = True,
) -> tuple[Params, dict[str, Any]]:
    """``jax_echo.fit`` with a TensorFlow implementation: same data, checkpoints and history."""
    start = init_params(cfg) if params is None else Params.from_dict(params, cfg)
    trainer = make_trainer(impl, cfg, start)

    def init_opt_state(params):
        del params  # the trainer was built from these weights: its accumulators are fresh
        return trainer.get_state()[1]

    def train_epoch(params, opt_state, x, y):
        trainer.set_state(params, opt_state)
        losses = trainer.train_epoch(x, y)
        return (*trainer.get_state(), losses)

    def window_accuracies(params, x, y):
        del params  # the trainer holds them after train_epoch
        return prediction_accuracies(trainer.predict_epoch(x), y)

    try:
        return run_epochs(
            cfg,
            init_opt_state,
            train_epoch,
            window_accuracies,
            params=None if resume else start,
            out_dir=out_dir,
            resume=resume,
            quiet=quiet,
            progress=progress,
        )
    finally:
        trainer.close()


__all__ = ["IMPLEMENTATIONS", "FunctionTrainer", "GraphTrainer", "fit", "make_trainer"]
