"""``jax-echo bench`` on a tiny configuration, in one process: its JSON contract, its files, the
parity of its rows and the line a missing library gets."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from jax_echo import bench
from jax_echo.arguments import config_from_args
from jax_echo.cli import build_parser, main

TINY = ["--total-series-length", "200", "--truncated-backprop-length", "4"]
ROW_KEYS = {
    "implementation",
    "library",
    "form",
    "us_per_window",
    "us_per_window_min",
    "us_per_window_max",
    "compile_seconds",
    "peak_mib",
    "max_abs_loss_diff",
}
NAMES = ["jax-epoch", "jax-step"]
if importlib.util.find_spec("tensorflow") is not None:
    NAMES.append("tf-graph")


def test_bench_writes_the_contract(tmp_path, capfd):
    files = {kind: tmp_path / f"b.{kind}" for kind in ("json", "md", "png")}
    outputs = ["--json", files["json"], "--markdown", files["md"], "--plot", files["png"]]
    quick = ["--processes", "1", "--rounds", "1"]
    assert main(["bench", *TINY, "--impl", *NAMES, *quick, *map(str, outputs)]) == 0
    out = capfd.readouterr()  # the progress lines come from the worker processes
    assert "jax-echo bench: process 1/1: jax-step" in out.err
    report = json.loads(files["json"].read_text())
    assert {"config", "versions", "machine", "commit", "results"} <= set(report)
    assert report["config"]["truncated_backprop_length"] == 4
    assert set(report["commit"]) == {"sha", "dirty"}
    assert report["versions"]["jax"] and "jax_devices" in report["machine"]
    assert report["reference"] == ("tf-graph" if "tf-graph" in NAMES else "jax-epoch")
    results = {r["implementation"]: r for r in report["results"]}
    assert list(results) == NAMES
    for r in results.values():
        assert ROW_KEYS <= set(r)
        assert r["us_per_window_min"] <= r["us_per_window"] <= r["us_per_window_max"]
        assert r["compile_seconds"] > 0
        assert r["max_abs_loss_diff"] < 1e-5  # float32, identical weights and data
    assert results["jax-epoch"]["form"] == "tuned" and results["jax-step"]["form"] == "idiomatic"
    assert results["jax-epoch"]["peak_mib"] > 0 and results["jax-step"]["peak_mib"] is None
    # The fastest row of each library is the measured one, whatever its form.
    jax_rows = {n: results[n]["us_per_window"] for n in ("jax-epoch", "jax-step")}
    assert report["fastest"]["all"]["jax"] == min(jax_rows, key=jax_rows.get)
    assert "| jax-epoch | jax | tuned |" in out.out
    assert "| jax-step |" in files["md"].read_text()
    assert files["png"].read_bytes().startswith(b"\x89PNG")


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow")
def test_tf_xla_rows_also_run_without_the_small_loop_option():
    cfg = config_from_args(build_parser().parse_args(["bench", *TINY]))
    report = bench.bench(cfg, ["jax-epoch", "tf-function-xla"], processes=1, rounds=1)
    results = {r["implementation"]: r for r in report["results"]}
    plain, unlooped = results["tf-function-xla"], results["tf-function-xla-no-small-loops"]
    assert list(results) == ["jax-epoch", "tf-function-xla", "tf-function-xla-no-small-loops"]
    assert results["jax-epoch"]["small_loops"] and plain["small_loops"]
    assert unlooped["small_loops"] is False
    assert unlooped["library"] == "tensorflow" and unlooped["form"] == plain["form"]
    assert unlooped["max_abs_loss_diff"] < 1e-5  # the same training, another XLA program
    assert abs(unlooped["final_loss"] - plain["final_loss"]) < 1e-5


def test_one_core_beside_all_cores():
    """Each row once pinned to one core and once on all; on all cores of a CPU, JAX's
    data-parallel row too (one device per core), with the same losses as jax-epoch's."""
    even = ["--batch-size", "4", "--total-series-length", "192"]  # two devices split the batch
    cfg = config_from_args(build_parser().parse_args(["bench", *TINY, *even]))
    report = bench.bench(cfg, ["jax-epoch"], processes=1, rounds=1, cores=("all", "one"))
    found = {(r["implementation"], r["cores"]): r for r in report["results"]}
    assert set(found) == {
        ("jax-epoch", "all"),
        ("jax-epoch", "one"),
        ("jax-epoch-data-parallel", "all"),
    }
    for r in found.values():
        assert r["max_abs_loss_diff"] < 1e-5  # float32: the same epoch, split or pinned
        assert (r["cores_allowed"] == 1) == (r["cores"] == "one") or os.cpu_count() == 1
    assert set(report["fastest"]) == {"all", "one"}
    assert "| jax-epoch | jax | tuned | one |" in bench.table(report)


@pytest.mark.parametrize(
    "given, cores",
    [([], ("all",)), (["--cores", "one"], ("one",)), (["--cores", "both"], ("all", "one"))],
)
def test_the_cores_option_reaches_bench(monkeypatch, given, cores):
    seen = {}

    def fake_bench(cfg, names, **options):
        seen.update(options)
        return {"failures": [], "results": []}

    monkeypatch.setattr(bench, "bench", fake_bench)
    monkeypatch.setattr(bench, "table", lambda report: "")
    assert main(["bench", *TINY, "--impl", "jax-epoch", *given]) == 0
    assert seen["cores"] == cores


@pytest.fixture
def no_flax(monkeypatch):
    find_spec = importlib.util.find_spec

    def without_flax(name, *args):
        return None if name == "flax" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_flax)


def test_a_named_missing_library_is_one_line(no_flax, capsys):
    assert main(["bench", *TINY, "--impl", "flax-nnx-scan", "--processes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "flax is not installed" in err and "pip install 'jax-echo[peers]'" in err


def test_all_leaves_a_missing_library_out_in_one_line(no_flax):
    lines = []
    found = [r.name for r in bench.rows(["all"], lines.append)]
    assert not any(name.startswith("flax") for name in found) and "jax-epoch" in found
    (line,) = [line for line in lines if "flax" in line]
    assert line.startswith("left out flax-nnx-jit, flax-nnx-scan:")
    assert "pip install 'jax-echo[peers]'" in line


def test_any_batch_size_gets_a_series_it_divides():
    args = build_parser().parse_args(["bench", "--batch-size", "12"])
    assert config_from_args(args, fit_series=True).total_series_length == 49992  # 50000 // 12
    args = build_parser().parse_args(["bench", "--batch-size", "12", *TINY[:2]])
    with pytest.raises(ValueError, match="multiple of batch_size"):
        config_from_args(args, fit_series=True)  # a length given is the user's
