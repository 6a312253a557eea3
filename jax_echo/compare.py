"""``jax-echo compare``: every implementation trained from the same weights on the same data.

Each row is timed by ``timing.session``; the report has the time per window, the accuracy, and
the largest loss and weight differences from the author's TF1 program (``registry.REFERENCE``);
``differences`` lists the implementations beyond a tolerance.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jax_echo import timing
from jax_echo.cells import Params, init_params, params_from_dict
from jax_echo.plot import compare_figure, save_figure
from jax_echo.registry import REFERENCE, row
from jax_echo.tables import Column, markdown
from jax_echo.task import EchoConfig, epoch_data, prediction_accuracies


def compare(
    cfg: EchoConfig,
    names: list[str],
    windows: int | None = None,
    *,
    dtype=np.float32,
    part: int | None = None,
    params: Params | dict | None = None,
    atol: float | None = None,
) -> dict[str, Any]:
    """Trains every implementation from the same weights on the same data.

    Each implementation first trains one untimed epoch (``first_epoch_seconds``: tracing and
    compilation), is set back to the initial weights, then trains ``cfg.num_epochs`` timed epochs.

    Args:
      names: the rows to run (``registry.IMPLEMENTATIONS``).
      windows: each epoch's series just long enough for that many windows (default: ``cfg``'s).
      dtype: ``np.float64`` runs everything in float64, where the trajectories agree to ~1e-10.
      part: for TensorFlow, parts 5 and 6 run the author's ``dynamic_rnn`` program.
      params: the initial weights (``Params`` or a flat TF1-layout dict, cast to ``dtype``);
        default ``init_params(cfg)``.
      atol: a tolerance recorded in the report, for ``differences`` and ``format_table``; it
        needs the reference among ``names`` (``check_tolerance``).

    Returns:
      ``{"config", "dtype", "part", "atol", "results"}``; per implementation ``us_per_window``
      (the mean), ``first_epoch_seconds``, ``accuracy_after_first`` (the last epoch's windows
      after the first), ``losses``, ``params`` and, where the reference ran, the largest loss
      and weight differences from it, ``max_loss_diff_vs_tf1`` and ``max_abs_param_diff``.
    """
    check_tolerance(names, atol)
    dtype = np.dtype(dtype)
    if windows is not None:
        length = windows * cfg.truncated_backprop_length * cfg.batch_size
        cfg = dataclasses.replace(cfg, total_series_length=length)
    data = [epoch_data(cfg, e) for e in range(cfg.num_epochs)]
    results: dict[str, Any] = {}
    with jax.enable_x64(dtype == np.float64):
        params = init_params(cfg, dtype=dtype) if params is None else params
        params = jax.tree.map(lambda a: np.asarray(a, dtype), params_from_dict(params, cfg))
        for name in names:
            with timing.session(row(name), cfg, params, dtype, part=part) as s:
                results[name] = _train_timed(s, data)
    reference = results.get(REFERENCE)
    for result in results.values():
        result["max_loss_diff_vs_tf1"] = result["max_abs_param_diff"] = None
        if reference is not None:
            result["max_loss_diff_vs_tf1"] = _max_abs_diff(result["losses"], reference["losses"])
            result["max_abs_param_diff"] = max(
                _max_abs_diff(value, reference["params"][name])
                for name, value in result["params"].items()
            )
    report = {"config": cfg.to_dict(), "dtype": str(dtype), "part": part, "results": results}
    return {**report, "atol": atol}


def check_tolerance(names: list[str], atol: float | None = None) -> None:
    """Refuses (``ValueError``) a tolerance that is negative, or without the reference to hold
    the implementations to."""
    if atol is None:
        return
    if not atol >= 0:
        raise ValueError(f"--atol must be a number >= 0, got {atol}")
    if REFERENCE not in names:
        raise ValueError(
            f"--atol holds every implementation to the reference {REFERENCE}: add it to --impl"
        )


def _max_abs_diff(a: Any, b: Any) -> float:
    """max |a - b|; NaN where either is not finite (a NaN never compares within a tolerance)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    return float(np.max(np.abs(a - b)))


def differences(report: dict[str, Any]) -> list[str]:
    """One line per implementation whose loss or weights differ from the reference's by more
    than the report's ``atol``, saying by how much; none without a tolerance."""
    atol = report.get("atol")
    if atol is None:
        return []
    lines = []
    for name, r in report["results"].items():
        diffs = {"loss": r["max_loss_diff_vs_tf1"], "weights": r["max_abs_param_diff"]}
        # not d <= atol: a NaN is beyond too
        by = ", ".join(f"{what} by {d:.3e}" for what, d in diffs.items() if not d <= atol)
        if by:
            lines.append(f"{name} differs from {REFERENCE} beyond --atol {atol:g}: {by}")
    return lines


def _train_timed(s: timing.Session, data: list) -> dict[str, Any]:
    """One untimed epoch (compilation), back to the first weights, then ``data``'s epochs timed."""
    start = s.trainer.get_state()
    s.epoch(*data[0], epoch=0)  # trace and compile, untimed
    first_epoch_seconds = s.built_seconds + s.first_call_seconds
    s.trainer.set_state(*start)
    timed = [timing.seconds(functools.partial(s.epoch, x, y, e)) for e, (x, y) in enumerate(data)]
    losses, seconds = zip(*timed, strict=True)
    accs = prediction_accuracies(s.trainer.predict_epoch(data[-1][0]), data[-1][1])
    return {
        "us_per_window": 1e6 * float(np.mean(seconds)) / s.cfg.num_batches,
        "first_epoch_seconds": first_epoch_seconds,
        "accuracy_after_first": float(accs[1:].mean()) if len(accs) > 1 else float("nan"),
        "losses": np.concatenate(losses).astype(float).tolist(),
        "params": {k: v.tolist() for k, v in s.trainer.params.items()},
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table; with a tolerance, a column says who is within it."""
    columns = {  # a result's key: its column (the diffs empty where the reference did not run)
        "us_per_window": Column("us / window", "{:.1f}"),
        "first_epoch_seconds": Column("first epoch s", "{:.2f}"),
        "accuracy_after_first": Column("accuracy after window 0", "{:.4%}"),
        "max_loss_diff_vs_tf1": Column(f"max loss diff vs {REFERENCE}", "{:.2e}"),
        "max_abs_param_diff": Column(f"max weight diff vs {REFERENCE}", "{:.2e}"),
    }
    rows = [(name, *(r[k] for k in columns)) for name, r in report["results"].items()]
    header = [Column("implementation", right=False), *columns.values()]
    atol = report.get("atol")
    if atol is not None:
        header.append(Column(f"within --atol {atol:g}", right=False))
        rows = [(*row, "yes" if row[-2] <= atol and row[-1] <= atol else "NO") for row in rows]
    return markdown(header, rows)


def plot_losses(report: dict[str, Any], path: str | Path) -> None:
    """Every implementation's per-window losses, and their differences from the reference's
    (``REFERENCE`` where it ran, else the first implementation): ``plot.compare_figure``."""
    curves = {name: r["losses"] for name, r in report["results"].items()}
    reference = REFERENCE if REFERENCE in curves else next(iter(curves))
    title = f"per-window loss, same weights and data ({report['dtype']})"
    save_figure(compare_figure(curves, reference, title), path)
