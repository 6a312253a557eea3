"""The Keras rows (``jax_echo/peers/keras_peer.py``) against jax_echo on the same weights.

Keras runs one backend per process (``KERAS_BACKEND``, read once on import; ``jax_echo.peers``
picks the default), so this file tests the rows of this process' backend; CI runs it under both.
TensorFlow runs float64 and must match jax_echo's float64 to 1e-10. Keras' JAX backend has no
float64 (the row refuses it), so there both run float32: rounding differs per op and compounds
over the epoch's windows and Adagrad steps (~3e-7 seen over 100 windows); ``fit``'s per-window
losses are recovered from a running mean, which adds up to ~k ulp at window k (~2e-6 here).
"""

import functools

import jax
import numpy as np
import pytest

from jax_echo import (
    EchoConfig,
    epoch_data,
    init_params,
    make_optimizer,
    params_to_dict,
    predict_epoch,
    train_epoch,
)
from jax_echo.peers import PEER_NAMES, keras_backend  # before Keras: it picks the backend

pytest.importorskip("keras")

from jax_echo.peers import keras_peer

BACKEND = keras_peer.BACKEND
DTYPE = np.float64 if BACKEND == "tensorflow" else np.float32
LOSS_ATOL, PARAMS_ATOL = (1e-10, 1e-10) if DTYPE == np.float64 else (1e-5, 1e-5)

# 40 windows, enough for a lost carried state to show in the losses. 20 steps, not 15: jax_echo
# unrolls windows of up to 16 cell steps fully, which compiles ~3x longer.
_SMALL = {"total_series_length": 4000, "truncated_backprop_length": 20}
CELLS = {"tutorial": {}, "lstm": {"cell": "lstm"}, "gru": {"cell": "gru"}}
MODELS = {name: EchoConfig(**cell, **_SMALL) for name, cell in CELLS.items()}
MODELS["lstm-3"] = EchoConfig(cell="lstm", num_layers=3, **_SMALL)
TRAINERS = (keras_peer.TrainOnBatchTrainer, keras_peer.FitTrainer, keras_peer.FitStepsTrainer)
FORMS = {"TrainOnBatchTrainer": "batch", "FitTrainer": "fit", "FitStepsTrainer": "fit-steps"}
# Each case compiles Keras' train step (seconds). The default tier runs every trainer: part 1's
# layer and the GRU per window, the LSTM under fit and fit-steps; the slow tier every other pair.
FAST = {
    ("tutorial", "TrainOnBatchTrainer"),
    ("gru", "TrainOnBatchTrainer"),
    ("lstm", "FitTrainer"),
    ("lstm", "FitStepsTrainer"),
}


@functools.cache
def _jax_epoch(model: str):
    """jax_echo on ``MODELS[model]``, on the CPU: its initial weights, then predictions, losses
    and weights after one epoch, and predictions from those."""
    cfg = MODELS[model]
    x, y = epoch_data(cfg, 0)
    with jax.enable_x64(DTYPE == np.float64), jax.default_device(jax.devices("cpu")[0]):
        params = init_params(cfg, dtype=DTYPE)
        run = {"flat": params_to_dict(params), "pred": np.asarray(predict_epoch(params, x, cfg))}
        params, _, losses = train_epoch(params, make_optimizer(cfg).init(params), x, y, cfg)
        run |= {"losses": np.asarray(losses), "trained": params_to_dict(params)}
        return run | {"trained_pred": np.asarray(predict_epoch(params, x, cfg))}


@pytest.mark.parametrize(
    "model, trainer",
    [
        pytest.param(m, t, marks=() if (m, t.__name__) in FAST else pytest.mark.slow)
        for m in MODELS
        for t in TRAINERS
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_epoch_matches_jax_echo(model, trainer):
    cfg, run = MODELS[model], _jax_epoch(model)
    x, y = epoch_data(cfg, 0)
    peer = trainer(cfg, run["flat"], dtype=DTYPE)
    assert peer.name == f"keras-{keras_backend()}-{FORMS[trainer.__name__]}"
    assert peer.name in PEER_NAMES
    _assert_same_predictions(peer.predict_epoch(x), run["pred"])

    losses = peer.train_epoch(x, y)
    assert losses.shape == (cfg.num_batches,)
    np.testing.assert_allclose(losses, run["losses"], rtol=0, atol=LOSS_ATOL)
    params = peer.params
    assert params.keys() == run["trained"].keys()
    for name, value in run["trained"].items():
        np.testing.assert_allclose(params[name], value, rtol=0, atol=PARAMS_ATOL, err_msg=name)

    # predict_epoch starts from zeros and leaves the state carried out of the epoch in place.
    state = peer.model.layers[1].states[0]
    carried = np.asarray(state.value)
    assert np.abs(carried).max() > 0
    _assert_same_predictions(peer.predict_epoch(x), run["trained_pred"])
    np.testing.assert_array_equal(np.asarray(state.value), carried)
    peer.close()


def _assert_same_predictions(pred, expected):
    assert pred.dtype == np.int32 and pred.shape == expected.shape
    # A near-tie of the two logits may round apart in float32, never in float64.
    assert np.mean(pred == expected) >= (1.0 if DTYPE == np.float64 else 0.999)


def test_weights_round_trip_through_keras_layout():
    """Every cell's TF1 arrays go into the Keras layers and come back unchanged (``Params`` in)."""
    rng = np.random.default_rng(0)
    for cfg in MODELS.values():
        params = jax.tree.map(
            lambda a: rng.normal(size=np.shape(a)).astype(np.float32), init_params(cfg)
        )
        peer = keras_peer.TrainOnBatchTrainer(cfg, params)
        got = peer.params
        for name, value in params_to_dict(params).items():
            # The LSTM's folded forget bias costs (b + 1) - 1 rounding in float32.
            np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-6, err_msg=name)
            assert got[name].dtype == np.float32
        peer.close()


@pytest.mark.parametrize(
    "changes, kwargs, match",
    [
        ({"cell": "lstm", "num_layers": 3, "keep_prob": 0.5}, {}, "keep_prob"),
        ({}, {"device": "tpu"}, "device"),
        ({}, {"dtype": np.float16}, "float16"),
    ],
)
def test_rejects_what_it_cannot_run(changes, kwargs, match):
    cfg = EchoConfig(**changes)
    with pytest.raises(ValueError, match=match):
        keras_peer.FitTrainer(cfg, init_params(cfg), **kwargs)


def test_gpu_matches_jax_echo_or_is_refused():
    """On a GPU: the LSTM (cuDNN's kernel where the backend picks it) against jax_echo. GPU
    matmuls and cuDNN round differently from the CPU (~1e-4 seen on an H200 over 40 windows)."""
    cfg = MODELS["lstm"]
    try:  # the weights of _jax_epoch("lstm"), which runs only where there is a GPU
        peer = keras_peer.TrainOnBatchTrainer(cfg, init_params(cfg, dtype=DTYPE), DTYPE, "gpu")
    except ValueError as e:
        assert "'gpu'" in str(e)
        pytest.skip(str(e))
    losses = peer.train_epoch(*epoch_data(cfg, 0))
    np.testing.assert_allclose(losses, _jax_epoch("lstm")["losses"], rtol=0, atol=1e-3)
    peer.close()


@pytest.mark.skipif(BACKEND != "jax", reason="float64 is refused on Keras' JAX backend only")
def test_rejects_float64_on_jax():
    cfg = EchoConfig()
    with pytest.raises(ValueError, match="float64"):
        keras_peer.TrainOnBatchTrainer(cfg, init_params(cfg), dtype=np.float64)


@pytest.mark.slow
def test_runs_realistic_sizes():
    """An LSTM of 256 units, 256 rows, 200-step windows: two windows of each form."""
    cfg = EchoConfig(
        cell="lstm", state_size=256, batch_size=256, truncated_backprop_length=200,
        total_series_length=256 * 400,
    )  # fmt: skip
    x, y = epoch_data(cfg, 0)
    for trainer in TRAINERS:
        peer = trainer(cfg, init_params(cfg))
        losses = peer.train_epoch(x, y)
        assert losses.shape == (2,) and np.isfinite(losses).all()
        assert peer.predict_epoch(x).shape == (2, 256, 200)
        peer.close()
