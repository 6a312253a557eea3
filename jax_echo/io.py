"""Files: durable writes, params files and checkpoints, each validated against its config.

Weights are stored in TF1's flat layout (``cells.params_to_dict``), so a params file of any cell
reads the same way from JAX and TensorFlow. A checkpoint adds the optimizer state (any pytree,
stored leaf by leaf under its key path and restored into the structure the implementation's
fresh state has), the history and the name of the implementation that wrote it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jax_echo.cells import Params, params_from_dict, params_to_dict
from jax_echo.task import EchoConfig

CHECKPOINT = "checkpoint.npz"
LOCK = ".lock"


class CheckpointError(ValueError):
    """A checkpoint or params file that is corrupt or does not belong to this run."""


class OutputDirError(OSError):
    """An output directory that cannot be written, or that another run is using."""


_held: dict[Path, int] = {}  # output directories this process has locked, with a depth


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike) -> Iterator[None]:
    """Holds ``out_dir`` for one run: checked writable, and locked against a second run.

    The lock is an ``flock`` on ``out_dir/.lock``, which the kernel releases when the process
    ends however it ends, so a killed run never leaves it stuck. Nested uses in one process
    share it. Raises ``OutputDirError`` before anything is written.
    """
    out = Path(out_dir).resolve()
    if out in _held:
        _held[out] += 1
        try:
            yield
        finally:
            _held[out] -= 1
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputDirError(f"output directory {out_dir} cannot be written: {e}") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise OutputDirError(
                f"output directory {out_dir} is in use by another run (process {owner}); "
                "wait for it to finish or choose another directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _held[out] = 1
        try:
            yield
        finally:
            del _held[out]
    finally:
        os.close(fd)  # releases the lock


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Writes through ``write(file)`` to a temporary file beside ``path``, then renames it over.

    The file is flushed to disk before the rename and the directory after it, so ``path`` holds
    either the old or the new content, also after a power loss.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _save_npz(path: str | os.PathLike, arrays: dict[str, Any]) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is corrupt or not an .npz file: {e}") from e


def _json(value: Any) -> np.ndarray:
    return np.array(json.dumps(value))


def _params(arrays: dict[str, np.ndarray], prefix: str, cfg: EchoConfig, path) -> Params:
    flat = {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
    try:
        return params_from_dict(flat, cfg)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e


# --- Params files -------------------------------------------------------------------------------


def save_params(path: str | os.PathLike, params: Params, cfg: EchoConfig) -> None:
    """Saves params as ``.npz`` arrays in TF1's layout under ``params/``, with the config."""
    flat = {f"params/{k}": v for k, v in params_to_dict(params).items()}
    _save_npz(path, {**flat, "config": _json(cfg.to_dict())})


def load_params(path: str | os.PathLike) -> tuple[Params, EchoConfig]:
    """Loads ``save_params`` output; ``CheckpointError`` if it is corrupt or inconsistent."""
    arrays = _load_npz(path)
    try:
        cfg = EchoConfig.from_dict(json.loads(str(arrays["config"])))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a valid params file: {e!r}") from e
    return _params(arrays, "params/", cfg, path), cfg


# --- Checkpoints --------------------------------------------------------------------------------


def _leaves_by_path(tree: Any) -> dict[str, Any]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {"opt_state" + jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def host_array(leaf: Any) -> np.ndarray:
    """A leaf as NumPy; a replicated global array across processes from its local copy."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        leaf = leaf.addressable_data(0)
    return np.asarray(leaf)


def save_checkpoint(
    path: str | os.PathLike,
    cfg: EchoConfig,
    params: Params,
    opt_state: Any,
    history: dict[str, list],
    implementation: str,
) -> None:
    """Everything needed to resume: params, optimizer state, config, history, implementation."""
    arrays = {f"params/{k}": v for k, v in params_to_dict(jax.tree.map(host_array, params)).items()}
    arrays |= {k: host_array(v) for k, v in _leaves_by_path(opt_state).items()}
    meta = {"config": cfg.to_dict(), "implementation": implementation, "history": history}
    _save_npz(path, {**arrays, "meta": _json(meta)})


def load_checkpoint(
    path: str | os.PathLike, cfg: EchoConfig, opt_state_like: Any, implementation: str
) -> tuple[Params, Any, dict[str, list]]:
    """Loads a checkpoint of a run of ``cfg``; a longer ``num_epochs`` may extend it.

    Args:
      path: the checkpoint file.
      cfg: the run's configuration; every field but ``num_epochs`` must be the saved one.
      opt_state_like: a fresh optimizer state of the implementation: the structure, shapes and
        dtypes the saved one must have.
      implementation: the name of the implementation resuming; it must be the one that saved.

    Raises:
      CheckpointError: naming what is corrupt, missing or different.
    """
    arrays = _load_npz(path)
    try:
        meta = json.loads(str(arrays["meta"]))
        saved = EchoConfig.from_dict(meta["config"])
        saved_by, history = meta["implementation"], meta["history"]
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
    if saved_by != implementation:
        raise CheckpointError(
            f"{path} was written by {saved_by}, not {implementation}: its optimizer state is "
            "that implementation's; resume with it, or start a new run"
        )
    if done > cfg.num_epochs:
        raise CheckpointError(
            f"{path} has {done} epochs done, more than num_epochs={cfg.num_epochs}"
        )
    params = _params(arrays, "params/", cfg, path)
    leaves = []
    for key, like in _leaves_by_path(opt_state_like).items():
        value = arrays.get(key)
        like = host_array(like)
        if value is None or value.shape != like.shape or value.dtype != like.dtype:
            got = "missing" if value is None else f"{value.dtype}{list(value.shape)}"
            raise CheckpointError(
                f"{path}: optimizer state {key} is {got}, expected {like.dtype}{list(like.shape)}"
            )
        leaves.append(value)
    opt_state = jax.tree.unflatten(jax.tree.structure(opt_state_like), leaves)
    return params, opt_state, history
