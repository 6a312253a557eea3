"""The tutorial's training run: all epochs, history, checkpoints and resumption.

``run_epochs`` is the only stateful layer: it owns the loop over epochs, the files and the
printing, and calls an implementation's ``EpochVerbs`` (pure compiled functions for JAX, a
TensorFlow trainer for ``tf_echo``) once per epoch. ``fit`` runs it with ``jax_echo.model``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm import tqdm

from jax_echo import model
from jax_echo.cells import Params, init_params, params_from_dict
from jax_echo.io import (
    CHECKPOINT,
    HISTORY,
    RUN_RECORD,
    CheckpointError,
    OptionError,
    append_history,
    checkpoint_config,
    host_array,
    load_checkpoint,
    run_lock,
    save_checkpoint,
    start_history,
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
    ``epoch_data(epoch)`` gives an epoch's series (default ``task.epoch_data(cfg, epoch)``). A
    population (``population.population_verbs``) has losses (P, N) and accuracies (P, N);
    ``members`` then describes each member, for the error that names one.
    """

    name: str
    init_opt_state: Callable[[Params], Any]
    train_epoch: Callable[[Params, Any, Any, Any, int], tuple[Params, Any, Any]]
    window_accuracies: Callable[[Params, Any, Any], Any]
    epoch_data: Callable[[int], tuple[Any, Any]] | None = None
    members: tuple[str, ...] = ()


def jax_verbs(cfg: EchoConfig) -> EpochVerbs:
    """``jax_echo.model`` on one device: one compiled call per epoch.

    The accuracy pass's program compiles on a thread of its own while the first epoch's compiles
    (on a second core, the run's wall time then holds only the longer of the two); the first
    accuracy pass waits for it."""
    dropping = cfg.keep_prob < 1
    x_like = np.zeros((cfg.batch_size, cfg.total_series_length // cfg.batch_size), np.float32)
    ahead = threading.Thread(target=model.predict_epoch, args=(init_params(cfg), x_like, cfg))
    ahead.start()

    def train_epoch(params, opt_state, x, y, epoch):
        key = model.epoch_key(cfg, epoch) if dropping else None
        return model.train_epoch(params, opt_state, x, y, cfg, key=key)

    def window_accuracies(params, x, y):
        ahead.join()
        return model.window_accuracies(params, x, y, cfg)

    return EpochVerbs("jax", jax.jit(make_optimizer(cfg).init), train_epoch, window_accuracies)


def new_history() -> dict[str, list]:
    """Per-epoch records: window losses, accuracy overall and after window 0, wall seconds (the
    first epoch's include compiling)."""
    return {"loss": [], "accuracy": [], "accuracy_after_first": [], "epoch_seconds": []}


def epoch_record(
    history: dict[str, list], losses: Any, accs: Any, seconds: float
) -> dict[str, Any]:
    """Appends one epoch's results to ``history`` and returns them; ``accs`` are per-window
    accuracies, (N,) or (P, N) for a population (whose accuracies are then one per member)."""
    accs = np.asarray(accs, np.float64)
    after = accs[..., 1:].mean(axis=-1) if accs.shape[-1] > 1 else np.full(accs.shape[:-1], np.nan)
    record = {
        "loss": np.asarray(losses, np.float64).tolist(),
        "accuracy": accs.mean(axis=-1).tolist(),
        "accuracy_after_first": after.tolist(),
        "epoch_seconds": seconds,
    }
    for key, value in record.items():
        history[key].append(value)
    return record


Timer = Callable[[str], contextlib.AbstractContextManager]
untimed: Timer = contextlib.nullcontext  # the default Timer: untimed(name) measures nothing


def check_finite(
    losses: Any, epoch: int, members: tuple[str, ...] = (), checkpointed: bool = True
) -> None:
    """Raises ``TrainingDivergedError`` naming the first non-finite window of the epoch (and, for
    a population's losses (P, N), the first member with one, described by ``members``);
    ``checkpointed``: the run keeps a checkpoint, which the message says is kept."""
    losses = np.asarray(losses)
    bad = np.argwhere(~np.isfinite(losses))
    if bad.size:
        *member, window = bad[0]
        who = ""
        if member:
            (m,) = member
            who = f"member {m}" + (f" ({members[m]})" if m < len(members) else "") + ", "
        raise TrainingDivergedError(
            f"training diverged: the loss of {who}epoch {epoch}, window {window} is "
            f"{losses[tuple(bad[0])]}"
            + ("; the last good checkpoint is kept" if checkpointed else "")
        )


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a training run goes, beside its configuration and starting weights: the options of
    ``fit``, ``run_epochs``, ``parallel.fit_data_parallel`` and ``tf_echo.fit``.

    Attributes:
      out_dir: if given, each epoch's line is appended to the history there (``history.jsonl``)
        and a checkpoint is written (the history on disk before it) after the first and the last
        epoch, and after any other that ends ``checkpoint_seconds`` or more after the last one
        (0: every epoch; a crash loses at most the epochs of that many seconds, and one more).
        The run holds the directory (``io.run_lock``) from its start to the end of ``finish``.
      resume: continue from the checkpoint in ``out_dir``, as an uninterrupted run would.
      overwrite: replace a finished run in ``out_dir`` (an unfinished one is never replaced).
      quiet: do not print the tutorial's loss lines.
      progress: show a progress bar over epochs where stderr is a terminal.
      timer: entered around each part of each epoch ("data", "training", "evaluation", "files").
      finish: ``finish(params, history)`` writes the finished run's own files while ``out_dir``
        is still held; called only by the process that writes ``out_dir``.
    """

    out_dir: str | os.PathLike | None = None
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    progress: bool = True
    checkpoint_seconds: float = 1.0
    timer: Timer = untimed
    finish: Callable[[Params, dict[str, Any]], None] | None = None


def run_options(options: RunOptions | None = None, **changes: Any) -> RunOptions:
    """``options`` (default ``RunOptions()``) with ``changes``, fields of ``RunOptions``."""
    return dataclasses.replace(options or RunOptions(), **changes)


def fit(
    cfg: EchoConfig,
    options: RunOptions | None = None,
    *,
    params: Params | dict | None = None,
    **changes: Any,
) -> tuple[Params, dict[str, Any]]:
    """Trains for ``cfg.num_epochs`` epochs, each on fresh data, as the tutorial does.

    Args:
      cfg: the configuration, any part of the series; ``cfg.seed`` seeds the initial weights,
        every epoch's data and its dropout masks.
      options: how the run goes (``RunOptions``: output directory, resuming, printing); its
        fields can also be given as keywords, ``fit(cfg, out_dir="runs/mine")``.
      params: initial weights, ``Params`` or a flat TF1-layout dict (default
        ``init_params(cfg)``).

    Returns:
      ``(params, history)``: the final weights (NumPy) and ``history`` with, per epoch, the window
      losses, the accuracy overall and after the first window (the epoch's final params on its
      series, state carried, no dropout) and the seconds it took.

    >>> params, history = fit(EchoConfig(num_epochs=2, total_series_length=5000), quiet=True)
    >>> len(history["loss"]), len(history["loss"][0])  # epochs, windows of 5 x 15 steps
    (2, 66)
    >>> sorted(history)
    ['accuracy', 'accuracy_after_first', 'epoch_seconds', 'loss']
    """
    return run_epochs(cfg, jax_verbs(cfg), run_options(options, **changes), params=params)


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
    overwrite: bool = False,
) -> Start:
    """The run's starting point: ``params`` (default ``init_params(cfg)``), or with ``resume``
    the checkpoint in ``out_dir``. Refuses to start over an unfinished run's checkpoint, and
    over a finished run's unless ``overwrite``; a finished run resumed for more epochs is
    unfinished again (its ``history.json`` is removed) until they are done."""
    checkpoint = Path(out_dir, CHECKPOINT) if out_dir is not None else None
    if resume and overwrite:
        raise OptionError("pass either {resume} or {overwrite}", "resume", "overwrite")
    if resume:
        if params is not None:
            raise ValueError(
                "pass either params or resume=True: a resumed run takes its checkpoint's"
            )
        if checkpoint is None or not checkpoint.exists():
            raise CheckpointError(f"cannot resume: no checkpoint at {checkpoint}")
        like = verbs.init_opt_state(init_params(cfg))
        start = Start(*load_checkpoint(checkpoint, cfg, like, verbs.name))
        if len(start.history["loss"]) < cfg.num_epochs:
            Path(out_dir, RUN_RECORD).unlink(missing_ok=True)
        return start
    if checkpoint is not None and checkpoint.exists():
        saved, done = checkpoint_config(checkpoint)
        if done < saved.num_epochs:
            raise OptionError(
                f"{out_dir} holds an unfinished run ({done} of {saved.num_epochs} epochs): pass "
                "{resume} to continue it, or choose another output directory",
                "resume",
            )
        if not overwrite:
            raise OptionError(
                f"{out_dir} holds a finished run ({done} epochs): pass {{overwrite}} to "
                "replace it, or choose another output directory",
                "overwrite",
            )
        for name in (CHECKPOINT, RUN_RECORD):  # the rest is replaced as the new run goes
            Path(out_dir, name).unlink(missing_ok=True)
    params = init_params(cfg) if params is None else params_from_dict(params, cfg)
    return Start(params, verbs.init_opt_state(params), new_history())


def run_epochs(
    cfg: EchoConfig,
    verbs: EpochVerbs,
    options: RunOptions | None = None,
    *,
    params: Params | dict | None = None,
    start: Start | Callable[[], Start] | None = None,
) -> tuple[Params, dict[str, Any]]:
    """``fit`` for any implementation, given its ``EpochVerbs``. ``start`` replaces
    ``start_run``'s decision: a ``Start``, or a function that decides it once the directory is
    held (where one process decides for several). Process 0 alone writes ``out_dir``."""
    opts = options or RunOptions()
    out_dir, timer = opts.out_dir, opts.timer
    writer = out_dir is not None and jax.process_index() == 0
    with run_lock(out_dir) if writer else contextlib.nullcontext():
        if start is None:
            start = start_run(
                cfg,
                verbs,
                params=params,
                out_dir=out_dir,
                resume=opts.resume,
                overwrite=opts.overwrite,
            )
        elif callable(start):
            start = start()
        params, opt_state, history = start
        first = len(history["loss"])
        if opts.resume and not opts.quiet:
            print(f"Resuming from {out_dir} after {first} epochs")
        if writer:  # drops any epoch appended after the last checkpoint
            with timer("files"):
                mark = start_history(Path(out_dir, HISTORY), first)
            saved_at = time.perf_counter()
        bar = opts.progress and sys.stderr.isatty()  # logs get the tutorial's lines alone
        write = tqdm.write if bar else print
        epochs = tqdm(
            range(first, cfg.num_epochs),
            initial=first,
            total=cfg.num_epochs,
            desc="epochs",
            unit="epoch",
            disable=not bar,
            file=sys.stderr,
        )
        load = verbs.epoch_data or functools.partial(epoch_data, cfg)
        with ThreadPoolExecutor(1, thread_name_prefix="jax-echo-data") as ahead:
            upcoming = ahead.submit(load, first)
            for epoch in epochs:
                with timer("data"):
                    x, y = upcoming.result()
                if epoch + 1 < cfg.num_epochs:  # the next series, made while this one trains
                    upcoming = ahead.submit(load, epoch + 1)
                with timer("training"):
                    t0 = time.perf_counter()
                    params, opt_state, losses = verbs.train_epoch(params, opt_state, x, y, epoch)
                    losses = host_array(losses)  # waits for the computation
                    seconds = time.perf_counter() - t0
                check_finite(losses, epoch, verbs.members, checkpointed=writer)
                with timer("evaluation"):
                    accs = host_array(verbs.window_accuracies(params, x, y))
                record = epoch_record(history, losses, accs, seconds)
                if not opts.quiet:  # the tutorial's console output
                    write(f"New data, epoch {epoch}")
                    for i in range(0, len(losses), 100):
                        write(f"Step {i} Loss {float(losses[i]):.6f}")
                if writer:
                    with timer("files"):
                        due = (
                            epoch in (first, cfg.num_epochs - 1)
                            or time.perf_counter() - saved_at >= opts.checkpoint_seconds
                        )  # then the history is on disk before the checkpoint that covers it
                        mark = append_history(Path(out_dir, HISTORY), record, mark, sync=due)
                        if due:
                            save_checkpoint(
                                Path(out_dir, CHECKPOINT), cfg, params, opt_state, mark, verbs.name
                            )
                            saved_at = time.perf_counter()
        params = jax.tree.map(host_array, params)
        if writer and opts.finish is not None:
            opts.finish(params, history)
    return params, history
