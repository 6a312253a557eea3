"""Benchmark settings: the run (quick mode, devices, installed libraries), its cases, versions.

With ``--benchmark-disable`` (pyproject.toml's default, so CI runs this suite as tests) every
case runs once on a tiny configuration; ``make bench`` passes ``--benchmark-enable``. Which cases
exist is decided here, once per run (``Run``): a case whose device or library this machine lacks
is not generated, and the header says which are not.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import platform
from collections.abc import Callable
from typing import Any, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import pytest

from jax_echo.registry import BY_NAME, DATA_PARALLEL, ROWS

DEVICES = ("cpu", "gpu")
# Quick mode's tiny cases with benchmarks enabled, so that their JSON is written: a plan's
# check on a machine without the plan's device (``python -m benchmarks.gpu --quick``).
QUICK_ENV = "JAX_ECHO_BENCH_QUICK"

# pytest's ``--doctest-modules`` imports every module here; torch_window.py needs PyTorch (the
# ``peers`` extra), which the test suite does not install.
collect_ignore = [] if importlib.util.find_spec("torch") else ["torch_window.py"]


def jax_device(platform_name: str):
    """The first JAX device of a platform, or ``None``."""
    try:
        return jax.devices(platform_name)[0]
    except RuntimeError:
        return None


@functools.cache
def sees_gpu(library: str, backend: str | None) -> bool:
    """Whether a row's library (Keras: its backend), installed, sees a GPU."""
    if library == "torch":
        import torch

        return torch.cuda.is_available()
    if "tensorflow" in (library, backend):
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return jax_device("gpu") is not None  # Flax, Keras on JAX


def _jax_platforms() -> tuple[str, ...]:
    return tuple(d for d in DEVICES if jax_device(d) is not None)


@dataclasses.dataclass(frozen=True)
class Run:
    """What this pytest run measures: quick mode or not, and where each row can run."""

    quick: bool
    # Where JAX runs: the CPU, and the GPU where it sees one.
    devices: tuple[str, ...] = dataclasses.field(default_factory=_jax_platforms)

    @classmethod
    def of(cls, config: pytest.Config) -> Run:
        option = config.getoption
        disabled = option("benchmark_disable") and not option("benchmark_enable")
        return cls(bool(disabled) or os.environ.get(QUICK_ENV) == "1")

    def absence(self, name: str, device: str) -> str | None:
        """Why row ``name`` cannot run on ``device`` here, or ``None`` when it can."""
        if device not in self.devices:
            return f"JAX sees no {device.upper()}"
        # The batch split over every device of its platform: on a CPU, make bench runs it in
        # processes with one device per core (``--xla_force_host_platform_device_count``).
        if name == DATA_PARALLEL and len(jax.devices(device)) < 2:
            return f"one {device.upper()} device (it splits the batch over two or more)"
        r = BY_NAME.get(name)  # "jax" alone: a JAX-only measurement
        if r is None:
            return None
        reason = r.available()
        if reason is None and device == "gpu" and not sees_gpu(r.library, r.backend):
            reason = f"{r.library} sees no GPU"
        return reason

    def has(self, name: str, device: str) -> bool:
        return self.absence(name, device) is None


class Case(NamedTuple):
    """One benchmark case: an implementation on a device, with what its group adds."""

    name: str
    device: str
    model: str | None = None  # a series or accuracy model
    size: Any = None  # a scaling or realistic size (its ``id`` names it), a population size

    @property
    def id(self) -> str:
        parts = [self.model, getattr(self.size, "id", self.size), self.name, self.device]
        return "-".join(str(p) for p in parts if p is not None)


def each(run: Run, names, **fields) -> list[Case]:
    """``names`` on every device where this run has them."""
    return [Case(n, d, **fields) for d in run.devices for n in names if run.has(n, d)]


def cases(generate: Callable[[Run], list[Case]]) -> Callable:
    """Marks a test with the generator of its cases: ``generate(run)`` lists the cases that run
    here (in quick mode, only those that are not another case's calls again), so nothing is
    skipped at run time."""

    def mark(test):
        test.cases = generate
        return test

    return mark


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    generate = getattr(metafunc.function, "cases", None)
    if generate is not None:
        found = generate(Run.of(metafunc.config))
        metafunc.parametrize("case", [pytest.param(c, id=c.id) for c in found])


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The rows no case is generated for in this run, and why (each a real absence)."""
    run = Run.of(config)
    lines = [f"benchmarks: {'quick mode' if run.quick else 'timed'}, devices {run.devices}"]
    for device in DEVICES:
        missing = {}
        for r in ROWS:
            if not run.has(r.name, device):
                missing.setdefault(run.absence(r.name, device), []).append(r.name)
        lines += [
            f"benchmarks: not generated on {device}: {', '.join(names)} ({reason})"
            for reason, names in missing.items()
        ]
    return lines


@pytest.fixture
def quick(benchmark) -> bool:
    """Quick mode: benchmarks disabled, or ``QUICK_ENV`` 1 (timed and saved as a real run's)."""
    return not benchmark.enabled or os.environ.get(QUICK_ENV) == "1"


def pytest_benchmark_update_machine_info(config, machine_info):
    versions = {"jax": jax.__version__, "python": platform.python_version()}
    for name in ("jaxlib", "optax", "numpy", "tensorflow", "torch", "flax", "keras"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    machine_info["library_versions"] = versions
    machine_info["jax_devices"] = [f"{d.platform}: {d.device_kind}" for d in jax.devices()]
    machine_info["cpu_count"] = os.cpu_count()
