"""Strict JAX settings for the whole suite, and configurations shared by the tests."""

import os
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")
# The CLI keeps compiled programs in the user's cache; the suite (and its subprocesses) in its own.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="jax-echo-test-cache-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import pytest

from jax_echo import EchoConfig, task

jax.config.update("jax_numpy_rank_promotion", "raise")

# A tutorial-shaped run small enough for a test: 5 rows of 1500 steps, 100 windows per epoch.
SMALL = EchoConfig(num_epochs=3, total_series_length=7500)

# Every model of the series with a distinct config (part 5 is part 4's model, part 6 part 4's
# with dropout) and the GRU, one and two layers, at the tutorial's sizes: task.MODELS's.
MODELS = {
    name: task.MODELS[name].config for name in ("part1", "part2", "part3", "part4", "gru", "gru-2")
}


@pytest.fixture
def small_cfg() -> EchoConfig:
    return SMALL


@pytest.fixture(params=list(MODELS))
def model_cfg(request) -> EchoConfig:
    """Each model of the series, at the tutorial's sizes."""
    return MODELS[request.param]


@pytest.fixture
def x64():
    """Runs the test with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield
