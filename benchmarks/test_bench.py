"""Accuracy and training speed of every implementation, side by side.

Groups (one ``group`` per measurement, so pytest-benchmark and the report put all
implementations of it in one table): ``series`` (every model of the tutorial series, every
implementation and peer library), then for part 1 ``window``, ``epoch``, ``compile``,
``scaling``, ``population`` and ``accuracy`` (with parts 3 and 4 on ``jax-epoch``), ``realistic``
(LSTMs of the sizes people train) and ``end_to_end`` (the tutorial's whole training run as a
user starts it), each on CPU and, where the library sees one, GPU. The peers (PyTorch, Flax,
Keras: ``jax_echo.peers``) are skipped, with the reason, where their library is missing.

Every row comes from ``jax_echo.registry.ROWS`` and is timed through ``jax_echo.timing.session``,
the loop ``jax-echo compare`` and ``jax-echo bench`` use: the trainer is built and placed, its first
epoch trains from the initial weights (tracing, compilation) and is checked against the
reference row's on the same weights wherever the row's math is TF1's (``check_first_epoch``),
one more call warms up, and the timed call ends in ``jax.block_until_ready`` or a host read of
the result. Epoch-level rows appear in the ``window`` and ``series`` groups as one epoch per
call, with ``extra_info["windows_per_call"]`` saying so; the report divides by it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import pytest

from benchmarks.conftest import Run, tf_gpu_available
from jax_echo import EchoConfig, epoch_data, init_params, prediction_accuracies, timing, xla_flags
from jax_echo.population import stack
from jax_echo.registry import (
    BENCH_NAMES,
    BY_NAME,
    DATA_PARALLEL,
    IMPLEMENTATIONS,
    REFERENCE,
    ROWS,
    reference_for,
    row,
)
from jax_echo.task import DISTINCT_MODELS, MODELS
from jax_echo.trainers import block

ALL = BENCH_NAMES
# The scaling group's TensorFlow row: its epoch compiled by XLA, the one this group has always run
# (the report picks each library's fastest row from what was measured, never from this choice).
SCALING_TF = [r.name for r in ROWS if r.library == "tensorflow" and r.per_epoch and r.unlooped]
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


# --- The first epoch checked, the timed call warmed up, once for every group ------------------
# Float32 first-epoch losses of a row against the reference's on the same weights and data, on a
# CPU: the largest difference over the 74 quick cases (2026-12-06: JAX 0.10.2, TensorFlow, Flax,
# Keras; keras-jax-fit against tf-graph, tutorial cell) was 3.0e-7 (5 float32 ulps at the
# losses' 0.69); 2e-6 leaves room for other CPUs' kernels. ``DIFFS`` holds every difference after
# a run (``-n 0``). On a GPU the losses are checked finite only: JAX's products there default to
# TF32, and no bound has been measured.
LOSS_ATOL = 2e-6
_REFERENCE_LOSSES: dict[tuple, np.ndarray] = {}
DIFFS: list[tuple[float, str, str, str]] = []  # every check's (difference, row, reference, cell)


def has_tf(device: str) -> bool:
    return importlib.util.find_spec("tensorflow") is not None and (
        device == "cpu" or tf_gpu_available()
    )


def reference_losses(name: str, cfg: EchoConfig, device: str, params=None) -> np.ndarray:
    """Row ``name``'s first-epoch losses on ``cfg`` from ``params`` (default ``init_params``;
    those cached per configuration)."""
    key = (name, cfg, device)
    if params is None and key in _REFERENCE_LOSSES:
        return _REFERENCE_LOSSES[key]
    with timing.session(row(name), cfg, params, device=device) as s:
        losses = s.first_epoch()
    if params is None:
        _REFERENCE_LOSSES[key] = losses
    return losses


def check_losses(s: timing.Session, losses, params=None) -> None:
    """``losses``, the first of the session's first epoch, against the reference row's on the
    same weights (``params``, default ``init_params``) where the math is the same; finite."""
    losses = np.asarray(losses).ravel()
    assert np.isfinite(losses).all(), f"{s.row.name}: losses {losses}"
    ref = reference_for(s.row, s.cfg.cell, s.cfg.keep_prob, has_tf(s.device))
    if ref is not None and s.device == "cpu":
        expected = reference_losses(ref.name, s.cfg, s.device, params)[: losses.size]
        diff = float(np.max(np.abs(losses - expected)))
        DIFFS.append((diff, s.row.name, ref.name, s.cfg.cell))
        assert diff <= LOSS_ATOL, f"{s.row.name} vs {ref.name}: first-epoch losses differ by {diff}"


def check_first_epoch(s: timing.Session, quick: bool, params=None) -> np.ndarray:
    """Trains the session's first epoch (tracing and compiling its calls); in quick mode its
    losses are checked (``check_losses``; timed runs train long epochs, where float32 drifts
    further, and are checked by ``jax-echo bench``'s ``max_abs_loss_diff``). The losses."""
    losses = s.first_epoch()
    assert losses.shape == (s.cfg.num_batches,) and np.isfinite(losses).all()
    if quick:
        check_losses(s, losses, params)
    return losses


def warm(s: timing.Session, quick: bool, params=None) -> Callable[[], np.ndarray]:
    """The session's timed call after its first epoch (checked) and one warm-up call."""
    check_first_epoch(s, quick, params)
    s.call()
    return s.call


def record(benchmark, case: Case, cfg: EchoConfig, windows_per_call: int, **extra):
    """The case's ``extra_info``: what the report groups, labels and divides by."""
    name, device = case.name, case.device
    r = BY_NAME.get(name)  # a population or an end-to-end run is not a row
    if r is not None and r.role == "peer":
        extra |= {"library": r.library, "exact_math": r.exact(cfg.cell)}
    if r is not None and r.unlooped and not xla_flags.SMALL_LOOPS:
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
    with timing.session(row(case.name), cfg, device=case.device) as s:
        loss = benchmark(warm(s, quick))
    record(benchmark, case, cfg, s.windows_per_call)
    assert np.isfinite(loss).all()


def no_peers_in_quick_mode(run: Run) -> list[Case]:
    """Every implementation and, unless quick (each peer's first call compiles for seconds),
    every peer."""
    return each(run, IMPLEMENTATIONS if run.quick else ALL)


@cases(no_peers_in_quick_mode)
@pytest.mark.benchmark(group="epoch")
def test_epoch(benchmark, quick, case):
    cfg = TINY if quick else TUTORIAL
    with timing.session(row(case.name), cfg, device=case.device) as s:
        first = check_first_epoch(s, quick)
        s.epoch(s.x, s.y)  # train_epoch's own first call, untimed
        losses = benchmark.pedantic(s.epoch, (s.x, s.y), rounds=3 if quick else 5, iterations=1)
    record(benchmark, case, cfg, cfg.num_batches)
    assert losses.shape == (cfg.num_batches,)
    if quick:  # the same series again, from the weights it trained: the tutorial's descent
        assert losses.mean() < first.mean(), (first, losses)


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
    with timing.session(row(case.name), cfg, device=case.device) as s:
        loss = benchmark(warm(s, quick))
    record(
        benchmark,
        case,
        cfg,
        s.windows_per_call,
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
    sessions = []

    def first_call():
        with timing.session(row(case.name), cfg, device=case.device) as s:
            sessions.append(s)
            return s.call()

    out = benchmark.pedantic(first_call, setup=jax.clear_caches, rounds=1 if quick else 3)
    record(benchmark, case, cfg, 1)
    assert np.isfinite(out).all()
    if quick:  # the first window, or epoch, from the initial weights
        check_losses(sessions[-1], out)


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
        found += each(
            run, ["jax-epoch"] if size.jax_only else ["jax-epoch", *SCALING_TF], size=size
        )
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
    r = row("jax-epoch-remat" if size.remat else case.name)
    with timing.session(r, cfg, params, device=case.device) as s:
        # A compile of its own: quick mode runs it for the JAX-only sizes alone.
        if r.memory == "xla" and (size.jax_only or not quick):
            memory, _ = s.peak()
        losses = benchmark(warm(s, quick, params))
    record(
        benchmark,
        case,
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
    with timing.placed(row("jax-epoch"), case.device):
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

        first = run()  # compile and warm up, untimed
        # Seven rounds: a median of three moves with one slow round (2026-11-26's results had 3).
        losses = benchmark.pedantic(run, rounds=1 if quick else 7, iterations=1)
    record(benchmark, case, cfg, size * cfg.num_batches, population=size)
    assert np.shape(losses) == (size, cfg.num_batches)
    if quick and case.device == "cpu":  # every member's first epoch: jax-epoch's on its weights
        expected = [reference_losses("jax-epoch", cfg, case.device, p) for p in members]
        diff = float(np.max(np.abs(first - np.stack(expected))))
        DIFFS.append((diff, case.name, "jax-epoch", cfg.cell))
        assert diff <= LOSS_ATOL, f"{case.name}: members differ from jax-epoch by {diff}"


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
    short epochs can: the first epoch's losses are the reference row's, the timed run from
    scratch repeats the untimed one's losses, and accuracies are fractions.
    """
    name, device = case.name, case.device
    m = SERIES[case.model]
    cfg = quick_config(m.config) if quick else m.config
    data = [epoch_data(cfg, e) for e in range(cfg.num_epochs)]

    def accuracies(s, x, y):
        return prediction_accuracies(s.trainer.predict_epoch(x), y)

    with timing.session(row(name), cfg, device=device) as s:
        reached, untimed = None, []
        for epoch, (x, y) in enumerate(data):
            untimed.append(s.epoch(x, y, epoch))
            if reached is None and accuracies(s, x, y)[1:].mean() >= THRESHOLD:
                reached = epoch + 1
        final = accuracies(s, x, y)
        if quick:
            check_losses(s, untimed[0])
    epochs = reached or cfg.num_epochs

    def train_to_threshold():
        with timing.session(row(name), cfg, device=device) as s:
            for epoch, (x, y) in enumerate(data[:epochs]):
                losses = s.epoch(x, y, epoch)
        return losses

    # From scratch: JAX's compiled programs are dropped first (quick mode keeps them).
    setup = None if quick else jax.clear_caches
    rounds = 1 if quick or not row(name).per_epoch else 3
    losses = benchmark.pedantic(train_to_threshold, setup=setup, rounds=rounds)
    record(
        benchmark,
        case,
        cfg,
        epochs * cfg.num_batches,
        model=case.model,
        part=m.part,
        epochs_to_threshold=reached,
        final_accuracy=float(final.mean()),
        final_accuracy_after_first=float(final[1:].mean()),
    )
    assert np.isfinite(losses).all() and ((final >= 0) & (final <= 1)).all()
    if quick:  # from scratch again: the same training, bit for bit
        np.testing.assert_array_equal(losses, untimed[epochs - 1])
    else:
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
# Every row but TensorFlow's tf.function rows without XLA (the TF1 graph stays).
REALISTIC_NAMES = tuple(
    r.name for r in ROWS if r.library != "tensorflow" or r.unlooped or r.name == REFERENCE
)
QUICK_REALISTIC = Realistic(8, 4, 4, 2)


def realistic_cases(run: Run) -> list[Case]:
    """Every size and row; quick mode runs jax-epoch (and the data-parallel row, where this
    process has the devices) on a shrunk size (the other rows' trainers are the series
    group's)."""
    if run.quick:
        return each(run, ["jax-epoch", DATA_PARALLEL], size=QUICK_REALISTIC)
    return [c for size in REALISTIC for c in each(run, REALISTIC_NAMES, size=size)]


@cases(realistic_cases)
@pytest.mark.benchmark(group="realistic")
def test_realistic(benchmark, quick, case):
    """An LSTM of a realistic size, one epoch (per-window rows: one window) per timed call.

    Weights are TF1's initialisers for every row that maps them (``init_params``); the peak
    memory is recorded where it can be measured for the row alone (``timing.peak``).
    """
    name, device = case.name, case.device
    cfg = case.size.config()
    with timing.session(row(name), cfg, device=device) as s:
        loss = benchmark.pedantic(warm(s, quick), rounds=1 if quick else 3, iterations=1)
        memory, what = s.peak()
    record(benchmark, case, cfg, s.windows_per_call, peak_bytes=memory, peak_what=what)
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
    for name in rows:
        tf_row = name.startswith("tf-echo")
        for device in ("cpu",) if tf_row else run.devices:
            if run.has("tf-graph" if tf_row else "jax", device):
                found.append(Case(name, device))
    return found


@cases(end_to_end_cases)
@pytest.mark.benchmark(group="end_to_end")
def test_end_to_end(benchmark, quick, case, tmp_path):
    """Wall time of the whole training run with the tutorial defaults, as a subprocess: imports,
    compilation, 100 epochs, the accuracy pass, checkpoints and the figure.

    A cold cache is a new, empty JAX compilation cache each round; a warm one was filled by an
    untimed run first. history.json's breakdown of the last round goes into the results.
    """
    command_name = case.name
    env = {**os.environ, "JAX_PLATFORMS": {"cpu": "cpu", "gpu": "cuda"}[case.device]}
    runs = iter(range(1_000))
    out = tmp_path / "run"

    def command() -> list[str]:
        return [
            sys.executable,
            *END_TO_END[command_name],
            "--quiet",
            "--no-progress",
            "--out",
            str(out),
        ]

    def fresh():
        n = next(runs)
        env["XDG_CACHE_HOME"] = str(tmp_path / ("cache" if "warm" in command_name else f"cache{n}"))
        if out.exists():
            subprocess.run(["rm", "-rf", str(out)], check=True)
        return (), {}

    def train():
        args = command() + (QUICK_RUN if quick else [])
        subprocess.run(args, env=env, check=True, capture_output=True, text=True)

    if "warm" in command_name:
        fresh()
        train()  # fills the cache, untimed
    slow = command_name == "tf-echo train --impl graph"  # 100 epochs of session.run: minutes
    benchmark.pedantic(train, setup=fresh, rounds=1 if quick or slow else 3)
    history = json.loads((out / "history.json").read_text())
    record(
        benchmark,
        case,
        TUTORIAL,
        1,
        breakdown=history.get("seconds"),
        compilations=history.get("compilations"),
        compile_cache_hits=history.get("compile_cache_hits"),
    )
    assert len(history["history"]["loss"]) == (2 if quick else TUTORIAL.num_epochs)
