"""Accuracy and training speed of every implementation, side by side.

Groups (one ``group`` per measurement, so pytest-benchmark and the report put all
implementations of it in one table): ``series`` (every model of the tutorial series, every
implementation and peer library), then for part 1 ``window``, ``epoch``, ``compile``,
``scaling``, ``population`` and ``accuracy`` (with parts 3 and 4 on ``jax-epoch``), ``realistic``
(LSTMs of the sizes people train) and ``end_to_end`` (the tutorial's whole training run as a
user starts it), each on CPU and, where the library sees one, GPU. The peers (PyTorch, Flax,
Keras: ``jax_echo.peers``) are skipped, with the reason, where their library is missing.

Timing rules: the trainer is built, compiled and warmed up before the timed call; the timed call
ends in ``jax.block_until_ready`` or a host read of the result (``compare.block``).
Epoch-level implementations appear in the ``window`` and ``series`` groups as one epoch per call,
with ``extra_info["windows_per_call"]`` saying so; the report divides by it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np
import pytest

from benchmarks.conftest import Run
from jax_echo import (
    EchoConfig,
    bench,
    epoch_data,
    init_params,
    prediction_accuracies,
    split_windows,
    xla_flags,
)
from jax_echo.parallel import data_parallel_mesh
from jax_echo.peers import PEER_NAMES, PEERS, peer
from jax_echo.population import stack
from jax_echo.registry import IMPLEMENTATIONS, Trainer
from jax_echo.task import DISTINCT_MODELS, MODELS
from jax_echo.trainers import DATA_PARALLEL, JaxTrainer, block, make_trainer

ALL = (*IMPLEMENTATIONS, *PEER_NAMES)
PER_EPOCH = (
    "jax-epoch",
    "tf-function-epoch",
    "tf-function-epoch-xla",
    *(p.name for p in PEERS if p.per_epoch),
)
FASTEST_TF = "tf-function-epoch-xla"
TUTORIAL = EchoConfig()
THRESHOLD = 0.999
# Quick mode trains 10 windows of 2 steps: what a first call costs (tracing and XLA's compile)
# grows with the unrolled time steps, and quick mode is mostly first calls.
QUICK_WINDOW = 2


def quick_config(cfg: EchoConfig, windows: int = 10) -> EchoConfig:
    """``cfg`` shrunk for quick mode: 2 epochs of ``windows`` windows of ``QUICK_WINDOW`` steps."""
    return dataclasses.replace(
        cfg,
        num_epochs=2,
        truncated_backprop_length=QUICK_WINDOW,
        total_series_length=windows * QUICK_WINDOW * cfg.batch_size,
    )


TINY = quick_config(TUTORIAL)  # part 1 in quick mode
# The distinct programs of the series (task.MODELS): parts 2, 5 and 6 are part 1's or part 4's.
SERIES = {name: MODELS[name] for name in DISTINCT_MODELS}


# --- The cases each group has in this run ---------------------------------------------------------
# Which devices, libraries and sizes exist is a property of the run (``benchmarks.conftest.Run``):
# a group's generator lists only the cases that run here, and quick mode (CI) only the ones that
# are not another case's calls again. Nothing is skipped at run time.


class Case(NamedTuple):
    """One benchmark case: an implementation on a device, with what the group adds."""

    name: str
    device: str
    model: str | None = None  # a SERIES or accuracy model
    size: Any = None  # a Scaling, a Realistic size, a population size, an end-to-end row

    @property
    def id(self) -> str:
        parts = [self.model, getattr(self.size, "id", self.size), self.name, self.device]
        return "-".join(str(p) for p in parts if p is not None)


def cases(generate: Callable[[Run], list[Case]]) -> Callable:
    """Marks a test with the generator of its cases (``pytest_generate_tests`` calls it)."""

    def mark(test):
        test.cases = generate
        return test

    return mark


def pytest_generate_tests(metafunc) -> None:
    generate = getattr(metafunc.function, "cases", None)
    if generate is not None:
        found = generate(Run.of(metafunc.config))
        metafunc.parametrize("case", [pytest.param(c, id=c.id) for c in found])


def each(run: Run, names, **fields) -> list[Case]:
    """``names`` on every device where this run has them."""
    return [Case(n, d, **fields) for d in run.devices for n in names if run.has(n, d)]


# --- Building, warming up and timing a trainer, once for every group ---------------------------


@contextlib.contextmanager
def placed(name: str, device: str) -> Iterator[None]:
    """Runs the block on ``device`` for implementation ``name`` (a peer places its own arrays)."""
    if name in PEER_NAMES:
        yield
    elif name.startswith("jax"):  # "jax" alone: a JAX-only measurement
        with jax.default_device(jax.devices(device)[0]):
            yield
    else:
        import tensorflow as tf

        with tf.device(f"/{device.upper()}:0"):
            yield


def new_trainer(name: str, device: str, cfg: EchoConfig, params=None) -> Trainer:
    """A trainer of ``name`` on ``device``: JAX's, TensorFlow's or a peer library's."""
    params = init_params(cfg) if params is None else params
    if name in PEER_NAMES:
        return peer(name).make(cfg, params, device=device)
    if name == "jax-epoch-remat":
        return JaxTrainer(cfg, params, remat=True)
    if name == DATA_PARALLEL:
        return JaxTrainer(cfg, params, mesh=data_parallel_mesh(jax.devices(device)))
    return make_trainer(name, cfg, params, device=f"/{device.upper()}:0")


@contextlib.contextmanager
def trainer_on(name: str, device: str, cfg: EchoConfig, params=None) -> Iterator[Trainer]:
    """A new trainer on ``device``, closed when the block ends, however it ends."""
    with placed(name, device):
        trainer = new_trainer(name, device, cfg, params)
        try:
            yield trainer
        finally:
            trainer.close()


def window_runner(trainer: Trainer, cfg: EchoConfig) -> Callable[[], np.ndarray]:
    """One training window per call, the trainer carrying the state as the tutorial does."""
    x, y = epoch_data(cfg, 0)
    N, T = cfg.num_batches, cfg.truncated_backprop_length
    xs = list(np.ascontiguousarray(split_windows(x, T)))
    ys = list(np.ascontiguousarray(split_windows(y, T)))
    i = 0

    def run():
        nonlocal i
        loss = trainer.train_window(xs[i % N], ys[i % N], window=i % N)
        i += 1
        return block(loss)

    return run


def epoch_runner(trainer: Trainer, cfg: EchoConfig) -> Callable[[], np.ndarray]:
    x, y = epoch_data(cfg, 0)
    return lambda: block(trainer.train_epoch(x, y))


def warm(trainer: Trainer, name: str, cfg: EchoConfig) -> tuple[Callable[[], Any], int]:
    """The trainer's timed call, compiled and warmed up: one epoch per call for the epoch-level
    implementations, one window per call (state carried) for the others. Returns ``(run,
    windows_per_call)``."""
    per_epoch = name in (*PER_EPOCH, "jax-epoch-remat", DATA_PARALLEL)
    run = (epoch_runner if per_epoch else window_runner)(trainer, cfg)
    run()  # compile and warm up, untimed
    run()
    return run, cfg.num_batches if per_epoch else 1


def record(benchmark, name: str, device: str, cfg: EchoConfig, windows_per_call: int, **extra):
    if name in PEER_NAMES:
        p = peer(name)
        extra |= {"library": p.library, "exact_math": cfg.cell in p.exact_cells}
    if name in bench.XLA_ROWS and not xla_flags.SMALL_LOOPS:
        name += xla_flags.SUFFIX  # measured without the option: never merged with its rows
    benchmark.extra_info.update(
        implementation=name,
        device=device,
        windows_per_call=windows_per_call,
        state_size=cfg.state_size,
        batch_size=cfg.batch_size,
        window_length=cfg.truncated_backprop_length,
        cell=cfg.cell,
        num_layers=cfg.num_layers,
        **extra,
    )


# --- The groups -------------------------------------------------------------------------------


def window_cases(run: Run) -> list[Case]:
    return each(run, ALL)


@cases(window_cases)
@pytest.mark.benchmark(group="window")
def test_window(benchmark, quick, case):
    cfg = TINY if quick else TUTORIAL
    with trainer_on(case.name, case.device, cfg) as trainer:
        run, windows_per_call = warm(trainer, case.name, cfg)
        loss = benchmark(run)
    record(benchmark, case.name, case.device, cfg, windows_per_call)
    assert np.isfinite(loss).all()


def no_peers_in_quick_mode(run: Run) -> list[Case]:
    """Every implementation and, unless quick (each peer's first call compiles for seconds),
    every peer."""
    return each(run, IMPLEMENTATIONS if run.quick else ALL)


@cases(no_peers_in_quick_mode)
@pytest.mark.benchmark(group="epoch")
def test_epoch(benchmark, quick, case):
    cfg = TINY if quick else TUTORIAL
    with trainer_on(case.name, case.device, cfg) as trainer:
        run = epoch_runner(trainer, cfg)
        run()  # compile and warm up, untimed
        losses = benchmark.pedantic(run, rounds=3 if quick else 5, iterations=1)
    record(benchmark, case.name, case.device, cfg, cfg.num_batches)
    assert losses.shape == (cfg.num_batches,)


def series_cases(run: Run) -> list[Case]:
    """Every model, implementation and peer; quick mode leaves part 1 to the window group (the
    same config and calls) and runs the peers on part 3 alone."""
    found = []
    for model in SERIES:
        if run.quick and model == "part1":
            continue
        names = ALL if not run.quick or model == "part3" else IMPLEMENTATIONS
        found += each(run, names, model=model)
    return found


@cases(series_cases)
@pytest.mark.benchmark(group="series")
def test_series(benchmark, quick, case):
    """Training cost per window of every model of the series, in every implementation and peer.

    At the tutorial's sizes: epoch-level implementations train one epoch (666 windows) per call,
    per-window ones one window per call, with the state carried. A peer whose cell differs from
    TF1's in math (the GRU of PyTorch and Flax) is timed, with ``exact_math`` False.
    """
    m = SERIES[case.model]
    cfg = quick_config(m.config) if quick else m.config
    with trainer_on(case.name, case.device, cfg) as trainer:
        run, windows_per_call = warm(trainer, case.name, cfg)
        loss = benchmark(run)
    record(
        benchmark,
        case.name,
        case.device,
        cfg,
        windows_per_call,
        model=case.model,
        part=m.part,
        what_changed=m.what_changed,
    )
    assert np.isfinite(loss).all()


@cases(no_peers_in_quick_mode)
@pytest.mark.benchmark(group="compile")
def test_compile(benchmark, quick, case):
    """First-call cost: build the trainer and run its first call (tracing and compilation)."""
    cfg = TINY if quick else TUTORIAL
    params = init_params(cfg)
    x, y = epoch_data(cfg, 0)
    T = cfg.truncated_backprop_length

    def first_call():
        with trainer_on(case.name, case.device, cfg, params) as trainer:
            if case.name in PER_EPOCH:
                return block(trainer.train_epoch(x, y))
            return block(trainer.train_window(x[:, :T], y[:, :T]))

    out = benchmark.pedantic(first_call, setup=jax.clear_caches, rounds=1 if quick else 3)
    record(benchmark, case.name, case.device, cfg, 1)
    assert np.isfinite(out).all()


class Scaling(NamedTuple):
    """A size grown from the tutorial config, and how it is measured."""

    axis: str  # what grows
    change: dict[str, int]  # EchoConfig fields changed from the tutorial's
    windows: int  # per timed call
    jax_only: bool = False  # sizes of real RNNs: JAX only, with XLA's memory recorded
    remat: bool = False

    @property
    def id(self) -> str:
        sizes = [f"{k.split('_')[0]}{v}" for k, v in self.change.items()]
        return "-".join([self.axis, *sizes]) + ("-remat" if self.remat else "")

    def config(self, quick: bool) -> EchoConfig:
        """The case's config; quick mode keeps the shapes' character, not their cost."""
        sizes = {**TUTORIAL.to_dict(), **self.change}
        windows = self.windows
        if quick:
            windows = 2
            sizes |= {k: min(sizes[k], cap) for k, cap in QUICK_SCALING_CAPS.items()}
        T, B = sizes["truncated_backprop_length"], sizes["batch_size"]
        return EchoConfig(**{**sizes, "total_series_length": B * T * windows})


LONG_WIDE = {"truncated_backprop_length": 1000, "state_size": 256, "batch_size": 64}
SCALING = (
    Scaling("state", {"state_size": 4}, 200),
    Scaling("state", {"state_size": 32}, 200),
    Scaling("state", {"state_size": 256}, 200),
    Scaling("batch", {"batch_size": 64}, 200),
    Scaling("batch", {"batch_size": 1024}, 200),
    Scaling("window", {"truncated_backprop_length": 100}, 200),
    Scaling("state", {"state_size": 1024}, 5, jax_only=True),
    Scaling("batch", {"batch_size": 4096}, 5, jax_only=True),
    Scaling("window", {"truncated_backprop_length": 1000}, 5, jax_only=True),
    Scaling("window", LONG_WIDE, 5, jax_only=True),
    Scaling("window", LONG_WIDE, 5, jax_only=True, remat=True),
)
# Quick mode's largest sizes: the compile time of a window grows with its unrolled steps.
QUICK_SCALING_CAPS = {"state_size": 8, "batch_size": 8, "truncated_backprop_length": 4}


def scaling_cases(run: Run) -> list[Case]:
    """jax-epoch and the fastest TF2 variant at every size (the largest: JAX alone); quick mode
    leaves out the sizes that shrink to an earlier size's shapes."""
    found, seen = [], set()
    for size in SCALING:
        shapes = (size.config(run.quick), size.remat)
        if run.quick and shapes in seen:
            continue
        seen.add(shapes)
        found += each(run, ["jax-epoch"] if size.jax_only else ["jax-epoch", FASTEST_TF], size=size)
    return found


@cases(scaling_cases)
@pytest.mark.benchmark(group="scaling")
def test_scaling(benchmark, quick, case):
    """Cost per window as sizes grow from the tutorial config (one call trains some windows)."""
    size: Scaling = case.size
    cfg = size.config(quick)
    params = init_params(cfg)
    (layer,) = params.cells  # part 1's one hand-written layer; W / S keeps tanh out of saturation
    params = params._replace(cells=(layer._replace(W=layer.W / cfg.state_size),))
    memory = None
    with placed(case.name, case.device):
        if case.name.startswith("jax"):
            trainer = JaxTrainer(cfg, params, remat=size.remat)
            # A compile of its own: quick mode runs it for the JAX-only sizes alone.
            if size.jax_only or not quick:
                memory = trainer.memory_analysis(*epoch_data(cfg, 0))
        else:
            trainer = new_trainer(case.name, case.device, cfg, params)
        try:
            run = epoch_runner(trainer, cfg)
            run()  # compile and warm up, untimed
            losses = benchmark(run)
        finally:
            trainer.close()
    record(
        benchmark,
        case.name,
        case.device,
        cfg,
        cfg.num_batches,
        axis=size.axis,
        remat=size.remat,
        xla_memory_bytes=memory,
    )
    assert np.isfinite(losses).all()


POPULATIONS = (1, 16, 256, 4096)
QUICK_POPULATIONS = (1, 16)
POPULATION_CFG = EchoConfig(num_epochs=1, total_series_length=1500)  # 20 windows per member


def population_cases(run: Run) -> list[Case]:
    """The population program in its layout for these members (``policy.population_lanes``:
    ``jax-population-lanes`` or ``-vmap``) beside a loop over members (``-one-by-one``)."""
    from jax_echo.policy import population_lanes

    sizes = QUICK_POPULATIONS if run.quick else POPULATIONS
    layout = "lanes" if population_lanes(POPULATION_CFG) else "vmap"
    return [
        Case(f"jax-population-{mode}", device, size=size)
        for device in run.devices
        if run.has("jax", device)
        for size in sizes
        for mode in (layout, "one-by-one")
    ]


@cases(population_cases)
@pytest.mark.benchmark(group="population")
def test_population(benchmark, quick, case):
    """One epoch for every member of a population: one compiled call, or a loop over members.

    Both train only (no accuracy pass), on the same data and initial weights, with
    ``make_optimizer``'s state (TF1's Adagrad through optax).
    """
    from jax_echo import make_optimizer
    from jax_echo.model import train_epoch
    from jax_echo.population import train_population_epoch

    size = case.size
    cfg = quick_config(POPULATION_CFG, windows=20) if quick else POPULATION_CFG
    with placed("jax", case.device):
        members = [init_params(cfg, seed) for seed in range(size)]
        x, y = epoch_data(cfg, 0)
        # Inputs are donated, so each call trains on from the previous call's results.
        if not case.name.endswith("one-by-one"):
            params = stack(members)
            opt_state = jax.vmap(make_optimizer(cfg).init)(params)
            xs, ys = np.broadcast_to(x, (size, *x.shape)), np.broadcast_to(y, (size, *y.shape))

            def run():
                nonlocal params, opt_state
                params, opt_state, losses = train_population_epoch(params, opt_state, xs, ys, cfg)
                return block(losses)
        else:
            trained = [(p, make_optimizer(cfg).init(p)) for p in members]

            def run():
                results = [train_epoch(p, s, x, y, cfg) for p, s in trained]
                trained[:] = [(p, s) for p, s, _ in results]
                return block([losses for _, _, losses in results])

        run()  # compile and warm up, untimed
        # Seven rounds: a median of three moves with one slow round (2026-11-26's results had 3).
        losses = benchmark.pedantic(run, rounds=1 if quick else 7, iterations=1)
    record(benchmark, case.name, case.device, cfg, size * cfg.num_batches, population=size)
    assert np.shape(losses) == (size, cfg.num_batches)


def accuracy_cases(run: Run) -> list[Case]:
    """Part 1 in every implementation (quick: no peers); the LSTM parts on jax-epoch."""
    names = IMPLEMENTATIONS if run.quick else ALL
    return each(run, names, model="part1") + [
        c for m in ("part3", "part4") for c in each(run, ["jax-epoch"], model=m)
    ]


@cases(accuracy_cases)
@pytest.mark.benchmark(group="accuracy")
def test_accuracy(benchmark, quick, case):
    """Wall time from scratch (build, compile, train) to 99.9% accuracy after window 0.

    A first, untimed pass runs the whole tutorial (100 epochs) to find the epoch at which the
    accuracy on the windows after the first reaches 99.9% and the final accuracy; the timed call
    then trains a fresh model for exactly those epochs (three times for the epoch-level
    implementations, once for the per-window ones: minutes each). Quick mode asserts what two
    short epochs can: finite losses, and accuracies that are fractions.
    """
    name, device = case.name, case.device
    m = SERIES[case.model]
    cfg = quick_config(m.config) if quick else m.config
    data = [epoch_data(cfg, e) for e in range(cfg.num_epochs)]

    def accuracies(trainer, x, y):
        return prediction_accuracies(trainer.predict_epoch(x), y)

    with trainer_on(name, device, cfg) as trainer:
        reached = None
        for epoch, (x, y) in enumerate(data):
            block(trainer.train_epoch(x, y, epoch=epoch))
            if reached is None and accuracies(trainer, x, y)[1:].mean() >= THRESHOLD:
                reached = epoch + 1
        final = accuracies(trainer, x, y)
    epochs = reached or cfg.num_epochs

    def train_to_threshold():
        with trainer_on(name, device, cfg) as trainer:
            for epoch, (x, y) in enumerate(data[:epochs]):
                losses = block(trainer.train_epoch(x, y, epoch=epoch))
        return losses

    # From scratch: JAX's compiled programs are dropped first (quick mode keeps them).
    setup = None if quick else jax.clear_caches
    rounds = 1 if quick or name not in PER_EPOCH else 3
    losses = benchmark.pedantic(train_to_threshold, setup=setup, rounds=rounds)
    record(
        benchmark,
        name,
        device,
        cfg,
        epochs * cfg.num_batches,
        model=case.model,
        part=m.part,
        epochs_to_threshold=reached,
        final_accuracy=float(final.mean()),
        final_accuracy_after_first=float(final[1:].mean()),
    )
    assert np.isfinite(losses).all() and ((final >= 0) & (final <= 1)).all()
    if not quick:
        assert final[1:].mean() >= THRESHOLD


class Realistic(NamedTuple):
    """An LSTM of the size people train."""

    state: int
    batch: int
    window: int
    windows: int  # per epoch

    @property
    def id(self) -> str:
        return f"S{self.state}-B{self.batch}-T{self.window}"

    def config(self) -> EchoConfig:
        return EchoConfig(
            cell="lstm",
            state_size=self.state,
            batch_size=self.batch,
            truncated_backprop_length=self.window,
            total_series_length=self.batch * self.window * self.windows,
        )


REALISTIC = (Realistic(128, 32, 50, 4), Realistic(256, 64, 200, 2), Realistic(256, 256, 100, 2))
REALISTIC_NAMES = (
    "jax-epoch",
    "jax-epoch-remat",
    DATA_PARALLEL,
    "jax-step",
    "tf-graph",
    "tf-function-xla",
    "tf-function-epoch-xla",
    *PEER_NAMES,
)
QUICK_REALISTIC = Realistic(8, 4, 4, 2)


def realistic_cases(run: Run) -> list[Case]:
    """Every size and row; quick mode runs jax-epoch (and the data-parallel row, where this
    process has the devices) on a shrunk size (the other rows' trainers are the series
    group's)."""
    if run.quick:
        return each(run, ["jax-epoch", DATA_PARALLEL], size=QUICK_REALISTIC)
    return [c for size in REALISTIC for c in each(run, REALISTIC_NAMES, size=size)]


def peak_memory(name: str, device: str, trainer, cfg: EchoConfig) -> tuple[int | None, str]:
    """What the row's training held at most, and what that number is.

    JAX: XLA's arguments + outputs + temporaries of the compiled epoch (``memory_analysis``);
    PyTorch on a GPU: ``torch.cuda.max_memory_allocated``; elsewhere nothing is measured: a
    process-wide peak would mix the rows.
    """
    if name.startswith("jax-epoch"):
        what = "XLA args+outputs+temps"
        if name == DATA_PARALLEL:
            what += f", one of {len(jax.devices(device))} devices"
        return trainer.memory_analysis(*epoch_data(cfg, 0))["peak"], what
    if device == "gpu" and name.startswith("torch"):
        import torch

        return torch.cuda.max_memory_allocated(), "torch.cuda.max_memory_allocated"
    return None, ""


@cases(realistic_cases)
@pytest.mark.benchmark(group="realistic")
def test_realistic(benchmark, quick, case):
    """An LSTM of a realistic size, one epoch (per-window rows: one window) per timed call.

    Weights are TF1's initialisers for every row that maps them (``init_params``); the peak
    memory is recorded where it can be measured for the row alone (``peak_memory``).
    """
    name, device = case.name, case.device
    cfg = case.size.config()
    if device == "gpu" and name.startswith("torch"):
        import torch

        torch.cuda.reset_peak_memory_stats()
    with trainer_on(name, device, cfg) as trainer:
        run, windows_per_call = warm(trainer, name, cfg)
        loss = benchmark.pedantic(run, rounds=1 if quick else 3, iterations=1)
        memory, what = peak_memory(name, device, trainer, cfg)
    record(benchmark, name, device, cfg, windows_per_call, peak_bytes=memory, peak_what=what)
    assert np.isfinite(loss).all()


# The tutorial's training run as a user starts it, in a fresh process: (row, command).
END_TO_END = {
    "jax-echo train (cold cache)": ["-m", "jax_echo", "train"],
    "jax-echo train (warm cache)": ["-m", "jax_echo", "train"],
    "tf-echo train --impl graph": ["-m", "tf_echo", "train", "--impl", "graph"],
    "tf-echo train --impl function-epoch-xla": [
        "-m",
        "tf_echo",
        "train",
        "--impl",
        "function-epoch-xla",
    ],
}
QUICK_RUN = ["--epochs", "2", "--total-series-length", "1500"]


def end_to_end_cases(run: Run) -> list[Case]:
    """Every row (the TensorFlow runs on the CPU); quick mode runs the cold jax-echo row
    (tf-echo train is tests/test_cli_tf.py's)."""
    rows = list(END_TO_END)[:1] if run.quick else list(END_TO_END)
    found = []
    for row in rows:
        tf_row = row.startswith("tf-echo")
        for device in ("cpu",) if tf_row else run.devices:
            if run.has("tf-graph" if tf_row else "jax", device):
                found.append(Case(row, device))
    return found


@cases(end_to_end_cases)
@pytest.mark.benchmark(group="end_to_end")
def test_end_to_end(benchmark, quick, case, tmp_path):
    """Wall time of the whole training run with the tutorial defaults, as a subprocess: imports,
    compilation, 100 epochs, the accuracy pass, checkpoints and the figure.

    A cold cache is a new, empty JAX compilation cache each round; a warm one was filled by an
    untimed run first. history.json's breakdown of the last round goes into the results.
    """
    row = case.name
    env = {**os.environ, "JAX_PLATFORMS": {"cpu": "cpu", "gpu": "cuda"}[case.device]}
    runs = iter(range(1_000))
    out = tmp_path / "run"

    def command() -> list[str]:
        return [sys.executable, *END_TO_END[row], "--quiet", "--no-progress", "--out", str(out)]

    def fresh():
        n = next(runs)
        env["XDG_CACHE_HOME"] = str(tmp_path / ("cache" if "warm" in row else f"cache{n}"))
        if out.exists():
            subprocess.run(["rm", "-rf", str(out)], check=True)
        return (), {}

    def train():
        args = command() + (QUICK_RUN if quick else [])
        subprocess.run(args, env=env, check=True, capture_output=True, text=True)

    if "warm" in row:
        fresh()
        train()  # fills the cache, untimed
    slow = row == "tf-echo train --impl graph"  # 100 epochs of session.run: minutes
    benchmark.pedantic(train, setup=fresh, rounds=1 if quick or slow else 3)
    history = json.loads((out / "history.json").read_text())
    record(
        benchmark,
        row,
        case.device,
        TUTORIAL,
        1,
        breakdown=history.get("seconds"),
        compilations=history.get("compilations"),
        compile_cache_hits=history.get("compile_cache_hits"),
    )
    assert len(history["history"]["loss"]) == (2 if quick else TUTORIAL.num_epochs)
