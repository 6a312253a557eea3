"""The pure functions over every cell: forward pass, gradients, optimizer, steps and epochs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_echo import (
    EchoConfig,
    accuracy,
    epoch_data,
    epoch_key,
    forward,
    init_params,
    initial_state,
    loss_fn,
    make_optimizer,
    make_train_epoch,
    params_to_dict,
    predict,
    split_windows,
    train_epoch,
    train_step,
    window_accuracies,
)
from jax_echo.cells import LSTMState, state_from_layers
from jax_echo.optim import accumulators, learning_rate
from jax_echo.population import stack
from tests import reference
from tests.conftest import MODELS


def window(cfg, index=0, epoch=0):
    x, y = epoch_data(cfg, epoch)
    T = cfg.truncated_backprop_length
    return x[:, index * T : (index + 1) * T], y[:, index * T : (index + 1) * T]


def tame(params, cfg):
    """Part 1's uniform [0, 1) weights saturate tanh at larger sizes; scale them down."""
    if cfg.cell != "tutorial":
        return params
    (cell,) = params.cells
    return params._replace(cells=(cell._replace(W=cell.W / cfg.state_size),))


# Every model jitted; without jit (eager, op by op: slow) the one-layer cells.
FORWARD_CASES = [
    (name, jit) for name in MODELS for jit in (True, False) if jit or MODELS[name].num_layers == 1
]


@pytest.mark.parametrize(("name", "jit"), FORWARD_CASES)
def test_forward_matches_the_series_step_by_step(x64, name, jit):
    cfg = dataclasses.replace(MODELS[name], num_classes=3)
    params = init_params(cfg, 1, dtype=np.float64)
    x, _ = window(cfg)
    state = state_from_layers(cfg, reference.random_state(cfg, 2))
    fn = jax.jit(forward, static_argnames="cfg") if jit else forward
    logits, new_state = fn(params, x.astype(np.float64), state, cfg=cfg)
    ref_logits, ref_state = reference.forward(cfg, params_to_dict(params), x, list(state))
    assert logits.shape == (5, 15, 3) and logits.dtype == jnp.float64
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(ref_state), strict=True):
        assert a.shape == (5, 4) and a.dtype == jnp.float64
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "changes",
    [
        {"state_size": 64},  # contractions as dots
        {"truncated_backprop_length": 40},  # a rolled scan (longer than 32 steps)
        {"num_classes": 5, "batch_size": 2, "total_series_length": 10000},
    ],
    ids=["dot-path", "rolled-scan", "five-classes"],
)
@pytest.mark.parametrize("part", [1, 4])
def test_forward_at_other_sizes(x64, part, changes):
    cfg = EchoConfig.for_part(part, **changes)
    params = tame(init_params(cfg, 1, dtype=np.float64), cfg)
    x, _ = window(cfg)
    state = state_from_layers(cfg, reference.random_state(cfg, 2))
    logits, _ = forward(params, x, state, cfg)
    ref_logits, _ = reference.forward(cfg, params_to_dict(params), x, list(state))
    T = cfg.truncated_backprop_length
    assert logits.shape == (cfg.batch_size, T, cfg.num_classes)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-11)


@pytest.mark.parametrize("name", ["part1", "part4", "gru"])
def test_loss_predict_accuracy(name):
    model_cfg = MODELS[name]
    params = init_params(model_cfg)
    x, y = window(model_cfg)
    state = initial_state(model_cfg)
    loss, _ = loss_fn(params, x, y, state, model_cfg)
    assert loss.shape == () and loss.dtype == jnp.float32
    zeros = reference.zero_state(model_cfg)
    expected = reference.loss(model_cfg, params_to_dict(params), x, y, list(zeros))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    pred, state_pred = predict(params, x, state, model_cfg)
    logits, state_fwd = forward(params, x, state, model_cfg)
    p0 = jax.nn.softmax(logits)[..., 0]
    np.testing.assert_array_equal(pred, np.where(p0 < 0.5, 1, 0))  # the tutorial's rule
    acc, _ = accuracy(params, x, y, state, model_cfg)
    np.testing.assert_allclose(acc, np.mean(np.asarray(pred) == y))
    for a, b in zip(jax.tree.leaves(state_pred), jax.tree.leaves(state_fwd), strict=True):
        np.testing.assert_array_equal(a, b)


def test_gradients_match_finite_differences(x64, model_cfg):
    cfg = dataclasses.replace(model_cfg, state_size=3)
    params = init_params(cfg, 3, dtype=np.float64)
    x, y = window(cfg, index=4)
    state = state_from_layers(cfg, reference.random_state(cfg, 0))
    grads, _ = jax.grad(loss_fn, has_aux=True)(params, x, y, state, cfg)
    w, g = params_to_dict(params), params_to_dict(grads)
    rng = np.random.default_rng(1)
    for _ in range(3):
        direction = {k: rng.normal(size=v.shape) for k, v in w.items()}
        eps = 1e-6
        plus = {k: v + eps * direction[k] for k, v in w.items()}
        minus = {k: v - eps * direction[k] for k, v in w.items()}
        numeric = (
            reference.loss(cfg, plus, x, y, list(state))
            - reference.loss(cfg, minus, x, y, list(state))
        ) / (2 * eps)
        analytic = sum(np.vdot(g[k], direction[k]) for k in w)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-7)


def test_optimizer_is_tf1_adagrad(x64):
    cfg = EchoConfig.for_part(3, learning_rate=0.7)
    params = init_params(cfg, dtype=np.float64)
    ours = make_optimizer(cfg)
    state = ours.init(params)
    assert learning_rate(state).dtype == jnp.float64 and float(learning_rate(state)) == 0.7
    p_ours = params
    p_tf1 = {k: np.array(v) for k, v in params_to_dict(params).items()}
    accum = {k: np.full_like(v, 0.1) for k, v in p_tf1.items()}
    rng = np.random.default_rng(0)
    for _ in range(4):
        grads = jax.tree.map(lambda p: rng.normal(size=p.shape), params)
        updates, state = ours.update(grads, state, p_ours)
        p_ours = optax.apply_updates(p_ours, updates)
        for k, g in params_to_dict(grads).items():  # TF1's ApplyAdagrad kernel
            accum[k] += g * g
            p_tf1[k] -= g * 0.7 / np.sqrt(accum[k])
    for k, v in params_to_dict(p_ours).items():
        np.testing.assert_allclose(v, p_tf1[k], rtol=1e-14, atol=1e-15, err_msg=k)
        np.testing.assert_allclose(params_to_dict(accumulators(state))[k], accum[k], rtol=1e-14)


def step_loop(params, opt_state, x, y, cfg, key=None):
    """An epoch as the tutorial runs it: a Python loop over windows feeding the state back."""
    T = cfg.truncated_backprop_length
    state = initial_state(cfg, dtype=params.W2.dtype)
    N = x.shape[1] // T
    keys = [None] * N if key is None else list(jax.random.split(key, N))
    losses = []
    windows = zip(split_windows(x, T), split_windows(y, T), keys, strict=True)
    for x_BxT, y_BxT, window_key in windows:
        params, opt_state, state, loss = train_step(
            params, opt_state, state, x_BxT, y_BxT, cfg, key=window_key
        )
        losses.append(loss)
    return params, opt_state, jnp.stack(losses)


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("part1", np.float32),
        ("part1", np.float64),
        ("gru-2", np.float32),
        pytest.param("part6", np.float64, marks=pytest.mark.slow),  # stacked LSTMs, dropout
    ],
)
def test_train_epoch_equals_train_step_loop(name, dtype):
    cfg = EchoConfig.for_part(6) if name == "part6" else MODELS[name]
    cfg = dataclasses.replace(cfg, total_series_length=1500)  # 20 windows
    key = epoch_key(cfg, 0) if cfg.keep_prob < 1 else None
    with jax.enable_x64(dtype == np.float64):
        x, y = epoch_data(cfg, 0)
        params = init_params(cfg, dtype=dtype)
        opt = make_optimizer(cfg)
        p1, s1, l1 = train_epoch(params, opt.init(params), x, y, cfg, key=key)
        p2, s2, l2 = step_loop(params, opt.init(params), x, y, cfg, key=key)
        assert l1.shape == (cfg.num_batches,) and l1.dtype == dtype
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(l1, l2, rtol=rtol)
        for a, b in zip(jax.tree.leaves((p1, s1)), jax.tree.leaves((p2, s2)), strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


def test_dropout_same_key_same_numbers_other_key_other_numbers():
    cfg = EchoConfig.for_part(6, total_series_length=750)
    x, y = epoch_data(cfg, 0)
    params = init_params(cfg)
    opt = make_optimizer(cfg)

    def run(key):
        return np.asarray(train_epoch(params, opt.init(params), x, y, cfg, key=key)[2])

    a, b, c = run(epoch_key(cfg, 0)), run(epoch_key(cfg, 0)), run(epoch_key(cfg, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    no_dropout = dataclasses.replace(cfg, keep_prob=1.0)
    d = np.asarray(train_epoch(params, opt.init(params), x, y, no_dropout)[2])
    assert not np.allclose(a, d)
    # Predictions never drop: the same with keep_prob 0.5 or 1.0.
    state = initial_state(cfg)
    np.testing.assert_array_equal(
        forward(params, x[:, :15], state, cfg)[0], forward(params, x[:, :15], state, no_dropout)[0]
    )


@pytest.mark.slow  # op-by-op over a whole epoch: ~17 s on 2 cores
def test_train_epoch_same_with_and_without_jit():
    cfg = EchoConfig.for_part(3, total_series_length=150)  # 2 windows: eager is slow
    x, y = epoch_data(cfg, 0)
    params = init_params(cfg)
    _, _, jitted = train_epoch(params, make_optimizer(cfg).init(params), x, y, cfg)
    with jax.disable_jit():
        _, _, eager = train_epoch(params, make_optimizer(cfg).init(params), x, y, cfg)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5)


def test_remat_gives_the_same_numbers():
    cfg = EchoConfig.for_part(4, truncated_backprop_length=40, total_series_length=1000)
    x, y = epoch_data(cfg, 0)
    params = init_params(cfg)
    opt = make_optimizer(cfg)
    _, _, plain = train_epoch(params, opt.init(params), x, y, cfg)
    _, _, remat = train_epoch(params, opt.init(params), x, y, cfg, remat=True)
    np.testing.assert_allclose(plain, remat, rtol=1e-6)


def count_compilations(fn):
    events = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return len(events)


def test_second_call_does_not_recompile(small_cfg):
    params = init_params(small_cfg)
    x, y = epoch_data(small_cfg, 0)
    state = make_optimizer(small_cfg).init(params)
    params, state, _ = train_epoch(params, state, x, y, small_cfg)
    h = initial_state(small_cfg)
    params, state, h, _ = train_step(params, state, h, x[:, :15], y[:, :15], small_cfg)
    window_accuracies(params, x, y, small_cfg)

    def again():
        # Another seed and learning rate only change values: the same programs run.
        other = dataclasses.replace(small_cfg, seed=9, learning_rate=0.1)
        fresh = init_params(other)
        other_state = make_optimizer(other).init(fresh)
        _, _, losses = train_epoch(fresh, other_state, *epoch_data(other, 1), other)
        _, _, _, loss = train_step(params, state, h, x[:, 15:30], y[:, 15:30], small_cfg)
        accs = window_accuracies(fresh, x, y, other)
        jax.block_until_ready((losses, loss, accs))

    assert count_compilations(again) == 0


def test_population_under_vmap_equals_members():
    cfg = EchoConfig.for_part(3, total_series_length=1500)
    seeds = [0, 1, 2]
    params = [init_params(cfg, s) for s in seeds]
    data = [epoch_data(cfg, s) for s in seeds]
    opt = make_optimizer(cfg)
    pop_params = stack(params)
    pop_state = jax.vmap(opt.init)(pop_params)
    xs, ys = (np.stack(a) for a in zip(*data, strict=True))
    _, _, pop_losses = jax.vmap(make_train_epoch(cfg))(pop_params, pop_state, xs, ys, None)
    for i, (p, (x, y)) in enumerate(zip(params, data, strict=True)):
        _, _, losses = train_epoch(p, opt.init(p), x, y, cfg)
        np.testing.assert_allclose(pop_losses[i], losses, rtol=1e-5)


@pytest.mark.parametrize("members", [1, 256])
def test_the_population_width_picks_fused_products_or_batched_dots(members):
    # One member's tutorial products are tiny: multiply-and-sum, fused with the step. Under a vmap
    # of 256 members the same products are one batched dot_general each (policy.cell_product).
    cfg = EchoConfig(total_series_length=150)
    params = init_params(cfg)
    pop_params = jax.tree.map(lambda a: jnp.stack([a] * members), params)
    pop_state = jax.vmap(make_optimizer(cfg).init)(pop_params)
    x, y = (np.stack([a] * members) for a in epoch_data(cfg, 0))
    epoch = jax.vmap(make_train_epoch(cfg, members=members))
    jaxpr = str(jax.make_jaxpr(epoch)(pop_params, pop_state, x, y, None))  # scan bodies too
    assert ("dot_general" in jaxpr) == (members > 1)


@pytest.mark.parametrize("name", ["part1", "part4"])
def test_window_accuracies(name):
    cfg = dataclasses.replace(MODELS[name], total_series_length=1500)
    params = init_params(cfg)
    x, y = epoch_data(cfg, 0)
    accs = window_accuracies(params, x, y, cfg)
    assert accs.shape == (cfg.num_batches,)
    # Same as running accuracy window by window with the carried state.
    state = initial_state(cfg)
    for i, (x_BxT, y_BxT) in enumerate(
        zip(split_windows(x, 15)[:3], split_windows(y, 15)[:3], strict=True)
    ):
        acc, state = accuracy(params, x_BxT, y_BxT, state, cfg)
        np.testing.assert_allclose(accs[i], acc)


def test_a_state_of_another_structure_is_refused_not_re_nested():
    """A plain (h, c) tuple where LSTMState(c, h) belongs could be read in the wrong order: the
    model refuses it; TF1's (c, h) pairs go through state_from_layers, in TF1's order."""
    cfg = EchoConfig.for_part(3)
    params = init_params(cfg)
    x, _ = window(cfg)
    c, h = reference.random_state(cfg, 1)[0]
    with pytest.raises(ValueError, match=r"structure of cells.initial_state.*state_from_layers"):
        forward(params, x, ((h, c),), cfg)
    converted = state_from_layers(cfg, ((c, h),))
    assert converted == (LSTMState(c, h),)
    _, (out,) = forward(params, x, converted, cfg)
    assert isinstance(out, LSTMState)
    with pytest.raises(ValueError, match=r"3 per-layer \(c, h\) pairs"):
        state_from_layers(EchoConfig.for_part(4), ((c, h),))


def test_bad_inputs_get_clear_errors(small_cfg):
    params = init_params(small_cfg)
    opt_state = make_optimizer(small_cfg).init(params)
    x, y = window(small_cfg)
    with pytest.raises(
        ValueError, match=r"state has shape \(5, 3\), expected \(batch, state_size\) = \(5, 4\)"
    ):
        train_step(params, opt_state, (jnp.zeros((5, 3)),), x, y, small_cfg)
    with pytest.raises(ValueError, match="state must be a tuple of 1 per-layer state"):
        train_step(params, opt_state, jnp.zeros((5, 4)), x, y, small_cfg)
    state = initial_state(small_cfg)
    with pytest.raises(ValueError, match="x and y must be .* of one shape"):
        train_step(params, opt_state, state, x, y[:, :10], small_cfg)
    xe, ye = epoch_data(small_cfg, 0)
    with pytest.raises(ValueError, match="x and y must be"):
        train_epoch(params, opt_state, xe[0], ye[0], small_cfg)
    other_rate = dataclasses.replace(small_cfg, learning_rate=0.1)
    with pytest.raises(ValueError, match=r"holds learning rate 0.3.*learning_rate is 0.1"):
        train_epoch(params, opt_state, xe, ye, other_rate)
    part6 = EchoConfig.for_part(6)
    p6 = init_params(part6)
    with pytest.raises(ValueError, match="keep_prob is 0.5: dropout needs a key"):
        train_epoch(p6, make_optimizer(part6).init(p6), *epoch_data(part6, 0), part6)


def test_any_optax_transformation_can_train():
    cfg = EchoConfig.for_part(3, total_series_length=7500)
    params = init_params(cfg)
    adam = optax.adam(1e-2)
    opt_state = adam.init(params)
    losses = []
    for epoch in range(3):
        params, opt_state, epoch_losses = train_epoch(
            params, opt_state, *epoch_data(cfg, epoch), cfg, optimizer=adam
        )
        losses.append(np.mean(epoch_losses))
    assert losses[-1] < 0.5 * losses[0]


def test_train_step_reads_the_learning_rate_once_per_optimizer_state(small_cfg):
    """The rate check waits for no computation: a state that train_step returned is known to
    hold its input's rate, so the loop over windows never reads the device."""
    params = init_params(small_cfg)
    opt_state, state = make_optimizer(small_cfg).init(params), initial_state(small_cfg)
    x, y = (jax.device_put(a) for a in window(small_cfg))
    params, opt_state, state, _ = train_step(params, opt_state, state, x, y, small_cfg)
    with jax.transfer_guard_device_to_host("disallow"):
        for _ in range(3):
            params, opt_state, state, loss = train_step(params, opt_state, state, x, y, small_cfg)
        other = dataclasses.replace(small_cfg, learning_rate=0.1)
        with pytest.raises(ValueError, match=r"holds learning rate 0.3.*learning_rate is 0.1"):
            train_step(params, opt_state, state, x, y, other)
    assert np.isfinite(loss)
