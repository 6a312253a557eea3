"""``tf-echo train`` and ``jax-echo compare``: the user-facing TensorFlow commands."""

import json
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from jax_echo import EchoConfig
from jax_echo.cli import main as jax_main
from jax_echo.io import CheckpointError, load_params
from tf_echo.cli import main as tf_main

SMALL = ["--total-series-length", "1500", "--no-progress", "--quiet"]  # 20 windows


@pytest.mark.parametrize(
    "impl", ["graph", pytest.param("function-epoch-xla", marks=pytest.mark.slow)]
)
def test_tf_echo_train_mirrors_jax_echo(tmp_path, impl):
    out = tmp_path / impl
    assert tf_main(["train", "--impl", impl, "--epochs", "2", *SMALL, "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {
        "params.npz",
        "history.json",
        "echo.png",
        "checkpoint.npz",
        "history.jsonl",
    }
    record = json.loads((out / "history.json").read_text())
    assert record["implementation"] == f"tf-{impl}"
    # jax-echo's breakdown of the wall time, but no compile: TensorFlow's is inside the others.
    seconds = record["seconds"]
    assert "compile" not in seconds and all(v >= 0 for v in seconds.values()), seconds
    parts = sum(v for k, v in seconds.items() if k != "wall")
    assert parts == pytest.approx(seconds["wall"], rel=1e-9) == record["wall_seconds"]
    assert seconds["imports"] > 0
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


@pytest.mark.slow  # builds and trains TF1's 3-layer LSTM through dynamic_rnn: ~30 s on 2 cores
def test_tf_echo_train_part_5_is_the_dynamic_rnn_program_of_part_4s_model(tmp_path, capsys):
    runs = {}
    for part in (4, 5):
        out = tmp_path / f"part{part}"
        args = ["train", "--part", str(part), "--epochs", "1", *SMALL, "--out", str(out)]
        assert tf_main(args) == 0
        runs[part] = json.loads((out / "history.json").read_text())
    assert runs[5]["part"] == 5 and runs[5]["config"] == runs[4]["config"]
    np.testing.assert_allclose(runs[4]["history"]["loss"], runs[5]["history"]["loss"], atol=1e-5)
    _, cfg = load_params(tmp_path / "part5" / "params.npz")
    assert (cfg.cell, cfg.num_layers) == ("lstm", 3)
    # A JAX checkpoint is not a TensorFlow one: resuming across implementations is refused.
    jax_out = tmp_path / "jax"
    assert jax_main(["train", "--part", "4", "--epochs", "1", *SMALL, "--out", str(jax_out)]) == 0
    capsys.readouterr()
    args = ["train", "--part", "4", "--epochs", "2", *SMALL, "--out", str(jax_out), "--resume"]
    assert tf_main(args) == 2
    assert "was written by jax, not tf-graph" in capsys.readouterr().err
    assert issubclass(CheckpointError, ValueError)


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
        assert results[name]["first_epoch_seconds"] > 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_float64_reproduces_the_1e_10_parity_from_the_cli(tmp_path, capsys):
    args = ["compare", "--part", "3", "--epochs", "1", "--windows", "100", "--float64"]
    args += ["--impl", "jax-epoch", "tf-graph", "--json", str(tmp_path / "c.json")]
    assert jax_main(args) == 0
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["dtype"] == "float64" and report["config"]["cell"] == "lstm"
    assert report["results"]["jax-epoch"]["max_loss_diff_vs_tf1"] < 1e-10


def test_compare_without_tensorflow_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tf_echo", None)  # as if the tf extra were missing
    assert jax_main(["compare", "--impl", "tf-graph", "--windows", "5"]) == 2
    assert "pip install 'jax-echo[tf]'" in capsys.readouterr().err
