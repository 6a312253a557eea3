"""``tf-echo train | eval``: arguments onto ``tf_echo.fit``, ``write_tf_run`` and ``evaluate``.

``jax-echo``'s options and files (``history.json``'s wall time has no ``compile`` part:
TensorFlow traces inside the others). Without the ``tf`` extra a command is one ``error:`` line
naming it (exit code 2); ``--help`` does not load TensorFlow.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from jax_echo import runlog
from jax_echo.arguments import add_eval_args, add_train_args, exit_program, human_output
from jax_echo.commands import (
    interruptible,
    out_dir,
    run_command,
    train_config,
    train_interrupted,
    weights_from_args,
)
from jax_echo.evaluate import evaluation_line
from jax_echo.plot import preload
from jax_echo.registry import DYNAMIC_RNN_PARTS, TF_IMPLEMENTATIONS, tf_impl
from jax_echo.train import RunOptions
from jax_echo.trainers import import_tf_echo

IMPL_CHOICES = tuple(tf_impl(name) for name in TF_IMPLEMENTATIONS)


def cmd_train(args: argparse.Namespace) -> int:
    stopwatch = runlog.Stopwatch()
    with stopwatch.section("imports"):
        runlog.import_tensorflow_quietly()
        tf_echo = import_tf_echo()  # the tf extra, or one line naming it
    out = args.out = out_dir(args, f"tf-part{args.part or 1}")
    cfg = train_config(args)
    preload()  # Matplotlib's import overlaps training

    def finish(params, history):  # while the run still holds the directory
        tf_echo.write_tf_run(out, cfg, params, history, args.impl, args.part or 1, stopwatch)

    options = RunOptions(
        out_dir=out,
        resume=args.resume,
        overwrite=args.overwrite,
        quiet=args.quiet,
        progress=not args.no_progress,
        timer=interruptible(stopwatch.section),
        finish=finish,
    )
    tf_echo.fit(cfg, args.impl, options, dynamic=args.part in DYNAMIC_RNN_PARTS)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    runlog.import_tensorflow_quietly()
    tf_echo = import_tf_echo()  # the tf extra, or one line naming it
    cfg, params, source, path = weights_from_args(args)
    result = tf_echo.evaluate(
        params, cfg, args.impl, args.seed, args.series, source=source, path=path, part=args.part
    )
    print(evaluation_line(result), file=human_output(args))
    if args.json:
        runlog.write_json(result, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tf-echo",
        description="The echo RNN of the classic tutorial series, in TensorFlow "
        "(needs the tf extra: pip install 'jax-echo[tf]').",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="the tutorial's training run", allow_abbrev=False)
    add_train_args(train)
    train.add_argument(
        "--impl",
        choices=IMPL_CHOICES,
        default="graph",
        help="graph: the author's TF1 session.run loop (default; dynamic_rnn for --part 5 and "
        "6); function[-epoch][-xla]: TF2 tf.function per window or per epoch, optionally XLA",
    )
    train.set_defaults(run=cmd_train, interrupted=train_interrupted)

    ev = sub.add_parser(
        "eval",
        help="accuracy of saved weights (a params file, a TF1 checkpoint), computed by "
        "TensorFlow: jax-echo eval's numbers",
        allow_abbrev=False,
    )
    add_eval_args(ev)
    ev.add_argument(
        "--impl",
        choices=IMPL_CHOICES,
        default="graph",
        help="the program that predicts (default graph: the author's, which restores a "
        "--tf-checkpoint with its Saver)",
    )
    ev.set_defaults(run=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(parser.prog, args, args.run, getattr(args, "interrupted", None))


def run() -> NoReturn:
    exit_program(main)
