"""The task definition: configuration rules, data and initial weights."""

import dataclasses

import numpy as np
import pytest

from jax_echo import EchoConfig, epoch_data, generate_data


def test_defaults_are_the_tutorials():
    cfg = EchoConfig()
    assert (cfg.num_epochs, cfg.total_series_length, cfg.truncated_backprop_length) == (
        100,
        50000,
        15,
    )
    assert (cfg.state_size, cfg.num_classes, cfg.echo_step, cfg.batch_size) == (4, 2, 3, 5)
    assert cfg.learning_rate == 0.3
    assert cfg.num_batches == 666
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.state_size = 8


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_epochs", 0, "num_epochs must be positive"),
        ("total_series_length", -5, "total_series_length must be positive"),
        ("truncated_backprop_length", 0, "truncated_backprop_length must be positive"),
        ("state_size", 0, "state_size must be positive"),
        ("batch_size", 0, "batch_size must be positive"),
        ("num_classes", 1, "num_classes must be at least 2"),
        ("echo_step", -1, "echo_step must be at least 0"),
        ("echo_step", 10000, "echo_step (10000) must be shorter than a row"),
        ("seed", -1, "seed must be at least 0"),
        ("state_size", 4.0, "state_size must be an integer"),
        ("batch_size", True, "batch_size must be an integer"),
        ("total_series_length", 50001, "must be a multiple of batch_size"),
        ("truncated_backprop_length", 10001, "num_batches must be at least 1"),
        ("learning_rate", 0.0, "learning_rate must be a finite number > 0"),
        ("learning_rate", -0.3, "learning_rate must be a finite number > 0"),
        ("learning_rate", float("nan"), "learning_rate must be a finite number > 0"),
        ("learning_rate", float("inf"), "learning_rate must be a finite number > 0"),
        ("learning_rate", "0.3", "learning_rate must be a finite number > 0"),
        ("cell", "rnn", "cell must be one of ('tutorial', 'basic_rnn', 'lstm', 'gru')"),
        ("num_layers", 0, "num_layers must be positive"),
        ("num_layers", 2, "num_layers must be 1 for cell='tutorial'"),
        ("num_layers", 1.5, "num_layers must be an integer"),
        ("keep_prob", 0.0, "keep_prob must be a number in (0, 1]"),
        ("keep_prob", 1.5, "keep_prob must be a number in (0, 1]"),
        ("keep_prob", float("nan"), "keep_prob must be a number in (0, 1]"),
        ("keep_prob", True, "keep_prob must be a number in (0, 1]"),
    ],
)
def test_every_config_rule_raises_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=f"EchoConfig.{field}.*") as e:
        EchoConfig(**{field: value})
    assert message in str(e.value)


def test_config_dict_round_trip_and_unknown_fields():
    cfg = EchoConfig(state_size=7, seed=3, cell="gru", num_layers=2, keep_prob=0.8)
    assert EchoConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown EchoConfig fields: \\['hidden'\\]"):
        EchoConfig.from_dict({"hidden": 3})


def test_data_is_the_tutorials_formula():
    cfg = EchoConfig()
    x, y = generate_data(cfg, np.random.default_rng(7))
    # The tutorial's generateData, written out with the same generator.
    rng = np.random.default_rng(7)
    x_ref = rng.choice(2, cfg.total_series_length, p=[0.5, 0.5])
    y_ref = np.roll(x_ref, cfg.echo_step)
    y_ref[0 : cfg.echo_step] = 0
    np.testing.assert_array_equal(x, x_ref.reshape((cfg.batch_size, -1)))
    np.testing.assert_array_equal(y, y_ref.reshape((cfg.batch_size, -1)))
    assert x.shape == y.shape == (5, 10000)
    assert x.dtype == np.float32 and y.dtype == np.int32
    # Rows are contiguous stretches of one series: each row's echo starts in the row above.
    flat_x, flat_y = x.ravel(), y.ravel()
    np.testing.assert_array_equal(flat_y[3:], flat_x[:-3])
    assert (flat_y[:3] == 0).all()
    assert 0.48 < x.mean() < 0.52


def test_data_with_more_classes_and_seeds():
    cfg = EchoConfig(num_classes=5, total_series_length=20000, echo_step=2)
    x, y = generate_data(cfg, 0)
    assert set(np.unique(x)) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(y.ravel()[2:], x.ravel()[:-2])
    # Int seeds and generators agree; epochs differ; the same epoch repeats exactly.
    np.testing.assert_array_equal(
        generate_data(cfg, 5)[0], generate_data(cfg, np.random.default_rng(5))[0]
    )
    a, b = epoch_data(cfg, 0), epoch_data(cfg, 1)
    assert not np.array_equal(a[0], b[0])
    np.testing.assert_array_equal(epoch_data(cfg, 1)[0], b[0])
