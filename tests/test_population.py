"""Population training: members in lanes or a vmap, chunks, threads, the sweep command."""

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from jax_echo import (
    EchoConfig,
    epoch_data,
    init_params,
    make_optimizer,
    policy,
    train_epoch,
    xla_flags,
)
from jax_echo.cli import main
from jax_echo.model import epoch_key
from jax_echo.policy import (
    cpu_cores,
    population_chunk,
    population_compiler_options,
    population_lanes,
    population_threads,
)
from jax_echo.population import (
    dropout_keys,
    fit_population,
    make_population_epoch,
    population_configs,
    population_program,
    population_trainer,
    stack,
    train_population_epoch,
)
from jax_echo.task import MODELS
from jax_echo.train import TrainingDivergedError, fit

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("part", [1, pytest.param(6, marks=pytest.mark.slow)])
def test_population_members_equal_training_each_alone(part):
    cfg = EchoConfig.for_part(part, num_epochs=2, total_series_length=1500)
    params, history = fit_population(cfg, seeds=[0, 3], learning_rates=[0.1, 0.3], progress=False)
    members = population_configs(cfg, [0, 3], [0.1, 0.3])
    assert [(m.seed, m.learning_rate) for m in members] == [(0, 0.1), (0, 0.3), (3, 0.1), (3, 0.3)]
    assert params.W2.shape == (4, 4, 2)
    assert np.asarray(history["loss"]).shape == (2, 4, 20)
    for i, member in enumerate(members):
        alone, alone_history = fit(member, quiet=True, progress=False)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            np.asarray(history["loss"])[:, i], alone_history["loss"], rtol=1e-5
        )
        np.testing.assert_allclose(
            np.asarray(history["accuracy"])[:, i], alone_history["accuracy"], rtol=1e-6
        )


def test_train_population_epoch_is_one_vmapped_train_epoch():
    cfg = EchoConfig(total_series_length=1500)
    members = [init_params(cfg, seed) for seed in (0, 1, 2)]
    x, y = epoch_data(cfg, 0)
    params = stack(members)
    state = jax.vmap(make_optimizer(cfg).init)(params)
    xs, ys = np.stack([x, 1 - x]), np.stack([y, 1 - y])  # members see different data
    xs, ys = np.concatenate([xs, xs[:1]]), np.concatenate([ys, ys[:1]])
    out_params, _, losses = train_population_epoch(params, state, xs, ys, cfg)
    assert losses.shape == (3, cfg.num_batches)
    for i, p in enumerate(members):
        alone, _, alone_losses = train_epoch(p, make_optimizer(cfg).init(p), xs[i], ys[i], cfg)
        np.testing.assert_allclose(losses[i], alone_losses, rtol=1e-5)
        np.testing.assert_allclose(out_params.W2[i], alone.W2, rtol=1e-5, atol=1e-6)


POPULATION_MODELS = {
    "part1": EchoConfig(),
    "part3": EchoConfig.for_part(3),
    "part4": EchoConfig.for_part(4),
    "lstm-dropout": EchoConfig.for_part(6, num_layers=1),  # part 6's dropout, one layer
    "gru": MODELS["gru"].config,
}
LAYOUTS = [
    *[pytest.param(name, True, id=f"{name}-lanes") for name in POPULATION_MODELS],
    pytest.param("gru", False, id="gru-vmap"),
    pytest.param("lstm-dropout", False, id="lstm-dropout-vmap", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "lanes"), LAYOUTS)
def test_each_population_layout_trains_every_member_as_alone(x64, name, lanes):
    # 3 members in chunks of 2: a chunk and a smaller last one; each member its own seed,
    # learning rate, data and dropout keys; float64, so only float rounding may differ.
    cfg = dataclasses.replace(POPULATION_MODELS[name], total_series_length=600)
    members = population_configs(cfg, [0, 1], [0.1, 0.3])[:3]
    params = [init_params(m, dtype=np.float64) for m in members]
    states = [make_optimizer(m).init(p) for m, p in zip(members, params, strict=True)]
    data = [epoch_data(m, 1) for m in members]
    keys = dropout_keys(members, 1) if cfg.keep_prob < 1 else None
    population = population_program(cfg, 2, lanes)
    out, _, losses = population(stack(params), stack(states), *stack(data), keys)
    assert losses.shape == (3, cfg.num_batches)
    for i, m in enumerate(members):
        key = epoch_key(m, 1) if cfg.keep_prob < 1 else None
        alone, _, alone_losses = train_epoch(params[i], states[i], *data[i], m, key=key)
        np.testing.assert_allclose(losses[i], alone_losses, rtol=1e-10)
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["part1", "lstm-dropout"])
def test_a_population_shared_out_over_threads_trains_every_member_as_alone(x64, monkeypatch, name):
    # 5 members in chunks of 2 over 2 threads: chunks (0, 1), (2, 3) in one, (4,) in the other.
    # Float64 inside jax.enable_x64: the worker threads must compute in the caller's precision.
    monkeypatch.setattr(policy, "population_chunk", lambda cfg, size: 2)
    monkeypatch.setattr(policy, "population_threads", lambda cfg, size: 2)
    cfg = dataclasses.replace(POPULATION_MODELS[name], total_series_length=600)
    members = population_configs(cfg, [0, 1, 2, 3, 4], [0.3])
    params = [init_params(m, dtype=np.float64) for m in members]
    states = [make_optimizer(m).init(p) for m, p in zip(members, params, strict=True)]
    data = [epoch_data(m, 1) for m in members]
    keys = dropout_keys(members, 1) if cfg.keep_prob < 1 else None
    train = population_trainer(cfg, len(members))
    assert train is not population_program(cfg, 2)  # the threaded form, not the program itself
    out, _, losses = train(stack(params), stack(states), *stack(data), keys)
    assert losses.shape == (5, cfg.num_batches) and losses.dtype == np.float64
    for i, m in enumerate(members):
        key = epoch_key(m, 1) if cfg.keep_prob < 1 else None
        alone, _, alone_losses = train_epoch(params[i], states[i], *data[i], m, key=key)
        np.testing.assert_allclose(losses[i], alone_losses, rtol=1e-10)
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(alone), strict=True):
            assert a.dtype == np.float64
            np.testing.assert_allclose(a[i], b, rtol=1e-10, atol=1e-12)


def test_the_population_policy_shares_lanes_chunks_over_the_cores():
    cores = cpu_cores()
    assert population_threads(EchoConfig(), 256) == min(cores, 256 // 32)
    assert population_threads(EchoConfig(), 5) == 1  # one chunk: nothing to share out
    assert population_threads(EchoConfig(cell="lstm", state_size=64), 256) == 1  # a vmap
    # The YNNPACK option for every cell in lanes, only with small loops; never for a vmap.
    expected = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}
    for cfg in POPULATION_MODELS.values():
        assert population_compiler_options(cfg) == (expected if xla_flags.SMALL_LOOPS else {})
        assert population_compiler_options(cfg, lanes=False) == {}
    assert population_compiler_options(EchoConfig(cell="lstm", state_size=64)) == {}
    # The tanh cells' kernels are cheap: past policy.WHOLE_TANH_MEMBERS members they keep
    # the default.
    assert population_compiler_options(EchoConfig(), size=4096) == {}
    assert population_chunk(EchoConfig(), 4096) == 32
    lstm = POPULATION_MODELS["part3"]
    assert population_compiler_options(lstm, size=4096) == population_compiler_options(lstm)


@pytest.mark.skipif(not xla_flags.SMALL_LOOPS, reason="the small-loop option is off")
@pytest.mark.parametrize("part", ["part1", "part3"])
def test_a_population_in_lanes_compiles_its_epoch_whole(part):
    # Without population_compiler_options, YNNPACK's reduction fusions keep the loops in pieces.
    cfg = dataclasses.replace(POPULATION_MODELS[part], total_series_length=300)
    params = stack([init_params(cfg, seed) for seed in range(2)])
    states = jax.vmap(make_optimizer(cfg).init)(params)
    x, y = epoch_data(cfg, 0)
    data = np.stack([x, x]), np.stack([y, y])
    hlo = population_program(cfg, 2).lower(params, states, *data, None).compile().as_text()
    assert "__ynn_fusion" not in hlo
    assert 'xla_cpu_small_call="true"' in hlo


def test_the_population_policy_puts_small_models_in_lanes():
    # Chunks as wide as keep one step's products within the lane budget (policy.population_chunk).
    # Where they compile whole (population_compiler_options), chunks of 32.
    chunks = {name: population_chunk(cfg, 256) for name, cfg in POPULATION_MODELS.items()}
    whole = bool(population_compiler_options(POPULATION_MODELS["part3"]))
    budget = {"part1": 32, "part3": 8, "part4": 2, "lstm-dropout": 8, "gru": 16}
    assert chunks == {name: 32 if whole else c for name, c in budget.items()}
    assert all(population_lanes(cfg) for cfg in POPULATION_MODELS.values())
    assert population_chunk(EchoConfig(), 5) == 5
    big = EchoConfig(cell="lstm", state_size=64)
    assert not population_lanes(big) and population_chunk(big, 256) == 1
    epoch = make_population_epoch(EchoConfig(), 4)
    with pytest.raises(ValueError, match=r"x_PxBxL must be \(members, batch, time\)"):
        epoch(*[None] * 2, np.zeros((5, 150)), np.zeros((5, 150)), None)


def test_a_diverging_member_stops_the_population_naming_it():
    cfg = EchoConfig(num_epochs=2, total_series_length=1500)
    message = r"loss of member 1 \(seed 0, learning rate 1e\+38\), epoch 0, window \d+ is inf$"
    with pytest.raises(TrainingDivergedError, match=message):
        fit_population(cfg, seeds=[0], learning_rates=[0.3, 1e38], progress=False)


def test_population_history_is_fits(small_cfg):
    """One loop over epochs for one model or many: the same keys, per member."""
    cfg = EchoConfig(num_epochs=2, total_series_length=1500)
    _, history = fit_population(cfg, seeds=[0, 1], progress=False)
    _, alone = fit(cfg, quiet=True, progress=False)
    assert set(history) == set(alone) | {"members"}
    assert np.shape(history["accuracy"]) == (2, 2) and len(history["epoch_seconds"]) == 2


def test_population_needs_members():
    with pytest.raises(ValueError, match="population is empty"):
        fit_population(EchoConfig(num_epochs=1), seeds=[], progress=False)


def test_sweep_cli_prints_and_saves_its_table(tmp_path, capsys):
    args = [
        "sweep",
        "--epochs",
        "2",
        "--total-series-length",
        "1500",
        "--seeds",
        "0",
        "1",
        "--learning-rates",
        "0.3",
        "1.0",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| member | seed | learning rate |" in out
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert [(r["seed"], r["learning_rate"]) for r in record["table"]] == [
        (0, 0.3),
        (0, 1.0),
        (1, 0.3),
        (1, 1.0),
    ]
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "sweep.md").read_text().count("\n") == 6


@pytest.mark.parametrize(
    ("flag", "value", "instead"),
    [("--seed", "3", "--seeds"), ("--learning-rate", "0.5", "--learning-rates")],
)
def test_sweep_refuses_one_members_options(flag, value, instead, tmp_path, capsys):
    """--seed would otherwise be silently ignored (or, abbreviated, taken for --seeds)."""
    assert main(["sweep", flag, value, "--epochs", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"use it, not {flag}" in err and instead in err
    assert not (tmp_path / "sweep.json").exists()
