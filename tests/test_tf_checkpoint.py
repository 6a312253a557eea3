"""TF1 checkpoints: what the author's programs save with ``Saver`` reads into ``jax_echo`` and
predicts the same, and what ``jax_echo`` writes restores into those programs, exactly."""

import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf

from jax_echo import EchoConfig, epoch_data, init_params, params_to_dict, predict_epoch
from jax_echo.io import CheckpointError
from jax_echo.registry import MissingExtraError
from jax_echo.tf_checkpoint import (
    params_from_tf_checkpoint,
    params_to_tf_checkpoint,
    tf1_variable_names,
    write_with_saver,
)
from tf_echo.graph import GraphTrainer

tf1 = tf.compat.v1

# Every part's program and the GRU, at 5-step windows (TF1 builds static_rnn's graph step by
# step) and 4 windows an epoch. Part 6 keeps its dropout while it trains.
SMALL = {"truncated_backprop_length": 5, "total_series_length": 100}
PROGRAMS = {f"part{n}": (EchoConfig.for_part(n, **SMALL), n) for n in range(1, 7)}
PROGRAMS["gru"] = (EchoConfig(cell="gru", **SMALL), None)


# The fast tier reads and writes the distinct name tables: part 1, the one LSTM, the stacked
# LSTMs, the GRU; parts 2 (basic_rnn), 5 (dynamic_rnn) and 6 (dropout) run in the slow tier.
FAST = ("part1", "part3", "part4", "gru")


@pytest.fixture(
    scope="module",
    params=[pytest.param(m, marks=() if m in FAST else pytest.mark.slow) for m in PROGRAMS],
)
def trained(request, tmp_path_factory):
    """The author's program of one part, trained an epoch and saved with its ``Saver``."""
    cfg, part = PROGRAMS[request.param]
    trainer = GraphTrainer(cfg, init_params(cfg), dynamic=part in (5, 6))
    x, y = epoch_data(cfg, 0)
    trainer.train_epoch(x, y)
    path = tmp_path_factory.mktemp(request.param) / "model.ckpt"
    assert trainer.save_tf_checkpoint(path) == str(path)
    yield cfg, part, trainer, x, path
    trainer.close()


def equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_saver_checkpoint_reads_into_jax_echo_and_predicts_as_the_tf_program(trained):
    cfg, part, trainer, x, path = trained
    names = {name for name, _ in tf.train.list_variables(str(path))}
    tf1_names = tf1_variable_names(cfg, part)
    assert names == {*tf1_names.values()} | {f"{n}/Adagrad" for n in tf1_names.values()}
    params = params_from_tf_checkpoint(path, cfg, part=part)
    assert equal(params_to_dict(params), trainer.params)
    assert params_from_tf_checkpoint(path, cfg).W2.dtype == np.float32  # part inferred
    np.testing.assert_array_equal(
        np.asarray(predict_epoch(params, x, cfg)), trainer.predict_epoch(x)
    )


def test_round_trips_through_checkpoints_are_exact(trained, tmp_path):
    cfg, part, trainer, x, path = trained
    # TF -> jax_echo -> TF: restored by Saver in a fresh program's graph, weights bit for bit,
    # Adagrad's slots fresh.
    out = params_to_tf_checkpoint(params_from_tf_checkpoint(path, cfg), cfg, tmp_path / "m.ckpt")
    fresh = GraphTrainer(cfg, init_params(cfg, rng=1), dynamic=part in (5, 6))
    with fresh.graph.as_default():
        tf1.train.Saver().restore(fresh.sess, out)
    assert equal(fresh.params, trainer.params)
    assert all(np.all(a == np.float32(0.1)) for a in fresh.accumulators.values())
    np.testing.assert_array_equal(fresh.predict_epoch(x), trainer.predict_epoch(x))
    # The program's own checkpoint restores whole, Adagrad's slots too.
    fresh.restore_tf_checkpoint(path)
    assert equal(fresh.get_state()[0], trainer.params)
    assert equal(fresh.get_state()[1], trainer.accumulators)
    fresh.close()
    # jax_echo -> TF -> jax_echo, in float64 too.
    for dtype in (np.float32, np.float64):
        params = params_to_dict(init_params(cfg, dtype=dtype))
        params_to_tf_checkpoint(params, cfg, tmp_path / "j.ckpt", part=part)
        back = params_to_dict(params_from_tf_checkpoint(tmp_path / "j.ckpt", cfg, part=part))
        assert equal(back, params) and back["W2"].dtype == dtype


def test_the_names_are_the_author_programs():
    assert tf1_variable_names(EchoConfig.for_part(1)) == {
        "W": "Variable",
        "b": "Variable_1",
        "W2": "Variable_2",
        "b2": "Variable_3",
    }
    assert tf1_variable_names(EchoConfig.for_part(3)) == {
        "cell_0/kernel": "rnn/basic_lstm_cell/kernel",
        "cell_0/bias": "rnn/basic_lstm_cell/bias",
        "W2": "Variable",
        "b2": "Variable_1",
    }
    part4 = tf1_variable_names(EchoConfig.for_part(4), part=4)
    assert part4["cell_1/kernel"] == "rnn/multi_rnn_cell/cell_1/lstm_cell/kernel"
    assert part4 == tf1_variable_names(EchoConfig.for_part(5), part=5)
    assert part4 == tf1_variable_names(EchoConfig.for_part(6), part=6)
    gru = tf1_variable_names(EchoConfig(cell="gru", num_layers=2))
    assert gru["cell_1/candidate/bias"] == "rnn/multi_rnn_cell/cell_1/gru_cell/candidate/bias"
    with pytest.raises(ValueError, match=r"part 4's program has cell='lstm' with 3 layer"):
        tf1_variable_names(EchoConfig.for_part(3), part=4)


def save_raw(path, arrays: dict) -> str:
    """A checkpoint of exactly ``arrays`` (TF1 name -> value), written by TF1's Saver."""
    graph = tf.Graph()
    with graph.as_default():
        var_list = {name: tf1.Variable(value) for name, value in arrays.items()}
        saver, init = tf1.train.Saver(var_list), tf1.global_variables_initializer()
    with tf1.Session(graph=graph) as sess:
        sess.run(init)
        return write_with_saver(saver, sess, path)


def test_another_models_checkpoint_is_refused_by_name(tmp_path):
    part3 = EchoConfig.for_part(3, **SMALL)
    path = params_to_tf_checkpoint(init_params(part3), part3, tmp_path / "part3.ckpt")
    with pytest.raises(
        CheckpointError,
        match=r"another model.*'rnn/basic_lstm_cell/kernel'.*"
        r"cell='lstm' with 1 layer\(s\) \(part 3\).*cell='tutorial'.*\(part 1\)",
    ):
        params_from_tf_checkpoint(path, EchoConfig.for_part(1))
    part4 = EchoConfig.for_part(4, **SMALL)
    path = params_to_tf_checkpoint(init_params(part4), part4, tmp_path / "part4.ckpt")
    two_layers = EchoConfig(cell="lstm", num_layers=2)
    with pytest.raises(
        CheckpointError, match=r"those of cell='lstm' with 3 layer\(s\) \(parts 4-6"
    ):
        params_from_tf_checkpoint(path, two_layers)
    with pytest.raises(ValueError, match="part 3's program"):
        params_from_tf_checkpoint(path, EchoConfig.for_part(4), part=3)


def test_a_missing_or_misshapen_variable_is_refused_by_name(tmp_path):
    cfg = EchoConfig.for_part(2, **SMALL)
    arrays = {
        tf1_name: value
        for (flat, value), tf1_name in zip(
            params_to_dict(init_params(cfg)).items(), tf1_variable_names(cfg).values(), strict=True
        )
    }
    without_bias = {k: v for k, v in arrays.items() if k != "rnn/basic_rnn_cell/bias"}
    path = save_raw(tmp_path / "missing.ckpt", without_bias)
    with pytest.raises(CheckpointError, match=r"missing 'rnn/basic_rnn_cell/bias' \(cell_0/bias\)"):
        params_from_tf_checkpoint(path, cfg)
    path = save_raw(tmp_path / "extra.ckpt", arrays | {"Variable_2": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match=r"unexpected \['Variable_2'\]"):
        params_from_tf_checkpoint(path, cfg)
    path = save_raw(tmp_path / "shape.ckpt", arrays | {"Variable": np.zeros((4, 3), np.float32)})
    with pytest.raises(
        CheckpointError, match=r"variable 'Variable' \(W2\) has shape \(4, 3\), expected \(4, 2\)"
    ):
        params_from_tf_checkpoint(path, cfg)
    with pytest.raises(CheckpointError, match="not a readable TensorFlow checkpoint"):
        params_from_tf_checkpoint(tmp_path / "nothing.ckpt", cfg)
    # Weights alone (no Adagrad slots, a global_step) restore too; the slots start again.
    path = save_raw(tmp_path / "weights.ckpt", arrays | {"global_step": np.int64(7)})
    params = params_to_dict(params_from_tf_checkpoint(path, cfg))
    assert equal(params, params_to_dict(init_params(cfg)))
    trainer = GraphTrainer(cfg, init_params(cfg, rng=1))
    trainer.train_epoch(*epoch_data(cfg, 0))
    trainer.restore_tf_checkpoint(path)
    assert equal(trainer.params, params)
    assert all(np.all(a == np.float32(0.1)) for a in trainer.accumulators.values())
    trainer.close()
    wide = GraphTrainer(cfg, init_params(cfg), np.float64)
    with pytest.raises(CheckpointError, match="holds float32 weights, but this program runs in"):
        wide.restore_tf_checkpoint(path)
    wide.close()


def test_a_failed_save_leaves_the_old_checkpoint(tmp_path):
    cfg = EchoConfig.for_part(1)
    path = params_to_tf_checkpoint(init_params(cfg), cfg, tmp_path / "model.ckpt")
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    assert set(before) == {"model.ckpt.index", "model.ckpt.data-00000-of-00001"}

    class FailingSaver:
        def save(self, sess, path, **kwargs):
            open(path + ".index", "wb").close()
            raise OSError("disk full")

    graph = tf.Graph()
    with pytest.raises(OSError, match="disk full"), tf1.Session(graph=graph) as sess:
        write_with_saver(FailingSaver(), sess, path)
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before
    params_to_tf_checkpoint(init_params(cfg, rng=1), cfg, path)  # replaced whole
    assert equal(
        params_to_dict(params_from_tf_checkpoint(path, cfg)),
        params_to_dict(init_params(cfg, rng=1)),
    )


def test_without_tensorflow_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    cfg = EchoConfig.for_part(1)
    for call in (
        lambda: params_from_tf_checkpoint(tmp_path / "model.ckpt", cfg),
        lambda: params_to_tf_checkpoint(init_params(cfg), cfg, tmp_path / "model.ckpt"),
    ):
        with pytest.raises(
            MissingExtraError,
            match=r"^TensorFlow is not installed.*"
            r"pip install 'jax-echo\[tf\]'$",
        ) as e:
            call()
        assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []
