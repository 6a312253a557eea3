"""The pure functions: forward pass, gradients, optimizer, train_step and train_epoch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_echo import (
    EchoConfig,
    Params,
    accuracy,
    epoch_data,
    forward,
    init_params,
    loss_fn,
    make_optimizer,
    predict,
    split_windows,
    train_epoch,
    train_step,
    window_accuracies,
)
from jax_echo import model as model_module


def reference_forward(params, x_BxT, h_BxS):
    """The tutorial's forward pass, step by step, in NumPy float64."""
    W, b, W2, b2 = (np.asarray(p, np.float64) for p in params)
    logits = []
    for t in range(x_BxT.shape[1]):
        h_BxS = np.tanh(np.concatenate([x_BxT[:, t : t + 1], h_BxS], axis=1) @ W + b)
        logits.append(h_BxS @ W2 + b2)
    return np.stack(logits, axis=1), h_BxS


def reference_loss(params, x_BxT, y_BxT, h_BxS):
    logits, _ = reference_forward(params, x_BxT, h_BxS)
    logits = logits - logits.max(-1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_p, y_BxT[..., None], -1).mean()


def window(cfg, index=0, epoch=0):
    x, y = epoch_data(cfg, epoch)
    T = cfg.truncated_backprop_length
    return x[:, index * T : (index + 1) * T], y[:, index * T : (index + 1) * T]


@pytest.mark.parametrize("state_size", [4, 64])  # the fused contractions and the dot path
@pytest.mark.parametrize("jit", [True, False])
def test_forward_matches_the_tutorial_step_by_step(x64, state_size, jit):
    cfg = EchoConfig(state_size=state_size, num_classes=3)
    params = init_params(cfg, 1, dtype=np.float64)
    params = params._replace(W=params.W / state_size)  # keep tanh out of saturation
    x, _ = window(cfg)
    h0 = np.random.default_rng(2).uniform(-1, 1, (cfg.batch_size, state_size))
    fn = jax.jit(forward) if jit else forward
    logits, h = fn(params, x.astype(np.float64), h0)
    ref_logits, ref_h = reference_forward(params, x, h0)
    assert logits.shape == (5, 15, 3) and h.shape == (5, state_size)
    assert logits.dtype == h.dtype == jnp.float64
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-12)
    np.testing.assert_allclose(h, ref_h, rtol=1e-12)


def test_loss_predict_accuracy(small_cfg):
    params = init_params(small_cfg)
    x, y = window(small_cfg)
    h0 = jnp.zeros((5, 4))
    loss, h = loss_fn(params, x, y, h0)
    assert loss.shape == () and loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, reference_loss(params, x, y, np.zeros((5, 4))), rtol=1e-5)
    pred, h_pred = predict(params, x, h0)
    logits, _ = forward(params, x, h0)
    p0 = jax.nn.softmax(logits)[..., 0]
    np.testing.assert_array_equal(pred, np.where(p0 < 0.5, 1, 0))  # the tutorial's rule
    acc, _ = accuracy(params, x, y, h0)
    np.testing.assert_allclose(acc, np.mean(np.asarray(pred) == y))
    np.testing.assert_array_equal(h, h_pred)


def test_gradients_match_finite_differences(x64):
    cfg = EchoConfig(state_size=5)
    params = init_params(cfg, 3, dtype=np.float64)
    x, y = window(cfg, index=4)
    h0 = np.random.default_rng(0).uniform(-0.5, 0.5, (5, 5))
    grads, _ = jax.grad(loss_fn, has_aux=True)(params, x.astype(np.float64), y, h0)
    rng = np.random.default_rng(1)
    for _ in range(5):
        direction = Params(*(rng.normal(size=p.shape) for p in params))
        eps = 1e-6
        plus = Params(*(p + eps * d for p, d in zip(params, direction, strict=True)))
        minus = Params(*(p - eps * d for p, d in zip(params, direction, strict=True)))
        numeric = (reference_loss(plus, x, y, h0) - reference_loss(minus, x, y, h0)) / (2 * eps)
        analytic = sum(np.vdot(g, d) for g, d in zip(grads, direction, strict=True))
        np.testing.assert_allclose(analytic, numeric, rtol=1e-7)


def test_optimizer_is_tf1_adagrad(x64):
    cfg = EchoConfig(learning_rate=0.7)
    params = init_params(cfg, dtype=np.float64)
    ours = make_optimizer(cfg)
    theirs = optax.adagrad(0.7, initial_accumulator_value=0.1, eps=0.0)
    state, optax_state = ours.init(params), theirs.init(params)
    assert state.learning_rate.dtype == jnp.float64
    p_ours, p_optax, p_tf1 = params, params, [np.array(p) for p in params]
    accum = [np.full_like(p, 0.1) for p in params]
    rng = np.random.default_rng(0)
    for _ in range(4):
        grads = Params(*(rng.normal(size=p.shape) for p in params))
        updates, state = ours.update(grads, state)
        p_ours = optax.apply_updates(p_ours, updates)
        updates, optax_state = theirs.update(grads, optax_state)
        p_optax = optax.apply_updates(p_optax, updates)
        for i, g in enumerate(grads):  # TF1's ApplyAdagrad kernel
            accum[i] += g * g
            p_tf1[i] -= g * 0.7 / np.sqrt(accum[i])
    for a, b, c in zip(p_ours, p_optax, p_tf1, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-14)
        np.testing.assert_allclose(a, c, rtol=1e-14)


def step_loop(params, opt_state, x, y, cfg):
    """An epoch as the tutorial runs it: a Python loop over windows feeding the state back."""
    h = jnp.zeros((cfg.batch_size, cfg.state_size), params.W.dtype)
    losses = []
    for x_BxT, y_BxT in zip(split_windows(x, 15), split_windows(y, 15), strict=True):
        params, opt_state, h, loss = train_step(params, opt_state, h, x_BxT, y_BxT)
        losses.append(loss)
    return params, opt_state, jnp.stack(losses)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_train_epoch_equals_train_step_loop(small_cfg, dtype):
    with jax.enable_x64(dtype == np.float64):
        x, y = epoch_data(small_cfg, 0)
        x = x.astype(dtype)
        params = init_params(small_cfg, dtype=dtype)
        p1, s1, l1 = train_epoch(params, make_optimizer(small_cfg).init(params), x, y, small_cfg)
        p2, s2, l2 = step_loop(params, make_optimizer(small_cfg).init(params), x, y, small_cfg)
        assert l1.shape == (small_cfg.num_batches,) and l1.dtype == dtype
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(l1, l2, rtol=rtol)
        for a, b in zip(jax.tree.leaves((p1, s1)), jax.tree.leaves((p2, s2)), strict=True):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


def test_train_epoch_same_with_and_without_jit():
    cfg = EchoConfig(total_series_length=750)  # 10 windows: eager execution is slow
    x, y = epoch_data(cfg, 0)
    params = init_params(cfg)
    _, _, jitted = train_epoch(params, make_optimizer(cfg).init(params), x, y, cfg)
    with jax.disable_jit():
        _, _, eager = train_epoch(params, make_optimizer(cfg).init(params), x, y, cfg)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5)


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
    h = jnp.zeros((5, 4))
    params, state, h, _ = train_step(params, state, h, x[:, :15], y[:, :15])

    def again():
        nonlocal params, state, h
        other_seed = EchoConfig(num_epochs=3, total_series_length=7500, seed=9, learning_rate=0.1)
        params, state, losses = train_epoch(params, state, *epoch_data(small_cfg, 1), other_seed)
        params, state, h, loss = train_step(params, state, h, x[:, 15:30], y[:, 15:30])
        jax.block_until_ready((losses, loss))

    assert count_compilations(again) == 0


def test_population_under_vmap_equals_members(small_cfg):
    seeds = [0, 1, 2]
    params = [init_params(small_cfg, s) for s in seeds]
    data = [epoch_data(small_cfg, s) for s in seeds]
    opt = make_optimizer(small_cfg)
    stack = lambda *xs: jnp.stack(xs)  # noqa: E731
    pop_params = jax.tree.map(stack, *params)
    pop_state = jax.vmap(opt.init)(pop_params)
    xs, ys = (np.stack(a) for a in zip(*data, strict=True))
    _, _, pop_losses = jax.vmap(train_epoch, in_axes=(0, 0, 0, 0, None))(
        pop_params, pop_state, xs, ys, small_cfg
    )
    for i, (p, (x, y)) in enumerate(zip(params, data, strict=True)):
        _, _, losses = train_epoch(p, opt.init(p), x, y, small_cfg)
        np.testing.assert_allclose(pop_losses[i], losses, rtol=1e-5)


def test_window_accuracies(small_cfg):
    params = init_params(small_cfg)
    x, y = epoch_data(small_cfg, 0)
    accs = window_accuracies(params, x, y, small_cfg)
    assert accs.shape == (small_cfg.num_batches,)
    # Same as running accuracy window by window with the carried state.
    h = jnp.zeros((5, 4))
    for i, (x_BxT, y_BxT) in enumerate(
        zip(split_windows(x, 15)[:3], split_windows(y, 15)[:3], strict=True)
    ):
        acc, h = accuracy(params, x_BxT, y_BxT, h)
        np.testing.assert_allclose(accs[i], acc)


def test_bad_shapes_get_clear_errors(small_cfg):
    params = init_params(small_cfg)
    state = make_optimizer(small_cfg).init(params)
    x, y = window(small_cfg)
    with pytest.raises(
        ValueError, match=r"state has shape \(5, 3\), expected \(batch, state_size\) = \(5, 4\)"
    ):
        train_step(params, state, jnp.zeros((5, 3)), x, y)
    with pytest.raises(ValueError, match="x and y must be .* of one shape"):
        train_step(params, state, jnp.zeros((5, 4)), x, y[:, :10])
    xe, ye = epoch_data(small_cfg, 0)
    with pytest.raises(ValueError, match="x and y must be"):
        train_epoch(params, state, xe[0], ye[0], small_cfg)


def test_contraction_paths_agree():
    rng = np.random.default_rng(0)
    for shape in [(5, 5), (64, 33), (15, 5, 4)]:
        a = rng.normal(size=shape).astype(np.float32)
        w = rng.normal(size=(shape[-1], 7)).astype(np.float32)
        b = rng.normal(size=(1, 7)).astype(np.float32)
        np.testing.assert_allclose(model_module._dense(a, w, b), a @ w + b, rtol=1e-5, atol=1e-5)
