"""The PyTorch benchmark rows (``jax_echo.peers.torch_peer``) against jax_echo, same weights.

nn.RNN and nn.LSTM have TF1's math, so from identical weights a float64 epoch agrees with
jax_echo's to rounding, and so do the weights after it; nn.GRU does not (the reset gate comes
after the matmul), so the GRU row is only checked to run, deterministically. The compiled-window
row is TF1's math in TF1's layout for every cell: its step function is checked eagerly on every
cell and depth (fast), and compiled in the slow tier (Inductor's compile takes ~25 s a graph).
Checks that need no training run against the NumPy reference (``tests/reference.py``): it
compiles nothing.
"""

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from jax_echo import EchoConfig, epoch_data, init_params, make_optimizer
from jax_echo import model as jax_model
from jax_echo.cells import params_from_dict, params_to_dict
from jax_echo.peers.torch_peer import (
    CompiledTrainer,
    EagerTrainer,
    WindowCompiledTrainer,
    window_logits,
    window_step,
)
from tests import reference

# 20 windows per epoch. The LSTMs' float64 epochs use 5-step windows: jax_echo's compile time
# grows with the unrolled window, and dominates these tests on a 2-core CPU.
EPOCH_CONFIGS = {
    "part1": EchoConfig.for_part(1, total_series_length=1500),
    "part2": EchoConfig.for_part(2, total_series_length=1500),
    "part3": EchoConfig.for_part(3, total_series_length=500, truncated_backprop_length=5),
    "part4": EchoConfig.for_part(4, total_series_length=500, truncated_backprop_length=5),
}
WINDOW_CONFIGS = {
    **{f"part{n}": EchoConfig.for_part(n, total_series_length=1500) for n in (1, 2, 3, 4)},
    # Not the tutorial's sizes: every size must come from the config.
    "lstm-2x16": EchoConfig(
        cell="lstm", num_layers=2, state_size=16, batch_size=8, truncated_backprop_length=40,
        total_series_length=8 * 120, seed=3,
    ),
}  # fmt: skip


def reference_predictions(cfg, weights, x_BxL):
    """The NumPy reference's predictions (N, B, T) of a series, state carried from zeros."""
    T, N = cfg.truncated_backprop_length, cfg.num_batches
    logits_BxNTxC, _ = reference.forward(cfg, weights, x_BxL[:, : N * T], reference.zero_state(cfg))
    return logits_BxNTxC.argmax(-1).reshape(cfg.batch_size, N, T).swapaxes(0, 1)


def _float64_epoch(trainer_class, cfg):
    """A float64 trainer of ``cfg`` after epoch 0, whose losses are jax_echo's to 1e-10; with
    the epoch's inputs and jax_echo's trained weights."""
    params = init_params(cfg, dtype=np.float64)
    x, y = epoch_data(cfg, 0)
    trainer = trainer_class(cfg, params_to_dict(params), dtype=np.float64)
    losses = trainer.train_epoch(x, y)
    ref_params, _, ref_losses = jax_model.train_epoch(
        params, make_optimizer(cfg).init(params), x, y, cfg
    )
    assert losses.dtype == np.float64 and losses.shape == (cfg.num_batches,)
    np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=1e-10)
    return trainer, x, ref_params


@pytest.mark.parametrize("name", list(EPOCH_CONFIGS))
def test_float64_epoch_losses_and_weights_match_jax_echo(name, x64):
    cfg = EPOCH_CONFIGS[name]
    trainer, x, ref_params = _float64_epoch(EagerTrainer, cfg)
    trained, ref_trained = trainer.params, params_to_dict(ref_params)
    assert trained.keys() == ref_trained.keys()
    for key, value in trained.items():
        assert value.dtype == np.float64 and value.shape == ref_trained[key].shape, key
        np.testing.assert_allclose(value, ref_trained[key], rtol=0, atol=1e-10, err_msg=key)
    predictions = trainer.predict_epoch(x)
    np.testing.assert_array_equal(predictions, reference_predictions(cfg, trained, x))
    trainer.close()


@pytest.mark.parametrize("name", list(WINDOW_CONFIGS))
def test_float32_window_loss_matches_the_reference(name):
    cfg = WINDOW_CONFIGS[name]
    params = init_params(cfg)  # jax_echo.cells.Params, accepted as well as the flat dict
    x, y = epoch_data(cfg, 0)
    T = cfg.truncated_backprop_length
    loss = EagerTrainer(cfg, params).train_window(x[:, :T], y[:, :T])
    assert isinstance(loss, float)
    weights = params_to_dict(params)
    ref_loss = reference.loss(cfg, weights, x[:, :T], y[:, :T], reference.zero_state(cfg))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)


def test_predict_epoch_matches_jax_echo_without_training_or_the_carried_state():
    cfg = EPOCH_CONFIGS["part4"]
    x, y = epoch_data(cfg, 0)
    trainer = EagerTrainer(cfg, init_params(cfg))
    trainer.train_epoch(x, y)  # trained weights, and a nonzero carried state
    before = trainer.params
    predictions = trainer.predict_epoch(x)
    assert predictions.dtype == np.int32
    assert predictions.shape == (cfg.num_batches, cfg.batch_size, cfg.truncated_backprop_length)
    ref_predictions = jax_model.predict_epoch(params_from_dict(before, cfg), x, cfg)
    np.testing.assert_array_equal(predictions, ref_predictions)
    np.testing.assert_array_equal(trainer.predict_epoch(x), predictions)
    for key, value in trainer.params.items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_gru_is_timed_only_and_runs_deterministically():
    cfg = EchoConfig(cell="gru", num_layers=2, total_series_length=1500)
    x, y = epoch_data(cfg, 0)
    losses = [EagerTrainer(cfg, init_params(cfg)).train_epoch(x, y) for _ in range(2)]
    assert np.isfinite(losses[0]).all()
    np.testing.assert_array_equal(losses[0], losses[1])
    other_seed = EchoConfig(cell="gru", num_layers=2, total_series_length=1500, seed=1)
    assert not np.allclose(EagerTrainer(other_seed, init_params(cfg)).train_epoch(x, y), losses[0])
    # Its weights are PyTorch's own, in PyTorch's layout.
    assert "rnn.weight_hh_l1" in EagerTrainer(cfg, init_params(cfg)).params


@pytest.mark.parametrize(
    ("changes", "kwargs", "match"),
    [
        ({"cell": "lstm", "keep_prob": 0.5}, {}, "keep_prob"),
        ({}, {"device": "tpu"}, "device"),
        ({}, {"dtype": np.float16}, "dtype"),
    ],
)
def test_what_it_cannot_run_is_a_value_error(changes, kwargs, match):
    cfg = EchoConfig(total_series_length=1500, **changes)
    with pytest.raises(ValueError, match=match):
        EagerTrainer(cfg, init_params(cfg), **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_epoch_matches_the_cpu():
    cfg = EPOCH_CONFIGS["part4"]
    params = init_params(cfg)
    x, y = epoch_data(cfg, 0)
    losses = EagerTrainer(cfg, params, device="gpu").train_epoch(x, y)
    np.testing.assert_allclose(losses, EagerTrainer(cfg, params).train_epoch(x, y), rtol=1e-4)


# Compiling takes ~20 s on a loaded 2-core CPU with a warm inductor cache, minutes with a cold one.
@pytest.mark.slow
# Dynamo itself reads ``.grad`` of non-leaf tensors while tracing (PyTorch 2.14).
def test_compiled_step_matches_the_eager_one():
    cfg = EchoConfig.for_part(1, total_series_length=150)  # 2 windows
    params = init_params(cfg)
    x, y = epoch_data(cfg, 0)
    trainer = CompiledTrainer(cfg, params)
    losses = trainer.train_epoch(x, y)
    np.testing.assert_allclose(losses, EagerTrainer(cfg, params).train_epoch(x, y), rtol=1e-5)
    trainer.close()


# --- torch-compile-window: the window as a function of tensors ------------------------------------

STEP_CONFIGS = {
    **EPOCH_CONFIGS,
    "gru-2x6": EchoConfig(
        cell="gru", num_layers=2, state_size=6, batch_size=4, truncated_backprop_length=7,
        total_series_length=4 * 7 * 5, seed=2,
    ),
}  # fmt: skip


def _torch_state(cfg, layers):
    """A NumPy state per layer (``h`` or ``(c, h)``) as float64 tensors."""
    as_tensor = torch.from_numpy
    return tuple(
        tuple(map(as_tensor, layer)) if isinstance(layer, tuple) else as_tensor(layer)
        for layer in layers
    )


@pytest.mark.parametrize("name", list(STEP_CONFIGS))
def test_float64_window_step_matches_jax_echo_on_every_cell(name, x64):
    """An epoch of ``window_step``, eagerly, state carried: losses and weights to 1e-12."""
    cfg = STEP_CONFIGS[name]
    params = init_params(cfg, dtype=np.float64)
    x, y = epoch_data(cfg, 0)
    ref_params, _, ref_losses = jax_model.train_epoch(
        params, make_optimizer(cfg).init(params), x, y, cfg
    )
    weights = {k: torch.from_numpy(v) for k, v in params_to_dict(params).items()}
    accumulators = {k: torch.full_like(v, 0.1) for k, v in weights.items()}
    state = _torch_state(cfg, reference.zero_state(cfg))
    step, T = window_step(cfg), cfg.truncated_backprop_length
    x_t, y_t = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y)).long()
    losses = []
    for n in range(cfg.num_batches):
        window = slice(n * T, (n + 1) * T)
        weights, accumulators, state, loss = step(
            weights, accumulators, state, x_t[:, window], y_t[:, window]
        )
        losses.append(loss.item())
    assert loss.dtype == torch.float64
    np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=1e-12)
    for key, value in params_to_dict(ref_params).items():
        np.testing.assert_allclose(weights[key].numpy(), value, rtol=0, atol=1e-12, err_msg=key)


def test_window_logits_carry_the_state_across_windows():
    """Two windows from the carried state give the logits of one window twice as long."""
    cfg = STEP_CONFIGS["part4"]
    weights = {
        k: torch.from_numpy(v)
        for k, v in params_to_dict(init_params(cfg, dtype=np.float64)).items()
    }
    x = torch.from_numpy(np.asarray(epoch_data(cfg, 0)[0][:, :10], np.float64))
    zero = _torch_state(cfg, reference.zero_state(cfg))
    whole_TxBxC, whole_state = window_logits(cfg, weights, zero, x)
    first, state = window_logits(cfg, weights, zero, x[:, :5])
    second, state = window_logits(cfg, weights, state, x[:, 5:])
    assert whole_TxBxC.shape == (10, cfg.batch_size, cfg.num_classes)
    torch.testing.assert_close(torch.cat([first, second]), whole_TxBxC, rtol=0, atol=1e-14)
    torch.testing.assert_close(state, whole_state, rtol=0, atol=1e-14)


def test_window_row_refuses_what_it_cannot_run():
    cfg = EchoConfig(cell="lstm", keep_prob=0.5, total_series_length=1500)
    with pytest.raises(ValueError, match="keep_prob"):
        WindowCompiledTrainer(cfg, init_params(cfg))
    with pytest.raises(ValueError, match="dtype"):
        WindowCompiledTrainer(EchoConfig(), init_params(EchoConfig()), dtype=np.float16)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["part4", "gru-2x6"])
def test_compiled_window_row_matches_jax_echo_in_float64(name, x64):
    """The compiled row: an epoch's losses, its weights and its predictions, to 1e-10."""
    cfg = STEP_CONFIGS[name]
    trainer, x, ref_params = _float64_epoch(WindowCompiledTrainer, cfg)
    y = epoch_data(cfg, 0)[1]
    trained = trainer.params
    for key, value in params_to_dict(ref_params).items():
        np.testing.assert_allclose(trained[key], value, rtol=0, atol=1e-10, err_msg=key)
    np.testing.assert_array_equal(trainer.predict_epoch(x), reference_predictions(cfg, trained, x))
    # The carried state: one more window starts from it, as the reference's does.
    carried = tuple(
        tuple(t.numpy() for t in layer) if isinstance(layer, tuple) else layer.numpy()
        for layer in trainer.state
    )
    assert np.abs(carried[-1][-1] if cfg.cell == "lstm" else carried[-1]).max() > 0
    T = cfg.truncated_backprop_length
    loss = trainer.train_window(x[:, :T], y[:, :T])
    ref_loss = reference.loss(cfg, trained, x[:, :T], y[:, :T], carried)
    np.testing.assert_allclose(loss, ref_loss, rtol=0, atol=1e-10)
    trainer.close()


def test_jax_echo_bench_runs_pytorch_beside_tensorflow_in_one_worker():
    # A worker process loads TensorFlow and PyTorch; triton (PyTorch's compiler) segfaults the
    # process if it loads after TensorFlow, so the worker imports it first (bench.main).
    pytest.importorskip("tensorflow")
    from jax_echo import bench

    cfg = EchoConfig(
        cell="lstm",
        state_size=8,
        batch_size=4,
        truncated_backprop_length=5,
        total_series_length=400,
    )
    report = bench.bench(cfg, ["tf-graph", "torch-eager"], processes=1, rounds=1)
    assert report["failures"] == []
    found = {r["implementation"]: r for r in report["results"]}
    assert set(found) == {"tf-graph", "torch-eager"}
    assert found["torch-eager"]["max_abs_loss_diff"] < 2e-6  # TF1's LSTM math, same weights
