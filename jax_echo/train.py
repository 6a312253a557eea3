"""The tutorial's training run: all epochs, history, checkpoints and resumption.

``run_epochs`` is the only stateful layer: it owns the loop over epochs, the files and the
printing, and calls an implementation's ``EpochVerbs`` (pure compiled functions for JAX, a
TensorFlow trainer for ``tf_echo``) once per epoch. ``fit`` runs it with ``jax_echo.model``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from jax_echo import model
from jax_echo.cells import Params, init_params, params_from_dict
from jax_echo.io import (
    CHECKPOINT,
    CheckpointError,
    host_array,
    load_checkpoint,
    run_lock,
    save_checkpoint,
)
from jax_echo.optim import make_optimizer
from jax_echo.task import EchoConfig, epoch_data


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss."""


class EpochVerbs(NamedTuple):
    """What ``run_epochs`` needs of an implementation.

    ``train_epoch(params, opt_state, x, y, epoch)`` trains one epoch (``epoch`` seeds its
    dropout) and returns ``(params, opt_state, losses)``; ``window_accuracies(params, x, y)``
    evaluates the trained params, without dropout. ``name`` goes into checkpoints.
    """

    name: str
    init_opt_state: Callable[[Params], Any]
    train_epoch: Callable[[Params, Any, Any, Any, int], tuple[Params, Any, Any]]
    window_accuracies: Callable[[Params, Any, Any], Any]


def jax_verbs(cfg: EchoConfig) -> EpochVerbs:
    """``jax_echo.model`` on one device: one compiled call per epoch."""
    dropping = cfg.keep_prob < 1

    def train_epoch(params, opt_state, x, y, epoch):
        key = model.epoch_key(cfg, epoch) if dropping else None
        return model.train_epoch(params, opt_state, x, y, cfg, key=key)

    return EpochVerbs(
        "jax",
        jax.jit(make_optimizer(cfg).init),
        train_epoch,
        lambda params, x, y: model.window_accuracies(params, x, y, cfg),
    )


def new_history() -> dict[str, list]:
    """Per-epoch records: window losses, accuracy overall and after window 0, seconds."""
    return {"loss": [], "accuracy": [], "accuracy_after_first": [], "epoch_seconds": []}


def epoch_record(history: dict[str, list], losses: Any, accs: Any, seconds: float) -> None:
    """Appends one epoch's results to ``history`` (any implementation's)."""
    accs = np.asarray(accs, np.float64)
    history["loss"].append(np.asarray(losses, np.float64).tolist())
    history["accuracy"].append(float(accs.mean()))
    history["accuracy_after_first"].append(
        float(accs[1:].mean()) if len(accs) > 1 else float("nan")
    )
    history["epoch_seconds"].append(seconds)


def check_finite(losses: Any, epoch: int) -> None:
    """Raises ``TrainingDivergedError`` naming the first non-finite window of the epoch."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(losses)))
    if bad.size:
        raise TrainingDivergedError(
            f"training diverged: the loss of epoch {epoch}, window {bad[0]} is "
            f"{np.asarray(losses)[bad[0]]}; the last good checkpoint is kept"
        )


def print_losses(epoch: int, losses: Any, write: Callable[[str], None]) -> None:
    """The tutorial's console output: the epoch, then the loss every 100 windows."""
    write(f"New data, epoch {epoch}")
    for i in range(0, len(losses), 100):
        write(f"Step {i} Loss {float(losses[i]):.6f}")


def fit(
    cfg: EchoConfig,
    *,
    params: Params | dict | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    quiet: bool = False,
    progress: bool = True,
) -> tuple[Params, dict[str, Any]]:
    """Trains for ``cfg.num_epochs`` epochs, each on fresh data, as the tutorial does.

    Args:
      cfg: the configuration, any part of the series; ``cfg.seed`` seeds the initial weights,
        every epoch's data and its dropout masks.
      params: initial weights, ``Params`` or a flat TF1-layout dict (default
        ``init_params(cfg)``).
      out_dir: if given, a checkpoint is written there after every epoch (atomically).
      resume: continue from the checkpoint in ``out_dir``; the result equals an uninterrupted run.
      quiet: do not print the tutorial's loss lines.
      progress: show a progress bar over epochs.

    Returns:
      ``(params, history)``: the final weights (NumPy) and ``history`` with, per epoch, the window
      losses, the accuracy overall and after the first window (the epoch's final params on its
      series, state carried, no dropout) and the seconds it took.

    >>> params, history = fit(EchoConfig(num_epochs=2, total_series_length=5000), quiet=True,
    ...                       progress=False)
    """
    return run_epochs(
        cfg,
        jax_verbs(cfg),
        params=params,
        out_dir=out_dir,
        resume=resume,
        quiet=quiet,
        progress=progress,
    )


class Start(NamedTuple):
    """Where a run starts: fresh weights, or a checkpoint's."""

    params: Params
    opt_state: Any
    history: dict[str, list]


def start_run(
    cfg: EchoConfig,
    verbs: EpochVerbs,
    *,
    params: Params | dict | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> Start:
    """The run's starting point: ``params`` (default ``init_params(cfg)``), or with ``resume``
    the checkpoint in ``out_dir``. Refuses to start over an existing checkpoint."""
    checkpoint = Path(out_dir, CHECKPOINT) if out_dir is not None else None
    if resume:
        if params is not None:
            raise ValueError(
                "pass either params or resume=True: a resumed run takes its checkpoint's"
            )
        if checkpoint is None or not checkpoint.exists():
            raise CheckpointError(f"cannot resume: no checkpoint at {checkpoint}")
        like = verbs.init_opt_state(init_params(cfg))
        return Start(*load_checkpoint(checkpoint, cfg, like, verbs.name))
    if checkpoint is not None and checkpoint.exists():
        raise CheckpointError(
            f"{checkpoint} exists: pass resume=True (--resume) to continue that run, "
            "or choose another output directory"
        )
    params = init_params(cfg) if params is None else params_from_dict(params, cfg)
    return Start(params, verbs.init_opt_state(params), new_history())


def run_epochs(
    cfg: EchoConfig,
    verbs: EpochVerbs,
    *,
    params: Params | dict | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    quiet: bool = False,
    progress: bool = True,
    start: Start | None = None,
) -> tuple[Params, dict[str, Any]]:
    """``fit`` for any implementation, given its ``EpochVerbs`` (see ``fit``).

    ``start`` replaces ``start_run``'s decision (used where one process decides for several).
    Process 0 alone holds ``out_dir`` (``io.run_lock``) and writes the checkpoints.
    """
    writer = out_dir is not None and jax.process_index() == 0
    with run_lock(out_dir) if writer else contextlib.nullcontext():
        if start is None:
            start = start_run(cfg, verbs, params=params, out_dir=out_dir, resume=resume)
        params, opt_state, history = start
        if resume and not quiet:
            print(f"Resuming from {out_dir} after {len(history['loss'])} epochs")
        checkpoint = Path(out_dir, CHECKPOINT) if writer else None
        write = tqdm.write if progress else print
        first = len(history["loss"])
        epochs = tqdm(
            range(first, cfg.num_epochs),
            initial=first,
            total=cfg.num_epochs,
            desc="epochs",
            unit="epoch",
            disable=not progress,
            file=sys.stderr,
        )
        for epoch in epochs:
            x, y = epoch_data(cfg, epoch)
            t0 = time.perf_counter()
            params, opt_state, losses = verbs.train_epoch(params, opt_state, x, y, epoch)
            losses = host_array(losses)  # waits for the computation
            seconds = time.perf_counter() - t0
            check_finite(losses, epoch)
            epoch_record(history, losses, verbs.window_accuracies(params, x, y), seconds)
            if not quiet:
                print_losses(epoch, losses, write)
            if checkpoint is not None:
                save_checkpoint(checkpoint, cfg, params, opt_state, history, verbs.name)
    return jax.tree.map(host_array, params), history
