"""The options both command lines take (``jax-echo``, ``tf-echo``): the configuration and the
training run's.

``--part N`` starts from part N of the tutorial series (``EchoConfig.for_part``); every
``EchoConfig`` field is also an option (``--cell``, ``--num-layers``, ``--keep-prob``,
``--state-size``, ...) that overrides it, validated by the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from jax_echo import runlog
from jax_echo.io import CheckpointError
from jax_echo.task import CELL_NAMES, PARTS, EchoConfig


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
