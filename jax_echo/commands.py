"""What ``jax-echo``'s commands do, once ``cli`` has parsed their arguments; ``tf-echo`` shares
the weights, the resume rules, the interrupt advice and the error handling.

A user's mistake (a bad value, a refused file) is one ``error:`` line and exit code 2; anything
else keeps its traceback. ``compare --atol X`` exits 1 when an implementation differs from the
reference by more than ``X``; ``bench`` exits 1 when one of its worker processes crashed. Ctrl-C
is one line and exit code 130, with the advice that applies to the command and what is on disk
(``--resume`` only where a checkpoint is). ``--json FILE`` is the same in every command: ``-``
writes the JSON alone on stdout, the rest going to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import NamedTuple

import jax
import numpy as np

from jax_echo import bench, compare, evaluate, model, parallel, runlog, sweep, train
from jax_echo.arguments import (
    config_from_args,
    flag,
    given_options,
    human_output,
    new_run_dir,
)
from jax_echo.cells import Params, params_from_dict
from jax_echo.io import (
    CHECKPOINT,
    HISTORY,
    RUN_RECORD,
    CheckpointError,
    OptionError,
    OutputDirError,
    checkpoint_config,
    load_params,
    run_lock,
    tf_checkpoint_path,
)
from jax_echo.plot import preload
from jax_echo.registry import TF_IMPLEMENTATIONS, MissingExtraError
from jax_echo.task import EchoConfig
from jax_echo.tf_checkpoint import params_from_tf_checkpoint, tf1_variable_names
from jax_echo.train import TrainingDivergedError
from jax_echo.trainers import import_tf_echo

SWEEP_FILES = ("sweep.json", "sweep.md", "sweep.png")  # sweep.sweep writes them


class Weights(NamedTuple):
    """What ``--params`` / ``--tf-checkpoint`` name, and the config the command runs."""

    cfg: EchoConfig
    params: Params | None  # None: neither was given (the command's own initial weights)
    source: str | None  # "params" or "tf-checkpoint"
    path: str | None


def weights_from_args(args: argparse.Namespace) -> Weights:
    """The config and the weights of ``add_weights_args``' options: ``--params``' file, its
    config overridden by the options given (a given ``--part`` must be a program of its model),
    or ``--tf-checkpoint``'s, read with ``--part``'s TF1 names. A mismatch is a ``ValueError``
    naming the file."""
    if args.params is not None:
        params, saved = load_params(args.params)  # a run's directory, params or checkpoint
        cfg = dataclasses.replace(saved, **{**args.config_defaults, **given_options(args)})
        try:
            if args.part is not None:
                tf1_variable_names(cfg, args.part)  # checks the part's model is the file's
            params = params_from_dict(params, cfg)
        except ValueError as e:
            raise CheckpointError(f"{args.params} does not fit the options: {e}") from e
        return Weights(cfg, params, "params", args.params)
    cfg = config_from_args(args)
    if args.tf_checkpoint is not None:
        path = tf_checkpoint_path(args.tf_checkpoint)  # a run's directory: its model.ckpt
        params = params_from_tf_checkpoint(path, cfg, part=args.part)
        return Weights(cfg, params, "tf-checkpoint", args.tf_checkpoint)
    return Weights(cfg, None, None, None)


def out_dir(args: argparse.Namespace, name: str | None = None) -> str:
    """``--out``, or a new directory for this run, named ``name`` (default ``partN``, N the
    part of the series); ``--resume`` must name the run."""
    if args.out is not None:
        return args.out
    if getattr(args, "resume", False):
        raise CheckpointError("--resume needs --out DIR: the directory of the run to continue")
    return str(new_run_dir(name or f"part{args.part or 1}"))


def train_config(args: argparse.Namespace) -> EchoConfig:
    """The config a ``train`` command runs: ``config_from_args``'s, or with ``--resume`` the
    stored run's. Resuming, an option that would change the run is refused, naming it; a larger
    ``--epochs`` than the run's trains on, and says so."""
    if not args.resume:
        return config_from_args(args)
    checkpoint = Path(args.out, CHECKPOINT)
    if not checkpoint.exists():
        raise CheckpointError(
            f"cannot resume: no checkpoint at {checkpoint}"
            + (
                " (the run ended before its first one: start it again without --resume)"
                if Path(args.out, HISTORY).exists()
                else ""
            )
        )
    saved, done = checkpoint_config(checkpoint)
    given, implied = given_options(args), {}
    if args.part is not None:  # the part's values of the fields not given
        base = EchoConfig.for_part(args.part, **given).to_dict()
        implied = {k: v for k, v in base.items() if k not in given and k != "num_epochs"}
    for name, value in {**given, **implied}.items():
        if name != "num_epochs" and getattr(saved, name) != value:
            option, shown = ("--part", args.part) if name in implied else (flag(name), value)
            raise CheckpointError(
                f"--resume continues the run in {args.out} as it was configured: {option} "
                f"{shown} would change its {name} ({getattr(saved, name)!r} -> {value!r}); "
                "start a new run (another --out) to change it"
            )
    epochs = given.get("num_epochs", saved.num_epochs)
    if epochs < done:
        raise CheckpointError(
            f"--epochs {epochs} is fewer than the {done} epochs the run in {args.out} has done"
        )
    if epochs != saved.num_epochs:
        print(f"Training to {epochs} epochs (the run was started for {saved.num_epochs})")
    return dataclasses.replace(saved, num_epochs=epochs)


def train_interrupted(args: argparse.Namespace) -> str:
    """What an interrupted ``train`` can do next, from what is on disk."""
    out = getattr(args, "out", None)
    checkpoint = Path(out, CHECKPOINT) if out else None
    if checkpoint is None or not checkpoint.exists():
        return "no checkpoint was written yet, so there is nothing to resume: run it again"
    try:
        saved, done = checkpoint_config(checkpoint)
    except CheckpointError as e:
        return f"the checkpoint cannot be resumed ({e})"
    if Path(out, RUN_RECORD).exists():
        return f"the run in {out} had finished ({done} epochs)"
    return (
        f"rerun with --resume --out {out} to continue from the last checkpoint "
        f"({done} of {saved.num_epochs} epochs done)"
    )


# A user's mistake: one line and exit code 2. Anything else keeps its traceback.
USER_ERRORS = (CheckpointError, TrainingDivergedError, MissingExtraError, ValueError, OSError)


class CtrlC:
    """Ctrl-C as ``KeyboardInterrupt``, and never lost: Python prints and drops one raised
    inside a garbage-collection or weakref callback (JAX registers some), and a run would carry
    on; ``check()``, between the parts of each epoch (``interruptible``), raises it again."""

    pressed = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt


CTRL_C = CtrlC()  # SIGINT's handler while a command runs (run_command)


def interruptible(timer: train.Timer) -> train.Timer:
    """``timer`` (``RunOptions.timer``) that first raises a Ctrl-C a callback dropped."""

    def section(name: str) -> contextlib.AbstractContextManager:
        CTRL_C.check()
        return timer(name)

    return section


def run_command(
    prog: str,
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], int],
    interrupted: Callable[[argparse.Namespace], str] | None = None,
) -> int:
    """Runs a parsed command for either command line: a user's mistake is one ``error:`` line
    and exit code 2; an interrupt is one line with the command's own advice (``interrupted``),
    exit code 130."""
    main = threading.current_thread() is threading.main_thread()
    CTRL_C.pressed = False
    previous = signal.signal(signal.SIGINT, CTRL_C) if main else None
    unraisable = sys.unraisablehook  # without the traceback of a dropped Ctrl-C (check's now)
    sys.unraisablehook = lambda info: (
        None if issubclass(info.exc_type, KeyboardInterrupt) else unraisable(info)
    )
    try:
        return run(args)
    except USER_ERRORS as e:
        message = e.command_line() if isinstance(e, OptionError) else str(e)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        advice = f"; {interrupted(args)}" if interrupted else ""
        print(f"{prog}: interrupted{advice}", file=sys.stderr)
        return 130
    finally:
        sys.unraisablehook = unraisable
        if main:
            signal.signal(signal.SIGINT, previous)


def cmd_train(args: argparse.Namespace) -> int:
    out = args.out = out_dir(args)
    with runlog.CompileLog() as compiles:
        stopwatch = runlog.Stopwatch(compiles)
        runlog.use_compile_cache(not args.no_compile_cache)
        if args.coordinator:
            parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
            # Only process 0 sees the directory: its config (the stored run's) goes to all.
            cfg = parallel.agreed_config(lambda: train_config(args))
        else:
            cfg = train_config(args)
        writer = jax.process_index() == 0  # across processes, one writes the files
        if writer:
            preload()  # Matplotlib's import overlaps compilation and training
        mesh = parallel.data_parallel_mesh() if args.data_parallel or args.coordinator else None

        def last_window(params, x):  # the figure's predictions
            return np.asarray(model.predict_epoch(params, x, cfg))[-1]

        def finish(params, history):  # while the run still holds the directory
            devices = 1 if mesh is None else mesh.size
            info = {**runlog.jax_info(), "devices": devices, "processes": jax.process_count()}
            seconds = runlog.write_run(out, cfg, params, history, info, last_window, stopwatch)
            print(runlog.summary_line(history, seconds))
            print(f"Wrote {out}/params.npz, history.json, echo.png")

        options = train.RunOptions(
            out_dir=out,
            resume=args.resume,
            overwrite=args.overwrite,
            quiet=args.quiet or not writer,
            progress=not args.no_progress and writer,
            timer=interruptible(stopwatch.section),
            finish=finish,
        )
        if mesh is not None:
            parallel.fit_data_parallel(cfg, mesh, options)
        else:
            train.fit(cfg, options)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.tf_checkpoint:
        runlog.import_tensorflow_quietly()  # TensorFlow reads the checkpoint
    cfg, params, source, path = weights_from_args(args)
    result = evaluate.evaluate_params(params, cfg, args.seed, args.series, source=source, path=path)
    print(evaluate.evaluation_line(result), file=human_output(args))
    if args.json:
        runlog.write_json(result, args.json)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    for one, many in (("seed", "--seeds"), ("learning_rate", "--learning-rates")):
        if getattr(args, one) is not None:
            raise ValueError(
                f"sweep trains one member per value of {many}: use it, not {flag(one)}"
            )
    cfg = config_from_args(args)
    out = args.out = out_dir(args, "sweep")
    with run_lock(out):
        done = [name for name in SWEEP_FILES if Path(out, name).exists()]
        if done and not args.overwrite:
            raise OutputDirError(
                f"{out} holds a sweep's results ({', '.join(done)}): pass --overwrite to replace "
                "them, or choose another --out"
            )
        for name in done:  # all of them before any is written: never half old, half new
            Path(out, name).unlink()
        progress = not args.no_progress
        sweep.sweep(
            cfg, args.seeds, args.learning_rates, out, progress=progress, timed=interruptible
        )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    compare.check_tolerance(args.impl, args.atol)
    if any(name in TF_IMPLEMENTATIONS for name in args.impl):
        runlog.import_tensorflow_quietly()
        import_tf_echo()  # fails early, naming the extra to install
    cfg, params, _, _ = weights_from_args(args)
    dtype = "float64" if args.float64 else "float32"
    with runlog.tensorflow_quiet():
        report = compare.compare(
            cfg, args.impl, args.windows, dtype=dtype, part=args.part, params=params, atol=args.atol
        )
    human = human_output(args)
    print(compare.format_table(report), file=human)
    if not args.float64:
        print(FLOAT32_NOTE, file=human)
    if args.json:
        runlog.write_json(report, args.json)
    if args.plot:
        compare.plot_losses(report, args.plot)
    differs = compare.differences(report)  # beyond --atol: exit code 1, not a user's mistake (2)
    for line in differs:
        print(f"jax-echo: {line}", file=sys.stderr)
    return 1 if differs else 0


FLOAT32_NOTE = (
    "In float32 the implementations round differently, and the trajectories drift apart as the "
    "epochs go: loss differences of 0.1 or more after a few epochs are expected (--float64: "
    "about 1e-10)."
)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.device == "gpu":
        try:
            jax.devices("gpu")
        except RuntimeError:
            raise ValueError(
                f"--device gpu: JAX sees no GPU here (its backend is {jax.default_backend()}); "
                "leave --device out, or use --device cpu"
            ) from None
    options = {"processes": args.processes, "rounds": args.rounds, "device": args.device}
    options["cores"] = ("all", "one") if args.cores == "both" else (args.cores,)
    cfg, dtype = config_from_args(args, fit_series=True), "float64" if args.float64 else "float32"
    report = bench.bench(cfg, args.impl, part=args.part or 1, dtype=dtype, **options)
    print(bench.table(report), file=human_output(args))
    if args.json:
        runlog.write_json(report, args.json, indent=1)
    bench.write(report, None, args.markdown, args.plot)
    return 1 if report["failures"] else 0


# Each command's function, and its advice when interrupted.
COMMANDS = {
    "train": (cmd_train, train_interrupted),
    "sweep": (
        cmd_sweep,
        lambda args: "sweep keeps no checkpoint and wrote no results: run it again",
    ),
    "eval": (cmd_eval, None),
    "compare": (cmd_compare, None),
    "bench": (cmd_bench, lambda args: "its workers were stopped; no report written"),
}
