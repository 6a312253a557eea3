"""The cells: TF1's layouts and initialisers, each step's math, stacking and dropout."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_echo import CELLS, EchoConfig, init_params, params_from_dict, params_to_dict
from jax_echo.cells import affine, dropout_masks, stack_step
from jax_echo.policy import cell_product, fused_members, lane_product
from jax_echo.task import CELL_NAMES
from tests import reference
from tests.conftest import MODELS


def test_every_configurable_cell_has_functions():
    assert tuple(CELLS) == CELL_NAMES


def test_part1_weights_are_the_tutorials():
    cfg = EchoConfig(state_size=6, num_classes=3)
    w = params_to_dict(init_params(cfg, 0))
    rng = np.random.default_rng(0)
    assert list(w) == ["W", "b", "W2", "b2"]
    np.testing.assert_array_equal(w["W"], rng.random((7, 6)).astype(np.float32))
    np.testing.assert_array_equal(w["W2"], rng.random((6, 3)).astype(np.float32))
    assert w["b"].shape == (1, 6) and not w["b"].any()
    assert w["b2"].shape == (1, 3) and not w["b2"].any()
    assert all(a.dtype == np.float32 for a in w.values())
    assert params_to_dict(init_params(cfg, 0, dtype=np.float64))["W"].dtype == np.float64
    np.testing.assert_array_equal(init_params(cfg).W2, init_params(cfg).W2)  # from cfg.seed


@pytest.mark.parametrize(
    ("cfg", "shapes"),
    [
        (EchoConfig.for_part(2), {"cell_0/kernel": (5, 4), "cell_0/bias": (4,)}),
        (
            EchoConfig.for_part(4),
            {
                "cell_0/kernel": (5, 16),
                "cell_0/bias": (16,),
                "cell_1/kernel": (8, 16),
                "cell_1/bias": (16,),
                "cell_2/kernel": (8, 16),
                "cell_2/bias": (16,),
            },
        ),
        (
            EchoConfig(cell="gru", num_layers=2, state_size=3),
            {
                "cell_0/gates/kernel": (4, 6),
                "cell_0/gates/bias": (6,),
                "cell_0/candidate/kernel": (4, 3),
                "cell_0/candidate/bias": (3,),
                "cell_1/gates/kernel": (6, 6),
                "cell_1/gates/bias": (6,),
                "cell_1/candidate/kernel": (6, 3),
                "cell_1/candidate/bias": (3,),
            },
        ),
    ],
    ids=["basic_rnn", "lstm-3", "gru-2"],
)
def test_tf1_layout_and_initialisers(cfg, shapes):
    w = params_to_dict(init_params(cfg, 7))
    S, C = cfg.state_size, cfg.num_classes
    assert {k: v.shape for k, v in w.items()} == {**shapes, "W2": (S, C), "b2": (1, C)}
    for name, value in w.items():
        if name.endswith("kernel"):  # glorot uniform: limit sqrt(6 / (fan_in + fan_out))
            limit = np.sqrt(6 / sum(value.shape))
            assert np.abs(value).max() <= limit and np.abs(value).max() > 0.8 * limit
            assert abs(value.mean()) < 0.3 * limit
        elif name.endswith("gates/bias"):
            np.testing.assert_array_equal(value, 1.0)
        elif name.endswith("bias") or name == "b2":
            assert not value.any()
    assert 0 <= w["W2"].min() and w["W2"].max() < 1  # the tutorial's W2, in every part
    # The draws: each layer's arrays in order, then W2; one rng, so layers differ.
    if "cell_1/kernel" in w:
        assert not np.array_equal(w["cell_1/kernel"], w["cell_2/kernel"])


def test_params_dict_round_trip_and_errors(model_cfg):
    params = init_params(model_cfg)
    d = params_to_dict(params)
    back = params_from_dict(d, model_cfg)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)
    first = next(iter(d))
    with pytest.raises(ValueError, match=rf"params are missing \['{first}'\]"):
        params_from_dict({k: v for k, v in d.items() if k != first}, model_cfg)
    with pytest.raises(ValueError, match=rf"params\['{first}'\] has shape \(.*\), expected"):
        params_from_dict({**d, first: d[first][1:]}, model_cfg)
    with pytest.raises(ValueError, match=r"unexpected arrays \['extra'\]"):
        params_from_dict({**d, "extra": d["W2"]}, model_cfg)


@pytest.mark.parametrize(
    ("saved", "loaded"),
    [("part3", "gru"), ("gru", "part3"), ("part4", "part3"), ("part2", "part1")],
)
def test_another_cells_params_are_refused_by_name(saved, loaded):
    d = params_to_dict(init_params(MODELS[saved]))
    with pytest.raises(ValueError, match=f"a {MODELS[loaded].cell} model with"):
        params_from_dict(d, MODELS[loaded])


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_one_step_of_each_cell_is_tf1s_math(x64, cell):
    cfg = EchoConfig(cell=cell, num_layers=1, state_size=3)
    params = init_params(cfg, 1, dtype=np.float64)
    w = params_to_dict(params)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 1))
    (state,) = reference.random_state(cfg, 2)
    new, out = jax.jit(CELLS[cell].step)(params.cells[0], state, x)
    ref_new, ref_out = reference.cell_step(cell, w, 0, state, x)
    np.testing.assert_allclose(out, ref_out, rtol=1e-13)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(ref_new), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_stacked_layers_feed_each_other(x64):
    cfg = EchoConfig(cell="lstm", num_layers=3, state_size=3)
    params = init_params(cfg, 4, dtype=np.float64)
    state = reference.random_state(cfg, 3)
    x = np.random.default_rng(5).normal(size=(5, 1))
    new, out = stack_step(CELLS["lstm"], params.cells, state, x)
    ref_logits, ref_state = reference.forward(cfg, params_to_dict(params), x, list(state))
    np.testing.assert_allclose(out @ params.W2 + params.b2, ref_logits[:, 0], rtol=1e-13)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(ref_state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_dropout_masks_keep_p_scale_by_1_over_p_and_repeat_per_key():
    key = jax.random.key(0)
    masks = dropout_masks(key, 15, 3, 64, 32, 0.5, jnp.float32)
    assert masks.shape == (15, 3, 64, 32)
    values = set(np.unique(np.asarray(masks)).tolist())
    assert values == {0.0, 2.0}  # dropped, or kept and scaled by 1/p
    kept = float((masks > 0).mean())
    assert abs(kept - 0.5) < 0.01  # 92160 draws: 5 sigma is 0.008
    # Every step and layer has its own mask; the same key gives the same masks.
    assert not np.array_equal(masks[0, 0], masks[1, 0])
    assert not np.array_equal(masks[0, 0], masks[0, 1])
    np.testing.assert_array_equal(masks, dropout_masks(key, 15, 3, 64, 32, 0.5, jnp.float32))
    other = dropout_masks(jax.random.key(1), 15, 3, 64, 32, 0.5, jnp.float32)
    assert not np.array_equal(masks, other)
    assert abs(float((dropout_masks(key, 15, 3, 64, 32, 0.8, jnp.float32) > 0).mean()) - 0.8) < 0.01


def test_dropout_drops_outputs_never_the_carried_state():
    cfg = EchoConfig(cell="lstm", num_layers=2)
    params = init_params(cfg, 0)
    state = reference.random_state(cfg, 1)
    x = np.ones((5, 1), np.float32)
    masks = dropout_masks(jax.random.key(3), 1, 2, 5, 4, 0.5, jnp.float32)[0]
    new_state, out = stack_step(CELLS["lstm"], params.cells, state, x, masks)
    # By hand: each layer's output is masked on its way up; its own state is not.
    lstm = CELLS["lstm"].step
    state0, out0 = lstm(params.cells[0], state[0], x)
    state1, out1 = lstm(params.cells[1], state[1], out0 * masks[0])
    expected = (state0, state1)
    for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out, out1 * masks[1])
    assert (np.asarray(out)[np.asarray(masks[1]) == 0] == 0).all()
    assert (np.asarray(out0 * masks[0]) == 0).any() and (np.asarray(state0.h) != 0).all()


def test_contraction_paths_agree():
    rng = np.random.default_rng(0)
    for shape in [(5, 5), (64, 33), (15, 5, 4)]:
        x = rng.normal(size=(*shape[:-1], 1)).astype(np.float32)
        h = rng.normal(size=(*shape[:-1], shape[-1] - 1)).astype(np.float32)
        w = rng.normal(size=(shape[-1], 8)).astype(np.float32)
        b = rng.normal(size=(8,)).astype(np.float32)
        expected = np.concatenate([x, h], axis=-1) @ w + b
        for product in (affine, cell_product(1), cell_product(256)):
            np.testing.assert_allclose(product([x, h], w, b), expected, rtol=1e-5, atol=1e-5)
            blocks = np.split(expected, 4, axis=-1)
            for got, block in zip(product([x, h], w, b, parts=4), blocks, strict=True):
                np.testing.assert_allclose(got, block, rtol=1e-5, atol=1e-5)


def test_the_lane_product_is_each_members_affine(x64):
    # Members on the last axis: member p's slice is affine of member p's own arrays.
    rng = np.random.default_rng(1)
    x, h = rng.normal(size=(7, 5, 1, 3)), rng.normal(size=(7, 5, 4, 3))  # (T, B, K_i, P)
    w, b = rng.normal(size=(5, 8, 3)), rng.normal(size=(1, 8, 3))
    blocks = lane_product([x, h], w, b, parts=2)
    for p in range(3):
        alone = affine([x[..., p], h[..., p]], w[..., p], b[..., p], parts=2)
        for got, expected in zip(blocks, alone, strict=True):
            np.testing.assert_allclose(got[..., p], expected, rtol=1e-12)


def test_a_population_counts_in_the_choice_of_contraction():
    a, w, b = jnp.ones((5, 5)), jnp.ones((5, 4)), jnp.zeros((4,))
    fused = jax.make_jaxpr(cell_product(1))([a], w, b)
    batched = jax.make_jaxpr(jax.vmap(lambda a: cell_product(256)([a], w, b)))(jnp.stack([a] * 3))
    assert "dot_general" not in str(fused) and "dot_general" in str(batched)
    # As many members as keep the largest product of a step (B x K x M) within the limit.
    assert [fused_members(EchoConfig.for_part(p)) for p in (1, 3, 4)] == [20, 5, 3]
    assert fused_members(EchoConfig(state_size=64)) == 1


def test_config_fields_of_the_series():
    assert EchoConfig.for_part(1) == EchoConfig()
    assert EchoConfig.for_part(4) == EchoConfig.for_part(5)
    part6 = EchoConfig.for_part(6, num_epochs=3)
    assert (part6.cell, part6.num_layers, part6.keep_prob, part6.num_epochs) == ("lstm", 3, 0.5, 3)
    assert dataclasses.replace(part6, keep_prob=1.0) == EchoConfig.for_part(4, num_epochs=3)
    with pytest.raises(ValueError, match="parts 1-6, got part 7"):
        EchoConfig.for_part(7)
