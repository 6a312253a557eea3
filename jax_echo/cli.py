"""Command line: ``jax-echo train | eval | compare | sweep``.

``--part N`` starts from part N of the tutorial series (``EchoConfig.for_part``); every
``EchoConfig`` field is also an option (``--cell``, ``--num-layers``, ``--keep-prob``,
``--state-size``, ...) that overrides it. The parser maps them onto the dataclass, which
validates them. A user's mistake (a bad value, a refused file) is one ``error:`` line and exit
code 2; anything else keeps its traceback.

``train`` records in ``history.json`` where its wall time went (``Stopwatch``): imports, compile,
data, training, evaluation, files, figure and the rest, in seconds that sum to the wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import jax
import numpy as np

from jax_echo import compare, model, scale, train
from jax_echo.cells import Params
from jax_echo.io import CheckpointError, atomic_write, load_params, run_lock, save_params
from jax_echo.plot import echo_figure, preload, save_figure, sweep_figure
from jax_echo.registry import IMPLEMENTATIONS, TF_IMPLEMENTATIONS, MissingExtraError
from jax_echo.task import CELL_NAMES, PARTS, EchoConfig, epoch_data, eval_data
from jax_echo.train import TrainingDivergedError

DEFAULT_OUT = "runs/tutorial"


# --- Shared with tf-echo ---------------------------------------------------------------------


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--part`` and one ``--field-name`` option per ``EchoConfig`` field (plus ``--epochs``)."""
    group = parser.add_argument_group("configuration (the tutorial's defaults, or --part's)")
    group.add_argument(
        "--part",
        type=int,
        choices=sorted(PARTS),
        default=1,
        help="start from part N of the series: 1 tutorial RNN, 2 BasicRNNCell, 3 LSTM, "
        "4 3-layer LSTM, 5 the same through dynamic_rnn, 6 with dropout (default 1)",
    )
    for field in dataclasses.fields(EchoConfig):
        flags = [f"--{field.name.replace('_', '-')}"]
        if field.name == "num_epochs":
            flags.insert(0, "--epochs")
        group.add_argument(
            *flags,
            dest=field.name,
            type=type(field.default),
            default=None,  # not given: the part's value
            choices=CELL_NAMES if field.name == "cell" else None,
            metavar={int: "N", float: "X"}.get(type(field.default)),
            help=f"(tutorial default {field.default})",
        )


def config_from_args(args: argparse.Namespace) -> EchoConfig:
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(EchoConfig)
        if getattr(args, f.name) is not None
    }
    return EchoConfig.for_part(args.part, **given)


def add_train_args(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output directory (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run whose checkpoint is in DIR",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-100-window loss lines")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def process_seconds() -> float:
    """Seconds since this process started: the interpreter's start-up and every import included.

    Read from the kernel's start time of the process (``/proc/self/stat``, in clock ticks: 10 ms
    on Linux). Without ``/proc``, the seconds since this module finished its imports.
    """
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()  # from field 3, the state, on
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


class CompileLog:
    """Counts XLA compilations and persistent-cache hits, and their seconds, while it exists.

    ``compile_seconds`` is XLA's part (or loading the program from the cache); ``seconds`` adds
    JAX's tracing and lowering, which a persistent-cache hit still does.
    """

    STEPS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        self.compilations, self.compile_seconds, self.cache_hits = 0, 0.0, 0
        self.seconds = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._duration)
        jax.monitoring.register_event_listener(self._event)

    def _duration(self, event: str, seconds: float, **kwargs) -> None:
        if event in self.STEPS:
            self.seconds += seconds
        if event == self.STEPS[-1]:
            self.compilations += 1
            self.compile_seconds += seconds

    def _event(self, event: str, **kwargs) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            self.cache_hits += 1

    def as_dict(self) -> dict[str, Any]:
        return {  # a cache hit also reports a (short) backend compile: loading the program
            "compilations": self.compilations - self.cache_hits,
            "compile_seconds": self.compile_seconds,
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


def write_run(
    out: str | Path,
    cfg: EchoConfig,
    params: Params,
    history: dict[str, Any],
    run_info: dict[str, Any],
    predict_last_window: Callable[[Params, Any], Any],
    stopwatch: Stopwatch,
) -> None:
    """Writes ``params.npz``, ``echo.png`` (the tutorial's figure) and ``history.json`` to ``out``.

    ``predict_last_window(params, x_BxL)`` gives the predictions (B, T) of the last window of an
    epoch's series, state carried, without dropout; it is the only implementation-specific part.
    ``history.json`` is written last, with ``stopwatch.seconds()``: its own write (one file of
    the already encoded history, some milliseconds) and the process's exit are not in them.
    """
    out = Path(out)
    with stopwatch.section("files"):
        save_params(out / "params.npz", params, cfg)
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
        **(stopwatch.compile_log.as_dict() if stopwatch.compile_log else {}),
        "wall_seconds": seconds["wall"],
        "training_seconds": sum(history["epoch_seconds"]),
        "seconds": seconds,
    }
    # One key a line; the history on one line (encoding it with indents takes long).
    lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in record.items()]
    lines.append(f' "history": {history_json}')
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    atomic_write(out / "history.json", lambda f: f.write(text), mode="w")


def summary_line(history: dict[str, Any]) -> str:
    return (
        f"Done: {len(history['loss'])} epochs, last epoch accuracy "
        f"{history['accuracy'][-1]:.4%} ({history['accuracy_after_first'][-1]:.4%} after the "
        f"first window), {sum(history['epoch_seconds']):.2f} s training"
    )


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "system": platform.system(),
    }


# --- jax-echo --------------------------------------------------------------------------------


def _jax_info() -> dict[str, Any]:
    device = jax.devices()[0]
    return {
        "implementation": "jax",
        "jax_version": jax.__version__,
        "device": f"{device.platform}: {device.device_kind}",
        **machine_info(),
    }


def compile_cache_dir() -> Path:
    """Where ``jax-echo`` keeps compiled programs: ``$XDG_CACHE_HOME/jax-echo/xla``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base, "jax-echo", "xla")


def use_compile_cache(enabled: bool) -> None:
    """JAX's persistent compilation cache: a second run loads its programs instead of compiling."""
    if enabled:
        jax.config.update("jax_compilation_cache_dir", str(compile_cache_dir()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def cmd_train(args: argparse.Namespace) -> int:
    stopwatch = Stopwatch(CompileLog())
    use_compile_cache(not args.no_compile_cache)
    cfg = config_from_args(args)
    if args.coordinator:
        scale.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    writer = jax.process_index() == 0  # across processes, one writes the files
    if writer:
        preload()  # Matplotlib's import overlaps compilation and training
    options = {
        "out_dir": args.out,
        "resume": args.resume,
        "quiet": args.quiet or not writer,
        "progress": not args.no_progress and writer,
    }
    with run_lock(args.out) if writer else contextlib.nullcontext():  # training and files
        if args.data_parallel or args.coordinator:
            mesh = scale.data_parallel_mesh()
            params, history = scale.fit_data_parallel(cfg, mesh, **options, timer=stopwatch.section)
        else:
            mesh = None
            params, history = train.fit(cfg, **options, timer=stopwatch.section)
        if writer:
            _write_jax_run(args, cfg, params, history, mesh, stopwatch)
    return 0


def _write_jax_run(args, cfg, params, history, mesh, stopwatch) -> None:
    info = {
        **_jax_info(),
        "devices": 1 if mesh is None else mesh.size,
        "processes": jax.process_count(),
    }

    def predict_last_window(params, x):
        return np.asarray(model.predict_epoch(params, x, cfg))[-1]

    write_run(args.out, cfg, params, history, info, predict_last_window, stopwatch)
    print(summary_line(history))
    print(f"Wrote {args.out}/params.npz, history.json, echo.png")


def cmd_eval(args: argparse.Namespace) -> int:
    params, cfg = load_params(args.params)
    accs = np.stack(
        [
            np.asarray(model.window_accuracies(params, *eval_data(cfg, args.seed, i), cfg))
            for i in range(args.series)
        ]
    )
    result = {
        "params": str(args.params),
        "cell": cfg.cell,
        "num_layers": cfg.num_layers,
        "series": args.series,
        "seed": args.seed,
        "accuracy": float(accs.mean()),
        "accuracy_after_first": float(accs[:, 1:].mean()),
    }
    print(
        f"{args.params} ({cfg.cell}, {cfg.num_layers} layer(s)): accuracy "
        f"{result['accuracy']:.4%} over {args.series} fresh series "
        f"({result['accuracy_after_first']:.4%} after each series' first window)"
    )
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    t0 = time.perf_counter()
    _, history = scale.fit_population(
        cfg, args.seeds, args.learning_rates, progress=not args.no_progress
    )
    rows = scale.sweep_table(history, cfg.num_batches)
    table = scale.format_sweep(rows)
    print(table)
    out = Path(args.out)
    record = {
        "config": cfg.to_dict(),
        **_jax_info(),
        "wall_seconds": time.perf_counter() - t0,
        "table": rows,
        "history": history,
    }
    atomic_write(out / "sweep.json", lambda f: json.dump(record, f), mode="w")
    atomic_write(out / "sweep.md", lambda f: f.write(table + "\n"), mode="w")
    save_figure(sweep_figure(history), out / "sweep.png")
    print(f"Wrote {out}/sweep.json, sweep.md, sweep.png")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if any(name in TF_IMPLEMENTATIONS for name in args.impl):
        compare.import_tf_echo()  # fails early, naming the extra to install
    dtype = np.float64 if args.float64 else np.float32
    report = compare.compare(cfg, args.impl, args.windows, dtype=dtype, part=args.part)
    print(compare.format_table(report))
    if args.json:
        compare.write_json(report, args.json)
    if args.plot:
        compare.plot_losses(report, args.plot)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jax-echo",
        description="The echo RNN of the classic TensorFlow tutorial series, in JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="the tutorial's training run")
    add_train_args(train)
    scaling = train.add_argument_group("data parallelism (see docs/scaling.md)")
    scaling.add_argument(
        "--data-parallel",
        action="store_true",
        help="shard the batch over all devices (batch size divisible by their count)",
    )
    scaling.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="run as one of several processes (implies --data-parallel)",
    )
    scaling.add_argument("--num-processes", type=int, default=1, metavar="N")
    scaling.add_argument("--process-id", type=int, default=0, metavar="I")
    train.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not keep compiled programs in the user cache (default: "
        "$XDG_CACHE_HOME/jax-echo/xla, so a second run starts training without compiling)",
    )
    train.set_defaults(run=cmd_train)

    sweep = sub.add_parser("sweep", help="train a population, one model per (seed, learning rate)")
    add_config_args(sweep)
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], metavar="N")
    sweep.add_argument(
        "--learning-rates", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0], metavar="X"
    )
    sweep.add_argument(
        "--out",
        default="runs/sweep",
        metavar="DIR",
        help="where sweep.json, sweep.md and sweep.png go (default runs/sweep)",
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.set_defaults(run=cmd_sweep)

    ev = sub.add_parser("eval", help="accuracy of saved params (any cell) on fresh data")
    ev.add_argument("--params", required=True, metavar="FILE", help="a params.npz from train")
    ev.add_argument("--seed", type=int, default=12345, help="seed of the fresh series")
    ev.add_argument("--series", type=int, default=1, help="how many fresh series")
    ev.add_argument("--json", action="store_true", help="also print the result as JSON")
    ev.set_defaults(run=cmd_eval)

    cmp = sub.add_parser(
        "compare",
        help="train JAX and TensorFlow from the same weights and data, side by side",
        description="Needs the tf extra (pip install 'jax-echo[tf]'). Each implementation "
        "first trains one untimed epoch (compilation), then restarts from the same weights; "
        "times are means per window over the timed epochs (default 3).",
    )
    add_config_args(cmp)
    cmp.add_argument(
        "--impl",
        nargs="+",
        default=list(IMPLEMENTATIONS),
        choices=IMPLEMENTATIONS,
        metavar="NAME",
        help=f"implementations to compare (default all: {', '.join(IMPLEMENTATIONS)})",
    )
    cmp.add_argument(
        "--windows",
        type=int,
        default=None,
        help="N windows per epoch (each epoch gets a series just long enough)",
    )
    cmp.add_argument(
        "--float64",
        action="store_true",
        help="compute in float64 everywhere: trajectories then agree to about 1e-10",
    )
    cmp.add_argument("--json", metavar="FILE", help="write the table and loss curves as JSON")
    cmp.add_argument("--plot", metavar="FILE", help="write an overlay plot of the loss curves")
    cmp.set_defaults(run=cmd_compare, num_epochs=3)
    return parser


# A user's mistake: one line and exit code 2. Anything else keeps its traceback.
USER_ERRORS = (CheckpointError, TrainingDivergedError, MissingExtraError, ValueError, OSError)


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"{parser.prog}: interrupted; rerun with --resume to continue from the last checkpoint",
            file=sys.stderr,
        )
        return 130


def run(entry: Callable[[], int] = main) -> NoReturn:
    """A program (``jax-echo``, ``tf-echo``): ``entry()`` on the command line, then exit.

    Before exiting, ``gc.freeze()`` moves every object to the permanent generation, so that the
    interpreter's last collection does not walk JAX's and Matplotlib's object graphs: about 0.3 s
    of a 2-core CPU's exit. Every file is closed by then (each is written and renamed in full).
    """
    code = entry()
    gc.freeze()
    sys.exit(code)
