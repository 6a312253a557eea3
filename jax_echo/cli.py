"""Command line: ``jax-echo train | eval | compare | sweep``.

Every ``EchoConfig`` field is an option (``--state-size``, ``--learning-rate``, ...); the parser
maps them onto the dataclass, which validates them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jax_echo.compare import add_compare_args, cmd_compare
from jax_echo.task import EchoConfig, Params, epoch_data, eval_data

DEFAULT_OUT = "runs/tutorial"


# --- Shared with tf-echo ---------------------------------------------------------------------


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` option per ``EchoConfig`` field (plus ``--epochs``)."""
    group = parser.add_argument_group("configuration (tutorial defaults)")
    for field in dataclasses.fields(EchoConfig):
        flags = [f"--{field.name.replace('_', '-')}"]
        if field.name == "num_epochs":
            flags.insert(0, "--epochs")
        group.add_argument(
            *flags,
            dest=field.name,
            type=type(field.default),
            default=field.default,
            metavar="N" if field.type == "int" else "X",
            help=f"(default {field.default})",
        )


def config_from_args(args: argparse.Namespace) -> EchoConfig:
    return EchoConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(EchoConfig)})


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


def write_run(
    out: str | Path,
    cfg: EchoConfig,
    params: Params,
    history: dict[str, Any],
    run_info: dict[str, Any],
    predict_last_window: Callable[[Params, Any], Any],
) -> None:
    """Writes ``params.npz``, ``history.json`` and ``echo.png`` (the tutorial's figure) to ``out``.

    ``predict_last_window(params, x_BxL)`` gives the predictions (B, T) of the last window of an
    epoch's series, state carried; it is the only implementation-specific part.
    """
    from jax_echo.plot import echo_figure, save_figure
    from jax_echo.train import atomic_write, save_params

    out = Path(out)
    save_params(out / "params.npz", params, cfg)
    record = {"config": cfg.to_dict(), **run_info, "history": history}
    atomic_write(out / "history.json", lambda f: json.dump(record, f, indent=1), mode="w")

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
        title=f"{run_info.get('implementation', '')}: epoch {last}, last window",
    )
    save_figure(fig, out / "echo.png")


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
    import jax

    device = jax.devices()[0]
    return {
        "implementation": "jax",
        "jax_version": jax.__version__,
        "device": f"{device.platform}: {device.device_kind}",
        **machine_info(),
    }


def cmd_train(args: argparse.Namespace) -> int:
    import jax

    from jax_echo import scale
    from jax_echo.model import predict_epoch
    from jax_echo.train import fit

    cfg = config_from_args(args)
    if args.coordinator:
        scale.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    mesh = scale.data_parallel_mesh() if args.data_parallel or args.coordinator else None
    writer = jax.process_index() == 0  # across processes, one writes the files
    t0 = time.perf_counter()
    params, history = fit(
        cfg,
        out_dir=args.out,
        resume=args.resume,
        quiet=args.quiet or not writer,
        progress=not args.no_progress and writer,
        mesh=mesh,
    )
    if not writer:
        return 0
    info = {
        **_jax_info(),
        "wall_seconds": time.perf_counter() - t0,
        "devices": 1 if mesh is None else mesh.size,
        "processes": jax.process_count(),
    }
    write_run(
        args.out, cfg, params, history, info, lambda p, x: np.asarray(predict_epoch(p, x, cfg))[-1]
    )
    print(summary_line(history))
    print(f"Wrote {args.out}/params.npz, history.json, echo.png")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from jax_echo.model import window_accuracies
    from jax_echo.train import load_params

    params, cfg = load_params(args.params)
    accs = np.stack(
        [
            np.asarray(window_accuracies(params, *eval_data(cfg, args.seed, i), cfg))
            for i in range(args.series)
        ]
    )
    result = {
        "params": str(args.params),
        "series": args.series,
        "seed": args.seed,
        "accuracy": float(accs.mean()),
        "accuracy_after_first": float(accs[:, 1:].mean()),
    }
    print(
        f"{args.params}: accuracy {result['accuracy']:.4%} over {args.series} fresh series "
        f"({result['accuracy_after_first']:.4%} after each series' first window)"
    )
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from jax_echo import scale
    from jax_echo.train import atomic_write

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
    scale.plot_sweep(history, out / "sweep.png")
    print(f"Wrote {out}/sweep.json, sweep.md, sweep.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jax-echo", description="The echo RNN of the classic TensorFlow tutorial, in JAX."
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

    ev = sub.add_parser("eval", help="accuracy of saved params on fresh data")
    ev.add_argument("--params", required=True, metavar="FILE", help="a params.npz from train")
    ev.add_argument("--seed", type=int, default=12345, help="seed of the fresh series")
    ev.add_argument("--series", type=int, default=1, help="how many fresh series")
    ev.add_argument("--json", action="store_true", help="also print the result as JSON")
    ev.set_defaults(run=cmd_eval)

    cmp = sub.add_parser(
        "compare",
        help="train JAX and TensorFlow from the same weights and data, side by side",
        description="Needs the tf extra (pip install 'jax-echo[tf]'). Times are the mean per "
        "window over epochs after the first (which includes compilation).",
    )
    add_config_args(cmp)
    add_compare_args(cmp)
    cmp.set_defaults(run=lambda args: cmd_compare(args, config_from_args(args)), num_epochs=3)
    return parser


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    from jax_echo.train import CheckpointError, TrainingDivergedError

    parser = parser or build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (CheckpointError, TrainingDivergedError, ValueError, RuntimeError, OSError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"{parser.prog}: interrupted; rerun with --resume to continue from the last checkpoint",
            file=sys.stderr,
        )
        return 130
