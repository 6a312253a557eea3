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
math is not TF1's (``Peer.exact_cells``) and, with dropout, for a library other than the
reference's (each draws its own units).

>>> [(r.library, r.form) for r in map(row, ["jax-step", "tf-function-epoch-xla", "flax-nnx-scan"])]
[('jax', 'idiomatic'), ('tensorflow', 'best'), ('flax', 'best')]
"""

from __future__ import annotations

import argparse
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
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jax_echo import runlog, xla_flags
from jax_echo.cells import init_params
from jax_echo.io import atomic_write
from jax_echo.peers import PEERS, peer
from jax_echo.plot import save_figure
from jax_echo.registry import IMPLEMENTATIONS, REFERENCE, MissingExtraError, Trainer
from jax_echo.tables import Column, markdown
from jax_echo.task import EchoConfig, epoch_data, split_windows
from jax_echo.trainers import block, make_trainer

DESCRIPTION = (
    "Each of --processes fresh processes times every row on the same weights and data: the "
    "first call apart (compile), one warm-up epoch, then --rounds timed epochs; the table shows "
    "the median over processes (min-max), peak memory where measurable and the loss difference "
    "from tf-graph (else jax-epoch) over the first epoch."
)
PEERS_EXTRA = "pip install 'jax-echo[peers]'"
# The fastest honest form of JAX and TensorFlow; the peers say theirs (``Peer.form``).
BEST = ("jax-epoch", "tf-function-epoch-xla")
PER_EPOCH = ("jax-epoch", "tf-function-epoch", "tf-function-epoch-xla")
FALLBACK_REFERENCE = "jax-epoch"
XLA_ROWS = ("tf-function-xla", "tf-function-epoch-xla")  # TensorFlow's rows compiled by XLA
VERSIONS = ("jax", "jaxlib", "optax", "numpy", "tensorflow", "torch", "flax", "keras")
COLOURS = {
    "jax": "tab:blue",
    "tensorflow": "tab:orange",
    "torch": "tab:red",
    "flax": "tab:green",
    "keras": "tab:purple",
}


class Row(NamedTuple):
    """One implementation or peer, as the bench runs it."""

    name: str
    library: str  # "jax", "tensorflow", "torch", "flax", "keras"
    form: str  # "best" or "idiomatic"
    per_epoch: bool  # the timed call trains an epoch (else a window)
    exact_cells: tuple[str, ...] | None  # a peer's cells with TF1's math; None: every cell
    backend: str | None = None  # Keras' backend: the process it runs in

    @property
    def extra(self) -> str:
        return "pip install 'jax-echo[tf]'" if self.library == "tensorflow" else PEERS_EXTRA

    def missing(self) -> str | None:
        """Why this row's library cannot be imported here, or ``None``."""
        needed = "tensorflow" if self.backend == "tensorflow" else self.library
        if importlib.util.find_spec(needed) is None:
            return f"{needed} is not installed ({self.extra})"
        return None


def row(name: str) -> Row:
    """The row called ``name``: an ``IMPLEMENTATIONS`` name or a peer's."""
    if name in IMPLEMENTATIONS:
        library = "jax" if name.startswith("jax") else "tensorflow"
        form = "best" if name in BEST else "idiomatic"
        return Row(name, library, form, name in PER_EPOCH, None)
    p = peer(name)
    return Row(name, p.library, p.form, p.per_epoch, p.exact_cells, p.backend)


ALL_NAMES = (*IMPLEMENTATIONS, *(p.name for p in PEERS))


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


@contextlib.contextmanager
def _placed(r: Row, device: str) -> Iterator[None]:
    if r.library == "jax":
        with jax.default_device(jax.devices(device)[0]):
            yield
    elif r.library == "tensorflow":
        import tensorflow as tf

        with tf.device(f"/{device.upper()}:0"):
            yield
    else:  # a peer places its own arrays
        yield


def _trainer(r: Row, cfg: EchoConfig, params: Any, dtype, device: str, part: int) -> Trainer:
    if r.name in IMPLEMENTATIONS:
        return make_trainer(r.name, cfg, params, dtype, part=part, device=f"/{device.upper()}:0")
    return peer(r.name).make(cfg, params, dtype=dtype, device=device)


def _peak(r: Row, trainer: Any, device: str, x, y) -> tuple[int | None, str]:
    """The row's peak memory in bytes, and what the number is (``None``: not measured)."""
    if r.name == "jax-epoch":
        return trainer.memory_analysis(x, y)["peak"], "XLA arguments+outputs+temporaries"
    if r.library == "torch" and device == "gpu":
        import torch

        return torch.cuda.max_memory_allocated(), "torch.cuda.max_memory_allocated"
    return None, "not measured: a process-wide peak would mix the rows"


def measure_row(
    r: Row, cfg: EchoConfig, dtype, device: str, part: int, rounds: int
) -> dict[str, Any]:
    """One row in this process: first-call seconds, first-epoch losses, the timed rounds."""

    x, y = epoch_data(cfg, 0)
    x = x.astype(dtype)
    T, N = cfg.truncated_backprop_length, cfg.num_batches
    xs = list(np.ascontiguousarray(split_windows(x, T)))
    ys = list(np.ascontiguousarray(split_windows(y, T)))
    if r.library == "torch" and device == "gpu":
        import torch

        torch.cuda.reset_peak_memory_stats()
    with _placed(r, device):
        params = init_params(cfg, dtype=dtype)
        built = time.perf_counter()
        trainer = _trainer(r, cfg, params, dtype, device, part)
        built = time.perf_counter() - built  # TF1 builds its graph here; the others trace later
        try:

            def epoch() -> tuple[np.ndarray, float]:
                """One epoch: its losses, and the seconds of its first call."""
                start = time.perf_counter()
                if r.per_epoch:
                    losses = block(trainer.train_epoch(x, y, epoch=0))
                    return losses, time.perf_counter() - start
                losses = [block(trainer.train_window(xs[0], ys[0], epoch=0, window=0))]
                first_call = time.perf_counter() - start
                for i in range(1, N):
                    losses.append(block(trainer.train_window(xs[i], ys[i], epoch=0, window=i)))
                return np.asarray(losses), first_call

            first_losses, first_call = epoch()
            epoch()  # warm-up, untimed
            times, last = [], first_losses
            for _ in range(rounds):
                start = time.perf_counter()
                last, _ = epoch()
                times.append(time.perf_counter() - start)
            peak, what = _peak(r, trainer, device, x, y)
        finally:
            trainer.close()
    return {
        "implementation": r.name,
        "us_per_window": float(np.median(times)) / N * 1e6,
        "compile_seconds": built + first_call,
        "first_epoch_losses": np.asarray(first_losses, np.float64).ravel().tolist(),
        "final_loss": float(np.asarray(last).ravel()[-1]),
        "peak_bytes": peak,
        "peak_what": what,
    }


def run_worker(spec: dict[str, Any], out: str) -> int:
    """``python -m jax_echo.bench --worker SPEC OUT``: the spec's rows, results to ``OUT``."""
    if importlib.util.find_spec("triton") is not None:  # before TensorFlow (see conftest.py)
        importlib.import_module("triton")

    cfg = EchoConfig(**spec["config"])
    dtype = np.dtype(spec["dtype"])
    results = []
    with jax.enable_x64(dtype == np.float64):
        for name in spec["rows"]:
            r = row(name)
            tag = f"jax-echo bench: process {spec['process']}/{spec['processes']}: {name}"
            print(f"{tag} ...", file=sys.stderr, flush=True)
            try:
                result = measure_row(r, cfg, dtype, spec["device"], spec["part"], spec["rounds"])
            except ValueError as e:  # a peer that cannot run this config says what
                print(f"{tag}: cannot run this configuration", file=sys.stderr, flush=True)
                results.append({"implementation": name, "left_out": str(e)})
                Path(out).write_text(json.dumps(results))
                continue
            print(
                f"{tag}: {result['us_per_window']:.1f} us/window, first call "
                f"{result['compile_seconds']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
            result["small_loops"] = xla_flags.SMALL_LOOPS  # whether XLA had the option
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
    """
    if processes < 1 or rounds < 1:
        raise ValueError(f"processes and rounds must be at least 1, got {processes}, {rounds}")
    device = device or ("gpu" if jax.default_backend() == "gpu" else "cpu")
    chosen = rows(names, warn)
    groups: dict[str, list[str]] = {}  # Keras backend -> rows, one process each
    for r in chosen:
        groups.setdefault(r.backend or "jax", []).append(r.name)
    envs = {backend: {"KERAS_BACKEND": backend} for backend in groups}
    # TensorFlow's XLA runs slower under the small-loop option once its loops hold real products
    # (README, realistic sizes): its rows also run in a process without it, as NAME-no-small-loops.
    unlooped = [r.name for r in chosen if r.name in XLA_ROWS]
    if device == "cpu" and xla_flags.SMALL_LOOPS and unlooped:
        groups[xla_flags.SUFFIX] = unlooped
        envs[xla_flags.SUFFIX] = {**xla_flags.without(), "KERAS_BACKEND": "jax"}
        chosen += [r._replace(name=r.name + xla_flags.SUFFIX) for r in chosen if r.name in unlooped]
    per_row: dict[str, list[dict[str, Any]]] = {}  # the processes' results of each row
    left_out, failures = {}, []
    for k in range(1, processes + 1):
        for backend, group in groups.items():
            spec = {
                "config": cfg.to_dict(),
                "dtype": dtype,
                "device": device,
                "part": part,
                "rounds": rounds,
                "rows": group,
                "process": k,
                "processes": processes,
            }
            finished, code = _worker(spec, {**envs[backend], "TF_CPP_MIN_LOG_LEVEL": "2"})
            if backend == xla_flags.SUFFIX:  # the group without the option
                for f in finished:
                    f["implementation"] += xla_flags.SUFFIX
            if code != 0:
                done = [f["implementation"] for f in finished]
                lost = [n for n in group if n not in done]
                failures.append(f"process {k} ({backend} group) exited {code}")
                warn(f"{failures[-1]}; rows it did not finish: {', '.join(lost) or 'none'}")
            for result in finished:
                if "left_out" in result:
                    left_out[result["implementation"]] = result["left_out"]
                else:
                    per_row.setdefault(result["implementation"], []).append(result)
    for name, reason in left_out.items():
        warn(f"left out {name}: {reason}")
    ran = [r for r in chosen if r.name in per_row]
    names_ran = [r.name for r in ran]
    reference = next((n for n in (REFERENCE, FALLBACK_REFERENCE) if n in names_ran), None)
    ref_row = row(reference) if reference else None
    results = []
    for r in ran:
        runs = per_row[r.name]
        us = [p["us_per_window"] for p in runs]
        peak = runs[0]["peak_bytes"]
        results.append(
            {
                "implementation": r.name,
                "library": r.library,
                "form": r.form,
                "per_epoch": r.per_epoch,
                "us_per_window": float(np.median(us)),
                "us_per_window_min": float(min(us)),
                "us_per_window_max": float(max(us)),
                "us_per_window_processes": us,
                "compile_seconds": float(np.median([p["compile_seconds"] for p in runs])),
                "peak_mib": None if peak is None else peak / 2**20,
                "peak_what": runs[0]["peak_what"],
                "final_loss": runs[0]["final_loss"],
                "max_abs_loss_diff": _diff(r, ref_row, per_row, cfg),
                "small_loops": runs[0]["small_loops"],
            }
        )
    return {
        "config": cfg.to_dict(),
        "settings": {
            "part": part,
            "dtype": dtype,
            "device": device,
            "processes": processes,
            "rounds": rounds,
        },
        "versions": versions(),
        "machine": machine(),
        "commit": commit(),
        "reference": reference,
        "results": results,
        "failures": failures,  # worker processes that crashed (their other rows are kept)
    }


def _diff(r: Row, ref: Row | None, per_row: dict, cfg: EchoConfig) -> float | None:
    """The largest per-window first-epoch loss difference from ``ref``'s (or ``None``)."""
    if ref is None or (r.exact_cells is not None and cfg.cell not in r.exact_cells):
        return None
    if cfg.keep_prob < 1 and r.library != ref.library:
        return None  # each library draws its own dropout units
    a = np.asarray(per_row[r.name][0]["first_epoch_losses"])
    b = np.asarray(per_row[ref.name][0]["first_epoch_losses"])
    return float(np.max(np.abs(a - b)))


# --- Output --------------------------------------------------------------------------------

COLUMNS = (
    Column("implementation", right=False),
    Column("library", right=False),
    Column("form", right=False),
    Column("us/window", "{:.1f}"),
    Column("min-max", right=False),
    Column("first call s", "{:.2f}"),
    Column("peak MiB", "{:.2f}"),
    Column("final loss", "{:.4f}"),
    Column("max |loss diff|", "{:.1e}"),
)


def table(report: dict[str, Any]) -> str:
    """The results as a Markdown table, with what its numbers are below it."""
    body = markdown(
        COLUMNS,
        [
            (
                r["implementation"],
                r["library"],
                r["form"],
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
    return f"{body}\n\n{note}"


def figure(report: dict[str, Any]):
    """Bars of us per window (log scale), process min-max as whiskers, a colour per library."""
    from matplotlib.figure import Figure

    results = report["results"]
    fig = Figure(figsize=(max(6, 0.7 * len(results) + 2), 5), layout="tight")
    cfg = report["config"]
    bars(
        fig.subplots(),
        [
            (
                r["implementation"],
                r["library"],
                r["us_per_window"],
                r["us_per_window_min"],
                r["us_per_window_max"],
            )
            for r in results
        ],
        ylabel="us per window",
        title=f"{cfg['cell']}, state {cfg['state_size']}, batch {cfg['batch_size']}, "
        f"window {cfg['truncated_backprop_length']} ({report['settings']['dtype']}): median "
        f"over {report['settings']['processes']} processes, whiskers min-max",
    )
    return fig


def bars(ax, rows: Sequence[tuple[str, str, float, float, float]], *, ylabel: str, title: str):
    """Log-scale bars of ``(name, library, median, min, max)`` rows on ``ax``: the min-max as
    whiskers, one colour per library (``COLOURS``), a legend of the libraries."""
    names, libraries, value, low, high = (list(column) for column in zip(*rows, strict=True))
    value = np.array(value)
    colours = [COLOURS.get(lib, "tab:gray") for lib in libraries]
    whiskers = [value - np.array(low), np.array(high) - value]
    ax.bar(range(len(rows)), value, color=colours, yerr=whiskers, capsize=3)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set(yscale="log", ylabel=ylabel, title=title)
    handles = [
        ax.bar(0, 0, color=COLOURS.get(lib, "tab:gray"), label=lib)
        for lib in dict.fromkeys(libraries)
    ]
    ax.legend(handles=handles, fontsize=7)


def write(report: dict[str, Any], json_path=None, markdown_path=None, plot_path=None) -> None:
    """The report's files, each written atomically."""

    if json_path:
        text = json.dumps(report, indent=1) + "\n"
        atomic_write(json_path, lambda f: f.write(text), "w")
    if markdown_path:
        text = table(report) + "\n"
        atomic_write(markdown_path, lambda f: f.write(text), "w")
    if plot_path:
        save_figure(figure(report), plot_path)


def add_args(parser: argparse.ArgumentParser) -> None:
    """``jax-echo bench``'s own options (the configuration's are ``arguments``')."""
    parser.add_argument(
        "--impl",
        nargs="+",
        default=["all"],
        choices=["all", *ALL_NAMES],
        metavar="NAME",
        help="rows to time (default all: every one whose library is installed): "
        + ", ".join(ALL_NAMES),
    )
    parser.add_argument("--processes", type=int, default=3, metavar="N", help="(default 3)")
    parser.add_argument(
        "--rounds", type=int, default=5, metavar="N", help="timed epochs per process (default 5)"
    )
    parser.add_argument("--float64", action="store_true", help="compute in float64")
    parser.add_argument("--device", choices=("cpu", "gpu"), help="(default: JAX's backend)")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the table as Markdown")
    parser.add_argument("--plot", metavar="FILE", help="write a bar chart (PNG)")


def main(argv: Sequence[str]) -> int:
    """The worker entry point: ``--worker SPEC OUT``."""
    if len(argv) != 3 or argv[0] != "--worker":
        print("usage: python -m jax_echo.bench --worker SPEC OUT (jax-echo bench starts it)")
        return 2
    spec = json.loads(argv[1])
    if any("tensorflow" in (row(name).library, row(name).backend) for name in spec["rows"]):
        runlog.import_tensorflow_quietly()
    try:
        return run_worker(spec, argv[2])
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: jax-echo bench says it once
        return 130


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
