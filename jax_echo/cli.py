"""Command line: ``jax-echo train | eval | compare | sweep | bench``: arguments onto library calls.

The options are ``arguments``'; the run's records (timing, compilations, files) ``runlog``'s;
training is ``train.fit``'s. A user's mistake (a bad value, a refused file) is one ``error:``
line and exit code 2; anything else keeps its traceback. ``compare --atol X`` exits 1 when an
implementation differs from the reference by more than ``X``; ``bench`` exits 1 when one of its
worker processes crashed. Ctrl-C is one line and exit code 130, with the advice that applies to
the command and what is on disk (``--resume`` only where a checkpoint is). ``--json FILE`` is the
same in every command: ``-`` writes the JSON alone on stdout, the rest going to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import jax

from jax_echo import bench, compare, evaluate, parallel, runlog, sweep, train
from jax_echo.arguments import (
    add_config_args,
    add_eval_args,
    add_json_arg,
    add_train_args,
    add_weights_args,
    config_from_args,
    flag,
    human_output,
    out_dir,
    run_command,
    train_config,
    train_interrupted,
    weights_from_args,
)
from jax_echo.io import OutputDirError, run_lock
from jax_echo.plot import preload
from jax_echo.registry import IMPLEMENTATIONS, REFERENCE, TF_IMPLEMENTATIONS
from jax_echo.trainers import import_tf_echo

# --- jax-echo --------------------------------------------------------------------------------

RATES = (0.03, 0.1, 0.3, 1.0)  # sweep's default learning rates
SWEEP_FILES = ("sweep.json", "sweep.md", "sweep.png")  # sweep.sweep writes them


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

        def finish(params, history):  # while the run still holds the directory
            devices = 1 if mesh is None else mesh.size
            train.write_jax_run(out, cfg, params, history, stopwatch, devices=devices)

        options = train.RunOptions(
            out_dir=out,
            resume=args.resume,
            overwrite=args.overwrite,
            quiet=args.quiet or not writer,
            progress=not args.no_progress and writer,
            timer=stopwatch.section,
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
        sweep.sweep(cfg, args.seeds, args.learning_rates, out, progress=not args.no_progress)
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


def check_device(device: str | None) -> None:
    """``--device gpu`` where JAX sees no GPU is the user's mistake, said in one line."""
    if device == "gpu":
        try:
            jax.devices("gpu")
        except RuntimeError:
            raise ValueError(
                f"--device gpu: JAX sees no GPU here (its backend is {jax.default_backend()}); "
                "leave --device out, or use --device cpu"
            ) from None


def cmd_bench(args: argparse.Namespace) -> int:
    check_device(args.device)
    options = {"processes": args.processes, "rounds": args.rounds, "device": args.device}
    options["cores"] = ("all", "one") if args.cores == "both" else (args.cores,)
    cfg, dtype = config_from_args(args, fit_series=True), "float64" if args.float64 else "float32"
    report = bench.bench(cfg, args.impl, part=args.part or 1, dtype=dtype, **options)
    print(bench.table(report), file=human_output(args))
    if args.json:
        runlog.write_json(report, args.json, indent=1)
    bench.write(report, None, args.markdown, args.plot)
    return 1 if report["failures"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jax-echo",
        description="The echo RNN of the classic TensorFlow tutorial series, in JAX.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train_ = sub.add_parser("train", help="the tutorial's training run", allow_abbrev=False)
    add_train_args(train_)
    scaling = train_.add_argument_group("data parallelism (see docs/scaling.md)")
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
    train_.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not keep compiled programs in the user cache (default: "
        "$XDG_CACHE_HOME/jax-echo/xla, so a second run starts training without compiling)",
    )
    train_.set_defaults(run=cmd_train, interrupted=train_interrupted)

    sweep = sub.add_parser(
        "sweep",
        help="train a population, one model per (seed, learning rate)",
        allow_abbrev=False,
    )
    add_config_args(sweep)
    for name, kind, values in (("seeds", int, (0, 1, 2, 3)), ("learning-rates", float, RATES)):
        sweep.add_argument(
            f"--{name}",
            type=kind,
            nargs="+",
            default=list(values),
            metavar={int: "N", float: "X"}[kind],
            help=f"the members' {name.replace('-', ' ')} (default {' '.join(map(str, values))})",
        )
    sweep.add_argument(
        "--out",
        metavar="DIR",
        help=f"where sweep.json, sweep.md and sweep.png go (default: a new {runlog.RUNS}/"
        "sweep-DATE-TIME)",
    )
    sweep.add_argument(
        "--overwrite", action="store_true", help="replace the sweep's results in DIR"
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.set_defaults(
        run=cmd_sweep,
        interrupted=lambda args: "sweep keeps no checkpoint and wrote no results: run it again",
    )

    ev = sub.add_parser(
        "eval",
        help="accuracy of saved weights (a params file, a TF1 checkpoint) on fresh data",
        allow_abbrev=False,
    )
    add_eval_args(ev)
    ev.set_defaults(run=cmd_eval)

    cmp = sub.add_parser(
        "compare",
        help="train JAX and TensorFlow from the same weights and data, side by side",
        description="Needs the tf extra (pip install 'jax-echo[tf]'). Each implementation "
        "first trains one untimed epoch (compilation), then restarts from the same weights; "
        "times are means per window over the timed epochs (default 3).",
        allow_abbrev=False,
    )
    add_config_args(cmp, weights=True, num_epochs=compare.EPOCHS)
    add_weights_args(cmp, required=False)
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
    cmp.add_argument(
        "--atol",
        type=float,
        metavar="X",
        help=f"exit 1 when an implementation's loss or weights differ from {REFERENCE}'s by "
        "more than X (its name and by how much on stderr)",
    )
    add_json_arg(cmp, "the table and loss curves")
    cmp.add_argument("--plot", metavar="FILE", help="write an overlay plot of the loss curves")
    cmp.set_defaults(run=cmd_compare)

    bench_ = sub.add_parser(
        "bench",
        help="time every implementation and peer library on one configuration",
        description=bench.DESCRIPTION,
        allow_abbrev=False,
    )
    add_config_args(bench_, skip=("num_epochs",))  # --rounds: the timed epochs
    bench.add_args(bench_)
    bench_.set_defaults(
        run=cmd_bench, interrupted=lambda args: "its workers were stopped; no report written"
    )
    return parser


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    return run_command(parser or build_parser(), argv)


def run() -> NoReturn:
    runlog.exit_program(main)
