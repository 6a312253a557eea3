"""The accuracy of trained weights on fresh data: ``jax-echo eval``'s and ``tf-echo eval``'s
numbers (``evaluate_params``, ``evaluate_params_file``) and their one-line form."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from jax_echo import model
from jax_echo.cells import Params, params_from_dict
from jax_echo.io import load_params
from jax_echo.task import EchoConfig, eval_data, prediction_accuracies


def evaluate_params(
    params: Params | dict,
    cfg: EchoConfig,
    seed: int = 12345,
    series: int = 1,
    *,
    source: str = "params",
    path: str | os.PathLike | None = None,
    predict_epoch: Callable[[Any], Any] | None = None,
    implementation: str = "jax",
) -> dict[str, Any]:
    """The accuracy of ``params`` on ``series`` fresh series from ``seed`` (``task.eval_data``:
    a stream no training epoch draws from), overall and after each series' first window.

    ``predict_epoch(x_BxL) -> (N, B, T)`` predicts with another implementation's copy of the
    weights (``tf-echo eval``: TensorFlow's), named ``implementation``; by default
    ``model.predict_epoch``. ``source`` ("params", "tf-checkpoint") and ``path`` say where the
    weights came from. The result is what ``jax-echo eval --json FILE`` writes.
    """
    if series < 1:
        raise ValueError(f"evaluation needs at least one series, got series={series}")
    if predict_epoch is None:
        predict_epoch = functools.partial(
            model.predict_epoch, params_from_dict(params, cfg), cfg=cfg
        )
    data = (eval_data(cfg, seed, i) for i in range(series))
    accs = np.stack([prediction_accuracies(np.asarray(predict_epoch(x)), y) for x, y in data])
    return {
        "params": None if path is None else os.fspath(path),
        "source": source,
        "implementation": implementation,
        "cell": cfg.cell,
        "num_layers": cfg.num_layers,
        "series": series,
        "seed": seed,
        "accuracy": float(accs.mean()),
        "accuracy_after_first": float(accs[:, 1:].mean()) if accs.shape[1] > 1 else float("nan"),
    }


def evaluate_params_file(
    path: str | os.PathLike, seed: int = 12345, series: int = 1
) -> dict[str, Any]:
    """``evaluate_params`` of a params file (any cell), with its config."""
    params, cfg = load_params(path)
    return evaluate_params(params, cfg, seed, series, source="params", path=path)


def evaluation_line(result: dict[str, Any]) -> str:
    """``evaluate_params``' result in one line."""
    return (
        f"{result['params']} ({result['cell']}, {result['num_layers']} layer(s); "
        f"{result['implementation']}): accuracy {result['accuracy']:.4%} over "
        f"{result['series']} fresh series ({result['accuracy_after_first']:.4%} after each "
        "series' first window)"
    )
