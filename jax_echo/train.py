"""The tutorial's training run: all epochs, history, checkpoints and resumption.

``fit`` is the only stateful layer: it owns the loop over epochs, the files and the printing, and
calls the pure compiled ``train_epoch`` once per epoch.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from jax_echo.model import AdagradState, make_optimizer, train_epoch, window_accuracies
from jax_echo.task import EchoConfig, Params, check_params, epoch_data, init_params

CHECKPOINT = "checkpoint.npz"


class CheckpointError(ValueError):
    """A checkpoint or params file that is corrupt or does not belong to this run."""


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss."""


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
    mesh: Mesh | None = None,
) -> tuple[Params, dict[str, Any]]:
    """Trains for ``cfg.num_epochs`` epochs, each on fresh data, as the tutorial does.

    Args:
      cfg: the configuration; ``cfg.seed`` seeds the initial weights and every epoch's data.
      params: initial weights, ``Params`` or a dict of arrays (default ``init_params(cfg)``).
      out_dir: if given, a checkpoint is written there after every epoch (atomically).
      resume: continue from the checkpoint in ``out_dir``; the result equals an uninterrupted run.
      quiet: do not print the tutorial's loss lines.
      progress: show a progress bar over epochs.
      mesh: data parallelism: shard the batch over this 1-D mesh of devices
        (``scale.data_parallel_mesh()``; across processes after ``jax.distributed.initialize``).
        ``batch_size`` must be divisible by its size. ``None``: one device, the ordinary path.

    Returns:
      ``(params, history)``: the final weights (NumPy) and ``history`` with, per epoch, the window
      losses, the accuracy overall and after the first window (the epoch's final params on its
      series, state carried) and the seconds it took.

    >>> params, history = fit(EchoConfig(num_epochs=2, total_series_length=5000), quiet=True)
    """
    if mesh is not None:
        from jax_echo.scale import data_parallel_verbs

        verbs = data_parallel_verbs(cfg, mesh)
    else:
        verbs = (
            lambda params: make_optimizer(cfg).init(params),
            lambda params, opt_state, x, y: train_epoch(params, opt_state, x, y, cfg),
            lambda params, x, y: window_accuracies(params, x, y, cfg),
        )
    return run_epochs(
        cfg,
        *verbs,
        params=params,
        out_dir=out_dir,
        resume=resume,
        quiet=quiet,
        progress=progress,
    )


def run_epochs(
    cfg: EchoConfig,
    init_opt_state: Callable[[Params], AdagradState],
    train_epoch: Callable[[Params, AdagradState, Any, Any], tuple[Params, AdagradState, Any]],
    window_accuracies: Callable[[Params, Any, Any], Any],
    *,
    params: Params | dict | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    quiet: bool = False,
    progress: bool = True,
) -> tuple[Params, dict[str, Any]]:
    """``fit`` for any implementation, given its three functional verbs (see ``fit``)."""
    checkpoint = Path(out_dir, CHECKPOINT) if out_dir is not None else None
    if resume:
        if params is not None:
            raise ValueError(
                "pass either params or resume=True: a resumed run takes its checkpoint's"
            )
        if checkpoint is None or not checkpoint.exists():
            raise CheckpointError(f"cannot resume: no checkpoint at {checkpoint}")
        params, opt_state, history = load_checkpoint(checkpoint, cfg)
        if not quiet:
            print(f"Resuming from {checkpoint} after {len(history['loss'])} epochs")
    else:
        if checkpoint is not None and checkpoint.exists():
            raise CheckpointError(
                f"{checkpoint} exists: pass resume=True (--resume) to continue that run, "
                "or choose another output directory"
            )
        params = init_params(cfg) if params is None else Params.from_dict(params, cfg)
        opt_state = init_opt_state(params)
        history = new_history()

    write = tqdm.write if progress else print
    start = len(history["loss"])
    epochs = tqdm(
        range(start, cfg.num_epochs),
        initial=start,
        total=cfg.num_epochs,
        desc="epochs",
        unit="epoch",
        disable=not progress,
        file=sys.stderr,
    )
    for epoch in epochs:
        x, y = epoch_data(cfg, epoch)
        t0 = time.perf_counter()
        params, opt_state, losses = train_epoch(params, opt_state, x, y)
        losses = np.asarray(losses)  # waits for the computation
        seconds = time.perf_counter() - t0
        check_finite(losses, epoch)
        epoch_record(history, losses, window_accuracies(params, x, y), seconds)
        if not quiet:
            print_losses(epoch, losses, write)
        if checkpoint is not None and jax.process_index() == 0:  # one writer across processes
            save_checkpoint(checkpoint, cfg, params, opt_state, history)
    return Params(*(np.asarray(p) for p in params)), history


# --- Files -----------------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Writes through ``write(file)`` to a temporary file beside ``path``, then renames it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_params(path: str | os.PathLike, params: Params, cfg: EchoConfig) -> None:
    """Saves params as ``.npz`` arrays named W, b, W2, b2, with the config as JSON."""
    arrays = {**Params(*params).to_dict(), "config": np.array(json.dumps(cfg.to_dict()))}
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_params(path: str | os.PathLike) -> tuple[Params, EchoConfig]:
    """Loads ``save_params`` output; ``CheckpointError`` if it is corrupt or inconsistent."""
    arrays = _load_npz(path)
    try:
        cfg = EchoConfig.from_dict(json.loads(str(arrays["config"])))
        return Params.from_dict(arrays, cfg), cfg
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a valid params file: {e}") from e


def save_checkpoint(
    path: str | os.PathLike,
    cfg: EchoConfig,
    params: Params,
    opt_state: AdagradState,
    history: dict[str, list],
) -> None:
    """Everything needed to resume: params, optimizer state, config and history."""
    arrays = {f"params/{k}": v for k, v in Params(*params).to_dict().items()}
    arrays |= {f"accumulator/{k}": v for k, v in Params(*opt_state.accumulator).to_dict().items()}
    arrays["learning_rate"] = np.asarray(opt_state.learning_rate)
    arrays["meta"] = np.array(json.dumps({"config": cfg.to_dict(), "history": history}))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(
    path: str | os.PathLike, cfg: EchoConfig
) -> tuple[Params, AdagradState, dict[str, list]]:
    """Loads a checkpoint of a run of ``cfg``; a longer ``num_epochs`` may extend it."""
    arrays = _load_npz(path)
    try:
        meta = json.loads(str(arrays["meta"]))
        saved = EchoConfig.from_dict(meta["config"])
        params = Params(*(arrays[f"params/{k}"] for k in Params._fields))
        accumulator = Params(*(arrays[f"accumulator/{k}"] for k in Params._fields))
        learning_rate = arrays["learning_rate"]
        history = meta["history"]
        done = len(history["loss"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a valid checkpoint: {e!r}") from e
    differing = {
        k: (v, getattr(cfg, k))
        for k, v in saved.to_dict().items()
        if k != "num_epochs" and getattr(cfg, k) != v
    }
    if differing:
        detail = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in differing.items())
        raise CheckpointError(f"{path} belongs to another configuration ({detail})")
    if done > cfg.num_epochs:
        raise CheckpointError(
            f"{path} has {done} epochs done, more than num_epochs={cfg.num_epochs}"
        )
    try:
        check_params(params, cfg)
        check_params(accumulator, cfg)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    if learning_rate.shape != () or learning_rate != np.asarray(
        cfg.learning_rate, learning_rate.dtype
    ):
        raise CheckpointError(
            f"{path} holds learning rate {learning_rate}, not {cfg.learning_rate}"
        )
    return params, AdagradState(accumulator, learning_rate), history


def _load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with open(path, "rb") as fh:
        try:
            with np.load(fh, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"{path} is corrupt or not an .npz file: {e}") from e
