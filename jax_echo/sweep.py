"""``jax-echo sweep``: a population's training, its table on stdout and its files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jax_echo import runlog
from jax_echo.io import atomic_write
from jax_echo.plot import save_figure, sweep_figure
from jax_echo.population import fit_population
from jax_echo.tables import Column, markdown
from jax_echo.task import EchoConfig
from jax_echo.train import Timer


def sweep(
    cfg: EchoConfig,
    seeds: Sequence[int],
    learning_rates: Sequence[float],
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    timed: Callable[[Timer], Timer] = lambda timer: timer,
) -> dict[str, Any]:
    """``jax-echo sweep``: ``fit_population``, then its table on stdout and ``sweep.json``,
    ``sweep.md`` and ``sweep.png`` in ``out_dir``; returns the record written to the JSON.
    ``timed`` wraps the stopwatch's sections (the command's: ``commands.interruptible``)."""
    with runlog.CompileLog() as compiles:
        stopwatch = runlog.Stopwatch(compiles)
        _, history = fit_population(
            cfg, seeds, learning_rates, progress=progress, timer=timed(stopwatch.section)
        )
        rows = sweep_table(history, cfg.num_batches)
        table = format_sweep(rows)
        print(table)
        out = Path(out_dir)
        record = {"config": cfg.to_dict(), **runlog.jax_info(), **compiles.counts()}
        with stopwatch.section("figure"):
            save_figure(sweep_figure(history), out / "sweep.png")
        with stopwatch.section("files"):
            atomic_write(out / "sweep.md", lambda f: f.write(table + "\n"), mode="w")
            record.update(seconds=stopwatch.seconds(), table=rows, history=history)
            atomic_write(out / "sweep.json", lambda f: json.dump(record, f), mode="w")
    print(f"Done: {runlog.plural(len(rows), 'member')}, {runlog.time_spent(record['seconds'])}")
    print(f"Wrote {out}/sweep.json, sweep.md, sweep.png")
    return record


def sweep_table(history: dict[str, Any], windows_per_epoch: int, threshold: float = 0.999):
    """Per member: seed, learning rate, final accuracy and windows to reach ``threshold``."""
    acc = np.asarray(history["accuracy"])  # (epochs, P)
    after = np.asarray(history["accuracy_after_first"])
    rows = []
    for i, member in enumerate(history["members"]):
        reached = np.flatnonzero(after[:, i] >= threshold)
        windows = int((reached[0] + 1) * windows_per_epoch) if reached.size else None
        rows.append(
            {
                "member": i,
                **member,
                "final_accuracy": float(acc[-1, i]),
                "final_accuracy_after_first": float(after[-1, i]),
                "windows_to_threshold": windows,
            }
        )
    return rows


def format_sweep(rows: list[dict[str, Any]]) -> str:
    columns = [
        Column("member"),
        Column("seed"),
        Column("learning rate", "{:g}"),
        Column("final accuracy", "{:.4%}"),
        Column("after window 0", "{:.4%}"),
        Column("windows to 99.9%"),
    ]
    keys = ("member", "seed", "learning_rate", "final_accuracy", "final_accuracy_after_first")
    return markdown(
        columns,
        [(*(r[k] for k in keys), r["windows_to_threshold"] or "not reached") for r in rows],
    )
