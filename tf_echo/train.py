"""The TensorFlow trainers by name (``make_trainer``), the tutorial's run with them (``fit``,
``write_tf_run``) and the accuracy of given weights computed by them (``evaluate``)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from jax_echo import runlog
from jax_echo.cells import Params, init_params, params_from_dict
from jax_echo.evaluate import evaluate_params
from jax_echo.io import TF_CHECKPOINT
from jax_echo.registry import DYNAMIC_RNN_PARTS, TF_IMPLEMENTATIONS, tf_impl
from jax_echo.task import EchoConfig, prediction_accuracies
from jax_echo.train import EpochVerbs, RunOptions, Start, run_epochs, run_options, start_run
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
    """A trainer for one of ``IMPLEMENTATIONS`` from the given weights. ``device`` places the
    TF1 graph (TF2 trainers run in the caller's ``tf.device`` scope); ``dynamic``: the TF1
    program's ``dynamic_rnn`` (parts 5-6)."""
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
    options: RunOptions | None = None,
    *,
    params: Params | dict | None = None,
    dynamic: bool = False,
    **changes: Any,
) -> tuple[Params, dict[str, Any]]:
    """``jax_echo.fit`` with a TensorFlow implementation: same data, checkpoints (the optimizer
    state: Adagrad's accumulators), history, ``RunOptions`` and ``timer`` sections.

    TensorFlow draws its own dropout masks: with ``keep_prob < 1`` a resumed run is not
    bit-identical to an uninterrupted one. The final weights are also saved in ``out_dir`` as the
    author's TF1 checkpoint, ``model.ckpt``, before ``options.finish``. ``dynamic``: the TF1
    program's ``dynamic_rnn``.
    """
    opts = run_options(options, **changes)
    initial = init_params(cfg) if params is None else params_from_dict(params, cfg)
    trainer = make_trainer(impl, cfg, initial, dynamic=dynamic)

    def init_opt_state(params):
        del params  # only the accumulators' structure and shapes: fresh ones are 0.1
        return trainer.accumulators

    def train_epoch(params, opt_state, x, y, epoch):
        trainer.set_state(params, opt_state)
        losses = trainer.train_epoch(x, y, epoch=epoch)
        params, opt_state = trainer.get_state()
        return params_from_dict(params, cfg), opt_state, losses

    def window_accuracies(params, x, y):
        del params  # the trainer holds them after train_epoch
        return prediction_accuracies(trainer.predict_epoch(x), y)

    verbs = EpochVerbs(trainer.name, init_opt_state, train_epoch, window_accuracies)

    def start() -> Start:
        begin = start_run(
            cfg,
            verbs,
            params=None if opts.resume else initial,
            out_dir=opts.out_dir,
            resume=opts.resume,
            overwrite=opts.overwrite,
        )
        # The trainer holds the run's state from here on, also where no epoch is left.
        trainer.set_state(begin.params, begin.opt_state)
        return begin

    def finish(params, history):
        with opts.timer("files"):
            trainer.save_tf_checkpoint(Path(opts.out_dir, TF_CHECKPOINT))
        if opts.finish is not None:
            opts.finish(params, history)

    try:
        return run_epochs(cfg, verbs, dataclasses.replace(opts, finish=finish), start=start)
    finally:
        trainer.close()


def evaluate(
    params: Params | dict,
    cfg: EchoConfig,
    impl: str = "graph",
    seed: int = 12345,
    series: int = 1,
    *,
    source: str = "params",
    path: str | os.PathLike | None = None,
    part: int | None = None,
) -> dict[str, Any]:
    """``jax_echo.evaluate.evaluate_params`` computed by TensorFlow: the predictions of a trainer
    of ``impl`` holding ``params`` (in their dtype), on the same fresh series, with the same
    result keys. The author's program (``graph``; ``dynamic_rnn`` for ``part`` 5-6) restores a
    TF1 checkpoint (``source="tf-checkpoint"`` at ``path``) with its own ``Saver``."""
    params = params_from_dict(params, cfg)
    dtype = np.asarray(params.W2).dtype
    trainer = make_trainer(impl, cfg, params, dtype, dynamic=part in DYNAMIC_RNN_PARTS)
    with contextlib.closing(trainer):
        if source == "tf-checkpoint" and isinstance(trainer, GraphTrainer):
            trainer.restore_tf_checkpoint(path)
        return evaluate_params(
            params,
            cfg,
            seed,
            series,
            source=source,
            path=path,
            predict_epoch=trainer.predict_epoch,
            implementation=f"tf-{impl}",
        )


def write_tf_run(
    out: str | os.PathLike,
    cfg: EchoConfig,
    params: Params,
    history: dict[str, Any],
    impl: str,
    part: int,
    stopwatch: runlog.Stopwatch,
) -> None:
    """``runlog.write_run`` for a TensorFlow run (the plot's predictions by a new trainer of
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
        with contextlib.closing(trainer):
            return trainer.predict_epoch(x)[-1]

    seconds = runlog.write_run(out, cfg, params, history, info, predict_last_window, stopwatch)
    print(runlog.summary_line(history, seconds))
    print(f"Wrote {out}/params.npz, {TF_CHECKPOINT}.index and .data-*, history.json, echo.png")
