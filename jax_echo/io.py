"""Files: durable writes, params files and checkpoints, each validated against its config.

Weights are stored in TF1's flat layout (``cells.params_to_dict``), so a params file of any cell
reads the same way from JAX and TensorFlow. A checkpoint adds the optimizer state (any pytree,
leaf by leaf under its key path), the name of the implementation that wrote it and a
``HistoryMark``: how much of the history beside it, ``history.jsonl``, it covers. The history is
append-only, one line of JSON per epoch, so an epoch costs the same to record at epoch 1 as at
epoch 1000. When a checkpoint is due, the history is flushed to disk, then the checkpoint
replaced; resuming drops the lines a crash between the two left (``start_history``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jax_echo.cells import Params, flat_dict, params_from_dict, params_to_dict
from jax_echo.task import EchoConfig

CHECKPOINT = "checkpoint.npz"
HISTORY = "history.jsonl"  # beside the checkpoint: one line of JSON per epoch
RUN_RECORD = "history.json"  # a finished run's record (``runlog.write_run``)
PARAMS = "params.npz"  # a finished run's weights
LOCK = ".lock"
TF_CHECKPOINT = "model.ckpt"  # a TensorFlow run's TF1 checkpoint prefix, beside params.npz


class CheckpointError(ValueError):
    """A checkpoint or params file that is corrupt or does not belong to this run."""


class OptionError(CheckpointError):
    """A refused run whose message names options (``template``'s ``{name}`` fields): ``str()``
    in the API's words (``overwrite=True``), ``command_line()`` in the command line's."""

    def __init__(self, template: str, *options: str) -> None:
        self.template, self.options = template, options
        super().__init__(template.format(**{name: f"{name}=True" for name in options}))

    def command_line(self) -> str:
        return self.template.format(**{n: "--" + n.replace("_", "-") for n in self.options})


class OutputDirError(OSError):
    """An output directory that cannot be written, or that another run is using."""


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike) -> Iterator[None]:
    """Holds ``out_dir`` for one run, or raises ``OutputDirError`` (a directory that cannot be
    written, or one another run holds). The lock is an ``flock`` on ``out_dir/.lock``, which the
    kernel releases however the process ends; taking it removes a killed run's temporary files.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputDirError(
                    f"output directory {out_dir} is in use by another run (process {owner}); "
                    "wait for it to finish or choose another directory"
                ) from None
            # Is the file locked still the one named .lock? (a run ending removes it)
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(fd), os.stat(out / LOCK)):
                    break
            os.close(fd)
    except OutputDirError:
        raise
    except OSError as e:
        raise OutputDirError(f"output directory {out_dir} cannot be written: {e}") from e
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        # Left by a run that was killed: atomic_write's files, a TF checkpoint's directory.
        for tmp in out.glob(".*.tmp"):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        yield
    finally:
        with contextlib.suppress(OSError):
            (out / LOCK).unlink()  # while still locked: no other run holds this file
        os.close(fd)  # releases the lock


def umask() -> int:
    """The process's umask: from ``/proc`` where Linux has it, else read by setting it (which
    another thread creating a file at that moment would see)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def tf_checkpoint_path(path: str | os.PathLike) -> str:
    """A TF1 checkpoint prefix from what a user names: a run's directory reads as its
    ``model.ckpt``; ``CheckpointError`` for a missing path or a directory without one."""
    path = Path(path)
    if path.is_dir():
        if Path(path, TF_CHECKPOINT + ".index").exists():
            return os.fspath(Path(path, TF_CHECKPOINT))
        if not Path(path, "checkpoint").exists():  # TensorFlow's file naming the latest
            raise CheckpointError(
                f"{path} is a directory without a TF1 checkpoint ({TF_CHECKPOINT}.index, or a "
                "'checkpoint' file naming one)"
            )
    elif not path.exists() and not Path(f"{path}.index").exists():
        raise CheckpointError(f"{path} does not exist (nor {path}.index)")
    return os.fspath(path)


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[Any], None],
    mode: str = "wb",
    *,
    sync_dir: bool = True,
) -> None:
    """Writes through ``write(file)`` to a temporary file beside ``path``, flushed to disk, then
    renamed over ``path``: it holds the old or the new content, also after a power loss. The
    permissions are those the umask gives a new file. ``sync_dir`` also flushes the directory,
    which makes the new content the one a power loss keeps.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())  # as open() would make it, not mkstemp's 0600
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        _sync_dir(path.parent)


def _sync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _load_npz(path: str | os.PathLike, what: str = "an .npz file") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file; ``CheckpointError`` naming what is wrong: a missing
    file, a directory, a file of another kind, a corrupt archive."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) == b"PK\x03\x04":  # every .npz is a zip archive
                fh.seek(0)
                with np.load(fh, allow_pickle=False) as f:
                    return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory, not {what}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is a corrupt .npz file: {e}") from e
    raise CheckpointError(f"{path} is not {what}: not an .npz (zip) archive")


def _params(arrays: dict[str, np.ndarray], cfg: EchoConfig, path) -> Params:
    flat = {k.removeprefix("params/"): v for k, v in arrays.items() if k.startswith("params/")}
    try:
        return params_from_dict(flat, cfg)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e


# --- Params files -------------------------------------------------------------------------------


def save_params(path: str | os.PathLike, params: Params, cfg: EchoConfig) -> None:
    """Saves params as ``.npz`` arrays in TF1's layout under ``params/``, with the config."""
    arrays = {f"params/{k}": v for k, v in params_to_dict(params).items()}
    arrays["config"] = np.array(json.dumps(cfg.to_dict()))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_params(path: str | os.PathLike) -> tuple[Params, EchoConfig]:
    """Loads ``save_params`` output; ``CheckpointError`` if it is missing, corrupt or
    inconsistent. A run's directory reads as its ``params.npz``, and a checkpoint
    (``save_checkpoint``) as the weights it holds."""
    if Path(path).is_dir():
        if not Path(path, PARAMS).exists():
            unfinished = Path(path, CHECKPOINT).exists()
            raise CheckpointError(
                f"{path} is a directory without a {PARAMS} (a finished run's weights)"
                + (f"; its {CHECKPOINT} holds an unfinished run's" if unfinished else "")
            )
        path = Path(path, PARAMS)
    arrays = _load_npz(path, "a params file")
    try:
        if "config" not in arrays and "meta" in arrays:  # a checkpoint
            config = json.loads(str(arrays["meta"]))["config"]
        else:
            config = json.loads(str(arrays["config"]))
        cfg = EchoConfig.from_dict(config)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a params file: it has no valid config ({e!r})") from e
    return _params(arrays, cfg, path), cfg


# --- History: one line of JSON per epoch, beside the checkpoint -----------------------------------


class HistoryMark(NamedTuple):
    """How much of a history file a checkpoint covers: ``epochs`` lines, the file's first
    ``size`` bytes, whose CRC-32 is ``crc32``."""

    epochs: int = 0
    size: int = 0
    crc32: int = 0


def start_history(path: str | os.PathLike, epochs: int) -> HistoryMark:
    """Makes the history at ``path`` hold its first ``epochs`` lines, on disk; creates it empty
    for a new run. Lines past them (an epoch appended but never checkpointed) are dropped."""
    path = Path(path)
    data = path.read_bytes() if epochs else b""
    size = 0
    for _ in range(epochs):
        end = data.find(b"\n", size)
        if end < 0:
            raise CheckpointError(f"{path} has fewer than the {epochs} epochs to resume from")
        size = end + 1
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    _sync_dir(path.parent)  # a new file's name is on disk before a checkpoint refers to it
    return HistoryMark(epochs, size, zlib.crc32(data[:size]))


def append_history(
    path: str | os.PathLike, values: dict[str, Any], mark: HistoryMark, *, sync: bool = True
) -> HistoryMark:
    """Appends one epoch, ``{"epoch": mark.epochs, **values}``, as a line of JSON; returns the
    mark that covers it. With ``sync`` the history is on disk when this returns, as it must be
    before a checkpoint that covers it is saved."""
    line = (json.dumps({"epoch": mark.epochs, **values}) + "\n").encode()
    with open(path, "ab") as f:
        f.write(line)
        f.flush()
        if sync:
            os.fsync(f.fileno())
    return HistoryMark(mark.epochs + 1, mark.size + len(line), zlib.crc32(line, mark.crc32))


def read_history(path: str | os.PathLike, mark: HistoryMark) -> dict[str, list]:
    """The history ``mark`` covers, as ``{key: [one value per epoch]}``; lines past it are
    ignored. ``CheckpointError`` if the file is missing, shorter, different or corrupt."""
    try:
        with open(path, "rb") as f:
            data = f.read(mark.size)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} is missing: a checkpoint's history is kept beside it, and the checkpoint "
            f"covers {mark.epochs} epochs of it"
        ) from None
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read: {e}") from e
    if len(data) < mark.size:
        raise CheckpointError(
            f"{path} has {len(data)} bytes, fewer than the {mark.size} of the {mark.epochs} "
            "epochs the checkpoint covers"
        )
    if zlib.crc32(data) != mark.crc32:
        raise CheckpointError(
            f"{path} does not match the checkpoint: its first {mark.epochs} epochs differ from "
            "those the checkpoint was saved with"
        )
    lines = data.split(b"\n")[:-1]
    history: dict[str, list] = {}
    for epoch, line in enumerate(lines):
        try:
            record = json.loads(line)
            if record.pop("epoch") != epoch or (history and record.keys() != history.keys()):
                raise ValueError("out of order, or other keys than the line before")
        except (ValueError, KeyError, AttributeError, TypeError) as e:
            raise CheckpointError(f"{path}, line {epoch + 1}, is corrupt: {e!r}") from e
        for key, value in record.items():
            history.setdefault(key, []).append(value)
    if len(lines) != mark.epochs:
        raise CheckpointError(
            f"{path} has {len(lines)} epochs where the checkpoint has {mark.epochs}"
        )
    return history


# --- Checkpoints --------------------------------------------------------------------------------


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
    history: HistoryMark,
    implementation: str,
) -> None:
    """Everything needed to resume: params, optimizer state, config, implementation, and how much
    of the history beside it (``HISTORY``, already on disk) it covers. The directory is not
    flushed: a power loss may keep the previous checkpoint, which the history's extra line then
    does not contradict."""
    arrays = {f"params/{k}": v for k, v in params_to_dict(jax.tree.map(host_array, params)).items()}
    arrays |= {k: host_array(v) for k, v in flat_dict(opt_state, prefix="opt_state/").items()}
    meta = {"config": cfg.to_dict(), "implementation": implementation, "history": history._asdict()}
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays), sync_dir=False)


def _read_checkpoint(path) -> tuple[dict[str, np.ndarray], EchoConfig, str, HistoryMark]:
    """A checkpoint's arrays, config, implementation and history mark."""
    arrays = _load_npz(path, "a checkpoint")
    try:
        meta = json.loads(str(arrays["meta"]))
        saved = EchoConfig.from_dict(meta["config"])
        saved_by, mark = meta["implementation"], HistoryMark(**meta["history"])
        if not all(isinstance(n, int) and n >= 0 for n in mark) or mark.epochs < 1:
            raise ValueError(f"history {mark}")
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a valid checkpoint: {e!r}") from e
    return arrays, saved, saved_by, mark


def checkpoint_config(path: str | os.PathLike) -> tuple[EchoConfig, int]:
    """``(config of its run, epochs done)`` of a checkpoint; ``CheckpointError`` if it is not
    a valid one. A run whose checkpoint has ``num_epochs`` done is finished."""
    _, saved, _, mark = _read_checkpoint(path)
    return saved, mark.epochs


def load_checkpoint(
    path: str | os.PathLike, cfg: EchoConfig, opt_state_like: Any, implementation: str
) -> tuple[Params, Any, dict[str, list]]:
    """``(params, opt_state, history)`` of the checkpoint at ``path`` (its history is ``HISTORY``
    beside it), or ``CheckpointError`` naming what is corrupt, missing or different: every field
    of ``cfg`` but a longer ``num_epochs`` must be the saved one, ``implementation`` the one that
    saved, and the optimizer state have the structure, shapes and dtypes of ``opt_state_like``.
    """
    arrays, saved, saved_by, mark = _read_checkpoint(path)
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
    if mark.epochs > cfg.num_epochs:
        raise CheckpointError(
            f"{path} has {mark.epochs} epochs done, more than num_epochs={cfg.num_epochs}"
        )
    params = _params(arrays, cfg, path)
    leaves = []
    for key, like in flat_dict(opt_state_like, prefix="opt_state/").items():
        value = arrays.get(key)
        like = host_array(like)
        if value is None or value.shape != like.shape or value.dtype != like.dtype:
            got = "missing" if value is None else f"{value.dtype}{list(value.shape)}"
            raise CheckpointError(
                f"{path}: optimizer state {key} is {got}, expected {like.dtype}{list(like.shape)}"
            )
        leaves.append(value)
    opt_state = jax.tree.unflatten(jax.tree.structure(opt_state_like), leaves)
    history = read_history(Path(path).with_name(HISTORY), mark)
    return params, opt_state, history
