"""Command line: ``jax-echo train | eval | compare | sweep | bench``: the arguments, parsed.

``--help`` and a mistyped option are answered before JAX is imported; ``commands`` then runs the
command (its exit codes and error lines are described there).
"""

from __future__ import annotations

import argparse
import functools
import importlib
from collections.abc import Sequence
from typing import NoReturn

from jax_echo.arguments import (
    BENCH_DESCRIPTION,
    RUNS,
    add_bench_args,
    add_config_args,
    add_eval_args,
    add_json_arg,
    add_train_args,
    add_weights_args,
    exit_program,
)
from jax_echo.registry import IMPLEMENTATIONS, REFERENCE

# --- jax-echo --------------------------------------------------------------------------------

RATES = (0.03, 0.1, 0.3, 1.0)  # sweep's default learning rates
COMPARE_EPOCHS = 3  # timed epochs per implementation, unless --epochs says otherwise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jax-echo",
        description="The echo RNN of the classic TensorFlow tutorial series, in JAX.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    command = functools.partial(sub.add_parser, allow_abbrev=False)

    train_ = command("train", help="the tutorial's training run")
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

    sweep = command("sweep", help="train a population, one model per (seed, learning rate)")
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
        help=f"where sweep.json, sweep.md and sweep.png go (default: a new {RUNS}/sweep-DATE-TIME)",
    )
    sweep.add_argument(
        "--overwrite", action="store_true", help="replace the sweep's results in DIR"
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")

    ev = command(
        "eval", help="accuracy of saved weights (a params file, a TF1 checkpoint) on fresh data"
    )
    add_eval_args(ev)

    cmp = command(
        "compare",
        help="train JAX and TensorFlow from the same weights and data, side by side",
        description="Needs the tf extra (pip install 'jax-echo[tf]'). Each implementation "
        "first trains one untimed epoch (compilation), then restarts from the same weights; "
        "times are means per window over the timed epochs (default 3).",
    )
    add_config_args(cmp, weights=True, num_epochs=COMPARE_EPOCHS)
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

    bench_ = command(
        "bench",
        help="time every implementation and peer library on one configuration",
        description=BENCH_DESCRIPTION,
    )
    add_config_args(bench_, skip=("num_epochs",))  # --rounds: the timed epochs
    add_bench_args(bench_)
    return parser


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    # The commands import JAX (about a second): only once the arguments are known to be good.
    commands = importlib.import_module("jax_echo.commands")
    return commands.run_command(parser.prog, args, *commands.COMMANDS[args.command])


def run() -> NoReturn:
    exit_program(main)
