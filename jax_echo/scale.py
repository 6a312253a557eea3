"""Scaling out: many models at once (``vmap``) and one model on many devices (``jax.sharding``).

Population training stacks independent members along a leading axis P of params, optimizer state
(whose learning rate is a leaf, so each member has its own) and data, and runs one compiled
program per epoch for the whole population: chunks of members side by side (in lanes, or a
``jax.vmap(train_epoch)``), one chunk after another (``lax.map``); on a CPU the chunks are shared
out over one thread per core (``population_trainer``).

Data parallelism shards the batch axis B of the series over a 1-D mesh of devices (local, or
across processes after ``jax.distributed.initialize``); params and optimizer state are
replicated, and each window's gradients are averaged over the mesh (``data_parallel_epoch``, a
``shard_map``). One device is the ordinary path.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_echo import model, runlog
from jax_echo.cells import Params, init_params
from jax_echo.io import CheckpointError, atomic_write, host_array
from jax_echo.optim import make_optimizer, with_learning_rate
from jax_echo.plot import save_figure, sweep_figure
from jax_echo.tables import Column, markdown
from jax_echo.task import EchoConfig, epoch_data, prediction_accuracies
from jax_echo.train import (
    EpochVerbs,
    RunOptions,
    Start,
    Timer,
    new_history,
    run_epochs,
    run_options,
    start_run,
    untimed,
)

# --- Population ------------------------------------------------------------------------------


def population_configs(
    cfg: EchoConfig, seeds: Sequence[int], learning_rates: Sequence[float]
) -> list[EchoConfig]:
    """One config per (seed, learning rate) pair: the cartesian product, seeds outermost."""
    return [
        dataclasses.replace(cfg, seed=seed, learning_rate=lr)
        for seed, lr in itertools.product(seeds, learning_rates)
    ]


def _shapes_only(cfg: EchoConfig) -> EchoConfig:
    """``cfg`` without the fields that only change values: one compiled population per shape."""
    return dataclasses.replace(cfg, seed=0, learning_rate=1.0, num_epochs=1)


def stack(trees: Sequence[Any]) -> Any:
    """Members' pytrees (params, optimizer states, data) stacked along a new leading axis P."""
    return jax.tree.map(lambda *leaves: np.stack(leaves), *trees)


def by_chunks(f: Callable, chunk: int, args_P: Any) -> Any:
    """``f`` (a function of ``chunk`` members' stacked pytrees) over every member of ``args_P``,
    one chunk after another (``lax.map``; a last, smaller chunk when ``chunk`` does not divide the
    population); outputs stacked back along the member axis."""
    P = len(jax.tree.leaves(args_P)[0])
    n, rest = divmod(P, chunk)
    head = jax.tree.map(lambda a: a[: n * chunk].reshape(n, chunk, *a.shape[1:]), args_P)
    out = jax.tree.map(lambda a: a.reshape(n * chunk, *a.shape[2:]), lax.map(lambda a: f(*a), head))
    if rest:
        tail = f(*jax.tree.map(lambda a: a[n * chunk :], args_P))
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, tail)
    return out


@functools.cache
def population_program(
    cfg: EchoConfig, chunk: int, lanes: bool | None = None, size: int | None = None
) -> Callable:
    """The jitted epoch of a population, ``chunk`` members side by side
    (``model.make_population_epoch``: in lanes or a ``vmap``), chunk after chunk (``by_chunks``):
    ``(params_P, opt_state_P, x_PxBxL, y_PxBxL, keys_P)`` to ``(params_P, opt_state_P,
    losses_P)``. ``train_population_epoch`` chooses the chunk; ``benchmarks/population_profile.py``
    tries others, in either layout (``lanes``: ``None`` for the policy's), compiled with the
    policy's options for ``size`` members (``model.population_compiler_options``)."""
    epoch = model.make_population_epoch(cfg, chunk, lanes=lanes)
    return jax.jit(
        lambda *args_P: by_chunks(epoch, chunk, args_P),
        donate_argnums=(0, 1),
        compiler_options=model.population_compiler_options(cfg, lanes, size),
    )


def population_trainer(cfg: EchoConfig, size: int) -> Callable:
    """The epoch of ``size`` members of ``cfg``'s shape, ``(params_P, opt_state_P, x_PxBxL,
    y_PxBxL, keys_P) -> (params_P, opt_state_P, losses_P)``: ``population_program`` with the
    policy's chunk, its chunks shared out over ``model.population_threads`` threads (whole chunks,
    in order, so every member trains in the chunk it would have alone); with more than one, the
    inputs are sliced rather than donated, and the call returns once every part is done."""
    shapes = _shapes_only(cfg)
    chunk = model.population_chunk(cfg, size)
    program = population_program(shapes, chunk, size=size)
    threads = model.population_threads(cfg, size)
    if threads == 1:
        return program
    chunks = -(-size // chunk)
    span = chunk * -(-chunks // threads)  # whole chunks per thread
    starts = range(0, size, span)
    split = _splitter(size, span)

    def train(params_P, opt_state_P, x_PxBxL, y_PxBxL, keys_P):
        # The data by plain slicing (NumPy's are views, each part then copied in by its thread).
        data = [(x_PxBxL[s : s + span], y_PxBxL[s : s + span]) for s in starts]
        states = split(params_P, opt_state_P, keys_P)
        parts = [(p, o, x, y, k) for (p, o, k), (x, y) in zip(states, data, strict=True)]
        # JAX's float64 switch and default device are per thread: the workers take the caller's.
        x64, device = jax.config.jax_enable_x64, jax.config.jax_default_device

        def run(part):
            with jax.enable_x64(x64), jax.default_device(device):
                return jax.block_until_ready(program(*part))

        with ThreadPoolExecutor(len(parts)) as pool:
            return _join(list(pool.map(run, parts)))

    return train


@functools.cache
def _splitter(size: int, span: int) -> Callable:
    """One compiled call that cuts every leaf of a population's params, optimizer states and keys
    into parts of ``span`` members (one dispatch, where a slice per leaf and part cost
    milliseconds an epoch)."""
    starts = range(0, size, span)
    return jax.jit(
        lambda *args_P: [jax.tree.map(lambda a, s=s: a[s : s + span], args_P) for s in starts]
    )


# One compiled call that puts the parts' outputs back together along the member axis.
_join = jax.jit(lambda outs: jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *outs))


@functools.cache
def population_accuracies(cfg: EchoConfig, chunk: int) -> Callable:
    """The jitted per-window accuracies (P, N) of every member on its own series (a ``vmap`` of
    ``chunk`` members, chunk after chunk)."""
    predict_epoch = model.make_predict_epoch(cfg, members=chunk)

    def member(args):
        params, x_BxL, y_BxL = args
        return prediction_accuracies(predict_epoch(params, x_BxL), y_BxL)

    return jax.jit(lambda *args_P: lax.map(member, args_P, batch_size=chunk))


def train_population_epoch(params_P, opt_state_P, x_PxBxL, y_PxBxL, cfg: EchoConfig, keys_P=None):
    """``train_epoch`` for every member at once, in one compiled program: chunks of members side
    by side (``model.population_chunk``), chunk after chunk, the chunks shared out over the
    cores where the policy says so (``population_trainer``; params and state donated otherwise).

    ``keys_P``: one dropout key per member (``dropout_keys``), needed when ``cfg.keep_prob < 1``.
    """
    if cfg.keep_prob < 1 and keys_P is None:
        raise ValueError(f"EchoConfig.keep_prob is {cfg.keep_prob}: dropout needs keys_P")
    population = population_trainer(cfg, len(x_PxBxL))
    return population(params_P, opt_state_P, x_PxBxL, y_PxBxL, keys_P)


def dropout_keys(members: Sequence[EchoConfig], epoch: int) -> jax.Array:
    """Each member's ``model.epoch_key``, stacked."""
    seeds = jnp.asarray([m.seed for m in members])
    return jax.vmap(model.dropout_key, in_axes=(0, None))(seeds, epoch)


def population_verbs(cfg: EchoConfig, members: Sequence[EchoConfig]) -> EpochVerbs:
    """``EpochVerbs`` for ``train.run_epochs`` over a population: each member's own data, dropout
    keys and learning rate; one compiled program per epoch for training (``population_trainer``),
    one call for the accuracies."""
    shapes = _shapes_only(cfg)
    train = population_trainer(cfg, len(members))
    accuracies = population_accuracies(shapes, model.vmap_chunk(cfg, len(members)))
    init = jax.vmap(make_optimizer(cfg).init)
    rates = np.array([m.learning_rate for m in members])

    def init_opt_state(params_P):
        return with_learning_rate(init(params_P), jnp.asarray(rates, params_P.W2.dtype))

    def train_epoch(params_P, opt_state_P, x, y, epoch):
        keys = dropout_keys(members, epoch) if cfg.keep_prob < 1 else None
        return train(params_P, opt_state_P, x, y, keys)

    def data(epoch):
        return stack([epoch_data(m, epoch) for m in members])

    return EpochVerbs(
        "jax-population",
        init_opt_state,
        train_epoch,
        accuracies,
        epoch_data=data,
        members=tuple(f"seed {m.seed}, learning rate {m.learning_rate:g}" for m in members),
    )


def fit_population(
    cfg: EchoConfig,
    seeds: Sequence[int] = (0,),
    learning_rates: Sequence[float] | None = None,
    *,
    progress: bool = True,
    timer: Timer = untimed,
) -> tuple[Params, dict[str, Any]]:
    """Trains one independent model per (seed, learning rate) pair, all in one computation.

    Member ``i`` is exactly ``fit(population_configs(cfg, seeds, learning_rates)[i])``: its own
    initial weights, data and dropout keys from its seed, its own learning rate (a leaf of the
    optimizer state); per epoch the whole population is one compiled program (chunks of members,
    ``train_population_epoch``). The loop over epochs is ``train.run_epochs``'s, as
    for ``fit``. Works for every cell.

    Args:
      cfg: the shared configuration (its ``seed`` and ``learning_rate`` are replaced).
      seeds: seeds of the members.
      learning_rates: learning rates (default ``[cfg.learning_rate]``).
      progress: show a progress bar over epochs.
      timer: as for ``fit``.

    Returns:
      ``(params, history)``: ``Params`` whose arrays have a leading population axis P, and
      ``fit``'s history with one value per member: per epoch ``loss`` (P, N), ``accuracy`` and
      ``accuracy_after_first`` (P,), ``epoch_seconds`` (training, the whole population), and
      ``members`` (the seed and learning rate of each).

    Raises:
      TrainingDivergedError: a member's loss is not finite; the message names the member (its
        seed and learning rate), the epoch and the window.

    >>> params, history = fit_population(EchoConfig(num_epochs=2), seeds=[0, 1],
    ...                                  learning_rates=[0.1, 0.3], progress=False)  # 4 members
    """
    learning_rates = [cfg.learning_rate] if learning_rates is None else list(learning_rates)
    members = population_configs(cfg, seeds, learning_rates)
    if not members:
        raise ValueError("the population is empty: give at least one seed and learning rate")
    verbs = population_verbs(cfg, members)
    params = stack([init_params(m) for m in members])
    start = Start(params, verbs.init_opt_state(params), new_history())
    options = RunOptions(quiet=True, progress=progress, timer=timer)
    params, history = run_epochs(cfg, verbs, options, start=start)
    history["members"] = [{"seed": m.seed, "learning_rate": m.learning_rate} for m in members]
    return params, history


def sweep(
    cfg: EchoConfig,
    seeds: Sequence[int],
    learning_rates: Sequence[float],
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """``jax-echo sweep``: ``fit_population``, then its table on stdout and ``sweep.json``,
    ``sweep.md`` and ``sweep.png`` in ``out_dir``; returns the record written to the JSON."""
    t0 = time.perf_counter()
    _, history = fit_population(cfg, seeds, learning_rates, progress=progress)
    rows = sweep_table(history, cfg.num_batches)
    table = format_sweep(rows)
    print(table)
    out = Path(out_dir)
    record = {
        "config": cfg.to_dict(),
        **runlog.jax_info(),
        "wall_seconds": time.perf_counter() - t0,
        "table": rows,
        "history": history,
    }
    atomic_write(out / "sweep.json", lambda f: json.dump(record, f), mode="w")
    atomic_write(out / "sweep.md", lambda f: f.write(table + "\n"), mode="w")
    save_figure(sweep_figure(history), out / "sweep.png")
    print(f"Wrote {out}/sweep.json, sweep.md, sweep.png")
    return record


# --- Data parallelism ------------------------------------------------------------------------


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

    A ``jax.shard_map`` of ``model.make_train_epoch(cfg, batch_axis="batch")``: every device
    trains on its rows and carries their state, and once per window the gradients and the loss
    are averaged over the mesh, so every device applies the same update. Written out rather
    than left to ``jit``'s partitioner, which trained LSTM state 128, batch 32 on two CPU
    devices at 0.84x one device's speed where this runs at 1.34x (docs/scaling.md). On a
    one-device mesh it is the ordinary epoch, bit for bit.
    """
    replicated = NamedSharding(mesh, P())
    if mesh.size == 1:
        return jax.jit(model.make_train_epoch(cfg), out_shardings=replicated, donate_argnums=(0, 1))
    epoch = jax.shard_map(
        model.make_train_epoch(cfg, batch_axis="batch"),
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
    start, message = like, ""
    if jax.process_index() == 0:
        try:
            start = start_run(cfg, verbs, out_dir=out_dir, resume=resume, overwrite=overwrite)
        except (CheckpointError, ValueError, OSError) as e:
            message = str(e)
    message = _broadcast_text(message)
    if message:
        raise CheckpointError(message)
    arrays = jax.tree.map(host_array, (start.params, start.opt_state))
    params, opt_state = multihost_utils.broadcast_one_to_all(arrays)
    history = json.loads(_broadcast_text(json.dumps(start.history)))
    return Start(jax.tree.map(np.asarray, params), opt_state, history)


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


# --- Sweep report ----------------------------------------------------------------------------


def sweep_table(history: dict[str, Any], windows_per_epoch: int, threshold: float = 0.999):
    """Per member: seed, learning rate, final accuracy and windows to reach ``threshold``."""
    acc = np.asarray(history["accuracy"])  # (epochs, P)
    after = np.asarray(history["accuracy_after_first"])
    rows = []
    for i, member in enumerate(history["members"]):
        reached = np.flatnonzero(after[:, i] >= threshold)
        rows.append(
            {
                "member": i,
                **member,
                "final_accuracy": float(acc[-1, i]),
                "final_accuracy_after_first": float(after[-1, i]),
                "windows_to_threshold": int((reached[0] + 1) * windows_per_epoch)
                if reached.size
                else None,
            }
        )
    return rows


def format_sweep(rows: list[dict[str, Any]]) -> str:
    columns = [
        Column("member"),
        Column("seed"),
        Column("learning rate", "{:g}"),
        Column("final accuracy", "{:.4%}"),
        Column("after window 0", "{:.4%}"),
        Column("windows to 99.9%"),
    ]
    keys = ("member", "seed", "learning_rate", "final_accuracy", "final_accuracy_after_first")
    return markdown(
        columns,
        [(*(r[k] for k in keys), r["windows_to_threshold"] or "not reached") for r in rows],
    )
