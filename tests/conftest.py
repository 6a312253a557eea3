"""Strict JAX settings for the whole suite, and small configurations shared by the tests."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import pytest

from jax_echo import EchoConfig

jax.config.update("jax_numpy_rank_promotion", "raise")

# A tutorial-shaped run small enough for a test: 5 rows of 1500 steps, 100 windows per epoch.
SMALL = EchoConfig(num_epochs=3, total_series_length=7500)


@pytest.fixture
def small_cfg() -> EchoConfig:
    return SMALL


@pytest.fixture
def x64():
    """Runs the test with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield
