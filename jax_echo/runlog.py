"""What a training run records about itself (``jax-echo train``, ``tf-echo train``): where its
time went (``Stopwatch``), what it compiled (``CompileLog``), and its files (``write_run``)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax

from jax_echo.cells import Params
from jax_echo.io import PARAMS, RUN_RECORD, atomic_write, save_params
from jax_echo.plot import echo_figure, save_figure
from jax_echo.task import EchoConfig, epoch_data

_IMPORTED = time.perf_counter()


def process_seconds() -> float:
    """Seconds since this process started, from the kernel's start time of the process (in clock
    ticks: 10 ms on Linux); without ``/proc``, since this module finished its imports."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()  # from field 3, the state, on
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


class CompileLog(contextlib.AbstractContextManager):
    """Counts XLA compilations and persistent-cache hits inside its ``with`` block, and the
    seconds the thread that opened it spent compiling (tracing, lowering and XLA, or loading from
    the cache). A program compiled on another thread (``train.jax_verbs``' accuracy program) is
    counted, and its seconds are not: they overlap the run's own work."""

    STEPS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        self.compilations, self.cache_hits, self.seconds = 0, 0, 0.0
        self.thread = threading.current_thread()

    def __enter__(self) -> CompileLog:
        jax.monitoring.register_event_duration_secs_listener(self._duration)
        jax.monitoring.register_event_listener(self._event)
        return self

    def __exit__(self, *exc_info) -> None:
        jax.monitoring.unregister_event_duration_listener(self._duration)
        jax.monitoring.unregister_event_listener(self._event)

    def _duration(self, event: str, seconds: float, **kwargs) -> None:
        if event in self.STEPS and threading.current_thread() is self.thread:
            self.seconds += seconds
        if event == self.STEPS[-1]:
            self.compilations += 1

    def _event(self, event: str, **kwargs) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            self.cache_hits += 1

    def counts(self) -> dict[str, int]:
        """Programs compiled, and loaded from the persistent cache (a cache hit also reports a
        short backend compile: loading the program)."""
        return {
            "compilations": self.compilations - self.cache_hits,
            "compile_cache_hits": self.cache_hits,
        }


class Stopwatch:
    """Where a run's wall time went, in seconds that sum to ``wall``.

    ``imports`` runs from the process's start (``process_seconds``) to the stopwatch's creation.
    ``section(name)`` adds the time of its block to ``name``, less the compilation inside it,
    which goes to ``compile``: all of JAX's, as ``compile_log.seconds`` counts it (tracing,
    lowering and XLA, or loading from the persistent cache). Sections do not nest. ``other`` is
    the time in no section (starting the backend, loading a checkpoint, printing); ``wall`` runs
    from the process's start to ``seconds()``.
    """

    KEYS = ("imports", "compile", "data", "training", "evaluation", "files", "figure")

    def __init__(self, compile_log: CompileLog | None = None) -> None:
        now = time.perf_counter()
        self.started = now - process_seconds()
        self.compile_log = compile_log
        self.totals = dict.fromkeys(self.KEYS, 0.0)
        self.totals["imports"] = now - self.started

    def _compiled(self) -> float:
        return self.compile_log.seconds if self.compile_log else 0.0

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        t0, compiled = time.perf_counter(), self._compiled()
        try:
            yield
        finally:
            spent = time.perf_counter() - t0 - (self._compiled() - compiled)
            self.totals[name] = self.totals.get(name, 0.0) + spent

    def seconds(self) -> dict[str, float]:
        """``{"imports", "compile", ..., "other", "wall"}``; no ``compile`` without a counter."""
        wall = time.perf_counter() - self.started
        seconds = {**self.totals, "compile": self._compiled()}
        if self.compile_log is None:
            del seconds["compile"]
        return {**seconds, "other": wall - sum(seconds.values()), "wall": wall}


def use_compile_cache(enabled: bool = True) -> None:
    """JAX's persistent compilation cache, in ``$XDG_CACHE_HOME/jax-echo/xla``: a second run
    loads its programs instead of compiling."""
    if enabled:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        jax.config.update("jax_compilation_cache_dir", str(Path(base, "jax-echo", "xla")))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "system": platform.system(),
    }


def jax_info() -> dict[str, Any]:
    """The implementation, JAX's version, its first device and the machine."""
    device = jax.devices()[0]
    return {
        "implementation": "jax",
        "jax_version": jax.__version__,
        "device": f"{device.platform}: {device.device_kind}",
        **machine_info(),
    }


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def time_spent(seconds: dict[str, float]) -> str:
    """Training and compile time apart (``Stopwatch.seconds()``; no compile time where the run
    does not count it)."""
    compiled = f", {seconds['compile']:.2f} s compiling" if "compile" in seconds else ""
    return f"{seconds['training']:.2f} s training{compiled}"


def summary_line(history: dict[str, Any], seconds: dict[str, float]) -> str:
    """The end-of-run line: epochs, accuracy, and ``time_spent``."""
    return (
        f"Done: {plural(len(history['loss']), 'epoch')}, last epoch accuracy "
        f"{history['accuracy'][-1]:.4%} ({history['accuracy_after_first'][-1]:.4%} after the "
        f"first window); {time_spent(seconds)}"
    )


def write_run(
    out: str | os.PathLike,
    cfg: EchoConfig,
    params: Params,
    history: dict[str, Any],
    run_info: dict[str, Any],
    predict_last_window: Callable[[Params, Any], Any],
    stopwatch: Stopwatch,
) -> dict[str, float]:
    """Writes ``params.npz``, ``echo.png`` (the tutorial's figure) and, last, ``history.json``
    (the run record: a directory with one holds a finished run) to ``out``; returns the
    record's ``seconds`` (``stopwatch.seconds()``), which leave out its own write.

    ``predict_last_window(params, x_BxL)`` gives the predictions (B, T) of the last window of an
    epoch's series, state carried, without dropout: the only implementation-specific part.
    """
    out = Path(out)
    with stopwatch.section("files"):
        save_params(out / PARAMS, params, cfg)
        history_json = json.dumps(history)  # the bulk of history.json
    with stopwatch.section("figure"):
        last = len(history["loss"]) - 1
        x, y = epoch_data(cfg, last)
        T, N = cfg.truncated_backprop_length, cfg.num_batches
        window = slice((N - 1) * T, N * T)
        losses = [loss for epoch in history["loss"] for loss in epoch]
        fig = echo_figure(
            losses,
            x[:, window],
            y[:, window],
            predict_last_window(params, x),
            title=f"{run_info.get('implementation', '')} ({cfg.cell}, {cfg.num_layers} "
            f"layer(s)): epoch {last}, last window",
        )
        save_figure(fig, out / "echo.png")
    seconds = stopwatch.seconds()
    record = {
        "config": cfg.to_dict(),
        **run_info,
        **(stopwatch.compile_log.counts() if stopwatch.compile_log else {}),
        "seconds": seconds,
    }
    # One key a line; the history on one line (encoding it with indents takes long).
    lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in record.items()]
    lines.append(f' "history": {history_json}')
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    atomic_write(out / RUN_RECORD, lambda f: f.write(text), mode="w")
    return seconds


def write_json(record: Any, dest: str | os.PathLike, indent: int | None = None) -> None:
    """``record`` as JSON to the file ``dest`` (atomically), or to stdout where ``dest`` is
    ``-`` (what every command's ``--json`` means)."""
    text = json.dumps(record, indent=indent) + "\n"
    if os.fspath(dest) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write(dest, lambda f: f.write(text), mode="w")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Sends file descriptor 2 to ``/dev/null`` inside the block: what a C++ library prints
    while it loads (TensorFlow's absl, oneDNN and CUDA lines) never reaches the user."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def tensorflow_quiet() -> contextlib.AbstractContextManager:
    """Around work that runs TensorFlow's programs: its C++ warnings (oneDNN's graph pass says
    "Not handling type DT_DOUBLE" once per op in float64) kept off the terminal, unless the user
    set ``TF_CPP_MIN_LOG_LEVEL=0``. Python's own errors still reach the user once the block ends."""
    loud = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") in ("", "0")
    return contextlib.nullcontext() if loud else quiet_stderr()


def import_tensorflow_quietly() -> Any:
    """``import tensorflow`` without its start-up lines, unless the user set
    ``TF_CPP_MIN_LOG_LEVEL=0`` (unset, it is set to ``2``, and TensorFlow's Python warnings are
    silenced too); ``None`` where TensorFlow is not installed (the caller names the extra)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    loud = "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("", "0")
    try:
        with contextlib.nullcontext() if loud else quiet_stderr():
            tf = importlib.import_module("tensorflow")
            tf.config.list_physical_devices()  # finding no GPU (cuInit) says so too
    except ImportError:
        return None
    if not loud:
        tf.get_logger().setLevel("ERROR")
    return tf
