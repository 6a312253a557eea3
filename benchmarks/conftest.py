"""Benchmark settings: devices, library versions and quick mode.

With ``--benchmark-disable`` (the default in ``pyproject.toml``, so CI runs this suite as tests)
every case uses a tiny configuration and runs once. ``make bench`` passes ``--benchmark-enable``
for the real measurements.
"""

import importlib.util
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import pytest

from benchmarks.peers import PEERS

DEVICES = ("cpu", "gpu")

# pytest's --doctest-modules imports every module here; a peer's library is optional.
collect_ignore = sorted(
    {
        f"peers/{p.module.rsplit('.', 1)[1]}.py"
        for p in PEERS
        if importlib.util.find_spec(p.library) is None
    }
)


def jax_device(platform_name: str):
    """The first JAX device of a platform, or ``None``."""
    try:
        return jax.devices(platform_name)[0]
    except RuntimeError:
        return None


def tf_gpu_available() -> bool:
    try:
        import tensorflow as tf
    except ImportError:
        return False
    return bool(tf.config.list_physical_devices("GPU"))


@pytest.fixture
def quick(benchmark) -> bool:
    """True when benchmarks are disabled: run every case once on a tiny config."""
    return not benchmark.enabled


def pytest_benchmark_update_machine_info(config, machine_info):
    versions = {"jax": jax.__version__, "python": platform.python_version()}
    for name in ("jaxlib", "optax", "numpy", "tensorflow", "torch", "flax", "keras"):
        try:
            module = __import__(name)
            versions[name] = module.__version__
        except ImportError:
            versions[name] = None
    machine_info["library_versions"] = versions
    machine_info["jax_devices"] = [f"{d.platform}: {d.device_kind}" for d in jax.devices()]
    machine_info["cpu_count"] = os.cpu_count()
