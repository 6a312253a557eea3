"""The shared suite: every implementation, on identical weights and data, against the TF1 program.

The reference is ``tf-graph``, the tutorial's own ``session.run`` program. In float32 the
implementations sum in different orders, so they agree to rounding at first; once the loss drops
steeply (the second epoch of the tutorial run) those differences are amplified and the float32
trajectories drift apart, so long float32 runs are compared on accuracy, not on losses. In float64
rounding stays far below the tolerance for a whole epoch.
"""

import jax
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from jax_echo import EchoConfig, epoch_data, init_params
from jax_echo.compare import IMPLEMENTATIONS, REFERENCE, block, make_trainer

CFG = EchoConfig()


def window(x, index):
    T = CFG.truncated_backprop_length
    return x[:, index * T : (index + 1) * T]


@pytest.fixture(scope="module")
def reference():
    """The TF1 program, float32, from the tutorial config's initial weights."""
    trainer = make_trainer(REFERENCE, CFG, init_params(CFG))
    yield trainer
    trainer.close()


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request):
    return request.param


def test_forward_matches_tf1(impl, reference):
    trainer = make_trainer(impl, CFG, init_params(CFG))
    x, _ = epoch_data(CFG, 0)
    h0 = np.random.default_rng(0).uniform(-1, 1, (5, 4)).astype(np.float32)
    logits, h = trainer.forward(window(x, 3), h0)
    ref_logits, ref_h = reference.forward(window(x, 3), h0)
    assert logits.shape == ref_logits.shape == (5, 15, 2)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(h, ref_h, rtol=1e-6, atol=1e-6)


def test_gradients_match_tf1(impl, reference):
    trainer = make_trainer(impl, CFG, init_params(CFG))
    x, y = epoch_data(CFG, 0)
    h0 = np.random.default_rng(1).uniform(-1, 1, (5, 4)).astype(np.float32)
    loss, grads = trainer.loss_and_gradients(window(x, 5), window(y, 5), h0)
    ref_loss, ref_grads = reference.loss_and_gradients(window(x, 5), window(y, 5), h0)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for name, g, ref in zip(grads._fields, grads, ref_grads, strict=True):
        scale = np.abs(ref).max()
        np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5 * scale, err_msg=name)


def test_one_adagrad_step_matches_tf1(impl):
    params = init_params(CFG)
    trainer, ref = make_trainer(impl, CFG, params), make_trainer(REFERENCE, CFG, params)
    x, y = epoch_data(CFG, 0)
    h0 = np.zeros((5, 4), np.float32)
    h, loss = trainer.train_step(h0, window(x, 0), window(y, 0))
    ref_h, ref_loss = ref.train_step(h0, window(x, 0), window(y, 0))
    np.testing.assert_allclose(block(loss), ref_loss, rtol=1e-6)
    np.testing.assert_allclose(block(h), ref_h, rtol=1e-6, atol=1e-6)
    (p, s), (ref_p, ref_s) = trainer.get_state(), ref.get_state()
    for a, b in zip([*p, *s.accumulator], [*ref_p, *ref_s.accumulator], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(p.W, params.W)  # the step did move the weights


def test_first_100_windows_match_tf1(impl):
    cfg = EchoConfig(total_series_length=7500)  # 100 windows
    params = init_params(cfg)
    x, y = epoch_data(cfg, 0)
    losses = block(make_trainer(impl, cfg, params).train_epoch(x, y))
    ref_losses = make_trainer(REFERENCE, cfg, params).train_epoch(x, y)
    assert losses.shape == (100,)
    np.testing.assert_allclose(losses, ref_losses, atol=1e-4)


def test_float64_epoch_trajectories_agree_to_1e_10(impl):
    with jax.enable_x64(True):
        params = init_params(CFG, dtype=np.float64)
        x, y = epoch_data(CFG, 0)
        losses = block(make_trainer(impl, CFG, params, np.float64).train_epoch(x, y))
        ref = make_trainer(REFERENCE, CFG, params, np.float64)
        ref_losses = ref.train_epoch(x, y)
    assert losses.dtype == ref_losses.dtype == np.float64
    assert losses.shape == (666,)
    np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_full_tutorial_run_learns_the_echo(impl):
    params = init_params(CFG)
    trainer = make_trainer(impl, CFG, params)
    for epoch in range(CFG.num_epochs):
        x, y = epoch_data(CFG, epoch)
        losses = block(trainer.train_epoch(x, y))
    assert np.isfinite(losses).all()
    T = CFG.truncated_backprop_length
    y_NxBxT = y[:, : 666 * T].reshape(5, 666, T).swapaxes(0, 1)
    accs = (trainer.predict_epoch(x) == y_NxBxT).mean(axis=(1, 2))
    assert accs[1:].mean() >= 0.999
    assert np.mean(losses[1:]) < 0.01


def test_tf1_program_leaves_eager_execution_on():
    import tensorflow as tf

    trainer = make_trainer("tf-graph", CFG, init_params(CFG))
    x, y = epoch_data(EchoConfig(total_series_length=750), 0)
    trainer.train_step(np.zeros((5, 4), np.float32), window(x, 0), window(y, 0))
    assert tf.executing_eagerly()
    assert float(tf.reduce_sum(tf.ones(3))) == 3.0  # eager ops still run
    assert tf.compat.v1.get_default_graph() is not trainer.graph
