"""Many models at once: a population of independent members trained in one program per epoch.

The members are stacked along a leading axis P of params, optimizer state (whose learning rate is
a leaf, so each member has its own) and data. Each epoch is one compiled program: chunks of
members side by side (in lanes, ``make_population_epoch``, or a ``jax.vmap(train_epoch)``), one
chunk after another (``by_chunks``); on a CPU the chunks are shared out over one thread per core
(``population_trainer``). Layout, chunk, threads and compiler options are the speed policy's.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_echo import model, policy
from jax_echo.cells import Params, init_params
from jax_echo.optim import make_optimizer, with_learning_rate
from jax_echo.task import EchoConfig, epoch_data, prediction_accuracies
from jax_echo.train import EpochVerbs, RunOptions, Start, Timer, new_history, run_epochs, untimed


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


def make_population_epoch(
    cfg: EchoConfig, members: int, *, optimizer: Any = None, lanes: bool | None = None
) -> Callable:
    """The epoch of ``members`` models side by side, as a plain function of their stacked pytrees
    (as ``jax.vmap(make_train_epoch(cfg))`` takes them): ``(params_P, opt_state_P, x_PxBxL,
    y_PxBxL, keys_P) -> (params_P, opt_state_P, losses_PxN)``; ``keys_P`` may be ``None``.

    For small models the members move to the last axis of every array for the epoch
    (``policy.population_lanes``; ``lanes`` overrides it), otherwise it is that ``vmap``. Member
    i's numbers are those of ``train_epoch`` on member i alone, to float rounding.
    """
    if not (policy.population_lanes(cfg) if lanes is None else lanes):
        return jax.vmap(model.make_train_epoch(cfg, optimizer=optimizer, members=members))
    program = policy.program(cfg, members=members, lanes=True)
    epoch = model.make_train_epoch(cfg, optimizer=optimizer, program=program)

    def population_epoch(params_P, opt_state_P, x_PxBxL, y_PxBxL, keys_P):
        for name, a in (("x_PxBxL", x_PxBxL), ("y_PxBxL", y_PxBxL)):
            if jnp.ndim(a) != 3:
                raise ValueError(f"{name} must be (members, batch, time), got {jnp.shape(a)}")
        last = functools.partial(jax.tree.map, lambda a: jnp.moveaxis(a, 0, -1))
        first = functools.partial(jax.tree.map, lambda a: jnp.moveaxis(a, -1, 0))
        # Each member's scalars (its learning rate, the step count) meet its arrays along the
        # last axis: the optimizer's ``rate * update`` broadcasts (P,) against (K, M, P).
        with jax.numpy_rank_promotion("allow"):
            params, opt_state, losses_NxP = epoch(
                last(params_P), last(opt_state_P), last(x_PxBxL), last(y_PxBxL), keys_P
            )
        return first(params), first(opt_state), losses_NxP.T

    return population_epoch


def stack(trees: Sequence[Any]) -> Any:
    """Members' pytrees (params, optimizer states, data) stacked along a new leading axis P."""
    return jax.tree.map(lambda *leaves: np.stack(leaves), *trees)


def by_chunks(f: Callable, chunk: int, args_P: Any) -> Any:
    """``f`` of ``chunk`` members' stacked pytrees over every member of ``args_P``, chunk after
    chunk (``lax.map``, then a smaller last one), outputs stacked back along the member axis."""
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
    (``make_population_epoch``), chunk after chunk (``by_chunks``), with the policy's compiler
    options for ``size`` members; ``benchmarks/population_profile.py`` tries other chunks."""
    epoch = make_population_epoch(cfg, chunk, lanes=lanes)
    return jax.jit(
        lambda *args_P: by_chunks(epoch, chunk, args_P),
        donate_argnums=(0, 1),
        compiler_options=policy.population_compiler_options(cfg, lanes, size),
    )


def population_trainer(cfg: EchoConfig, size: int) -> Callable:
    """``population_program`` of ``size`` members with the policy's chunk, its whole chunks shared
    out in order over ``policy.population_threads`` threads (each member trains in the chunk it
    would have alone); with threads, the inputs are sliced, not donated, and the call returns once
    every part is done."""
    chunk = policy.population_chunk(cfg, size)
    program = population_program(_shapes_only(cfg), chunk, size=size)
    threads = policy.population_threads(cfg, size)
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
    """Cuts every leaf into parts of ``span`` members in one dispatch (a slice per leaf and part
    cost milliseconds an epoch)."""
    starts = range(0, size, span)
    return jax.jit(
        lambda *args_P: [jax.tree.map(lambda a, s=s: a[s : s + span], args_P) for s in starts]
    )


# One compiled call that puts the parts' outputs back together along the member axis.
_join = jax.jit(lambda outs: jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *outs))


@functools.cache
def population_accuracies(cfg: EchoConfig, chunk: int) -> Callable:
    """The jitted per-window accuracies (P, N) of every member on its own series."""
    predict_epoch = model.make_predict_epoch(cfg, members=chunk)

    def member(args):
        params, x_BxL, y_BxL = args
        return prediction_accuracies(predict_epoch(params, x_BxL), y_BxL)

    return jax.jit(lambda *args_P: lax.map(member, args_P, batch_size=chunk))


def train_population_epoch(params_P, opt_state_P, x_PxBxL, y_PxBxL, cfg: EchoConfig, keys_P=None):
    """``train_epoch`` for every member at once (``population_trainer``); ``keys_P``, one dropout
    key per member (``dropout_keys``), is needed when ``cfg.keep_prob < 1``."""
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
    keys and learning rate."""
    train = population_trainer(cfg, len(members))
    accuracies = population_accuracies(_shapes_only(cfg), policy.vmap_chunk(cfg, len(members)))
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
    initial weights, data and dropout keys from its seed, its own learning rate; per epoch the
    whole population is one compiled program (``train_population_epoch``). Works for every cell.

    Args:
      cfg: the shared configuration (its ``seed`` and ``learning_rate`` are replaced).
      seeds: seeds of the members.
      learning_rates: learning rates (default ``[cfg.learning_rate]``).
      progress: show a progress bar over epochs.
      timer: as for ``fit``.

    Returns:
      ``(params, history)``: ``Params`` with a leading population axis P, and ``fit``'s history
      with one value per member: per epoch ``loss`` (P, N), ``accuracy`` and
      ``accuracy_after_first`` (P,), ``epoch_seconds`` (the whole population), and ``members``.

    Raises:
      TrainingDivergedError: a member's loss is not finite (named: seed, learning rate, epoch,
        window).

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
