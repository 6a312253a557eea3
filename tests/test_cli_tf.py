"""``tf-echo train | eval`` and ``jax-echo eval | compare``: the user-facing TensorFlow commands."""

import dataclasses
import json
import sys

import jax
import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf

from jax_echo import EchoConfig, epoch_data, init_params, make_optimizer, model, params_to_dict
from jax_echo.cli import main as jax_main
from jax_echo.io import CheckpointError, load_params, save_params
from jax_echo.task import eval_data, prediction_accuracies
from jax_echo.tf_checkpoint import params_from_tf_checkpoint, params_to_tf_checkpoint
from tf_echo.cli import main as tf_main
from tf_echo.graph import GraphTrainer

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
        "model.ckpt.index",
        "model.ckpt.data-00000-of-00001",
    }
    # model.ckpt: the author's TF1 checkpoint of the final weights, which jax_echo reads; the
    # TF1 program's own Saver keeps its Adagrad slots, the TF2 trainers' start at 0.1.
    cfg = EchoConfig(num_epochs=2, total_series_length=1500)
    params, _ = load_params(out / "params.npz")
    from_ckpt = params_to_dict(params_from_tf_checkpoint(out / "model.ckpt", cfg, part=1))
    assert all(np.array_equal(from_ckpt[k], v) for k, v in params_to_dict(params).items())
    slot = tf.train.load_checkpoint(str(out / "model.ckpt")).get_tensor("Variable/Adagrad")
    assert np.any(slot != np.float32(0.1)) == (impl == "graph")
    record = json.loads((out / "history.json").read_text())
    assert record["implementation"] == f"tf-{impl}"
    # jax-echo's breakdown of the wall time, but no compile: TensorFlow's is inside the others.
    seconds = record["seconds"]
    assert "compile" not in seconds and all(v >= 0 for v in seconds.values()), seconds
    parts = sum(v for k, v in seconds.items() if k != "wall")
    assert parts == pytest.approx(seconds["wall"], rel=1e-9)
    assert "wall_seconds" not in record and "training_seconds" not in record
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


# --- eval: the accuracy of saved weights, the same numbers from JAX and from TensorFlow -------

EVAL_OPTIONS = ["--total-series-length", "1500", "--truncated-backprop-length", "5", "--series"]


def eval_json(main, args, capsys) -> dict:
    capsys.readouterr()
    assert main(["eval", *args, "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)  # the JSON alone on stdout


@pytest.mark.parametrize("part", [1, 3])
def test_eval_of_a_saver_checkpoint_is_the_tf_programs_accuracy_from_either_side(
    part, tmp_path, capsys
):
    cfg = EchoConfig.for_part(part, total_series_length=1500, truncated_backprop_length=5)
    trainer = GraphTrainer(cfg, init_params(cfg))  # the author's program, trained and saved
    try:
        trainer.train_epoch(*epoch_data(cfg, 0))
        ckpt = trainer.save_tf_checkpoint(tmp_path / "model.ckpt")
        series = [eval_data(cfg, 12345, i) for i in range(2)]  # eval's default seed, 2 series
        accs = np.stack([prediction_accuracies(trainer.predict_epoch(x), y) for x, y in series])
    finally:
        trainer.close()
    options = ["--part", str(part), *EVAL_OPTIONS, "2"]
    jax_result = eval_json(jax_main, ["--tf-checkpoint", ckpt, *options], capsys)
    tf_result = eval_json(tf_main, ["--tf-checkpoint", ckpt, *options], capsys)
    assert jax_result["accuracy"] == tf_result["accuracy"] == accs.mean()
    assert jax_result["accuracy_after_first"] == tf_result["accuracy_after_first"]
    assert tf_result["accuracy_after_first"] == accs[:, 1:].mean()
    assert jax_result.keys() == tf_result.keys()
    assert (jax_result["implementation"], tf_result["implementation"]) == ("jax", "tf-graph")
    assert jax_result["source"] == tf_result["source"] == "tf-checkpoint"
    assert tf_result["params"] == ckpt and tf_result["cell"] == cfg.cell
    # The same weights as a params file (which carries its config): the same numbers.
    save_params(tmp_path / "params.npz", params_from_tf_checkpoint(ckpt, cfg), cfg)
    for main in (jax_main, tf_main):
        result = eval_json(
            main, ["--params", str(tmp_path / "params.npz"), "--series", "2"], capsys
        )
        assert (result["source"], result["accuracy"]) == ("params", accs.mean())
    if part == 3:  # another part's checkpoint: one line naming what it holds
        assert jax_main(["eval", "--tf-checkpoint", ckpt, *EVAL_OPTIONS, "1"]) == 2
        err = capsys.readouterr().err
        assert "is a checkpoint of another model" in err and "(part 3)" in err
        assert err.count("\n") == 1


def test_tf_echo_eval_help_does_not_load_tensorflow():
    import subprocess

    code = (
        "import sys\nfrom tf_echo.cli import main\ntry:\n    main(['eval', '--help'])\n"
        "except SystemExit:\n    print('tensorflow loaded:', 'tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--tf-checkpoint PATH" in done.stdout and "--impl" in done.stdout
    assert "tensorflow loaded: False" in done.stdout


# --- compare: given starting weights, the weight difference, --atol ---------------------------

COMPARE = ["compare", "--epochs", "1", "--windows", "5", "--impl", "tf-graph", "jax-epoch"]


def test_compare_atol_passes_within_and_exits_1_beyond_naming_the_implementation(capsys):
    def ours(err: str) -> list[str]:  # TensorFlow logs to stderr too
        return [line for line in err.splitlines() if line.startswith("jax-echo:")]

    assert jax_main([*COMPARE, "--atol", "1e-3"]) == 0
    out = capsys.readouterr()
    assert "| within --atol 0.001 |" in out.out.splitlines()[0]
    assert out.out.count("| yes |") == 2 and not ours(out.err)
    assert jax_main([*COMPARE, "--atol", "0"]) == 1
    out = capsys.readouterr()
    (line,) = ours(out.err)
    assert line.startswith("jax-echo: jax-epoch differs from tf-graph beyond --atol 0: loss by ")
    assert ", weights by " in line
    rows = {row.split(" | ")[0].strip("| "): row for row in out.out.splitlines()[2:]}
    assert rows["jax-epoch"].endswith("| NO |") and rows["tf-graph"].endswith("| yes |")
    # Without the reference there is nothing to hold the others to: a user's mistake.
    assert jax_main(["compare", "--impl", "jax-epoch", "--windows", "5", "--atol", "0"]) == 2
    assert "--atol holds every implementation to the reference tf-graph" in capsys.readouterr().err


def test_compare_starts_every_implementation_from_params_or_a_tf_checkpoint(tmp_path):
    cfg = EchoConfig(num_epochs=1, total_series_length=5 * 15 * 5)  # what --windows 5 makes
    params = init_params(cfg, rng=7)
    save_params(tmp_path / "params.npz", params, EchoConfig())  # a file of a 100-epoch run
    params_to_tf_checkpoint(params, cfg, tmp_path / "model.ckpt")
    x, y = epoch_data(cfg, 0)
    _, _, expected = model.train_epoch(params, make_optimizer(cfg).init(params), x, y, cfg)
    for flag, name in (("--params", "params.npz"), ("--tf-checkpoint", "model.ckpt")):
        args = [*COMPARE, flag, str(tmp_path / name), "--json", str(tmp_path / "c.json")]
        assert jax_main(args) == 0
        report = json.loads((tmp_path / "c.json").read_text())
        assert report["config"] == dataclasses.asdict(cfg)  # compare's options over the file's
        results = report["results"]
        np.testing.assert_array_equal(results["jax-epoch"]["losses"], np.asarray(expected, float))
        np.testing.assert_allclose(results["tf-graph"]["losses"], expected, rtol=0, atol=1e-5)
        assert 0 < results["jax-epoch"]["max_abs_param_diff"] < 1e-5
        assert results["tf-graph"]["max_abs_param_diff"] == 0


@pytest.mark.slow  # every implementation, a whole epoch of part 4 in float64: ~2 min on 2 cores
def test_compare_float64_holds_every_implementation_to_1e_9_on_part_4(capsys):
    assert jax_main(["compare", "--float64", "--atol", "1e-9", "--epochs", "1", "--part", "4"]) == 0
    assert capsys.readouterr().out.count("| yes |") == 7


def test_the_tf2_loops_run_without_autograph(monkeypatch):
    """The TF2 peer's loops are ``tf.while_loop``s: they need no AutoGraph conversion of Python
    loops (which TensorFlow 2.21 cannot do on Python 3.13). With every ``tf.function`` built
    with ``autograph=False``, the per-epoch trainer past the unroll limit (a loop over windows
    and one over time) still trains and predicts as ``jax_echo`` does."""
    from jax_echo.trainers import block, make_trainer
    from tf_echo.function import UNROLL_MAX_STEPS

    real = tf.function

    def without_autograph(*args, **kwargs):
        return real(*args, **{**kwargs, "autograph": False})

    monkeypatch.setattr(tf, "function", without_autograph)
    T = UNROLL_MAX_STEPS + 5
    cfg = EchoConfig(truncated_backprop_length=T, total_series_length=3 * 5 * T)
    params = init_params(cfg, dtype=np.float64)
    with jax.enable_x64(True):
        x, y = epoch_data(cfg, 0)
        jax_trainer = make_trainer("jax-epoch", cfg, params, np.float64)
        expected = block(jax_trainer.train_epoch(x, y))
        predicted = block(jax_trainer.predict_epoch(x))
    trainer = make_trainer("tf-function-epoch", cfg, params, np.float64)
    np.testing.assert_allclose(trainer.train_epoch(x, y), expected, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(trainer.predict_epoch(x), predicted)
