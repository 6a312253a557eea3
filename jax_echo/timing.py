"""The one timing loop of ``jax-echo compare``, ``jax-echo bench`` and the benchmark suite.

A ``Session`` builds a row's trainer on its device (``placed``; construction timed apart), times
its first call apart (tracing, compilation), and ends every timed call in a host read of its
result (``trainers.block``). A row's timed call trains one epoch (``Row.per_epoch``) or one
window, the state carried from the one before, as the tutorial's loop does.

>>> from jax_echo.registry import row
>>> from jax_echo.task import EchoConfig
>>> cfg = EchoConfig(truncated_backprop_length=5, total_series_length=100)
>>> with session(row("jax-step"), cfg) as s:
...     (s.first_epoch().shape, s.windows_per_call, s.first_call_seconds > 0)
((4,), 1, True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from jax_echo import policy
from jax_echo.cells import init_params
from jax_echo.registry import DATA_PARALLEL, Row, Trainer
from jax_echo.task import EchoConfig, epoch_data, split_windows
from jax_echo.trainers import block, make_trainer


@contextlib.contextmanager
def placed(r: Row, device: str | None) -> Iterator[None]:
    """Runs the block where row ``r`` computes on ``device`` ("cpu", "gpu"; ``None``: the
    libraries' defaults); a peer places its own arrays."""
    if device is None or r.placement == "own":
        yield
    elif r.placement == "jax":
        with jax.default_device(jax.devices(device)[0]):
            yield
    else:
        import tensorflow as tf

        with tf.device(f"/{device.upper()}:0"):
            yield


def seconds(call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()``'s result and its wall-clock seconds."""
    start = time.perf_counter()
    out = call()
    return out, time.perf_counter() - start


@dataclasses.dataclass
class Session:
    """A built trainer of one row, and the calls that time it (``session`` makes one)."""

    row: Row
    trainer: Trainer
    cfg: EchoConfig
    x: np.ndarray  # epoch 0's series, in the session's dtype
    y: np.ndarray
    built_seconds: float  # the trainer's construction
    device: str | None = None  # "cpu", "gpu"; None: the libraries' defaults
    first_call_seconds: float | None = None  # the first training call (tracing, compilation)
    _window: int = 0  # the next window ``call`` trains, for a per-window row

    @property
    def windows_per_call(self) -> int:
        return self.cfg.num_batches if self.row.per_epoch else 1

    @functools.cached_property
    def windows(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Epoch 0's windows ``(x_BxT, y_BxT)``, split once, outside the timed calls."""
        T = self.cfg.truncated_backprop_length
        xs, ys = (np.ascontiguousarray(split_windows(a, T)) for a in (self.x, self.y))
        return list(zip(xs, ys, strict=True))

    def _first(self, call: Callable[[], Any]) -> Any:
        if self.first_call_seconds is not None:
            return call()
        out, self.first_call_seconds = seconds(call)
        return out

    def first_epoch(self) -> np.ndarray:
        """Epoch 0 from the initial weights through the row's timed calls: the losses (N,)."""
        losses = [self._first(self.call)]
        losses += [self.call() for _ in range(1, self.cfg.num_batches // self.windows_per_call)]
        return np.asarray(losses).ravel()

    def epoch(self, x, y, epoch: int = 0) -> np.ndarray:
        """``train_epoch`` over a series from a zero state, waited for: the losses (N,)."""
        return self._first(lambda: block(self.trainer.train_epoch(x, y, epoch=epoch)))

    def call(self) -> np.ndarray:
        """The row's timed call, waited for: epoch 0, or epoch 0's next window (wrapping round)."""
        if self.row.per_epoch:
            return block(self.trainer.train_epoch(self.x, self.y))
        i = self._window % len(self.windows)
        self._window += 1
        x_BxT, y_BxT = self.windows[i]
        return block(self.trainer.train_window(x_BxT, y_BxT, epoch=0, window=i))

    def round(self) -> np.ndarray:
        """One epoch of timed calls (one call, or one per window): the last call's losses."""
        for _ in range(self.cfg.num_batches // self.windows_per_call - 1):
            self.call()
        return self.call()

    def peak(self) -> tuple[int | None, str]:
        """The row's peak memory in bytes (``None``: not measured), and what the number is."""
        if self.row.memory == "xla":
            what = "XLA args+outputs+temps"
            if self.row.name == DATA_PARALLEL:
                what += f", one of {len(jax.devices(self.device))} devices"
            return self.trainer.peak_bytes(self.x, self.y), what
        if self.row.memory == "torch-cuda" and self.device == "gpu":
            import torch

            return torch.cuda.max_memory_allocated(), "torch.cuda.max_memory_allocated"
        return None, "not measured: a process-wide peak would mix the rows"


@contextlib.contextmanager
def session(
    r: Row,
    cfg: EchoConfig,
    params: Any = None,
    dtype=np.float32,
    device: str | None = None,
    part: int | None = None,
) -> Iterator[Session]:
    """Row ``r``'s trainer on ``device`` from ``params`` (default ``init_params(cfg)``), its
    construction timed; closed when the block ends, however it ends."""
    x, y = epoch_data(cfg, 0)
    x = x.astype(dtype)
    if r.memory == "torch-cuda" and device == "gpu":  # ``Session.peak`` reads a process-wide peak
        import torch

        torch.cuda.reset_peak_memory_stats()
    with placed(r, device):
        params = init_params(cfg, dtype=dtype) if params is None else params
        trainer, built = seconds(
            lambda: make_trainer(r.name, cfg, params, dtype, part=part, device=device)
        )
        try:
            yield Session(r, trainer, cfg, x, y, built, device)
        finally:
            trainer.close()


def measure(
    r: Row, cfg: EchoConfig, dtype, device: str | None, part: int | None, rounds: int
) -> dict[str, Any]:
    """``jax-echo bench``'s measurement of one row: the first call and epoch, one untimed
    warm-up epoch, then ``rounds`` timed epochs (their median, per window) and the peak memory."""
    with session(r, cfg, dtype=dtype, device=device, part=part) as s:
        first_losses = s.first_epoch()
        s.round()  # warm-up, untimed
        times, last = [], first_losses
        for _ in range(rounds):
            last, took = seconds(s.round)
            times.append(took)
        peak_bytes, what = s.peak()
    return {
        "implementation": r.name,
        "us_per_window": float(np.median(times)) / cfg.num_batches * 1e6,
        "compile_seconds": s.built_seconds + s.first_call_seconds,
        "first_epoch_losses": np.asarray(first_losses, np.float64).ravel().tolist(),
        "final_loss": float(np.asarray(last).ravel()[-1]),
        "peak_bytes": peak_bytes,
        "peak_what": what,
    }


def cpu_devices(environ=os.environ) -> dict[str, str]:
    """``environ`` for a child process whose JAX has a CPU device per core (``XLA_FLAGS`` kept)."""
    flag = f"--xla_force_host_platform_device_count={max(2, policy.cpu_cores())}"
    return {**environ, "XLA_FLAGS": f"{environ.get('XLA_FLAGS', '')} {flag}".strip()}


def one_core(libraries: set[str]) -> None:
    """Limits this process to one core before ``libraries`` start their thread pools: pinned to
    it (XLA:CPU has no thread option), PyTorch's and TensorFlow's intra-op threads one."""
    if not hasattr(os, "sched_setaffinity"):
        raise OSError("one core needs os.sched_setaffinity (Linux), which this system lacks")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in libraries:
        import torch

        torch.set_num_threads(1)
    if "tensorflow" in libraries:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
