"""``jax-echo compare``: every implementation trained from the same weights on the same data.

The trainers are ``trainers.make_trainer``'s; this module runs them side by side and reports the
time per window, the accuracy and the largest loss difference from the author's TF1 program.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jax_echo.cells import init_params
from jax_echo.io import atomic_write
from jax_echo.plot import loss_curves, save_figure
from jax_echo.registry import REFERENCE
from jax_echo.tables import Column, markdown
from jax_echo.task import EchoConfig, epoch_data, prediction_accuracies
from jax_echo.trainers import block, make_trainer

EPOCHS = 3  # timed epochs per implementation, unless the command line says otherwise


def compare(
    cfg: EchoConfig,
    names: list[str],
    windows: int | None = None,
    *,
    dtype=np.float32,
    part: int | None = None,
) -> dict[str, Any]:
    """Trains every implementation from the same weights on the same data.

    Each implementation first trains one untimed epoch (tracing and compilation, reported as
    ``first_epoch_seconds``) and is then set back to the initial weights; it then trains
    ``cfg.num_epochs`` timed epochs (with ``windows``, each epoch's series is just long enough for
    that many windows). Returned per implementation: the mean seconds per window, the final
    accuracy on the windows after the first, and the largest per-window loss difference from the
    TF1 reference. ``dtype=np.float64`` runs everything in float64
    (JAX with ``jax_enable_x64``), where the trajectories agree to about 1e-10.
    """
    with jax.enable_x64(np.dtype(dtype) == np.float64):
        return _compare(cfg, names, windows, np.dtype(dtype), part)


def _compare(cfg, names, windows, dtype, part) -> dict[str, Any]:
    params = init_params(cfg, dtype=dtype)
    if windows is not None:
        T = cfg.truncated_backprop_length
        length = windows * T * cfg.batch_size
        cfg = dataclasses.replace(cfg, total_series_length=length)
    data = [epoch_data(cfg, e) for e in range(cfg.num_epochs)]
    results: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        trainer = make_trainer(name, cfg, params, dtype, part=part)
        try:
            results[name] = _train_timed(trainer, data, cfg, t0)
        finally:
            trainer.close()
    reference = results.get(REFERENCE)
    for result in results.values():
        result["max_loss_diff_vs_tf1"] = (
            float(np.max(np.abs(np.subtract(result["losses"], reference["losses"]))))
            if reference is not None
            else None
        )
    return {"config": cfg.to_dict(), "dtype": str(dtype), "part": part, "results": results}


def _train_timed(trainer, data, cfg: EchoConfig, t0: float) -> dict[str, Any]:
    """One untimed epoch (compilation; ``first_epoch_seconds`` counts from ``t0``, before the
    trainer was built), back to the initial weights, then every epoch of ``data`` timed."""
    start = trainer.get_state()
    block(trainer.train_epoch(*data[0], epoch=0))  # trace and compile, untimed
    first_epoch_seconds = time.perf_counter() - t0
    trainer.set_state(*start)
    losses, seconds = [], []
    for epoch, (x, y) in enumerate(data):
        t0 = time.perf_counter()
        losses.append(block(trainer.train_epoch(x, y, epoch=epoch)))
        seconds.append(time.perf_counter() - t0)
    accs = prediction_accuracies(trainer.predict_epoch(data[-1][0]), data[-1][1])
    return {
        "us_per_window": 1e6 * float(np.mean(seconds)) / cfg.num_batches,
        "first_epoch_seconds": first_epoch_seconds,
        "accuracy_after_first": float(accs[1:].mean()) if len(accs) > 1 else float("nan"),
        "losses": np.concatenate(losses).astype(float).tolist(),
        "params": {k: v.tolist() for k, v in trainer.params.items()},
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    columns = [
        Column("implementation", right=False),
        Column("us / window", "{:.1f}"),
        Column("first epoch s", "{:.2f}"),
        Column("accuracy after window 0", "{:.4%}"),
        Column(f"max loss diff vs {REFERENCE}", lambda d: "n/a" if d is None else f"{d:.2e}"),
    ]
    rows = [
        (
            name,
            r["us_per_window"],
            r["first_epoch_seconds"],
            r["accuracy_after_first"],
            r["max_loss_diff_vs_tf1"],
        )
        for name, r in report["results"].items()
    ]
    return markdown(columns, rows)


def plot_losses(report: dict[str, Any], path: str | Path) -> None:
    """An overlay of every implementation's per-window losses."""
    curves = {name: r["losses"] for name, r in report["results"].items()}
    save_figure(loss_curves(curves, "per-window loss, same weights and data"), path)


def write_json(report: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda f: json.dump(report, f), mode="w")
