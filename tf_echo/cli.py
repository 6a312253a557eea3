"""``tf-echo train``: the tutorial run in TensorFlow, with the options and files of ``jax-echo``.

``history.json`` has ``jax-echo``'s breakdown of the wall time (imports, files, figure, other)
without ``compile``: TensorFlow builds and traces its programs inside the other parts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from jax_echo import cli as jax_cli
from jax_echo.io import run_lock
from jax_echo.plot import preload
from jax_echo.registry import DYNAMIC_RNN_PARTS, TF_IMPLEMENTATIONS, tf_impl

# Not tf_echo.IMPLEMENTATIONS: importing tf_echo loads TensorFlow, too slow for --help.
IMPL_CHOICES = tuple(tf_impl(name) for name in TF_IMPLEMENTATIONS)


def cmd_train(args: argparse.Namespace) -> int:
    stopwatch = jax_cli.Stopwatch()
    with stopwatch.section("imports"):
        import tf_echo

    preload()  # Matplotlib's import overlaps training
    cfg = jax_cli.config_from_args(args)
    dynamic = args.part in DYNAMIC_RNN_PARTS
    with run_lock(args.out):  # training and files
        params, history = tf_echo.fit(
            cfg,
            args.impl,
            out_dir=args.out,
            resume=args.resume,
            quiet=args.quiet,
            progress=not args.no_progress,
            dynamic=dynamic,
            timer=stopwatch.section,
        )
        _write_tf_run(args, cfg, params, history, dynamic, stopwatch)
    return 0


def _write_tf_run(args, cfg, params, history, dynamic, stopwatch) -> None:
    import tensorflow as tf

    import tf_echo

    info = {
        "implementation": f"tf-{args.impl}",
        "part": args.part,
        "tensorflow_version": tf.__version__,
        "device": "cpu" if not tf.config.list_physical_devices("GPU") else "gpu",
        **jax_cli.machine_info(),
    }

    def predict_last_window(params, x):
        trainer = tf_echo.make_trainer(args.impl, cfg, params, dynamic=dynamic)
        try:
            return trainer.predict_epoch(x)[-1]
        finally:
            trainer.close()

    jax_cli.write_run(args.out, cfg, params, history, info, predict_last_window, stopwatch)
    print(jax_cli.summary_line(history))
    print(f"Wrote {args.out}/params.npz, history.json, echo.png")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tf-echo", description="The echo RNN of the classic tutorial series, in TensorFlow."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="the tutorial's training run")
    jax_cli.add_train_args(train)
    train.add_argument(
        "--impl",
        choices=IMPL_CHOICES,
        default="graph",
        help="graph: the author's TF1 session.run loop (default; dynamic_rnn for --part 5 and "
        "6); function[-epoch][-xla]: TF2 tf.function per window or per epoch, optionally XLA",
    )
    train.set_defaults(run=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return jax_cli.main(argv, build_parser())


def run() -> NoReturn:
    jax_cli.run(main)
