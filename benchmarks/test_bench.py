"""Accuracy and training speed of every implementation, side by side.

One ``group`` per measurement, every implementation of it in one table: ``series`` (every model
of the tutorial series), for part 1 ``window``, ``epoch``, ``compile``, ``scaling``,
``population`` and ``accuracy`` (parts 3 and 4 on ``jax-epoch`` too), ``realistic`` (LSTMs of
the sizes people train) and ``end_to_end`` (the tutorial's run as a user starts it).

Every row of ``jax_echo.registry.ROWS`` is timed through ``jax_echo.timing.session``: its first
epoch (tracing, compilation) checked against the reference row's where the math is TF1's, one
warm-up call, then timed calls that end in ``jax.block_until_ready`` or a host read.
``extra_info["windows_per_call"]`` is what the report divides a call's time by.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import pytest

from benchmarks.conftest import Case, Run, cases, each
from jax_echo import registry, timing, xla_flags
from jax_echo.cells import init_params
from jax_echo.model import train_epoch
from jax_echo.optim import make_optimizer
from jax_echo.policy import population_lanes
from jax_echo.population import stack, train_population_epoch
from jax_echo.registry import DATA_PARALLEL, IMPLEMENTATIONS, ROWS, row
from jax_echo.task import DISTINCT_MODELS, MODELS, EchoConfig, epoch_data, prediction_accuracies
from jax_echo.trainers import block

ALL = registry.BENCH_NAMES
# The scaling group's TensorFlow row: its epoch compiled by XLA, the one this group has always run
# (the report picks each library's fastest row from what was measured, never from this choice).
SCALING_TF = [r.name for r in ROWS if r.library == "tensorflow" and r.per_epoch and r.unlooped]
TUTORIAL = EchoConfig()
THRESHOLD = 0.999
# Quick mode trains windows of 2 steps: a first call's cost (tracing, XLA's compile) grows with
# the unrolled steps, and quick mode is mostly first calls.
QUICK_WINDOW = 2


def sized(cfg: EchoConfig, quick: bool, windows: int = 10) -> EchoConfig:
    """``cfg``, or in quick mode 2 epochs of ``windows`` windows of ``QUICK_WINDOW`` steps."""
    if not quick:
        return cfg
    series = windows * QUICK_WINDOW * cfg.batch_size
    return dataclasses.replace(
        cfg, num_epochs=2, truncated_backprop_length=QUICK_WINDOW, total_series_length=series
    )


# The distinct programs of the series (task.MODELS): parts 2, 5 and 6 are part 1's or part 4's.
SERIES = {name: MODELS[name] for name in DISTINCT_MODELS}


# --- The first epoch checked, the timed call warmed up ------------------------------------------
# Float32 first-epoch losses against the reference row's on the same weights and data, on a CPU:
# the largest difference over the quick cases is a few float32 ulps at the losses' 0.69; 2e-6
# leaves room for other CPUs' kernels. On a GPU the losses are checked finite only: JAX's
# products there default to TF32.
LOSS_ATOL = 2e-6


def reference_losses(name: str, cfg: EchoConfig, device: str, params=None) -> np.ndarray:
    """Row ``name``'s first-epoch losses from ``params`` (default ``init_params``)."""
    with timing.session(row(name), cfg, params, device=device) as s:
        return s.first_epoch()


initial_losses = functools.cache(reference_losses)  # from init_params: shared by many rows


def assert_matches(losses, expected, name: str, ref: str) -> None:
    diff = float(np.max(np.abs(losses - expected)))
    assert diff <= LOSS_ATOL, f"{name} vs {ref}: first-epoch losses differ by {diff}"


def check_losses(s: timing.Session, losses, params=None) -> None:
    """``losses`` (the first of the session's first epoch) finite and, where the math is the
    same, the reference row's on the same weights (``params``, default ``init_params``)."""
    losses = np.asarray(losses).ravel()
    assert np.isfinite(losses).all(), f"{s.row.name}: losses {losses}"
    tf = importlib.util.find_spec("tensorflow") is not None  # checked on the CPU only
    ref = registry.reference_for(s.row, s.cfg.cell, s.cfg.keep_prob, tf)
    if ref is not None and s.device == "cpu":
        losses_of = initial_losses if params is None else reference_losses
        expected = losses_of(ref.name, s.cfg, s.device, params)[: losses.size]
        assert_matches(losses, expected, s.row.name, ref.name)


def check_first_epoch(s: timing.Session, quick: bool, params=None) -> np.ndarray:
    """The session's first epoch (tracing and compiling its calls), its losses checked in quick
    mode (long timed epochs drift further in float32: ``jax-echo bench`` checks those)."""
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


def record(benchmark, case: Case, cfg: EchoConfig, windows_per_call: int, **extra) -> None:
    """The case's ``extra_info``: what the report groups, labels and divides by."""
    name = case.name
    r = registry.BY_NAME.get(name)  # a population or an end-to-end run is not a row
    if r is not None and r.role == "peer":
        extra |= {"library": r.library, "exact_math": r.exact(cfg.cell)}
    if r is not None and r.unlooped and not xla_flags.SMALL_LOOPS:
        name += xla_flags.SUFFIX  # measured without the option: never merged with its rows
    info = {"implementation": name, "device": case.device, "windows_per_call": windows_per_call}
    info |= {"state_size": cfg.state_size, "batch_size": cfg.batch_size, "cell": cfg.cell}
    info |= {"window_length": cfg.truncated_backprop_length, "num_layers": cfg.num_layers}
    benchmark.extra_info.update(info, **extra)


# --- The groups ---------------------------------------------------------------------------------


def time_calls(benchmark, quick: bool, case: Case, cfg: EchoConfig, **extra) -> None:
    """Times the row's call (one window, or one epoch for a per-epoch row) on ``cfg``."""
    with timing.session(row(case.name), cfg, device=case.device) as s:
        loss = benchmark(warm(s, quick))
    record(benchmark, case, cfg, s.windows_per_call, **extra)
    assert np.isfinite(loss).all()


@cases(lambda run: each(run, ALL))
@pytest.mark.benchmark(group="window")
def test_window(benchmark, quick, case):
    time_calls(benchmark, quick, case, sized(TUTORIAL, quick))


def no_peers_in_quick_mode(run: Run) -> list[Case]:
    """Every implementation and, unless quick (a peer's first call compiles for seconds), peer."""
    return each(run, IMPLEMENTATIONS if run.quick else ALL)


@cases(no_peers_in_quick_mode)
@pytest.mark.benchmark(group="epoch")
def test_epoch(benchmark, quick, case):
    cfg = sized(TUTORIAL, quick)
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
        if not run.quick or model != "part1":
            names = ALL if not run.quick or model == "part3" else IMPLEMENTATIONS
            found += each(run, names, model=model)
    return found


@cases(series_cases)
@pytest.mark.benchmark(group="series")
def test_series(benchmark, quick, case):
    """Cost per window of every model of the series at the tutorial's sizes; a peer whose cell's
    math differs from TF1's (PyTorch's and Flax's GRU) is timed with ``exact_math`` False."""
    m = SERIES[case.model]
    extra = {"model": case.model, "part": m.part, "what_changed": m.what_changed}
    time_calls(benchmark, quick, case, sized(m.config, quick), **extra)


@cases(no_peers_in_quick_mode)
@pytest.mark.benchmark(group="compile")
def test_compile(benchmark, quick, case):
    """First-call cost: build the trainer and run its first call (tracing and compilation)."""
    cfg = sized(TUTORIAL, quick)
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
        sizes = TUTORIAL.to_dict() | self.change
        if quick:
            sizes |= {k: min(sizes[k], cap) for k, cap in QUICK_SCALING_CAPS.items()}
        windows = 2 if quick else self.windows
        series = sizes["truncated_backprop_length"] * sizes["batch_size"] * windows
        return EchoConfig(**sizes | {"total_series_length": series})


LONG_WIDE = {"truncated_backprop_length": 1000, "state_size": 256, "batch_size": 64}
SCALING = (
    *(Scaling("state", {"state_size": S}, 200) for S in (4, 32, 256)),
    *(Scaling("batch", {"batch_size": B}, 200) for B in (64, 1024)),
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
        if not (run.quick and shapes in seen):
            seen.add(shapes)
            names = ["jax-epoch"] if size.jax_only else ["jax-epoch", *SCALING_TF]
            found += each(run, names, size=size)
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
    extra = {"axis": size.axis, "remat": size.remat, "xla_memory_bytes": memory}
    record(benchmark, case, cfg, cfg.num_batches, **extra)
    assert np.isfinite(losses).all()


POPULATIONS = (1, 16, 256, 4096)
QUICK_POPULATIONS = (1, 16)
POPULATION_CFG = EchoConfig(num_epochs=1, total_series_length=1500)  # 20 windows per member


def population_cases(run: Run) -> list[Case]:
    """The population program in its layout (``policy.population_lanes``) beside a loop."""
    layout = "lanes" if population_lanes(POPULATION_CFG) else "vmap"
    return [
        Case(f"jax-population-{mode}", device, size=size)
        for device in run.devices
        if run.has("jax", device)
        for size in (QUICK_POPULATIONS if run.quick else POPULATIONS)
        for mode in (layout, "one-by-one")
    ]


@cases(population_cases)
@pytest.mark.benchmark(group="population")
def test_population(benchmark, quick, case):
    """One epoch for every member of a population, in one compiled call or a loop over members;
    both train only, on the same data and initial weights, with ``make_optimizer``'s state."""
    size = case.size
    cfg = sized(POPULATION_CFG, quick, windows=20)
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
        assert_matches(first, np.stack(expected), case.name, "jax-epoch")


def accuracy_cases(run: Run) -> list[Case]:
    """Part 1 in every implementation (quick: no peers); the LSTM parts on jax-epoch."""
    names = IMPLEMENTATIONS if run.quick else ALL
    lstm = [c for m in ("part3", "part4") for c in each(run, ["jax-epoch"], model=m)]
    return each(run, names, model="part1") + lstm


@cases(accuracy_cases)
@pytest.mark.benchmark(group="accuracy")
def test_accuracy(benchmark, quick, case):
    """Wall time from scratch (build, compile, train) to 99.9% accuracy after window 0: an
    untimed pass of the whole run finds the epoch that reaches it, the timed call trains a fresh
    model for those epochs. Quick mode: the first epoch's losses are the reference row's, the
    timed run repeats the untimed one's losses bit for bit, accuracies are fractions."""
    m = SERIES[case.model]
    cfg = sized(m.config, quick)
    data = [epoch_data(cfg, e) for e in range(cfg.num_epochs)]

    def accuracies(s, x, y):
        return prediction_accuracies(s.trainer.predict_epoch(x), y)

    with timing.session(row(case.name), cfg, device=case.device) as s:
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
        with timing.session(row(case.name), cfg, device=case.device) as s:
            for epoch, (x, y) in enumerate(data[:epochs]):
                losses = s.epoch(x, y, epoch)
        return losses

    # From scratch: JAX's compiled programs are dropped first (quick mode keeps them).
    setup = None if quick else jax.clear_caches
    rounds = 1 if quick or not row(case.name).per_epoch else 3
    losses = benchmark.pedantic(train_to_threshold, setup=setup, rounds=rounds)
    after_first = float(final[1:].mean())
    extra = {"model": case.model, "part": m.part, "epochs_to_threshold": reached}
    extra |= {"final_accuracy": float(final.mean()), "final_accuracy_after_first": after_first}
    record(benchmark, case, cfg, epochs * cfg.num_batches, **extra)
    assert np.isfinite(losses).all() and ((final >= 0) & (final <= 1)).all()
    if quick:  # from scratch again: the same training, bit for bit
        np.testing.assert_array_equal(losses, untimed[epochs - 1])
    else:
        assert after_first >= THRESHOLD


class Realistic(NamedTuple):
    """An LSTM of the size people train."""

    state_size: int
    batch_size: int
    truncated_backprop_length: int
    windows: int  # per epoch

    @property
    def id(self) -> str:
        return "S{}-B{}-T{}".format(*self)

    def config(self) -> EchoConfig:
        sizes = self._asdict()
        series = sizes.pop("windows") * self.batch_size * self.truncated_backprop_length
        return EchoConfig(cell="lstm", total_series_length=series, **sizes)


REALISTIC = (Realistic(128, 32, 50, 4), Realistic(256, 64, 200, 2), Realistic(256, 256, 100, 2))
# Every row but TensorFlow's tf.function rows without XLA (the TF1 graph stays).
REALISTIC_NAMES = tuple(
    r.name for r in ROWS if r.library != "tensorflow" or r.unlooped or r.name == registry.REFERENCE
)
QUICK_REALISTIC = Realistic(8, 4, 4, 2)


def realistic_cases(run: Run) -> list[Case]:
    """Every size and row; quick mode runs jax-epoch (and the data-parallel row, where this
    process has the devices) on a shrunk size: the other rows' trainers are the series group's."""
    if run.quick:
        return each(run, ["jax-epoch", DATA_PARALLEL], size=QUICK_REALISTIC)
    return [c for size in REALISTIC for c in each(run, REALISTIC_NAMES, size=size)]


@cases(realistic_cases)
@pytest.mark.benchmark(group="realistic")
def test_realistic(benchmark, quick, case):
    """An LSTM of a realistic size, one epoch (per-window rows: one window) per timed call, from
    TF1's initialisers; the peak memory where it can be measured for the row alone."""
    cfg = case.size.config()
    with timing.session(row(case.name), cfg, device=case.device) as s:
        loss = benchmark.pedantic(warm(s, quick), rounds=1 if quick else 3, iterations=1)
        memory, what = s.peak()
    record(benchmark, case, cfg, s.windows_per_call, peak_bytes=memory, peak_what=what)
    assert np.isfinite(loss).all()


# The tutorial's training run as a user starts it, in a fresh process: row -> its arguments.
END_TO_END = {
    "jax-echo train (cold cache)": "-m jax_echo train",
    "jax-echo train (warm cache)": "-m jax_echo train",
    "tf-echo train --impl graph": "-m tf_echo train --impl graph",
    "tf-echo train --impl function-epoch-xla": "-m tf_echo train --impl function-epoch-xla",
}
QUICK_RUN = ["--epochs", "2", "--total-series-length", "1500"]


def end_to_end_cases(run: Run) -> list[Case]:
    """Every row (the TensorFlow runs on the CPU); quick mode runs the cold jax-echo row
    (tf-echo train is tests/test_cli_tf.py's)."""
    found = []
    for name in list(END_TO_END)[:1] if run.quick else END_TO_END:
        tf_row = name.startswith("tf-echo")
        for device in ("cpu",) if tf_row else run.devices:
            if run.has("tf-graph" if tf_row else "jax", device):
                found.append(Case(name, device))
    return found


@cases(end_to_end_cases)
@pytest.mark.benchmark(group="end_to_end")
def test_end_to_end(benchmark, quick, case, tmp_path):
    """The whole training run with the tutorial defaults as a subprocess (imports, compilation,
    100 epochs, the accuracy pass, checkpoints, the figure), with a new, empty JAX compilation
    cache each round or one an untimed run filled; history.json's breakdown goes into the results.
    """
    warm_cache = "warm" in case.name
    out = tmp_path / "run"
    command = [sys.executable, *END_TO_END[case.name].split(), "--quiet", "--no-progress"]
    command += ["--out", str(out), *(QUICK_RUN if quick else [])]
    env = {**os.environ, "JAX_PLATFORMS": {"cpu": "cpu", "gpu": "cuda"}[case.device]}
    rounds = itertools.count()

    def fresh():
        env["XDG_CACHE_HOME"] = str(tmp_path / f"cache{'' if warm_cache else next(rounds)}")
        shutil.rmtree(out, ignore_errors=True)

    def train():
        subprocess.run(command, env=env, check=True, capture_output=True, text=True)

    if warm_cache:
        fresh()
        train()  # fills the cache, untimed
    slow = case.name == "tf-echo train --impl graph"  # 100 epochs of session.run: minutes
    benchmark.pedantic(train, setup=fresh, rounds=1 if quick or slow else 3)
    history = json.loads((out / "history.json").read_text())
    extra = {key: history.get(key) for key in ("compilations", "compile_cache_hits")}
    record(benchmark, case, TUTORIAL, 1, breakdown=history.get("seconds"), **extra)
    assert len(history["history"]["loss"]) == (2 if quick else TUTORIAL.num_epochs)
