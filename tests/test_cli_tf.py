"""``tf-echo train`` and ``jax-echo compare``: the user-facing TensorFlow commands."""

import json
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from jax_echo import EchoConfig
from jax_echo.cli import main as jax_main
from jax_echo.train import load_params
from tf_echo.cli import main as tf_main

SMALL = ["--total-series-length", "1500", "--no-progress", "--quiet"]  # 20 windows


@pytest.mark.parametrize("impl", ["graph", "function-epoch-xla"])
def test_tf_echo_train_mirrors_jax_echo(tmp_path, impl):
    out = tmp_path / impl
    assert tf_main(["train", "--impl", impl, "--epochs", "2", *SMALL, "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"params.npz", "history.json", "echo.png"}
    record = json.loads((out / "history.json").read_text())
    assert record["implementation"] == f"tf-{impl}"
    assert record["config"] == EchoConfig(num_epochs=2, total_series_length=1500).to_dict()
    # Same weights and data as jax-echo: the first losses agree.
    jax_out = tmp_path / "jax"
    assert jax_main(["train", "--epochs", "2", *SMALL, "--out", str(jax_out)]) == 0
    jax_record = json.loads((jax_out / "history.json").read_text())
    np.testing.assert_allclose(
        record["history"]["loss"][0], jax_record["history"]["loss"][0], atol=1e-4
    )
    # Resume continues the TensorFlow run from its checkpoint.
    args = ["train", "--impl", impl, "--epochs", "3", *SMALL, "--out", str(out), "--resume"]
    assert tf_main(args) == 0
    assert len(json.loads((out / "history.json").read_text())["history"]["loss"]) == 3
    load_params(out / "params.npz")


def test_compare_prints_a_table_and_writes_json_and_plot(tmp_path, capsys):
    args = [
        "compare",
        "--epochs",
        "2",
        "--windows",
        "30",
        "--impl",
        "jax-epoch",
        "jax-step",
        "tf-graph",
        "tf-function-epoch",
        "--json",
        str(tmp_path / "c.json"),
        "--plot",
        str(tmp_path / "c.png"),
    ]
    assert jax_main(args) == 0
    table = capsys.readouterr().out
    for name in ["jax-epoch", "jax-step", "tf-graph", "tf-function-epoch"]:
        assert f"| {name} |" in table
    report = json.loads((tmp_path / "c.json").read_text())
    results = report["results"]
    assert results["tf-graph"]["max_loss_diff_vs_tf1"] == 0
    for name in ["jax-epoch", "jax-step", "tf-function-epoch"]:
        assert len(results[name]["losses"]) == 60
        assert results[name]["max_loss_diff_vs_tf1"] < 1e-4
        assert results[name]["us_per_window"] > 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_without_tensorflow_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tf_echo", None)  # as if the tf extra were missing
    assert jax_main(["compare", "--impl", "tf-graph", "--windows", "5"]) == 2
    assert "pip install 'jax-echo[tf]'" in capsys.readouterr().err
