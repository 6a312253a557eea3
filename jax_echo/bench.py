"""``jax-echo bench``: every implementation and peer library timed on one configuration.

Each of ``processes`` rounds runs the rows in a fresh process (``python -m jax_echo.bench
--worker SPEC OUT``; Keras on TensorFlow in one of its own: Keras has one backend a process).
There every row is built from the same initial weights (``init_params``, TF1's layout) and
trains epoch 0's data. Its construction and first call are timed apart (``compile_seconds``:
TF1 builds its graph in the first, the others trace and compile in the second); the rest of
the first epoch completes the losses parity is checked on; one more epoch warms up; then
``rounds`` epochs are timed (epoch-level rows: one ``train_epoch`` call each; per-window rows:
``train_window`` over the epoch's windows, each waited for). A process's number is its median
round, per window; a row's is the median over processes, with their min-max.
``max_abs_loss_diff`` is the largest per-window difference of the first epoch's losses from the
reference row's (``tf-graph`` if it runs, else ``jax-epoch``): ``None`` for a peer whose cell's
math is not TF1's (``Row.exact_cells``) and, with dropout, for a library other than the
reference's (each draws its own units). The rows are ``registry.ROWS``'; each is timed by
``timing.measure``, the loop ``compare`` and the benchmark suite time through too.
"""

from __future__ import annotations

import contextlib
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
from jax_echo.registry import (
    BENCH_NAMES,
    DATA_PARALLEL,
    FALLBACK_REFERENCE,
    REFERENCE,
    MissingExtraError,
    Row,
    comparable,
    row,
)
from jax_echo.tables import Column, markdown
from jax_echo.task import EchoConfig

__all__ = ["ALL_NAMES", "bench", "row", "rows", "table", "write"]

VERSIONS = ("jax", "jaxlib", "optax", "numpy", "tensorflow", "torch", "flax", "keras")
ALL_NAMES = BENCH_NAMES
CORES = ("all", "one")  # every core (each library's default threads), or one core for all


def warn_line(line: str) -> None:
    """One line on stderr: what the bench leaves out, and why."""
    print(f"jax-echo bench: {line}", file=sys.stderr)


def rows(names: Sequence[str], warn: Callable[[str], None] = warn_line) -> list[Row]:
    """The rows of ``names`` (``all``: every one whose library is installed; ``warn`` gets one
    line per library left out). A named row whose library is missing is a
    ``MissingExtraError`` naming the extra to install."""
    if "all" in names:
        found, left_out = [], {}
        for name in ALL_NAMES:
            r = row(name)
            reason = r.missing()
            if reason is None:
                found.append(r)
            else:
                left_out.setdefault(reason, []).append(name)
        for reason, skipped in left_out.items():
            warn(f"left out {', '.join(skipped)}: {reason}")
        return found
    chosen = [row(n) for n in dict.fromkeys(names)]
    for r in chosen:
        reason = r.missing()
        if reason is not None:
            raise MissingExtraError(f"{r.name}: {reason}")
    return chosen


# --- One process: every row, timed -----------------------------------------------------------


def run_worker(spec: dict[str, Any], out: str) -> int:
    """``python -m jax_echo.bench --worker SPEC OUT``: the spec's rows, results to ``OUT``."""
    chosen = [row(name) for name in spec["rows"]]
    timing.limit_threads(spec.get("threads"), set().union(*(r.libraries for r in chosen)))

    cfg = EchoConfig(**spec["config"])
    dtype = np.dtype(spec["dtype"])
    results = []
    with jax.enable_x64(dtype == np.float64):
        for r in chosen:
            tag = f"jax-echo bench: process {spec['process']}/{spec['processes']}: {r.name}"
            print(f"{tag} ...", file=sys.stderr, flush=True)
            try:
                result = timing.measure(r, cfg, dtype, spec["device"], spec["part"], spec["rounds"])
            except ValueError as e:  # a peer that cannot run this config says what
                print(f"{tag}: cannot run this configuration", file=sys.stderr, flush=True)
                results.append({"implementation": r.name, "left_out": str(e)})
                Path(out).write_text(json.dumps(results))
                continue
            print(
                f"{tag}: {result['us_per_window']:.1f} us/window, first call "
                f"{result['compile_seconds']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
            result["small_loops"] = xla_flags.SMALL_LOOPS  # whether XLA had the option
            result["cores_allowed"] = policy.cpu_cores()
            results.append(result)
            Path(out).write_text(json.dumps(results))  # kept if a later row crashes the process
    return 0


# --- Several processes, merged --------------------------------------------------------------


def _worker(spec: dict[str, Any], env: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    """The rows a worker process finished, and its exit code."""
    with tempfile.TemporaryDirectory(prefix="jax-echo-bench-") as tmp:
        out = Path(tmp, "rows.json")
        command = [sys.executable, "-m", "jax_echo.bench", "--worker", json.dumps(spec), str(out)]
        code = subprocess.run(command, env={**os.environ, **env}).returncode
        return (json.loads(out.read_text()) if out.exists() else []), code


def versions() -> dict[str, str | None]:
    found = {}
    for name in VERSIONS:
        dists = (name, f"{name}-cpu") if name == "tensorflow" else (name,)
        found[name] = None
        for dist in dists:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                found[name] = importlib.metadata.version(dist)
                break
    return found


def machine() -> dict[str, Any]:
    """``runlog.machine_info`` with the platform string, the CPU count and JAX's devices."""
    return {
        **runlog.machine_info(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax_devices": [f"{d.platform}: {d.device_kind}" for d in jax.devices()],
    }


def commit() -> dict[str, Any]:
    """The checkout's commit and whether tracked files changed (``None`` outside a checkout)."""
    here = Path(__file__).parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(done.stderr)
        return done.stdout

    try:
        sha = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except OSError:
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
    warn: Callable[[str], None] = warn_line,
) -> dict[str, Any]:
    """Times ``names`` on ``cfg`` in ``processes`` fresh processes each; the JSON report.

    Returns ``{"config", "settings", "versions", "machine", "commit", "reference", "results"}``;
    ``results`` has one dict per row that ran: ``implementation``, ``library``, ``form``,
    ``us_per_window`` (median over processes) with ``us_per_window_min`` / ``_max``,
    ``compile_seconds``, ``peak_mib`` (``None`` where not measured; ``peak_what`` says),
    ``final_loss``, ``max_abs_loss_diff`` and ``small_loops`` (whether XLA:CPU's small-loop
    option was in effect: TensorFlow's XLA rows run once more without it on a CPU, named
    ``NAME-no-small-loops``, since it slows TF's XLA at larger sizes). ``failures``: worker
    processes that exited with an error (the rows they finished are kept).

    ``cores``: "all" (each library's own threads on every core), "one" (every library on one
    core: the worker pinned to it, PyTorch's and TensorFlow's intra-op threads 1;
    ``timing.limit_threads``), or both, each row then run under each (``cores`` in its result;
    JAX's all-cores form is then also its data-parallel row, on a CPU). ``fastest``: each
    library's fastest measured row, per cores setting.
    """
    if processes < 1 or rounds < 1:
        raise ValueError(f"processes and rounds must be at least 1, got {processes}, {rounds}")
    if not cores or set(cores) - set(CORES):
        raise ValueError(f"cores must be some of {', '.join(CORES)}, got {cores}")
    device = device or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    chosen = rows(names, warn)
    groups = _groups(chosen, device, cores)
    per_row: dict[tuple[str, str], list[dict[str, Any]]] = {}  # the processes' results of a row
    left_out, failures = {}, []
    for k in range(1, processes + 1):
        for (label, core), (group, env) in groups.items():
            spec = {
                "config": cfg.to_dict(),
                "dtype": dtype,
                "device": device,
                "part": part,
                "rounds": rounds,
                "rows": group,
                "process": k,
                "processes": processes,
                "threads": timing.ONE_CORE if core == "one" else None,
            }
            finished, code = _worker(spec, {**env, "TF_CPP_MIN_LOG_LEVEL": "2"})
            if label == xla_flags.SUFFIX:  # the group without the option
                for f in finished:
                    f["implementation"] += xla_flags.SUFFIX
            if code != 0:
                done = [f["implementation"] for f in finished]
                lost = [n for n in group if n not in done]
                failures.append(f"process {k} ({label} group, {core} cores) exited {code}")
                warn(f"{failures[-1]}; rows it did not finish: {', '.join(lost) or 'none'}")
            for result in finished:
                if "left_out" in result:
                    left_out[result["implementation"]] = result["left_out"]
                else:
                    per_row.setdefault((result["implementation"], core), []).append(result)
    for name, reason in left_out.items():
        warn(f"left out {name}: {reason}")
    ran = [(row(name), core) for name, core in per_row]
    names_ran = [r.name for r, core in ran if core == cores[0]]
    reference = next((n for n in (REFERENCE, FALLBACK_REFERENCE) if n in names_ran), None)
    ref_row = row(reference) if reference else None
    results = []
    for r, core in ran:
        runs = per_row[r.name, core]
        us = [p["us_per_window"] for p in runs]
        peak = runs[0]["peak_bytes"]
        ref = per_row.get((reference, core), [None])[0]
        results.append(
            {
                "implementation": r.name,
                "library": r.library,
                "form": r.form,
                "per_epoch": r.per_epoch,
                "cores": core,
                "us_per_window": float(np.median(us)),
                "us_per_window_min": float(min(us)),
                "us_per_window_max": float(max(us)),
                "us_per_window_processes": us,
                "compile_seconds": float(np.median([p["compile_seconds"] for p in runs])),
                "peak_mib": None if peak is None else peak / 2**20,
                "peak_what": runs[0]["peak_what"],
                "final_loss": runs[0]["final_loss"],
                "max_abs_loss_diff": _diff(r, ref_row, runs[0], ref, cfg),
                "small_loops": runs[0]["small_loops"],
                "cores_allowed": runs[0]["cores_allowed"],
            }
        )
    best = {
        core: registry.fastest({x["implementation"]: x["us_per_window"] for x in of})
        for core in cores
        if (of := [x for x in results if x["cores"] == core])
    }
    return {
        "config": cfg.to_dict(),
        "settings": {
            "part": part,
            "dtype": dtype,
            "device": device,
            "processes": processes,
            "rounds": rounds,
            "cores": list(cores),
        },
        "versions": versions(),
        "machine": machine(),
        "commit": commit(),
        "reference": reference,
        "results": results,
        "fastest": best,  # per cores setting: each library's fastest measured row
        "failures": failures,  # worker processes that crashed (their other rows are kept)
    }


def _groups(
    chosen: list[Row], device: str, cores: Sequence[str]
) -> dict[tuple[str, str], tuple[list[str], dict[str, str]]]:
    """The worker processes of one round: ``{(label, cores): (row names, environment)}``.

    Keras has one backend a process: its rows run in a process per backend. TensorFlow's XLA
    runs slower under the small-loop option once its loops hold real products (README, realistic
    sizes): on a CPU its rows also run in a process without it, as ``NAME-no-small-loops``. On
    all cores of a CPU beside one core, JAX's all-cores form is its data-parallel row, in a
    process with one device per core.
    """
    groups: dict[str, tuple[list[str], dict[str, str]]] = {}
    for r in chosen:
        label = r.backend or "jax"
        groups.setdefault(label, ([], {"KERAS_BACKEND": label}))[0].append(r.name)
    unlooped = [r.name for r in chosen if r.unlooped]
    if device == "cpu" and xla_flags.SMALL_LOOPS and unlooped:
        groups[xla_flags.SUFFIX] = (unlooped, {**xla_flags.without(), "KERAS_BACKEND": "jax"})
    out = {(label, core): group for core in cores for label, group in groups.items()}
    if device == "cpu" and set(cores) == set(CORES) and "jax-epoch" in groups.get("jax", ([],))[0]:
        out["data-parallel", "all"] = ([DATA_PARALLEL], timing.cpu_devices())
    return out


def _diff(r: Row, ref: Row | None, run: dict, ref_run: dict | None, cfg) -> float | None:
    """The largest per-window first-epoch loss difference from the reference's run (or
    ``None``: not ``registry.comparable``)."""
    if ref is None or ref_run is None or not comparable(r, ref, cfg.cell, cfg.keep_prob):
        return None
    a = np.asarray(run["first_epoch_losses"])
    return float(np.max(np.abs(a - np.asarray(ref_run["first_epoch_losses"]))))


# --- Output --------------------------------------------------------------------------------

COLUMNS = (
    *(Column(name, right=False) for name in ("implementation", "library", "form")),
    Column("us/window", "{:.1f}"),
    Column("min-max", right=False),
    Column("first call s", "{:.2f}"),
    Column("peak MiB", "{:.2f}"),
    Column("final loss", "{:.4f}"),
    Column("max |loss diff|", "{:.1e}"),
)


def table(report: dict[str, Any]) -> str:
    """The results as a Markdown table, with what its numbers are below it (a ``cores`` column
    where the rows ran on one core and on all)."""
    both = len(report["settings"].get("cores", ["all"])) > 1
    body = markdown(
        (*COLUMNS[:3], Column("cores", right=False), *COLUMNS[3:]) if both else COLUMNS,
        [
            (
                r["implementation"],
                r["library"],
                r["form"],
                *([r["cores"]] if both else []),
                r["us_per_window"],
                f"{r['us_per_window_min']:.1f}-{r['us_per_window_max']:.1f}",
                r["compile_seconds"],
                r["peak_mib"],
                r["final_loss"],
                r["max_abs_loss_diff"],
            )
            for r in report["results"]
        ],
    )
    s = report["settings"]
    note = (
        f"{s['dtype']} on {s['device']}: median of {s['rounds']} timed epochs per process, "
        f"median (min-max) over {s['processes']} processes.\nfirst call s: building the "
        "trainer and its first call (tracing, compilation). max |loss diff|: first epoch vs "
        f"{report['reference']} on the same weights (blank: the cell's math is not TF1's).\n"
        "peak MiB: XLA's buffers of jax-epoch's compiled epoch, torch.cuda's peak on a GPU; "
        "blank: not measured (a process-wide peak would mix the rows)."
    )
    if len(s.get("cores", ["all"])) > 1:
        note += (
            "\ncores: one: the worker process pinned to one core, PyTorch's and TensorFlow's "
            "intra-op threads 1 (the framework); all: each library's own threads on every core "
            "(the threading), JAX's data-parallel row its form for all cores."
        )
    return f"{body}\n\n{note}"


def write(report: dict[str, Any], json_path=None, markdown_path=None, plot_path=None) -> None:
    """The report's files, each written atomically."""

    if json_path:
        text = json.dumps(report, indent=1) + "\n"
        atomic_write(json_path, lambda f: f.write(text), "w")
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
    if any("tensorflow" in (row(name).library, row(name).backend) for name in spec["rows"]):
        runlog.import_tensorflow_quietly()
    try:
        return run_worker(spec, argv[2])
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: jax-echo bench says it once
        return 130


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
