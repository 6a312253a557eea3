"""The shared suite: every implementation, on identical weights and data, against the TF1 program
of each part of the series.

The reference of a model is the author's TF1 program (``tf-graph``: static_rnn, or dynamic_rnn for
part 5); every other implementation is checked against it, never the reference against itself
(part 5's dynamic_rnn program is checked against part 4's static_rnn one). In float32 the
implementations sum in different orders, so they agree to rounding at first; once the loss drops
steeply (the second epoch of the tutorial run) those differences are amplified and the float32
trajectories drift apart, so long float32 runs are compared on accuracy, not on losses. In float64
rounding stays far below the tolerance for a whole epoch.
"""

import dataclasses
import functools

import jax
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from jax_echo import EchoConfig, epoch_data, init_params, prediction_accuracies, task
from jax_echo.registry import IMPLEMENTATIONS, REFERENCE
from jax_echo.trainers import block, make_trainer
from tests import reference

# (model, part for the TF1 program) -> config: every model of task.MODELS but part 6 with
# dropout (TensorFlow draws its own masks), which is checked exactly at keep_prob 1.0.
SERIES = {name: (m.config, m.part) for name, m in task.MODELS.items() if name != "part6"}
# Every implementation but the reference itself; part 5's reference is the dynamic_rnn program,
# so there the static_rnn program is one more implementation under test.
# XLA's compile of TensorFlow's stacked cells takes a minute or more on 2 cores, so the two XLA
# variants run on part 1 and part 3 (their non-XLA twins run the same TF ops on every model).
XLA_MODELS = ("part1", "part3")
CASES = [
    (impl, model)
    for model, (_, part) in SERIES.items()
    for impl in IMPLEMENTATIONS
    if (impl != REFERENCE or part == 5) and (not impl.endswith("-xla") or model in XLA_MODELS)
]
# The fast tier (make test) checks jax-epoch on each distinct JAX program (part 1, the LSTM, the
# stacked LSTM, the GRU) and jax-step on part 1; the slow tier (make test-slow, also in CI) every
# other pair: part 2 (part 1's math in TF1's layout), part 5 (part 4's program against
# dynamic_rnn), part 6 at keep_prob 1, the 2-layer GRU, and every other implementation.
FAST = {("jax-epoch", m) for m in task.DISTINCT_MODELS} | {("jax-step", "part1")}


def case_params(cases):
    return [
        pytest.param(*case, marks=() if case in FAST else pytest.mark.slow, id="-".join(case))
        for case in cases
    ]


def window(cfg, x, index):
    T = cfg.truncated_backprop_length
    return x[:, index * T : (index + 1) * T]


def tf1_reference(model, dtype=np.float32, cfg=None):
    base, part = SERIES[model]
    cfg = cfg or base
    return make_trainer(REFERENCE, cfg, init_params(cfg, dtype=dtype), dtype, part=part)


def under_test(impl, model, dtype=np.float32, cfg=None):
    base, part = SERIES[model]
    cfg = cfg or base
    # The static_rnn program is the one under test where the reference is dynamic_rnn.
    part = None if impl == REFERENCE else part
    return make_trainer(impl, cfg, init_params(cfg, dtype=dtype), dtype, part=part)


def leaves(state):
    return jax.tree.leaves(state)


@pytest.mark.parametrize(("impl", "model"), case_params(CASES))
def test_forward_gradients_and_one_step_match_tf1(impl, model):
    cfg, _ = SERIES[model]
    x, y = epoch_data(cfg, 0)
    trainer, ref = under_test(impl, model), tf1_reference(model)
    state = jax.tree.map(lambda a: a.astype(np.float32), reference.random_state(cfg, 0))
    logits, h = trainer.forward(window(cfg, x, 3), state)
    ref_logits, ref_h = ref.forward(window(cfg, x, 3), state)
    assert logits.shape == ref_logits.shape == (5, 15, 2)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-6)
    for a, b in zip(leaves(h), leaves(ref_h), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    loss, grads = trainer.loss_and_gradients(window(cfg, x, 5), window(cfg, y, 5), state)
    ref_loss, ref_grads = ref.loss_and_gradients(window(cfg, x, 5), window(cfg, y, 5), state)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        scale = np.abs(ref_grads[name]).max()
        np.testing.assert_allclose(g, ref_grads[name], rtol=1e-4, atol=1e-5 * scale, err_msg=name)

    start = trainer.params
    zeros = jax.tree.map(np.zeros_like, state)
    h, loss = trainer.train_step(zeros, window(cfg, x, 0), window(cfg, y, 0))
    ref_h, ref_loss = ref.train_step(zeros, window(cfg, x, 0), window(cfg, y, 0))
    np.testing.assert_allclose(block(loss), ref_loss, rtol=1e-6)
    for a, b in zip(leaves(h), leaves(ref_h), strict=True):
        np.testing.assert_allclose(block(a), b, rtol=1e-5, atol=1e-6)
    for name, value in trainer.params.items():
        np.testing.assert_allclose(value, ref.params[name], rtol=1e-6, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(
            trainer.accumulators[name], ref.accumulators[name], rtol=1e-6, atol=1e-7
        )
    assert any(not np.allclose(start[k], v) for k, v in trainer.params.items())  # it moved
    trainer.close()
    ref.close()


@functools.cache
def tf1_float64_epoch(model):
    """The TF1 program's float64 losses over epoch 0, once per model."""
    cfg, _ = SERIES[model]
    ref = tf1_reference(model, np.float64)
    losses = ref.train_epoch(*epoch_data(cfg, 0))
    ref.close()
    return losses


@pytest.mark.parametrize(("impl", "model"), case_params(CASES))
def test_float64_epoch_trajectories_agree_to_1e_10(impl, model):
    cfg, _ = SERIES[model]
    with jax.enable_x64(True):
        x, y = epoch_data(cfg, 0)
        losses = block(under_test(impl, model, np.float64).train_epoch(x, y))
    ref_losses = tf1_float64_epoch(model)
    assert losses.dtype == ref_losses.dtype == np.float64
    assert losses.shape == (666,)
    np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "impl",
    [
        "tf-function-epoch",
        "tf-function-epoch-xla",
        "tf-function-xla",
    ],
)
def test_tf2_windows_longer_than_the_unroll_limit_match_jax_in_float64(impl):
    """Past ``UNROLL_MAX_STEPS`` the TF2 variants loop over time (``tf.range``) instead of
    unrolling; checked against jax_echo's epoch (itself checked against TF1 above)."""
    from tf_echo.function import UNROLL_MAX_STEPS

    T = UNROLL_MAX_STEPS + 10
    cfg = EchoConfig(
        cell="lstm", num_layers=2, truncated_backprop_length=T, total_series_length=4 * 5 * T
    )
    params = init_params(cfg, dtype=np.float64)
    with jax.enable_x64(True):
        x, y = epoch_data(cfg, 0)
        expected = block(make_trainer("jax-epoch", cfg, params, np.float64).train_epoch(x, y))
    losses = make_trainer(impl, cfg, params, np.float64).train_epoch(x, y)
    assert losses.shape == (4,)
    np.testing.assert_allclose(losses, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "impl",
    ["jax-epoch", *(pytest.param(i, marks=pytest.mark.slow) for i in ("jax-step", "tf-function"))],
)
def test_first_100_windows_match_tf1_in_float32(impl):
    cfg = EchoConfig.for_part(4, total_series_length=7500)  # 100 windows
    x, y = epoch_data(cfg, 0)
    losses = block(under_test(impl, "part4", cfg=cfg).train_epoch(x, y))
    ref_losses = tf1_reference("part4", cfg=cfg).train_epoch(x, y)
    assert losses.shape == (100,)
    np.testing.assert_allclose(losses, ref_losses, atol=1e-4)


@pytest.mark.parametrize(
    "impl", ["jax-epoch", "tf-graph", pytest.param("tf-function-epoch", marks=pytest.mark.slow)]
)
def test_dropout_trains_and_predicts_without_dropout(impl):
    """Part 6 below keep_prob 1: no shared random stream, so properties, not numbers."""
    cfg = EchoConfig.for_part(6, total_series_length=7500)
    keep_all = dataclasses.replace(cfg, keep_prob=1.0)
    x, y = epoch_data(cfg, 0)
    params = init_params(cfg)
    trainer = make_trainer(impl, cfg, params, part=6)
    losses = block(trainer.train_epoch(x, y))
    clean = block(make_trainer(impl, keep_all, params, part=6).train_epoch(x, y))
    assert np.isfinite(losses).all()
    assert not np.allclose(losses, clean)  # masks were applied while training
    # Predictions never drop: deterministic, and those of the same weights at keep_prob 1.
    predictions = trainer.predict_epoch(x)
    np.testing.assert_array_equal(predictions, trainer.predict_epoch(x))
    same_weights = make_trainer(impl, keep_all, trainer.params, part=6)
    np.testing.assert_array_equal(predictions, same_weights.predict_epoch(x))
    trainer.close()
    same_weights.close()


SLOW_RUNS = {  # model -> the accuracy after each epoch's first window the run must reach
    "part1": 0.999,
    "part2": 0.999,
    "part3": 0.999,
    "part4": 0.999,
    "part6": 0.99,
    "gru": 0.999,
}


@pytest.mark.slow
@pytest.mark.parametrize("model", list(SLOW_RUNS))
def test_every_parts_tutorial_run_learns_the_echo(model):
    cfg = EchoConfig.for_part(6) if model == "part6" else SERIES[model][0]
    trainer = make_trainer("jax-epoch", cfg, init_params(cfg))
    for epoch in range(cfg.num_epochs):
        x, y = epoch_data(cfg, epoch)
        losses = block(trainer.train_epoch(x, y))
    assert np.isfinite(losses).all()
    accs = prediction_accuracies(trainer.predict_epoch(x), y)
    assert accs[1:].mean() >= SLOW_RUNS[model]


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["jax-step", "tf-graph", "tf-function-epoch-xla"])
def test_full_tutorial_run_learns_the_echo(impl):
    """Part 1's 100 epochs in the per-window JAX step, the TF1 program and the fastest TF2."""
    cfg = EchoConfig()
    trainer = make_trainer(impl, cfg, init_params(cfg))
    for epoch in range(cfg.num_epochs):
        x, y = epoch_data(cfg, epoch)
        losses = block(trainer.train_epoch(x, y))
    assert np.isfinite(losses).all()
    accs = prediction_accuracies(trainer.predict_epoch(x), y)
    assert accs[1:].mean() >= 0.999
    assert np.mean(losses[1:]) < 0.01


def test_tf1_program_leaves_eager_execution_on():
    import tensorflow as tf

    cfg = EchoConfig.for_part(4)
    trainer = tf1_reference("part4")
    x, y = epoch_data(EchoConfig(total_series_length=750), 0)
    state = jax.tree.map(lambda a: a.astype(np.float32), reference.zero_state(cfg))
    trainer.train_step(state, window(cfg, x, 0), window(cfg, y, 0))
    assert tf.executing_eagerly()
    assert float(tf.reduce_sum(tf.ones(3))) == 3.0  # eager ops still run
    assert tf.compat.v1.get_default_graph() is not trainer.graph
