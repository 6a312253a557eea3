"""``make bench``: the benchmark suite in several processes, its JSON, and the report.

    python -m benchmarks.run [--processes N] [--select EXPR] [--readme] [--allow-dirty]
                             [extra pytest arguments]

XLA:CPU timings of one program differ by up to 2x from process to process, so every speed group
runs in ``--processes`` fresh processes (default 3); the report shows each row's median over them
with the min-max. ``accuracy`` and ``end_to_end`` run in the first process only (minutes each).
The Keras rows run once more under ``KERAS_BACKEND=tensorflow`` (one backend a process),
TensorFlow's XLA rows at the realistic sizes in processes without XLA:CPU's small-loop option
(rows ``...-no-small-loops``), and the realistic ``jax-epoch-data-parallel`` row in processes
with one CPU device per core.

Everything goes into ``benchmarks/results/DEVICE-DATE/``: one JSON per process, ``run.json``
(the commit, the tracked files changed, the commands) and the report. A tree with uncommitted
changes is refused unless ``--allow-dirty`` (tables made from one say so). ``--readme`` writes
the report into docs/benchmarks.md's and README.md's blocks too (``make bench-docs``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import jax

from benchmarks import report
from jax_echo import xla_flags
from jax_echo.registry import DATA_PARALLEL
from jax_echo.timing import cpu_devices

RESULTS = Path(__file__).parent / "results"
ONE_PROCESS_GROUPS = ("test_accuracy", "test_end_to_end")
TF_XLA_REALISTIC = "test_realistic and (tf-function-xla or tf-function-epoch-xla)"
DATA_PARALLEL_REALISTIC = f"test_realistic and {DATA_PARALLEL} and cpu"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def source_state() -> dict[str, object]:
    """The commit the numbers are from, and the tracked files changed since (if any)."""
    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    return {"commit": git("rev-parse", "HEAD").strip(), "dirty": changed}


def results_dir(name: str) -> Path:
    """``RESULTS/NAME-DATE-TIME``: a new run's directory."""
    return RESULTS / f"{name}-{datetime.datetime.now().strftime('%Y%m%d-%H%M')}"


def pytest_command(json_path: Path, selection: str | None, extra: list[str]) -> list[str]:
    command = [
        sys.executable,
        *"-m pytest benchmarks -p no:cacheprovider --benchmark-enable".split(),
    ]
    command += [f"--benchmark-json={json_path}", "--benchmark-columns=median,iqr,rounds", *extra]
    return command + (["-k", selection] if selection else [])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--processes", type=int, default=3, metavar="N")
    parser.add_argument("--readme", action="store_true", help="write the docs' blocks")
    parser.add_argument("--allow-dirty", action="store_true", help="run on uncommitted changes")
    what = "only these cases (a pytest -k expression, e.g. test_series)"
    parser.add_argument("--select", metavar="EXPR", help=what)
    args, extra = parser.parse_known_args(argv)
    if args.processes < 1:
        parser.error(f"--processes must be at least 1, got {args.processes}")
    state = source_state()
    if state["dirty"] and not args.allow_dirty:
        print(
            "benchmarks.run: uncommitted changes to tracked files:\n  "
            + "\n  ".join(state["dirty"])
            + "\ncommit them first (numbers must name the code they measure), or --allow-dirty",
            file=sys.stderr,
        )
        return 2
    out = results_dir(jax.default_backend())
    out.mkdir(parents=True, exist_ok=True)
    repeats = " and ".join(f"not {g}" for g in ONE_PROCESS_GROUPS)  # after the first process

    def select(*parts: str | None) -> str | None:
        chosen = [f"({p})" for p in (args.select, *parts) if p]
        return " and ".join(chosen) or None

    # TensorFlow's XLA at the realistic sizes is slower with XLA:CPU's small-loop option, which
    # jax_echo sets for both compilers in a process (27x and 96x slower than without at the two
    # smaller sizes, and no program at the largest: cpu-20261201-1654), so its rows there run in
    # processes of their own without it (``...-no-small-loops``), where it is at its best.
    skip_tf = f"not ({TF_XLA_REALISTIC})"
    runs = []
    for stem, part, env in (
        ("process", skip_tf, {}),
        ("keras-tensorflow", "keras", {"KERAS_BACKEND": "tensorflow"}),
        ("tf-without-small-loops", TF_XLA_REALISTIC, xla_flags.without()),
        # The data-parallel row needs several devices: on a CPU, processes with one per core.
        ("data-parallel", DATA_PARALLEL_REALISTIC, cpu_devices()),
    ):
        for k in range(1, args.processes + 1):
            runs.append((f"{stem}-{k}.json", select(part, None if k == 1 else repeats), env))
    commands = []
    for name, selection, env in runs:
        command = pytest_command(out / name, selection, extra)
        changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
        commands.append({"json": name, "command": command, "env": changed})
        code = subprocess.run(command, env={**os.environ, **env}).returncode
        # 1: some case failed (its JSON holds the others); 5: the selection left no case here.
        if code not in (0, 1, 5):
            print(f"benchmarks.run: {name} exited {code}", file=sys.stderr)
            return code
    (out / "run.json").write_text(json.dumps({**state, "runs": commands}, indent=1) + "\n")
    docs = ["--docs", "docs/benchmarks.md", "--readme", "README.md"]
    return report.main([str(out), *(docs if args.readme else [])])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
