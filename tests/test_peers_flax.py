"""The Flax benchmark rows (``jax_echo.peers.flax_peer``) against jax_echo on identical weights.

In float64 a Flax epoch must reproduce jax_echo's ``train_epoch`` (losses and weights) to ~1e-10:
that checks the weight mapping (LSTM gate order, the folded forget bias), the carried state, the
loss and TF1's Adagrad at once. Flax's GRU is not TF1's cell, so it is only run.
"""

import dataclasses

import jax
import numpy as np
import pytest

pytest.importorskip("flax")

from jax_echo import EchoConfig, epoch_data, init_params, make_optimizer
from jax_echo import model as jax_model
from jax_echo.cells import params_to_dict
from jax_echo.peers import peer
from jax_echo.peers.flax_peer import NnxJitTrainer, NnxScanTrainer
from jax_echo.task import split_windows
from jax_echo.trainers import make_trainer
from tests import reference

TRAINERS = (NnxJitTrainer, NnxScanTrainer)
# 20 windows of 5 rows x 5 steps: short windows compile faster; the programs are the same.
T = 5
SHORT = {"truncated_backprop_length": T, "total_series_length": 500}
MODELS = {
    "tutorial": EchoConfig(**SHORT),
    "basic_rnn": EchoConfig.for_part(2, **SHORT),
    "lstm": EchoConfig.for_part(3, **SHORT),
    "lstm-3": EchoConfig.for_part(4, **SHORT),
}


def jax_echo_epoch(cfg, params, x, y):
    """jax_echo's epoch from ``params``: the losses and the weights after it."""
    params, _, losses = jax_model.train_epoch(params, make_optimizer(cfg).init(params), x, y, cfg)
    return np.asarray(losses), params_to_dict(params)


def reference_predictions(cfg, weights, x_BxL):
    """NumPy's predictions (N, B, T) from a zero state carried over the series (tests.reference)."""
    logits_BxLxC, _ = reference.forward(cfg, weights, x_BxL, list(reference.zero_state(cfg)))
    return split_windows(np.argmax(logits_BxLxC, axis=-1), cfg.truncated_backprop_length)


@pytest.mark.parametrize(
    "model",
    # basic_rnn is the tutorial's math in another layout; lstm-3 compiles for ~30 s.
    [
        pytest.param(m, marks=pytest.mark.slow if m in ("basic_rnn", "lstm-3") else ())
        for m in MODELS
    ],
)
def test_epoch_matches_jax_echo(model):
    """float64: a whole epoch's losses and weights to ~1e-10, and the predictions after it.
    float32 (LSTM only: one compile more per cell): the first two windows' losses to ~1e-5."""
    cfg = MODELS[model]
    x, y = epoch_data(cfg, 0)
    with jax.enable_x64(True):
        params = init_params(cfg, dtype=np.float64)
        losses, after = jax_echo_epoch(cfg, params, x, y)
    for Trainer in TRAINERS:
        trainer = Trainer(cfg, params_to_dict(params), dtype=np.float64)
        check_float64_epoch(trainer, cfg, params, x, y, losses, after)
        if cfg.cell == "lstm":
            params32 = jax.tree.map(lambda a: a.astype(np.float32), params)  # Params, not a dict
            check_float32_windows(Trainer(cfg, params32), x, y, losses[:2])


def check_float64_epoch(trainer, cfg, params, x, y, losses, after):
    start = trainer.params
    for name, value in params_to_dict(params).items():  # the mapping round-trips
        np.testing.assert_allclose(start[name], value, rtol=0, atol=1e-15, err_msg=name)
    got = trainer.train_epoch(x, y)
    assert got.shape == (cfg.num_batches,) and got.dtype == np.float64
    np.testing.assert_allclose(got, losses, rtol=1e-10, atol=1e-12, err_msg=trainer.name)
    for name, value in trainer.params.items():
        assert value.shape == after[name].shape and value.dtype == np.float64
        np.testing.assert_allclose(value, after[name], rtol=1e-10, atol=1e-12, err_msg=name)
    pred = trainer.predict_epoch(x)
    assert pred.shape == (cfg.num_batches, cfg.batch_size, T) and pred.dtype == np.int32
    np.testing.assert_array_equal(pred, reference_predictions(cfg, after, x))
    trainer.close()


def check_float32_windows(trainer, x, y, losses):
    """Window 0 checks the forward pass from zeros; window 1 the update and the carried state."""
    got = [
        trainer.train_window(x[:, i * T : (i + 1) * T], y[:, i * T : (i + 1) * T]) for i in (0, 1)
    ]
    assert all(isinstance(loss, float) for loss in got)
    np.testing.assert_allclose(got, losses, rtol=1e-5, err_msg=trainer.name)
    assert all(value.dtype == np.float32 for value in trainer.params.values())
    trainer.close()


@pytest.mark.slow  # Flax's own GRU initialisers run eagerly: ~9 s on 2 cores
def test_gru_runs_finite_and_deterministic():
    """Flax's GRU (reset after the matmul) is timed only: it trains, and a seed fixes it."""
    cfg = dataclasses.replace(MODELS["tutorial"], cell="gru")
    x, y = epoch_data(cfg, 0)
    params = params_to_dict(init_params(cfg))
    runs = []
    for Trainer in (NnxJitTrainer, NnxJitTrainer, NnxScanTrainer):
        trainer = Trainer(cfg, params)
        losses = trainer.train_epoch(x, y)
        assert losses.shape == (cfg.num_batches,) and np.isfinite(losses).all()
        runs.append((losses, trainer.params))
    (losses, weights), *others = runs
    assert "layers/0/cell/dense_i/kernel" in weights  # Flax's own layout, not TF1's
    for other_losses, other_weights in others:
        np.testing.assert_allclose(other_losses, losses, rtol=1e-6)
        for name, value in weights.items():
            np.testing.assert_allclose(other_weights[name], value, rtol=1e-5, atol=1e-6)
    other_seed = NnxJitTrainer(dataclasses.replace(cfg, seed=1), params).params
    assert not np.allclose(other_seed["out/kernel"], weights["out/kernel"])


@pytest.mark.parametrize(
    ("change", "kwargs", "match"),
    [
        ({"keep_prob": 0.5}, {}, "keep_prob"),
        ({}, {"device": "tpu"}, "device"),
        ({}, {"dtype": np.float16}, "dtype"),
    ],
)
def test_refuses_what_it_cannot_run(change, kwargs, match):
    cfg = dataclasses.replace(MODELS["lstm"], **change)
    params = init_params(cfg)
    for Trainer in TRAINERS:
        with pytest.raises(ValueError, match=match):
            Trainer(cfg, params, **kwargs)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="a GPU is present")
def test_refuses_an_absent_gpu():
    with pytest.raises(ValueError, match="no 'gpu' device"):
        NnxJitTrainer(MODELS["tutorial"], init_params(MODELS["tutorial"]), device="gpu")


def test_bad_params_and_the_peer_table():
    cfg = MODELS["tutorial"]
    params = params_to_dict(init_params(cfg))
    with pytest.raises(ValueError, match="shape"):
        NnxJitTrainer(cfg, params | {"W": np.zeros((3, 4), np.float32)})
    with pytest.raises(ValueError, match="missing"):
        NnxScanTrainer(cfg, {k: v for k, v in params.items() if k != "W2"})
    for name, Trainer in (("flax-nnx-jit", NnxJitTrainer), ("flax-nnx-scan", NnxScanTrainer)):
        trainer = make_trainer(name, cfg, params)
        assert isinstance(trainer, Trainer) and trainer.name == name
        assert peer(name).library == "flax" and not peer(name).exact("gru")
        trainer.close()


@pytest.mark.slow
def test_realistic_sizes():
    """An LSTM of state 256 on 256 rows and 200-step windows: both trainers run and agree."""
    cfg = EchoConfig.for_part(
        3,
        state_size=256,
        batch_size=256,
        truncated_backprop_length=200,
        total_series_length=256 * 400,
    )
    x, y = epoch_data(cfg, 0)
    params = init_params(cfg)
    jit, scan = (Trainer(cfg, params) for Trainer in TRAINERS)
    np.testing.assert_allclose(jit.train_epoch(x, y), scan.train_epoch(x, y), rtol=1e-4)
    assert np.isfinite(jit.train_window(x[:, :200], y[:, :200]))
    assert scan.predict_epoch(x).shape == (2, 256, 200)
