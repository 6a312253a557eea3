"""The options both command lines take (``jax-echo``, ``tf-echo``): the configuration and the
training run's.

``--part N`` starts from part N of the tutorial series (``EchoConfig.for_part``); every
``EchoConfig`` field is also an option (``--cell``, ``--num-layers``, ``--keep-prob``,
``--state-size``, ...) that overrides it, validated by the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from jax_echo import runlog
from jax_echo.cells import Params, params_from_dict
from jax_echo.io import (
    CHECKPOINT,
    HISTORY,
    RUN_RECORD,
    CheckpointError,
    OptionError,
    checkpoint_config,
    checkpoint_progress,
    load_params,
    tf_checkpoint_path,
)
from jax_echo.registry import MissingExtraError
from jax_echo.task import CELL_NAMES, PARTS, EchoConfig
from jax_echo.tf_checkpoint import params_from_tf_checkpoint, tf1_variable_names
from jax_echo.train import TrainingDivergedError

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
    """``--part`` and one ``--field-name`` option per ``EchoConfig`` field (plus ``--epochs``);
    ``defaults`` are this command's own (shown in ``--help``) where they are not the tutorial's.

    ``weights``: the command also takes ``--params`` or ``--tf-checkpoint`` (``add_weights_args``),
    so ``--part`` has no default (``weights_from_args`` checks a given one against the weights).
    ``skip``: fields that get no option (the command uses the flag for something else)."""
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


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line."""
    return {
        name: getattr(args, name) for name in args.config_fields if getattr(args, name) is not None
    }


def config_from_args(args: argparse.Namespace, *, fit_series: bool = False) -> EchoConfig:
    """``--part``'s config with the options given. ``fit_series``: unless given, the series
    length is the part's rounded down to a multiple of the batch size (at least one window), so
    any ``--batch-size`` runs."""
    part = 1 if args.part is None else args.part
    changes = {**args.config_defaults, **_given(args)}
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
    """``--json FILE``, the same in every command: ``-`` is stdout, which then holds the JSON
    alone (the command's other output goes to stderr)."""
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
    """``eval``'s options (``jax-echo``, ``tf-echo``): the weights, their model, the fresh data.
    The options of training alone are not taken (``TRAINING_ONLY``)."""
    add_weights_args(parser, required=True)
    add_config_args(parser, weights=True, skip=TRAINING_ONLY)
    parser.add_argument(
        "--seed", type=int, default=12345, help="seed of the fresh series (default 12345)"
    )
    parser.add_argument("--series", type=int, default=1, help="how many fresh series (default 1)")
    add_json_arg(parser, "the result")


class Weights(NamedTuple):
    """What ``--params`` / ``--tf-checkpoint`` name, and the config the command runs."""

    cfg: EchoConfig
    params: Params | None  # None: neither was given (the command's own initial weights)
    source: str | None  # "params" or "tf-checkpoint"
    path: str | None


def weights_from_args(args: argparse.Namespace) -> Weights:
    """The config and the weights of ``add_weights_args``' options.

    ``--params FILE``: the file's weights and config, with the config options given (and the
    command's defaults) overriding it; a given ``--part`` must be a program of the file's model.
    ``--tf-checkpoint PATH``: the checkpoint of ``--part``'s program (and the options'), read with
    its TF1 names (``params_from_tf_checkpoint``, the ``tf`` extra). A mismatch is a
    ``ValueError`` naming the file.
    """
    if args.params is not None:
        params, saved = load_params(args.params)  # a run's directory, params or checkpoint
        cfg = dataclasses.replace(saved, **{**args.config_defaults, **_given(args)})
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


def add_train_args(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    parser.add_argument(
        "--out",
        metavar="DIR",
        help=f"output directory (default: a new {runlog.RUNS}/partN-DATE-TIME)",
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


def out_dir(args: argparse.Namespace, name: str | None = None) -> str:
    """``--out``, or a new directory for this run, named ``name`` (default ``partN``, N the
    part of the series); ``--resume`` must name the run."""
    if args.out is not None:
        return args.out
    if getattr(args, "resume", False):
        raise CheckpointError("--resume needs --out DIR: the directory of the run to continue")
    return str(runlog.new_run_dir(name or f"part{args.part or 1}"))


def flag(field: str) -> str:
    return "--epochs" if field == "num_epochs" else "--" + field.replace("_", "-")


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
    given = _given(args)
    if args.part is not None:
        base = EchoConfig.for_part(args.part, **given)
        given |= {k: v for k, v in base.to_dict().items() if k not in given and k != "num_epochs"}
    for name, value in given.items():
        if name != "num_epochs" and getattr(saved, name) != value:
            option = "--part" if name not in _given(args) else flag(name)
            shown = args.part if option == "--part" else value
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
        done, total = checkpoint_progress(checkpoint)
    except CheckpointError as e:
        return f"the checkpoint cannot be resumed ({e})"
    if Path(out, RUN_RECORD).exists():
        return f"the run in {out} had finished ({done} epochs)"
    return (
        f"rerun with --resume --out {out} to continue from the last checkpoint "
        f"({done} of {total} epochs done)"
    )


# A user's mistake: one line and exit code 2. Anything else keeps its traceback.
USER_ERRORS = (CheckpointError, TrainingDivergedError, MissingExtraError, ValueError, OSError)


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parses ``argv`` and runs the chosen command (``args.run``) for either command line: a
    user's mistake is one ``error:`` line and exit code 2; an interrupt is one line with the
    command's own advice (``args.interrupted``), exit code 130."""
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as e:
        message = e.command_line() if isinstance(e, OptionError) else str(e)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        advice = getattr(args, "interrupted", None)
        print(
            f"{parser.prog}: interrupted" + (f"; {advice(args)}" if advice else ""),
            file=sys.stderr,
        )
        return 130
