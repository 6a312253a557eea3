"""The TensorFlow trainers by name (``make_trainer``) and the tutorial's run with them (``fit``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jax_echo import runlog
from jax_echo.cells import Params, init_params, params_from_dict, params_to_dict
from jax_echo.registry import DYNAMIC_RNN_PARTS, TF_IMPLEMENTATIONS, tf_impl
from jax_echo.task import EchoConfig, prediction_accuracies
from jax_echo.train import EpochVerbs, Timer, run_epochs, untimed
from tf_echo.function import FunctionTrainer
from tf_echo.graph import GraphTrainer

IMPLEMENTATIONS = tuple(tf_impl(name) for name in TF_IMPLEMENTATIONS)


def make_trainer(
    impl: str,
    cfg: EchoConfig,
    params: Params | dict,
    dtype=np.float32,
    device: str | None = None,
    dynamic: bool = False,
):
    """A trainer for one of ``IMPLEMENTATIONS`` from the given weights.

    ``device`` places the TF1 graph; TF2 trainers run under the caller's ``tf.device`` scope.
    ``dynamic``: the TF1 program runs its cells through ``dynamic_rnn`` (parts 5-6).
    """
    if impl == "graph":
        return GraphTrainer(cfg, params, dtype, device, dynamic=dynamic)
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
    overwrite: bool = False,
    quiet: bool = False,
    progress: bool = True,
    dynamic: bool = False,
    checkpoint_seconds: float = 1.0,
    timer: Timer = untimed,
) -> tuple[Params, dict[str, Any]]:
    """``jax_echo.fit`` with a TensorFlow implementation: same data, checkpoints, history and
    ``timer`` sections.

    The checkpoint's optimizer state is the trainer's Adagrad accumulators. TensorFlow draws
    its own dropout masks, so with ``keep_prob < 1`` a resumed run is not bit-identical to an
    uninterrupted one (it is at ``keep_prob = 1``).
    """
    start = init_params(cfg) if params is None else params_from_dict(params, cfg)
    trainer = make_trainer(impl, cfg, start, dynamic=dynamic)

    def init_opt_state(params):
        del params  # only the accumulators' structure and shapes: fresh ones are 0.1
        return trainer.accumulators

    def train_epoch(params, opt_state, x, y, epoch):
        trainer.set_state(params_to_dict(params), opt_state)
        losses = trainer.train_epoch(x, y, epoch=epoch)
        params, opt_state = trainer.get_state()
        return params_from_dict(params, cfg), opt_state, losses

    def window_accuracies(params, x, y):
        del params  # the trainer holds them after train_epoch
        return prediction_accuracies(trainer.predict_epoch(x), y)

    verbs = EpochVerbs(trainer.name, init_opt_state, train_epoch, window_accuracies)
    try:
        return run_epochs(
            cfg,
            verbs,
            params=None if resume else start,
            out_dir=out_dir,
            resume=resume,
            overwrite=overwrite,
            quiet=quiet,
            progress=progress,
            checkpoint_seconds=checkpoint_seconds,
            timer=timer,
        )
    finally:
        trainer.close()


def write_tf_run(
    out: str | os.PathLike,
    cfg: EchoConfig,
    params: Params,
    history: dict[str, Any],
    impl: str,
    part: int,
    stopwatch: runlog.Stopwatch,
) -> None:
    """``runlog.write_run`` for a TensorFlow run (its predictions from a new trainer of
    ``impl``), then the summary and the files written, on stdout."""
    import tensorflow as tf

    info = {
        "implementation": f"tf-{impl}",
        "part": part,
        "tensorflow_version": tf.__version__,
        "device": "cpu" if not tf.config.list_physical_devices("GPU") else "gpu",
        **runlog.machine_info(),
    }

    def predict_last_window(params, x):
        trainer = make_trainer(impl, cfg, params, dynamic=part in DYNAMIC_RNN_PARTS)
        try:
            return trainer.predict_epoch(x)[-1]
        finally:
            trainer.close()

    runlog.write_run(out, cfg, params, history, info, predict_last_window, stopwatch)
    print(runlog.summary_line(history))
    print(f"Wrote {out}/params.npz, history.json, echo.png")
