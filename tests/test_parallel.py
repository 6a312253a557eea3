"""Data parallelism: one model's batch rows over devices and processes."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from jax_echo import (
    EchoConfig,
)
from jax_echo.cli import main
from jax_echo.io import load_params
from jax_echo.parallel import data_parallel_mesh, fit_data_parallel
from jax_echo.train import fit

ROOT = Path(__file__).parent.parent
# Batch 4 divides over 1, 2 or 4 devices; 100 windows per epoch.
DP_CFG = EchoConfig(num_epochs=2, batch_size=4, total_series_length=6000)


def test_one_device_mesh_is_the_ordinary_path():
    plain, plain_history = fit(DP_CFG, quiet=True, progress=False)
    mesh = data_parallel_mesh(jax.devices()[:1])
    meshed, history = fit_data_parallel(DP_CFG, mesh, quiet=True, progress=False)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(meshed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert history["loss"] == plain_history["loss"]


def run_python(code: str, env: dict | None = None, timeout: int = 240) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_sharded_training_equals_single_device_on_four_cpu_devices():
    """fit_data_parallel against fit (float32), and one data-parallel epoch with dropout against
    train_epoch in float64, where each device's share of the masks and the mean of the devices'
    gradients must give one device's numbers to 1e-12."""
    out = run_python(
        """
        import json, jax, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from jax_echo import EchoConfig, epoch_key, init_params, make_optimizer, train_epoch
        from jax_echo.parallel import data_parallel_epoch, data_parallel_mesh, place
        from jax_echo.parallel import fit_data_parallel
        from jax_echo.task import epoch_data
        from jax_echo.train import TrainingDivergedError, fit
        cfg = EchoConfig.for_part(4, num_epochs=2, batch_size=4, total_series_length=1200)
        single, h1 = fit(cfg, quiet=True, progress=False)
        sharded, h2 = fit_data_parallel(cfg, data_parallel_mesh(), quiet=True, progress=False)
        try:
            fit_data_parallel(EchoConfig(num_epochs=1), data_parallel_mesh(), progress=False)
            error = None
        except ValueError as e:
            error = str(e)
        pairs = zip(jax.tree.leaves(single), jax.tree.leaves(sharded))
        mesh = data_parallel_mesh()
        with jax.enable_x64(True):
            cfg6 = EchoConfig.for_part(6, batch_size=4, total_series_length=1200)
            x, y = epoch_data(cfg6, 0)
            params = jax.tree.map(lambda a: np.asarray(a, np.float64), init_params(cfg6))
            key = epoch_key(cfg6, 0)
            one = train_epoch(params, make_optimizer(cfg6).init(params), x, y, cfg6, key=key)
            rows, copies = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
            state = place((params, make_optimizer(cfg6).init(params)), copies)
            split = data_parallel_epoch(cfg6, mesh)(*state, place(x, rows), place(y, rows), key)
            x64 = [(np.asarray(a), np.asarray(b)) for a, b in zip(jax.tree.leaves(one),
                                                                jax.tree.leaves(split))]
        # The benchmarks' data-parallel row: the trainer with a mesh against the plain one.
        from jax_echo.trainers import JaxTrainer
        x4, y4 = epoch_data(cfg, 0)
        trainers = [JaxTrainer(cfg, init_params(cfg), mesh=m) for m in (None, mesh)]
        losses = [np.asarray(t.train_epoch(x4, y4)) for t in trainers]
        print(json.dumps({
            "devices": len(jax.devices()),
            "param_diff": max(float(np.abs(a - b).max()) for a, b in pairs),
            "loss_diff": float(np.abs(np.subtract(h1["loss"], h2["loss"])).max()),
            "error": error,
            "float64": all(np.asarray(a).dtype == np.float64 for a in jax.tree.leaves(split[0])),
            "dropout_diff": max(float(np.abs(a - b).max()) for a, b in x64),
            "trainer": [t.name for t in trainers],
            "trainer_diff": float(np.abs(losses[0] - losses[1]).max()),
        }))
        """,
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    )
    result = json.loads(out.splitlines()[-1])
    assert result["devices"] == 4
    assert result["param_diff"] < 1e-5 and result["loss_diff"] < 1e-5
    assert result["float64"] and result["dropout_diff"] < 1e-12
    assert result["trainer"] == ["jax-epoch", "jax-epoch-data-parallel"]
    assert result["trainer_diff"] < 1e-5
    assert result["error"] == (
        "data parallelism splits the batch over devices: EchoConfig.batch_size (5) must be "
        "divisible by the device count (4)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two Python processes, each compiling: ~20 s on 2 cores
def test_two_processes_train_to_the_params_of_one(tmp_path):
    common = [
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--total-series-length",
        "6000",
        "--no-progress",
        "--quiet",
    ]
    assert main(["train", *common, "--out", str(tmp_path / "single")]) == 0

    port = free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jax_echo",
                "train",
                *common,
                "--out",
                str(tmp_path / "multi"),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outputs
    record = json.loads((tmp_path / "multi" / "history.json").read_text())
    assert record["processes"] == 2 and record["devices"] == 2
    single, _ = load_params(tmp_path / "single" / "params.npz")
    multi, _ = load_params(tmp_path / "multi" / "params.npz")
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(multi), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
