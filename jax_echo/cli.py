"""Command line: ``jax-echo train | eval | compare | sweep``: arguments onto library calls.

``--part N`` starts from part N of the tutorial series (``EchoConfig.for_part``); every
``EchoConfig`` field is also an option (``--cell``, ``--num-layers``, ``--keep-prob``,
``--state-size``, ...) that overrides it, validated by the dataclass. A user's mistake (a bad
value, a refused file) is one ``error:`` line and exit code 2; anything else keeps its traceback.
The run's records (timing, compilations, files) are ``runlog``'s; training is ``train.fit``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import jax

from jax_echo import compare, runlog, scale, train
from jax_echo.io import CheckpointError, run_lock
from jax_echo.plot import preload
from jax_echo.registry import IMPLEMENTATIONS, TF_IMPLEMENTATIONS, MissingExtraError
from jax_echo.task import CELL_NAMES, PARTS, EchoConfig
from jax_echo.train import TrainingDivergedError
from jax_echo.trainers import import_tf_echo

# --- Shared with tf-echo ---------------------------------------------------------------------


def add_config_args(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """``--part`` and one ``--field-name`` option per ``EchoConfig`` field (plus ``--epochs``);
    ``defaults`` are this command's own (shown in ``--help``) where they are not the tutorial's."""
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
        default = defaults.get(field.name)
        group.add_argument(
            *flags,
            dest=field.name,
            type=type(field.default),
            default=None,  # not given: the part's value (or this command's)
            choices=CELL_NAMES if field.name == "cell" else None,
            metavar={int: "N", float: "X"}.get(type(field.default)),
            help=f"(default {default})" if default else f"(tutorial default {field.default})",
        )
    parser.set_defaults(config_defaults=defaults)


def config_from_args(args: argparse.Namespace) -> EchoConfig:
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(EchoConfig)
        if getattr(args, f.name) is not None
    }
    return EchoConfig.for_part(args.part, **{**args.config_defaults, **given})


def add_train_args(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    parser.add_argument(
        "--out",
        metavar="DIR",
        help=f"output directory (default: a new {runlog.RUNS}/tutorial-DATE-TIME)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run whose checkpoint is in DIR (needs --out)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the finished run in DIR (an unfinished one is only ever resumed)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-100-window loss lines")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def out_dir(args: argparse.Namespace) -> str:
    """``--out``, or a new directory for this run; ``--resume`` must name the run."""
    if args.out is not None:
        return args.out
    if args.resume:
        raise CheckpointError("--resume needs --out DIR: the directory of the run to continue")
    return str(runlog.new_run_dir())


# --- jax-echo --------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    out = args.out = out_dir(args)
    with runlog.CompileLog() as compiles:
        stopwatch = runlog.Stopwatch(compiles)
        runlog.use_compile_cache(not args.no_compile_cache)
        if args.coordinator:
            scale.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
        writer = jax.process_index() == 0  # across processes, one writes the files
        if writer:
            preload()  # Matplotlib's import overlaps compilation and training
        options = {
            "out_dir": out,
            "resume": args.resume,
            "overwrite": args.overwrite,
            "quiet": args.quiet or not writer,
            "progress": not args.no_progress and writer,
            "timer": stopwatch.section,
        }
        with run_lock(out) if writer else contextlib.nullcontext():  # training and files
            if args.data_parallel or args.coordinator:
                mesh = scale.data_parallel_mesh()
                params, history = scale.fit_data_parallel(cfg, mesh, **options)
            else:
                mesh = None
                params, history = train.fit(cfg, **options)
            if writer:
                devices = 1 if mesh is None else mesh.size
                train.write_jax_run(out, cfg, params, history, stopwatch, devices=devices)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    result = train.evaluate_params_file(args.params, args.seed, args.series)
    print(train.evaluation_line(result))
    if args.json:
        print(runlog.json_line(result))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    for one, many in (("seed", "--seeds"), ("learning_rate", "--learning-rates")):
        if getattr(args, one) is not None:
            flag = "--" + one.replace("_", "-")
            raise ValueError(f"sweep trains one member per value of {many}: use it, not {flag}")
    cfg = config_from_args(args)
    scale.sweep(cfg, args.seeds, args.learning_rates, args.out, progress=not args.no_progress)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if any(name in TF_IMPLEMENTATIONS for name in args.impl):
        import_tf_echo()  # fails early, naming the extra to install
    dtype = "float64" if args.float64 else "float32"
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
    train_.set_defaults(run=cmd_train)

    sweep = sub.add_parser(
        "sweep",
        help="train a population, one model per (seed, learning rate)",
        allow_abbrev=False,
    )
    add_config_args(sweep)
    sweep.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2, 3],
        metavar="N",
        help="the members' seeds (default 0 1 2 3)",
    )
    sweep.add_argument(
        "--learning-rates",
        type=float,
        nargs="+",
        default=[0.03, 0.1, 0.3, 1.0],
        metavar="X",
        help="the members' learning rates (default 0.03 0.1 0.3 1.0)",
    )
    sweep.add_argument(
        "--out",
        default="runs/sweep",
        metavar="DIR",
        help="where sweep.json, sweep.md and sweep.png go (default runs/sweep)",
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.set_defaults(run=cmd_sweep)

    ev = sub.add_parser(
        "eval", help="accuracy of saved params (any cell) on fresh data", allow_abbrev=False
    )
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
        allow_abbrev=False,
    )
    add_config_args(cmp, num_epochs=compare.EPOCHS)
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
    cmp.set_defaults(run=cmd_compare)
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
        where = f" --out {args.out}" if getattr(args, "out", None) else ""
        print(
            f"{parser.prog}: interrupted; rerun with --resume{where} to continue from the last "
            "checkpoint",
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
