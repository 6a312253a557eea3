"""Scaling out: many models at once (``vmap``) and one model on many devices (``jax.sharding``).

Population training stacks independent members along a leading axis P of params, optimizer state
(whose learning rate is a leaf, so each member has its own) and data, and runs one
``jax.vmap(train_epoch)`` per epoch: one compiled call for the whole population.

Data parallelism shards the batch axis B of the series over a 1-D mesh of devices (local, or
across processes after ``jax.distributed.initialize``); params and optimizer state are
replicated, and ``jit`` inserts the reduction of the gradients over the mesh. One device is the
ordinary path.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jax_echo import model
from jax_echo.task import EchoConfig, Params, epoch_data, init_params, prediction_accuracies

# --- Population ------------------------------------------------------------------------------


def population_configs(
    cfg: EchoConfig, seeds: Sequence[int], learning_rates: Sequence[float]
) -> list[EchoConfig]:
    """One config per (seed, learning rate) pair: the cartesian product, seeds outermost."""
    return [
        EchoConfig(**{**cfg.to_dict(), "seed": seed, "learning_rate": lr})
        for seed, lr in itertools.product(seeds, learning_rates)
    ]


def train_population_epoch(params_P, opt_state_P, x_PxBxL, y_PxBxL, cfg: EchoConfig):
    """``train_epoch`` for every member at once: one compiled ``vmap`` (inputs donated)."""
    return _train_population_epoch(
        params_P, opt_state_P, x_PxBxL, y_PxBxL, window=cfg.truncated_backprop_length
    )


@partial(jax.jit, static_argnames="window", donate_argnums=(0, 1))
def _train_population_epoch(params_P, opt_state_P, x_PxBxL, y_PxBxL, window):
    return jax.vmap(partial(model._train_epoch, window=window))(
        params_P, opt_state_P, x_PxBxL, y_PxBxL
    )


@partial(jax.jit, static_argnames="window", donate_argnums=(0, 1))
def _population_epoch(params_P, opt_state_P, x_PxBxL, y_PxBxL, window):
    def member(params, opt_state, x, y):
        params, opt_state, losses = model._train_epoch(params, opt_state, x, y, window=window)
        accs = prediction_accuracies(model._predict_epoch(params, x, window=window), y)
        return params, opt_state, losses, accs

    return jax.vmap(member)(params_P, opt_state_P, x_PxBxL, y_PxBxL)


def fit_population(
    cfg: EchoConfig,
    seeds: Sequence[int] = (0,),
    learning_rates: Sequence[float] | None = None,
    *,
    progress: bool = True,
) -> tuple[Params, dict[str, Any]]:
    """Trains one independent model per (seed, learning rate) pair, all in one computation.

    Member ``i`` is exactly ``fit(population_configs(cfg, seeds, learning_rates)[i])``: its own
    initial weights and data from its seed, its own learning rate; per epoch the whole population
    is one compiled ``vmap`` of ``train_epoch``.

    Args:
      cfg: the shared configuration (its ``seed`` and ``learning_rate`` are replaced).
      seeds: seeds of the members.
      learning_rates: learning rates (default ``[cfg.learning_rate]``).
      progress: show a progress bar over epochs.

    Returns:
      ``(params, history)``: ``Params`` whose arrays have a leading population axis P, and a
      history with ``members`` (seed and learning rate of each), per epoch ``loss`` (P, N),
      ``accuracy`` and ``accuracy_after_first`` (P,), and ``epoch_seconds``.

    >>> params, history = fit_population(EchoConfig(num_epochs=2), seeds=[0, 1],
    ...                                  learning_rates=[0.1, 0.3])   # 4 members
    """
    learning_rates = [cfg.learning_rate] if learning_rates is None else list(learning_rates)
    members = population_configs(cfg, seeds, learning_rates)
    if not members:
        raise ValueError("the population is empty: give at least one seed and learning rate")
    stack = lambda *xs: np.stack(xs)  # noqa: E731
    params = jax.tree.map(stack, *[init_params(m) for m in members])
    opt_state = jax.vmap(model.make_optimizer(cfg).init)(params)
    rates = np.array([m.learning_rate for m in members], params.W.dtype)
    opt_state = opt_state._replace(learning_rate=jnp.asarray(rates))
    history: dict[str, Any] = {
        "members": [{"seed": m.seed, "learning_rate": m.learning_rate} for m in members],
        "loss": [],
        "accuracy": [],
        "accuracy_after_first": [],
        "epoch_seconds": [],
    }
    for epoch in tqdm(
        range(cfg.num_epochs), desc="epochs", unit="epoch", disable=not progress, file=sys.stderr
    ):
        x, y = (np.stack(a) for a in zip(*[epoch_data(m, epoch) for m in members], strict=True))
        t0 = time.perf_counter()
        params, opt_state, losses, accs = _population_epoch(
            params, opt_state, x, y, window=cfg.truncated_backprop_length
        )
        losses, accs = np.asarray(losses), np.asarray(accs, np.float64)
        history["epoch_seconds"].append(time.perf_counter() - t0)
        history["loss"].append(losses.tolist())
        history["accuracy"].append(accs.mean(axis=1).tolist())
        history["accuracy_after_first"].append(accs[:, 1:].mean(axis=1).tolist())
    return Params(*(np.asarray(p) for p in params)), history


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
    """Host arrays (the same on every process) to global arrays laid out by ``sharding``."""
    return jax.tree.map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda i: np.asarray(a)[i]),
        tree,
    )


def to_host(tree: Any) -> Any:
    """Replicated global arrays to NumPy (works across processes: each holds a full copy)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def data_parallel_verbs(cfg: EchoConfig, mesh: Mesh):
    """``(init_opt_state, train_epoch, window_accuracies)`` for ``train.run_epochs``.

    The series' rows are sharded over the mesh, params and optimizer state replicated; the
    compiled epoch is ``model.train_epoch`` itself, partitioned by ``jit``. Results come back
    replicated, as NumPy.
    """
    check_data_parallel(cfg, mesh)
    rows, replicated = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
    window = cfg.truncated_backprop_length
    epoch = jax.jit(partial(model._train_epoch, window=window), out_shardings=replicated)
    accuracies = jax.jit(
        lambda params, x, y: prediction_accuracies(
            model._predict_epoch(params, x, window=window), y
        ),
        out_shardings=replicated,
    )

    def init_opt_state(params):
        return to_host(model.make_optimizer(cfg).init(place(params, replicated)))

    def train_epoch(params, opt_state, x, y):
        out = epoch(
            place(params, replicated), place(opt_state, replicated), place(x, rows), place(y, rows)
        )
        return to_host(out)

    def window_accuracies(params, x, y):
        return to_host(accuracies(place(params, replicated), place(x, rows), place(y, rows)))

    return init_opt_state, train_epoch, window_accuracies


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
    lines = [
        "| member | seed | learning rate | final accuracy | after window 0 | windows to 99.9% |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        reached = "not reached" if r["windows_to_threshold"] is None else r["windows_to_threshold"]
        lines.append(
            f"| {r['member']} | {r['seed']} | {r['learning_rate']:g} | {r['final_accuracy']:.4%} "
            f"| {r['final_accuracy_after_first']:.4%} | {reached} |"
        )
    return "\n".join(lines)


def plot_sweep(history: dict[str, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jax_echo.plot import save_figure

    losses = np.concatenate(np.asarray(history["loss"]), axis=-1)  # (P, epochs * N)
    fig, ax = plt.subplots(figsize=(10, 5))
    for member, curve in zip(history["members"], losses, strict=True):
        label = f"seed {member['seed']}, lr {member['learning_rate']:g}"
        ax.plot(curve, linewidth=0.8, alpha=0.8, label=label if len(losses) <= 12 else None)
    ax.set(
        xlabel="window",
        ylabel="loss",
        yscale="log",
        title=f"population of {len(losses)}: per-window loss",
    )
    if len(losses) <= 12:
        ax.legend(fontsize=8)
    save_figure(fig, path)
