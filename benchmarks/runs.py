"""Reading ``benchmarks.run`` results: one run's processes merged, several runs combined.

A directory is one ``benchmarks.run``: one JSON per process. ``merge`` makes one benchmark per
case, its median the median over processes of each process's median, every process's median
kept (``stats["process_medians"]``) for the spread. ``combine`` makes one report of runs of
different groups on one machine: each group whole from the one run that measured it.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any


def load(path: str | Path) -> dict[str, Any]:
    """One JSON file, or every process's JSON of a ``benchmarks.run`` directory, merged."""
    path = Path(path)
    if path.is_file():
        return merge([json.loads(path.read_text())])
    # The main processes first: the merged run's machine info is theirs (the data-parallel
    # processes see one CPU device per core).
    files = sorted(
        (f for f in path.glob("*.json") if f.name != "run.json"),
        key=lambda f: (not f.name.startswith("process-"), f.name),
    )
    if not files:
        raise SystemExit(f"{path} holds no benchmark JSON")
    data = merge([json.loads(f.read_text()) for f in files])
    run = path / "run.json"
    if run.exists():
        data["source"] = json.loads(run.read_text())
    return data


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One benchmark per case: the median over processes of each process's median."""
    cases: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for data in runs:
        for b in data["benchmarks"]:
            cases[b["fullname"]].append(b)
    benches = []
    for group in cases.values():
        medians = sorted(b["stats"]["median"] for b in group)
        merged = {**group[0], "stats": {**group[0]["stats"]}}
        merged["stats"]["median"] = float(statistics.median(medians))
        merged["stats"]["process_medians"] = medians
        benches.append(merged)
    started = min((data.get("datetime", "") for data in runs), default="")
    return {**runs[0], "datetime": started, "benchmarks": benches}


def machine(data: dict[str, Any]) -> tuple[str, object, str]:
    """A run's CPU, core count and system: what ``combine`` requires to be the same."""
    m = data.get("machine_info", {})
    cpu = m.get("cpu", {}).get("brand_raw", m.get("processor", ""))
    return cpu, m.get("cpu_count"), m.get("system", "")


def source(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Where a run's numbers come from: its groups, start and commit."""
    run = data.get("source") or {}
    return {
        "path": str(path),
        "groups": sorted({b["group"] for b in data["benchmarks"]}),
        "datetime": data.get("datetime", ""),
        "commit": run.get("commit") or (data.get("commit_info") or {}).get("id", ""),
        "dirty": bool(run.get("dirty")),
    }


def combine(paths: list[Path]) -> dict[str, Any]:
    """Runs of different groups on one machine as one report (``load`` of each); a group found
    in two of them is refused (each comes whole from one run), as is another machine's run."""
    runs = [load(path) for path in paths]
    sources = [source(path, data) for path, data in zip(paths, runs, strict=True)]
    owner: dict[str, str] = {}
    for data, where in zip(runs, sources, strict=True):
        if machine(data) != machine(runs[0]):
            raise SystemExit(
                f"{where['path']} was measured on {machine(data)}, {paths[0]} on "
                f"{machine(runs[0])}: one report is one machine"
            )
        for group in where["groups"]:
            if group in owner:
                raise SystemExit(
                    f"group {group!r} is in both {owner[group]} and {where['path']}: each table "
                    "comes from one run"
                )
            owner[group] = where["path"]
    benches = [b for data in runs for b in data["benchmarks"]]
    return {**runs[0], "benchmarks": benches, "sources": sources}


def read(paths: list[Path]) -> dict[str, Any]:
    """One path ``load``-ed, several ``combine``-d."""
    return load(paths[0]) if len(paths) == 1 else combine(paths)


def machine_line(data: dict[str, Any]) -> str:
    """The machine, the libraries' versions, and each run's groups, start and commit."""
    m = data["machine_info"]
    libs = ", ".join(f"{k} {v}" for k, v in m.get("library_versions", {}).items() if v)
    cpu, cores, system = machine(data)
    counts = [len(b["stats"].get("process_medians", [])) for b in data["benchmarks"]]

    def run(where: dict[str, Any]) -> str:
        dirty = " WITH UNCOMMITTED CHANGES" if where["dirty"] else ""
        return f"{where['datetime'][:19]} at commit {where['commit'][:10]}{dirty}"

    sources = data.get("sources")
    if sources:
        runs = "Runs by group: " + "; ".join(f"{', '.join(s['groups'])}: {run(s)}" for s in sources)
    else:
        runs = f"Run {run(source(Path(), data))}"
    return (
        f"Machine: {cpu}, {cores} cores, {system} {m.get('release', '')}; "
        f"JAX devices: {', '.join(m.get('jax_devices', []))}. {libs}. "
        f"{runs}; medians over up to {max(counts, default=1)} processes."
    )
