"""``make bench-gpu``: the GPU groups for JAX, PyTorch and Flax in about 8 minutes, one directory.

    python -m benchmarks.gpu [--dry-run] [--quick] [--out DIR] [--allow-dirty]

A lent GPU comes for minutes, so this runs the groups that say something about a GPU (series,
window, realistic with peak memory, population, accuracy) once each, one pytest process per step
(``STEPS``): a step past its time limit is stopped and loses only its own tables. TensorFlow and
Keras are left out (the lent machines have neither); a row whose library this machine lacks is
not generated. ``benchmarks/results/gpu-DATE/`` gets one JSON per step, ``run.json`` (commit,
machine, each step's command, time and outcome, the rows left out and why) and the report.

``--dry-run`` prints the plan and runs nothing. ``--quick`` runs the plan on this machine's CPU
with every group's quick sizes (timed and saved as a real run's): a check of the plan end to end
where there is no GPU, whose numbers measure nothing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from benchmarks import report
from benchmarks.conftest import QUICK_ENV, Run, jax_device
from benchmarks.run import pytest_command, results_dir, source_state
from jax_echo.io import atomic_write
from jax_echo.registry import DATA_PARALLEL, JAX_IMPLEMENTATIONS, PEER_ROWS

LEFT_OUT = "not keras and not tf-graph and not tf-function"  # no TensorFlow on the lent GPUs
# The accuracy group trains the tutorial's 100 epochs per row: only the epoch-level rows and
# PyTorch's compiled window (CUDA graphs) fit the time; per-window rows would take minutes each.
ACCURACY_ROWS = ("jax-epoch", "flax-nnx-scan", "torch-compile-window")
GROUPS = ("series", "window", "realistic", "population", "accuracy")
LIBRARIES = ("jax", "torch", "flax")


class Step(NamedTuple):
    """One pytest process of the plan."""

    name: str  # its JSON's stem
    groups: tuple[str, ...]
    selection: str  # a pytest -k expression, without the device
    limit_s: int  # stopped past this
    options: tuple[str, ...] = ()

    def command(self, out: Path, device: str) -> list[str]:
        selection = f"{device} and {LEFT_OUT} and ({self.selection})"
        # Never in parallel workers (pytest-benchmark refuses to time there), even when started
        # from a test run that has them (make test runs the quick plan).
        extra = ["-q", "-p", "no:xdist", *self.options]
        return pytest_command(out / f"{self.name}.json", selection, extra)


SHORT = ("--benchmark-max-time=0.25", "--benchmark-min-rounds=3")
WINDOWS = ("series", "window")
STEPS = (
    # PyTorch apart: torch.compile's first calls take tens of seconds.
    Step("series-window", WINDOWS, "(test_series or test_window) and not torch", 100, SHORT),
    Step("series-window-torch", WINDOWS, "(test_series or test_window) and torch", 130, SHORT),
    Step("realistic", ("realistic",), "test_realistic", 90),
    Step("population", ("population",), "test_population", 60),
    Step("accuracy", ("accuracy",), "test_accuracy and (" + " or ".join(ACCURACY_ROWS) + ")", 90),
)


def left_out(device: str, quick: bool = False) -> dict[str, str]:
    """Every JAX, PyTorch and Flax row that will not run on ``device`` here, with the reason
    (``conftest.Run.absence``), and the libraries the plan leaves out."""
    run = Run(quick)
    peers = [r.name for r in PEER_ROWS if r.library in LIBRARIES]
    names = [*JAX_IMPLEMENTATIONS, DATA_PARALLEL, *peers]
    found = {name: run.absence(name, device) for name in names if not run.has(name, device)}
    found["tensorflow and keras rows"] = "left out of the GPU plan (the lent machines have neither)"
    return found


def machine() -> str:
    """The GPU (or CPU), its memory and the versions of the libraries the plan measures."""
    import jax

    device = jax.devices()[0]
    versions = []
    for package in ("jax", "jaxlib", "torch", "flax", "optax"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"no {package}")
    memory = (device.memory_stats() or {}).get("bytes_limit") if device.platform == "gpu" else None
    size = f" ({memory / 2**30:.0f} GiB)" if memory else ""
    cores = f"[{device.platform}], {os.cpu_count()} CPU cores"
    return f"{device.device_kind}{size} {cores}; " + ", ".join(versions)


def plan_lines(out: Path, device: str) -> list[str]:
    total = sum(s.limit_s for s in STEPS)
    lines = [f"benchmarks.gpu: {len(STEPS)} steps on {device}, {total} s at most"]
    for step in STEPS:
        lines.append(f"  {step.name} ({', '.join(step.groups)}; at most {step.limit_s} s):")
        lines.append("    " + " ".join(step.command(out, device)))
    lines += [f"  not run: {name}: {reason}" for name, reason in left_out(device).items()]
    return lines


def run_step(step: Step, out: Path, device: str, env: dict[str, str], scale: float) -> dict:
    """Runs one step within its time limit (times ``scale``); what happened, for run.json."""
    command = step.command(out, device)
    start = time.perf_counter()
    try:
        code = subprocess.run(command, env=env, timeout=step.limit_s * scale).returncode
        # 1: a case failed (the JSON holds the others); 5: the selection left no case here.
        outcome = {0: "ok", 1: "some cases failed", 5: "no case to run"}.get(code, f"exit {code}")
    except subprocess.TimeoutExpired:
        outcome = f"stopped after its limit of {step.limit_s * scale:.0f} s (no JSON)"
    saved = (out / f"{step.name}.json").exists()
    return {
        "json": f"{step.name}.json" if saved else None,
        "groups": list(step.groups),
        "selection": command[command.index("-k") + 1],
        "command": command,
        "seconds": round(time.perf_counter() - start, 1),
        "outcome": outcome,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument("--quick", action="store_true", help="the plan on the CPU, tiny sizes")
    parser.add_argument("--out", type=Path, help="the results directory (default: a new one)")
    parser.add_argument("--allow-dirty", action="store_true", help="run on uncommitted changes")
    args = parser.parse_args(argv)
    device = "cpu" if args.quick else "gpu"
    out = args.out or results_dir(f"{device}{'-quick' if args.quick else ''}")
    if args.dry_run:
        print("\n".join(plan_lines(out, device)))
        return 0
    missing = None
    if importlib.util.find_spec("pytest_benchmark") is None:
        missing = "needs pytest-benchmark (the bench extra)"
    elif not args.quick and jax_device("gpu") is None:
        missing = "JAX sees no GPU (--quick checks the plan on the CPU)"
    if missing:
        print(f"benchmarks.gpu: {missing}", file=sys.stderr)
        return 2
    state = source_state()
    if state["dirty"] and not args.allow_dirty:
        changed = " ".join(line.split()[-1] for line in state["dirty"])
        sys.exit(f"benchmarks.gpu: uncommitted changes ({changed}): commit first, or --allow-dirty")
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}  # a test's
    env[QUICK_ENV] = "1" if args.quick else "0"
    print("\n".join(plan_lines(out, device)), flush=True)
    steps = [run_step(step, out, device, env, 3.0 if args.quick else 1.0) for step in STEPS]
    not_run = left_out(device, args.quick)
    run = {**state, "machine": machine(), "quick": args.quick, "runs": steps, "not_run": not_run}
    atomic_write(out / "run.json", lambda f: f.write(json.dumps(run, indent=1) + "\n"), "w")
    for step in steps:
        print(f"benchmarks.gpu: {step['selection']}: {step['outcome']} in {step['seconds']} s")
    if not any(step["json"] for step in steps):
        print(f"benchmarks.gpu: no step saved results in {out}", file=sys.stderr)
        return 1
    return report.main([str(out)])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
