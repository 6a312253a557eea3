"""The options both command lines take (``jax-echo``, ``tf-echo``): the configuration and the
training run's.

``--part N`` starts from part N of the tutorial series (``EchoConfig.for_part``); every
``EchoConfig`` field is also an option (``--cell``, ``--num-layers``, ``--keep-prob``,
``--state-size``, ...) that overrides it, validated by the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TextIO

from jax_echo.registry import BENCH_NAMES
from jax_echo.task import CELL_NAMES, PARTS, EchoConfig

RUNS = "runs"  # where runs go by default, one new directory each


def new_run_dir(name: str = "tutorial") -> Path:
    """A directory for a new run that does not exist yet: ``runs/NAME-DATE-TIME``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(RUNS, f"{name}-{stamp}")
    n = 2
    while path.exists():
        path, n = Path(RUNS, f"{name}-{stamp}-{n}"), n + 1
    return path


BENCH_DESCRIPTION = (
    "Each of --processes fresh processes times every row on the same weights and data: the "
    "first call apart (compile), one warm-up epoch, then --rounds timed epochs; the table shows "
    "the median over processes (min-max), peak memory where measurable and the loss difference "
    "from tf-graph (else jax-epoch) over the first epoch."
)
PARTS_HELP = (
    "1 tutorial RNN, 2 BasicRNNCell, 3 LSTM, 4 3-layer LSTM, 5 the same through dynamic_rnn, "
    "6 with dropout"
)


def add_config_args(
    parser: argparse.ArgumentParser,
    *,
    weights: bool = False,
    skip: tuple[str, ...] = (),
    **defaults: Any,
) -> None:
    """``--part`` and one ``--field-name`` option per ``EchoConfig`` field not in ``skip``
    (``num_epochs``: also ``--epochs``); ``defaults`` are this command's own where they are not
    the tutorial's. ``weights``: the command also takes ``add_weights_args``' options, which
    give ``--part`` its default."""
    group = parser.add_argument_group("configuration (the tutorial's defaults, or --part's)")
    group.add_argument(
        "--part",
        type=int,
        choices=sorted(PARTS),
        default=None,  # 1, unless --params gives the model (and said apart from a given 1)
        help=f"start from part N of the series: {PARTS_HELP} (default 1"
        + ("; with --params, the file's model)" if weights else ")"),
    )
    fields = [f for f in dataclasses.fields(EchoConfig) if f.name not in skip]
    for field in fields:
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
    parser.set_defaults(config_defaults=defaults, config_fields=[f.name for f in fields])


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line."""
    return {
        name: getattr(args, name) for name in args.config_fields if getattr(args, name) is not None
    }


def config_from_args(args: argparse.Namespace, *, fit_series: bool = False) -> EchoConfig:
    """``--part``'s config with the options given. ``fit_series``: unless given, the series
    length is the part's rounded down to a multiple of the batch size (at least one window), so
    any ``--batch-size`` runs."""
    part = 1 if args.part is None else args.part
    changes = {**args.config_defaults, **given_options(args)}
    if fit_series and "total_series_length" not in changes:
        base = EchoConfig.for_part(part)
        B = changes.get("batch_size", base.batch_size)
        T = changes.get("truncated_backprop_length", base.truncated_backprop_length)
        changes["total_series_length"] = max(B * T, base.total_series_length // B * B)
    return EchoConfig.for_part(part, **changes)


def add_weights_args(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--params FILE`` or ``--tf-checkpoint PATH``: the weights a command starts from."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--params",
        metavar="FILE",
        help="a params.npz from train; its config, with the options given overriding it",
    )
    group.add_argument(
        "--tf-checkpoint",
        metavar="PATH",
        help="a TF1 Saver checkpoint of the author's program (model.ckpt); the model is --part's "
        "and the options'",
    )


def add_json_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json FILE``: ``-`` is stdout, which then holds the JSON alone (``human_output``)."""
    parser.add_argument(
        "--json",
        metavar="FILE",
        help=f"write {what} as JSON to FILE (-: to stdout, alone there)",
    )


def human_output(args: argparse.Namespace) -> TextIO:
    """Where a command prints for people: stdout, or stderr when ``--json -`` takes stdout."""
    return sys.stderr if getattr(args, "json", None) == "-" else sys.stdout


# What training alone uses: evaluating saved weights takes none of them.
TRAINING_ONLY = ("seed", "num_epochs", "learning_rate", "keep_prob")


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """``eval``'s options (``jax-echo``, ``tf-echo``): the weights, their model, the fresh data."""
    add_weights_args(parser, required=True)
    add_config_args(parser, weights=True, skip=TRAINING_ONLY)
    parser.add_argument(
        "--seed", type=int, default=12345, help="seed of the fresh series (default 12345)"
    )
    parser.add_argument("--series", type=int, default=1, help="how many fresh series (default 1)")
    add_json_arg(parser, "the result")


def add_train_args(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    parser.add_argument(
        "--out",
        metavar="DIR",
        help=f"output directory (default: a new {RUNS}/partN-DATE-TIME)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run whose checkpoint is in DIR (needs --out), with its configuration; "
        "a larger --epochs trains it on",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the finished run in DIR (an unfinished one is only ever resumed)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-100-window loss lines")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def flag(field: str) -> str:
    return "--epochs" if field == "num_epochs" else "--" + field.replace("_", "-")


def add_bench_args(parser: argparse.ArgumentParser) -> None:
    """``jax-echo bench``'s own options (the configuration's are ``add_config_args``')."""
    every = ", ".join(BENCH_NAMES)
    impl_help = f"rows to time (default all: every one whose library is installed): {every}"
    names = ["all", *BENCH_NAMES]
    parser.add_argument(
        "--impl", nargs="+", default=["all"], choices=names, metavar="NAME", help=impl_help
    )
    parser.add_argument("--processes", type=int, default=3, metavar="N", help="(default 3)")
    parser.add_argument(
        "--rounds", type=int, default=5, metavar="N", help="timed epochs per process (default 5)"
    )
    parser.add_argument("--float64", action="store_true", help="compute in float64")
    parser.add_argument("--device", choices=("cpu", "gpu"), help="(default: JAX's backend)")
    cores_help = (
        "CPU cores each row may use (default all: each library's own threading); one: every "
        "library on one core (one intra-op thread, JAX pinned); both: side by side, with JAX's "
        "data-parallel row as its all-cores form"
    )
    parser.add_argument("--cores", choices=("all", "one", "both"), default="all", help=cores_help)
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the table as Markdown")
    plot_help = "write a figure of each row against the fastest (PNG)"
    parser.add_argument("--plot", metavar="FILE", help=plot_help)


def exit_program(entry: Callable[[], int]) -> NoReturn:
    """A program (``jax-echo``, ``tf-echo``): ``entry()``, then exit. ``gc.freeze()`` first spares
    the interpreter's last collection JAX's and Matplotlib's object graphs, a measurable part of
    the exit (docs/performance.md)."""
    code = entry()
    gc.freeze()
    sys.exit(code)
