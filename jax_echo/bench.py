"""``jax-echo bench``: every implementation and peer library timed on one configuration.

Each of ``processes`` rounds runs the rows in fresh processes (``python -m jax_echo.bench --worker
SPEC OUT``; Keras on TensorFlow in one of its own), every row from the same initial weights and
timed by ``timing.measure``. A row's number is the median over processes of each one's median
round, per window, with their min-max.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jax_echo import policy, registry, runlog, timing, xla_flags
from jax_echo.io import atomic_write
from jax_echo.plot import bench_figure, save_figure
from jax_echo.registry import Row, row
from jax_echo.tables import Column, markdown
from jax_echo.task import EchoConfig

VERSIONS = ("jax", "jaxlib", "optax", "numpy", "tensorflow", "torch", "flax", "keras")
CORES = ("all", "one")  # every core (each library's default threads), or one core for all
say = functools.partial(print, "jax-echo bench:", file=sys.stderr, flush=True)


def rows(names: Sequence[str], warn: Callable[[str], None] = say) -> list[Row]:
    """The rows of ``names`` (``all``: every one whose library is installed; ``warn`` gets one
    line per library left out). A named row whose library is missing is a ``MissingExtraError``
    naming the extra to install."""
    every = "all" in names
    found, left_out = [], {}
    for r in map(row, registry.BENCH_NAMES if every else dict.fromkeys(names)):
        if (reason := r.missing()) is None:
            found.append(r)
        elif every:
            left_out.setdefault(reason, []).append(r.name)
        else:
            raise registry.MissingExtraError(f"{r.name}: {reason}")
    for reason, skipped in left_out.items():
        warn(f"left out {', '.join(skipped)}: {reason}")
    return found


def run_worker(spec: dict[str, Any], out: str) -> int:
    """``python -m jax_echo.bench --worker SPEC OUT``: the spec's rows, results to ``OUT``."""
    chosen = [row(name) for name in spec["rows"]]
    if spec["one_core"]:
        timing.one_core(set().union(*(r.libraries for r in chosen)))
    cfg, dtype = EchoConfig(**spec["config"]), np.dtype(spec["dtype"])
    results = []
    with jax.enable_x64(dtype == np.float64):
        for r in chosen:
            tag = f"process {spec['process']}/{spec['processes']}: {r.name}"
            say(f"{tag} ...")
            try:
                result = timing.measure(r, cfg, dtype, spec["device"], spec["part"], spec["rounds"])
            except ValueError as e:  # a peer that cannot run this config says what
                say(f"{tag}: cannot run this configuration")
                result = {"implementation": r.name, "left_out": str(e)}
            else:
                us, first = result["us_per_window"], result["compile_seconds"]
                say(f"{tag}: {us:.1f} us/window, first call {first:.2f} s")
                result["small_loops"] = xla_flags.SMALL_LOOPS  # whether XLA had the option
                result["cores_allowed"] = policy.cpu_cores()
            results.append(result)
            Path(out).write_text(json.dumps(results))  # kept if a later row crashes the process
    return 0


def _worker(spec: dict[str, Any], env: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    """The rows a worker process finished, and its exit code."""
    with tempfile.TemporaryDirectory(prefix="jax-echo-bench-") as tmp:
        out = Path(tmp, "rows.json")
        command = [sys.executable, "-m", "jax_echo.bench", "--worker", json.dumps(spec), str(out)]
        code = subprocess.run(command, env={**os.environ, **env}).returncode
        return (json.loads(out.read_text()) if out.exists() else []), code


def _version(name: str) -> str | None:
    """The installed version of package ``name`` (TensorFlow: or of ``tensorflow-cpu``)."""
    for dist in (name, f"{name}-cpu") if name == "tensorflow" else (name,):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    return None


def commit() -> dict[str, Any]:
    """The checkout's commit and whether tracked files changed (``None`` outside a checkout)."""

    def git(*args: str) -> bytes:
        here = Path(__file__).parent
        return subprocess.run(["git", *args], cwd=here, capture_output=True, check=True).stdout

    try:
        sha = git("rev-parse", "HEAD").decode().strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.CalledProcessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha, "dirty": dirty}


def bench(
    cfg: EchoConfig,
    names: Sequence[str],
    *,
    processes: int = 3,
    rounds: int = 5,
    part: int = 1,
    dtype: str = "float32",
    device: str | None = None,
    cores: Sequence[str] = ("all",),
    warn: Callable[[str], None] = say,
) -> dict[str, Any]:
    """Times ``names`` on ``cfg`` in ``processes`` fresh processes each; the JSON report.

    Returns ``{"config", "settings", "versions", "machine", "commit", "reference", "results",
    "fastest", "failures"}``. ``results`` has one dict per row that ran: ``implementation``,
    ``library``, ``form``, ``us_per_window`` (median over processes) with ``us_per_window_min`` /
    ``_max``, ``compile_seconds``, ``peak_mib`` (``None`` where not measured; ``peak_what`` says),
    ``final_loss``, ``max_abs_loss_diff`` and ``small_loops`` (whether XLA:CPU's small-loop option
    was in effect: on a CPU, TensorFlow's XLA rows run once more without it, as
    ``NAME-no-small-loops``). ``fastest``: each library's fastest row, per cores setting.
    ``failures``: worker processes that exited with an error (the rows they finished are kept).

    ``cores``: "all" (each library's own threads on every core), "one" (every library on one
    core, ``timing.one_core``), or both, each row then run under each (``cores`` in its
    result; JAX's all-cores form is then also its data-parallel row, on a CPU).
    """
    if processes < 1 or rounds < 1:
        raise ValueError(f"processes and rounds must be at least 1, got {processes}, {rounds}")
    if not cores or set(cores) - set(CORES):
        raise ValueError(f"cores must be some of {', '.join(CORES)}, got {cores}")
    device = device or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    settings = {"part": part, "dtype": dtype, "device": device, "processes": processes}
    settings |= {"rounds": rounds, "cores": list(cores)}
    groups = _groups(rows(names, warn), device, cores)
    per_row: dict[tuple[str, str], list[dict[str, Any]]] = {}  # the processes' results of a row
    left_out, failures = {}, []
    for k in range(1, processes + 1):
        for (label, core), (group, env) in groups.items():
            spec = {**settings, "config": cfg.to_dict(), "rows": group, "process": k}
            spec["one_core"] = core == "one"
            finished, code = _worker(spec, {**env, "TF_CPP_MIN_LOG_LEVEL": "2"})
            if code != 0:
                lost = [n for n in group if n not in {f["implementation"] for f in finished}]
                failures.append(f"process {k} ({label} group, {core} cores) exited {code}")
                warn(f"{failures[-1]}; rows it did not finish: {', '.join(lost) or 'none'}")
            for result in finished:
                if label == xla_flags.SUFFIX:  # the group without the option
                    result["implementation"] += xla_flags.SUFFIX
                if "left_out" in result:
                    left_out[result["implementation"]] = result["left_out"]
                else:
                    per_row.setdefault((result["implementation"], core), []).append(result)
    for name, reason in left_out.items():
        warn(f"left out {name}: {reason}")
    first_cores = [name for name, core in per_row if core == cores[0]]
    reference = next(
        (n for n in (registry.REFERENCE, registry.FALLBACK_REFERENCE) if n in first_cores), None
    )
    results = []
    for (name, core), runs in per_row.items():
        r, first, us = row(name), runs[0], [p["us_per_window"] for p in runs]
        ref_run = per_row.get((reference, core), [None])[0]
        results.append(
            {
                "implementation": name,
                "library": r.library,
                "form": r.form,
                "per_epoch": r.per_epoch,
                "cores": core,
                "us_per_window": float(np.median(us)),
                "us_per_window_min": float(min(us)),
                "us_per_window_max": float(max(us)),
                "us_per_window_processes": us,
                "compile_seconds": float(np.median([p["compile_seconds"] for p in runs])),
                "peak_mib": None if first["peak_bytes"] is None else first["peak_bytes"] / 2**20,
                **{key: first[key] for key in ("peak_what", "final_loss")},
                "max_abs_loss_diff": _diff(r, reference, first, ref_run, cfg),
                **{key: first[key] for key in ("small_loops", "cores_allowed")},
            }
        )
    fastest = {
        core: registry.fastest({x["implementation"]: x["us_per_window"] for x in of})
        for core in cores
        if (of := [x for x in results if x["cores"] == core])
    }
    return {
        "config": cfg.to_dict(),
        "settings": settings,
        "versions": {name: _version(name) for name in VERSIONS},
        "machine": {
            **runlog.machine_info(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "jax_devices": [f"{d.platform}: {d.device_kind}" for d in jax.devices()],
        },
        "commit": commit(),
        "reference": reference,
        "results": results,
        "fastest": fastest,
        "failures": failures,
    }


def _groups(
    chosen: list[Row], device: str, cores: Sequence[str]
) -> dict[tuple[str, str], tuple[list[str], dict[str, str]]]:
    """The worker processes of one round: ``{(label, cores): (row names, environment)}``: one per
    Keras backend; on a CPU, TensorFlow's XLA rows again without the small-loop option (it slows
    them at realistic sizes), and beside one core JAX's data-parallel row on all, one device a
    core."""
    groups: dict[str, tuple[list[str], dict[str, str]]] = {}
    for r in chosen:
        label = r.backend or "jax"
        groups.setdefault(label, ([], {"KERAS_BACKEND": label}))[0].append(r.name)
    unlooped = [r.name for r in chosen if r.unlooped]
    if device == "cpu" and xla_flags.SMALL_LOOPS and unlooped:
        groups[xla_flags.SUFFIX] = (unlooped, {**xla_flags.without(), "KERAS_BACKEND": "jax"})
    out = {(label, core): group for core in cores for label, group in groups.items()}
    if device == "cpu" and set(cores) == set(CORES) and "jax-epoch" in groups.get("jax", ([],))[0]:
        out["data-parallel", "all"] = ([registry.DATA_PARALLEL], timing.cpu_devices())
    return out


def _diff(r: Row, reference: str | None, run: dict, ref_run: dict | None, cfg) -> float | None:
    """The largest first-epoch loss difference from the reference's run, where ``comparable``."""
    if ref_run is None or not registry.comparable(r, row(reference), cfg.cell, cfg.keep_prob):
        return None
    a = np.asarray(run["first_epoch_losses"])
    return float(np.max(np.abs(a - np.asarray(ref_run["first_epoch_losses"]))))


COLUMNS = {  # a result's key: its column in the table
    **{key: Column(key, right=False) for key in ("implementation", "library", "form", "cores")},
    "us_per_window": Column("us/window", "{:.1f}"),
    "spread": Column("min-max", right=False),
    "compile_seconds": Column("first call s", "{:.2f}"),
    "peak_mib": Column("peak MiB", "{:.2f}"),
    "final_loss": Column("final loss", "{:.4f}"),
    "max_abs_loss_diff": Column("max |loss diff|", "{:.1e}"),
}


def table(report: dict[str, Any]) -> str:
    """The results as a Markdown table, with what its numbers are below it (a ``cores`` column
    where the rows ran on one core and on all)."""
    s = report["settings"]
    both = len(s.get("cores", ["all"])) > 1
    keys = [key for key in COLUMNS if both or key != "cores"]
    spread = "{us_per_window_min:.1f}-{us_per_window_max:.1f}"
    results = [{**r, "spread": spread.format(**r)} for r in report["results"]]
    body = markdown([COLUMNS[k] for k in keys], [tuple(r[k] for k in keys) for r in results])
    note = (
        f"{s['dtype']} on {s['device']}: median of {s['rounds']} timed epochs per process, "
        f"median (min-max) over {s['processes']} processes.\nfirst call s: building the "
        "trainer and its first call (tracing, compilation). max |loss diff|: first epoch vs "
        f"{report['reference']} on the same weights (blank: the cell's math is not TF1's).\n"
        "peak MiB: XLA's buffers of jax-epoch's compiled epoch, torch.cuda's peak on a GPU; "
        "blank: not measured (a process-wide peak would mix the rows)."
    )
    if both:
        note += (
            "\ncores: one: the worker process pinned to one core, PyTorch's and TensorFlow's "
            "intra-op threads 1 (the framework); all: each library's own threads on every core "
            "(the threading), JAX's data-parallel row its form for all cores."
        )
    return f"{body}\n\n{note}"


def write(report: dict[str, Any], json_path=None, markdown_path=None, plot_path=None) -> None:
    """The report's files, each written atomically."""
    if json_path:
        runlog.write_json(report, json_path, indent=1)
    if markdown_path:
        text = table(report) + "\n"
        atomic_write(markdown_path, lambda f: f.write(text), "w")
    if plot_path:
        save_figure(bench_figure(report), plot_path)


def main(argv: Sequence[str]) -> int:
    """The worker entry point: ``--worker SPEC OUT``."""
    if len(argv) != 3 or argv[0] != "--worker":
        print("usage: python -m jax_echo.bench --worker SPEC OUT (jax-echo bench starts it)")
        return 2
    spec = json.loads(argv[1])
    # PyTorch's triton segfaults the process if it loads after TensorFlow (conftest.py): first.
    if importlib.util.find_spec("triton") is not None:
        importlib.import_module("triton")
    if any("tensorflow" in row(name).libraries for name in spec["rows"]):
        runlog.import_tensorflow_quietly()
    try:
        return run_worker(spec, argv[2])
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: jax-echo bench says it once
        return 130


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
