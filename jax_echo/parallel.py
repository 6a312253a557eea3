"""One model on many devices and processes: the batch rows split over a mesh.

Data parallelism shards the batch axis B of the series over a 1-D mesh of devices (local, or
across processes after ``initialize_distributed``); params and optimizer state are replicated,
and each window's gradients are averaged over the mesh (``data_parallel_epoch``, a
``shard_map``). One device is the ordinary path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_echo import model, policy
from jax_echo.cells import Params, init_params
from jax_echo.io import CheckpointError, host_array
from jax_echo.optim import make_optimizer
from jax_echo.task import EchoConfig, prediction_accuracies
from jax_echo.train import EpochVerbs, RunOptions, Start, run_epochs, run_options, start_run


def data_parallel_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``batch`` over ``devices`` (default: every device of every process)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), ("batch",))


def check_data_parallel(cfg: EchoConfig, mesh: Mesh) -> None:
    if cfg.batch_size % mesh.size:
        raise ValueError(
            f"data parallelism splits the batch over devices: EchoConfig.batch_size "
            f"({cfg.batch_size}) must be divisible by the device count ({mesh.size})"
        )


def place(tree: Any, sharding: NamedSharding) -> Any:
    """Host arrays (the same on every process) to global arrays laid out by ``sharding``;
    arrays already laid out so stay where they are."""

    def one(a):
        if isinstance(a, jax.Array) and a.sharding == sharding:
            return a
        return jax.make_array_from_callback(np.shape(a), sharding, lambda i: np.asarray(a)[i])

    return jax.tree.map(one, tree)


def data_parallel_epoch(cfg: EchoConfig, mesh: Mesh) -> Callable:
    """The jitted epoch of ``cfg`` with the batch rows split over ``mesh``: ``(params, opt_state,
    x_BxL, y_BxL, key) -> (params, opt_state, losses_N)``, params and optimizer state replicated
    (and donated), the series sharded by rows.

    A ``jax.shard_map`` of ``model.make_train_epoch`` with the ``policy.Program`` of a mesh axis
    (``batch_axis="batch"``): every device trains on its rows and carries their state, and once
    per window the gradients and the loss are averaged over the mesh, so every device applies
    the same update; each device takes its rows of the whole batch's dropout masks. Written out
    rather than left to ``jit``'s partitioner, which measured slower (docs/performance.md). On a
    one-device mesh it is the ordinary epoch, bit for bit.
    """
    replicated = NamedSharding(mesh, P())
    if mesh.size == 1:
        return jax.jit(model.make_train_epoch(cfg), out_shardings=replicated, donate_argnums=(0, 1))
    epoch = jax.shard_map(
        model.make_train_epoch(cfg, program=policy.program(cfg, batch_axis="batch")),
        mesh=mesh,
        in_specs=(P(), P(), P("batch"), P("batch"), P()),
        out_specs=(P(), P(), P()),
    )
    return jax.jit(epoch, donate_argnums=(0, 1))


def data_parallel_verbs(cfg: EchoConfig, mesh: Mesh) -> EpochVerbs:
    """``EpochVerbs`` for ``train.run_epochs`` with the batch sharded over ``mesh``.

    The series' rows are sharded over the mesh, params and optimizer state replicated and kept
    on the devices from epoch to epoch (their buffers donated to the next epoch). The compiled
    epoch is ``data_parallel_epoch``; on a one-device mesh, the ordinary epoch.
    """
    check_data_parallel(cfg, mesh)
    rows, replicated = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
    epoch = data_parallel_epoch(cfg, mesh)
    init = jax.jit(make_optimizer(cfg).init, out_shardings=replicated)
    predict = model.make_predict_epoch(cfg)
    accuracies = jax.jit(
        lambda params, x, y: prediction_accuracies(predict(params, x), y),
        out_shardings=replicated,
    )

    def init_opt_state(params):
        return init(place(params, replicated))

    def train_epoch(params, opt_state, x, y, epoch_index):
        key = model.epoch_key(cfg, epoch_index) if cfg.keep_prob < 1 else None
        params, opt_state = place((params, opt_state), replicated)
        return epoch(params, opt_state, place(x, rows), place(y, rows), key)

    def window_accuracies(params, x, y):
        return host_array(accuracies(place(params, replicated), place(x, rows), place(y, rows)))

    return EpochVerbs("jax", init_opt_state, train_epoch, window_accuracies)


def agreed_start(
    cfg: EchoConfig,
    verbs: EpochVerbs,
    out_dir: str | os.PathLike | None,
    resume: bool,
    overwrite: bool = False,
) -> Start:
    """``train.start_run`` decided by process 0 and followed by every process.

    Only process 0 needs to see ``out_dir`` (the checkpoint): it sends its decision, the error
    or the starting weights, optimizer state and history, to all. Every process then either
    starts from the same point or raises the same ``CheckpointError``; none waits forever.
    """
    like = Start(
        init_params(cfg), jax.tree.map(host_array, verbs.init_opt_state(init_params(cfg))), {}
    )
    start = _on_process_0(
        lambda: start_run(cfg, verbs, out_dir=out_dir, resume=resume, overwrite=overwrite), like
    )
    arrays = jax.tree.map(host_array, (start.params, start.opt_state))
    params, opt_state = multihost_utils.broadcast_one_to_all(arrays)
    history = json.loads(_broadcast_text(json.dumps(start.history)))
    return Start(jax.tree.map(np.asarray, params), opt_state, history)


def agreed_config(resolve: Callable[[], EchoConfig]) -> EchoConfig:
    """Process 0's ``resolve()`` on every process: with ``--resume`` only process 0 sees the
    stored run whose config the command continues. Its error, if any, is raised everywhere."""
    cfg = _on_process_0(lambda: resolve().to_dict(), {})
    return EchoConfig.from_dict(json.loads(_broadcast_text(json.dumps(cfg))))


def _on_process_0(decide: Callable[[], Any], elsewhere: Any) -> Any:
    """``decide()`` on process 0, ``elsewhere`` on the others (which then receive process 0's
    value); its error, a user's, is raised on every process, so that none waits forever."""
    value, message = elsewhere, ""
    if jax.process_index() == 0:
        try:
            value = decide()
        except (CheckpointError, ValueError, OSError) as e:
            message = str(e)
    message = _broadcast_text(message)
    if message:
        raise CheckpointError(message)
    return value


def _broadcast_text(text: str) -> str:
    """Process 0's ``text``, on every process."""
    data = np.frombuffer(text.encode(), np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int64(data.size)))
    padded = np.zeros(size, np.uint8)
    padded[: min(size, data.size)] = data[:size]
    return bytes(multihost_utils.broadcast_one_to_all(padded)).decode()


def fit_data_parallel(
    cfg: EchoConfig, mesh: Mesh, options: RunOptions | None = None, **changes: Any
) -> tuple[Params, dict[str, Any]]:
    """``train.fit`` with the batch sharded over ``mesh`` (``data_parallel_mesh()``; across
    processes after ``initialize_distributed``). ``batch_size`` must divide over its devices.

    Across processes, process 0 decides where the run starts (``agreed_start``) and writes the
    files; the others need not see ``out_dir``.
    """
    opts = run_options(options, **changes)
    verbs = data_parallel_verbs(cfg, mesh)

    def start() -> Start:
        return agreed_start(cfg, verbs, opts.out_dir, opts.resume, opts.overwrite)

    return run_epochs(cfg, verbs, opts, start=start if jax.process_count() > 1 else None)


def initialize_distributed(coordinator: str, num_processes: int, process_id: int) -> None:
    """``jax.distributed.initialize``, with gloo collectives so that CPU processes can join."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )
