"""Keras 3 ``.weights.h5`` files of the Keras rows' model (``jax_echo/peers/keras_peer.py``):
TF1-layout weights in and out, and the Keras model predicting as ``jax_echo`` on them.

Keras runs one backend per process (``jax_echo.peers`` picks JAX unless ``KERAS_BACKEND`` says
otherwise); the files and the mapping are the same under either.
"""

import jax
import numpy as np
import pytest

from jax_echo import EchoConfig, epoch_data, forward, init_params, params_to_dict, predict_epoch
from jax_echo.cells import initial_state
from jax_echo.io import CheckpointError
from jax_echo.peers import keras_backend  # before Keras: it picks the backend
from jax_echo.task import split_windows

pytest.importorskip("keras")

import keras

from jax_echo.peers.keras_peer import (
    build_model,
    params_from_keras_weights,
    params_to_keras_weights,
)

# 100 steps of 5 rows; part 1's layer, the one LSTM, three stacked LSTMs, the GRU.
_SMALL = {"total_series_length": 500, "truncated_backprop_length": 5}
MODELS = {
    "tutorial": EchoConfig(**_SMALL),
    "lstm": EchoConfig(cell="lstm", **_SMALL),
    "lstm-3": EchoConfig(cell="lstm", num_layers=3, **_SMALL),
    "gru": EchoConfig(cell="gru", **_SMALL),
}


def random_params(cfg: EchoConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights with every entry drawn (biases too, so the LSTM's forget bias is not 0)."""
    rng = np.random.default_rng(seed)
    return {
        k: rng.normal(0, 0.7, np.shape(v)).astype(np.float32)
        for k, v in params_to_dict(init_params(cfg)).items()
    }


@pytest.mark.parametrize("model", list(MODELS))
def test_a_round_trip_is_exact_and_keras_predicts_as_jax_echo(model, tmp_path):
    cfg = MODELS[model]
    flat = random_params(cfg)
    path = tmp_path / "echo.weights.h5"
    assert params_to_keras_weights(flat, cfg, path) == str(path)
    back = params_to_dict(params_from_keras_weights(path, cfg))
    assert back.keys() == flat.keys()
    S = cfg.state_size
    for name, value in flat.items():
        assert back[name].dtype == np.float32
        if name.endswith("/bias") and cfg.cell == "lstm":
            # Keras holds b + 1.0 for the forget block (TF1's f): back to 1.0's resolution.
            forget = slice(2 * S, 3 * S)
            np.testing.assert_allclose(back[name][forget], value[forget], rtol=0, atol=2**-24)
            value, back[name] = np.delete(value, forget), np.delete(back[name], forget)
        np.testing.assert_array_equal(back[name], value, err_msg=name)

    # Keras' own layers, built as a user builds them, read the file and predict as jax_echo.
    x, _ = epoch_data(cfg, 0)
    with jax.numpy_rank_promotion("allow"):  # Keras' ops broadcast ranks
        keras_model = build_model(cfg, init_params(cfg, rng=1), carried=False)
        keras_model.load_weights(path)
        logits_BxLxC = np.asarray(keras_model.predict_on_batch(x[..., None].astype(np.float32)))
    params = params_from_keras_weights(path, cfg)
    ours, _ = forward(params, x.astype(np.float32), initial_state(cfg), cfg)
    np.testing.assert_allclose(logits_BxLxC, np.asarray(ours), rtol=0, atol=1e-5)
    preds = split_windows(np.argmax(logits_BxLxC, -1), cfg.truncated_backprop_length)
    np.testing.assert_array_equal(preds, np.asarray(predict_epoch(params, x, cfg)))


def test_init_weights_round_trip_bit_for_bit(tmp_path):
    cfg = MODELS["lstm"]  # TF1's biases start at zero: the forget bias comes back exactly
    params = params_to_dict(init_params(cfg))
    params_to_keras_weights(params, cfg, tmp_path / "a.weights.h5")
    back = params_to_dict(params_from_keras_weights(tmp_path / "a.weights.h5", cfg))
    assert all(np.array_equal(back[k], v) for k, v in params.items())


def keras_file(tmp_path, name: str, layer, num_layers: int = 1, units: int = 4) -> str:
    """A weights file of a model a Keras user builds: stateful layers, then Dense(2)."""
    with jax.numpy_rank_promotion("allow"):
        inputs = h = keras.Input(batch_shape=(5, None, 1))
        for _ in range(num_layers):
            h = layer(units, stateful=True, return_sequences=True)(h)
        path = str(tmp_path / f"{name}.weights.h5")
        keras.Model(inputs, keras.layers.Dense(2)(h)).save_weights(path)
    return path


def test_a_file_of_another_model_or_math_is_refused_by_name(tmp_path):
    lstm = EchoConfig(cell="lstm", **_SMALL)
    # Keras' default GRU resets after the matmul: not TF1's cell, said so.
    default_gru = keras_file(tmp_path, "gru", keras.layers.GRU)
    with pytest.raises(
        ValueError, match=r"Keras' default GRU \(reset_after=True.*reset_after=False"
    ):
        params_from_keras_weights(default_gru, EchoConfig(cell="gru", **_SMALL))
    # A user's own Keras LSTM reads (the forget bias it starts with is TF1's 1.0 at run time).
    own = params_from_keras_weights(keras_file(tmp_path, "lstm", keras.layers.LSTM), lstm)
    np.testing.assert_array_equal(own.cells[0].bias, np.zeros(16, np.float32))
    # Other layers, another cell, other sizes: named.
    three = keras_file(tmp_path, "lstm3", keras.layers.LSTM, num_layers=3)
    with pytest.raises(
        CheckpointError, match=r"cell='lstm' with 1 layer.*unexpected layers/lstm_1"
    ):
        params_from_keras_weights(three, lstm)
    with pytest.raises(CheckpointError, match=r"missing layers/lstm/cell/vars/0 \(1, 16\)"):
        params_from_keras_weights(default_gru, lstm)
    wide = keras_file(tmp_path, "wide", keras.layers.LSTM, units=6)
    with pytest.raises(
        CheckpointError, match=r"shape .*layers/lstm/cell/vars/0 \(1, 24\) \(expected \(1, 16\)\)"
    ):
        params_from_keras_weights(wide, lstm)
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(CheckpointError, match="not a readable Keras weights file"):
        params_from_keras_weights(tmp_path / "junk.weights.h5", lstm)
    with pytest.raises(ValueError, match=r"named \*\.weights\.h5"):
        params_to_keras_weights(init_params(lstm), lstm, tmp_path / "model.h5")
    assert keras_backend() in ("jax", "tensorflow")
