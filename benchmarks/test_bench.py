"""Accuracy and training speed of every implementation, side by side.

Groups (one ``group`` per measurement, so pytest-benchmark and the report put all
implementations of it in one table): ``series`` (every model of the tutorial series, every
implementation and peer library), then for part 1 ``window``, ``epoch``, ``compile``,
``scaling``, ``population`` and ``accuracy`` (with parts 3 and 4 on ``jax-epoch``), ``realistic``
(LSTMs of the sizes people train) and ``end_to_end`` (the tutorial's whole training run as a
user starts it), each on CPU and, where the library sees one, GPU. The peers (PyTorch, Flax,
Keras: ``benchmarks.peers``) are skipped, with the reason, where their library is missing.

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

import jax
import numpy as np
import pytest

from benchmarks.conftest import DEVICES, jax_device, tf_gpu_available
from benchmarks.peers import PEER_NAMES, PEERS, peer
from jax_echo import (
    EchoConfig,
    epoch_data,
    init_params,
    initial_state,
    make_optimizer,
    prediction_accuracies,
    split_windows,
)
from jax_echo.compare import IMPLEMENTATIONS, JaxTrainer, block, make_trainer

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


@dataclasses.dataclass(frozen=True)
class Model:
    """One model of the series, as the ``series`` group and the report name it."""

    cfg: EchoConfig
    part: int | None  # the tutorial part it is; None for the GRU (not in the series)
    what_changed: str  # from part 1, in the tutorial's terms


# Parts 2, 5 and 6 are left out: part 2 is part 1's math through BasicRNNCell, part 5 part 4's
# model through dynamic_rnn (the same JAX program), part 6 part 4's with dropout.
SERIES = {
    "part1": Model(EchoConfig.for_part(1), 1, "the baseline: hand-written tanh RNN, state h"),
    "part3": Model(EchoConfig.for_part(3), 3, "BasicLSTMCell, state (c, h)"),
    "part4": Model(EchoConfig.for_part(4), 4, "MultiRNNCell of 3 LSTMCells, 3 x (c, h)"),
    "gru": Model(EchoConfig(cell="gru"), None, "GRUCell (TF1's), state h; not a part"),
}


@contextlib.contextmanager
def placed(name: str, device: str):
    """Runs the block on ``device`` for implementation ``name``; skips with the reason if none."""
    if name in PEER_NAMES:
        p = peer(name)
        reason = p.available()
        if reason is not None:
            pytest.skip(reason)
        if device == "gpu" and not peer_sees_gpu(p.library, p.backend):
            pytest.skip(f"{name} sees no GPU")
        yield  # a peer places its own arrays (its device argument)
    elif name.startswith("jax"):  # "jax" alone: a JAX-only measurement
        dev = jax_device(device)
        if dev is None:
            pytest.skip(f"JAX sees no {device.upper()}")
        with jax.default_device(dev):
            yield
    else:
        tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
        if device == "gpu" and not tf_gpu_available():
            pytest.skip("TensorFlow sees no GPU")
        with tf.device(f"/{device.upper()}:0"):
            yield


def peer_sees_gpu(library: str, backend: str | None) -> bool:
    if library == "torch":
        import torch

        return torch.cuda.is_available()
    if backend == "tensorflow":
        return tf_gpu_available()
    return jax_device("gpu") is not None  # Flax, Keras on JAX


def new_trainer(name: str, device: str, cfg: EchoConfig, params=None):
    """A trainer of ``name`` on ``device``: a ``registry.Trainer``, or a peer's ``PeerTrainer``."""
    params = init_params(cfg) if params is None else params
    if name in PEER_NAMES:
        return peer(name).make(cfg, params, device=device)
    if name == "jax-epoch-remat":
        return JaxTrainer(cfg, params, remat=True)
    if name == "tf-graph":
        import tf_echo

        return tf_echo.make_trainer("graph", cfg, params, device=f"/{device.upper()}:0")
    return make_trainer(name, cfg, params)


def quick_peer_skip(quick: bool, name: str, where: str) -> None:
    """Quick mode (CI) runs the peers in the ``window`` group and the part-3 ``series`` case
    only: each of their first calls costs seconds of compilation."""
    if quick and name in PEER_NAMES:
        pytest.skip(f"quick mode: peers are not run in {where}")


def record(benchmark, name: str, device: str, cfg: EchoConfig, windows_per_call: int, **extra):
    if name in PEER_NAMES:
        p = peer(name)
        extra |= {"library": p.library, "exact_math": cfg.cell in p.exact_cells}
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


def zero_state(cfg: EchoConfig):
    """Every layer's zero state as NumPy: a tuple of ``h`` or ``(c, h)``, one per layer."""
    return jax.tree.map(np.asarray, initial_state(cfg, dtype=np.float32))


def window_runner(trainer, cfg: EchoConfig):
    """One training window per call, carrying the state as the tutorial does."""
    x, y = epoch_data(cfg, 0)
    N, T = cfg.num_batches, cfg.truncated_backprop_length
    xs = list(np.ascontiguousarray(split_windows(x, T)))
    ys = list(np.ascontiguousarray(split_windows(y, T)))
    state = zero_state(cfg)
    i = 0

    def run():
        nonlocal state, i
        if hasattr(trainer, "train_window"):  # a peer carries its state itself
            loss = trainer.train_window(xs[i % N], ys[i % N])
        else:
            state, loss = trainer.train_step(state, xs[i % N], ys[i % N])
        i += 1
        return block(loss)

    return run


def epoch_runner(trainer, cfg: EchoConfig):
    x, y = epoch_data(cfg, 0)
    return lambda: block(trainer.train_epoch(x, y))


def warm_runner(name: str, device: str, cfg: EchoConfig):
    """A new trainer and its timed call, compiled and warmed up: one epoch per call for the
    epoch-level implementations, one window per call (state carried) for the others.

    Returns ``(trainer, run, windows_per_call)``.
    """
    trainer = new_trainer(name, device, cfg)
    per_epoch = name.removesuffix("-remat") in PER_EPOCH
    run = (epoch_runner if per_epoch else window_runner)(trainer, cfg)
    run()  # compile and warm up, untimed
    run()
    return trainer, run, cfg.num_batches if per_epoch else 1


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.benchmark(group="window")
def test_window(benchmark, quick, name, device):
    cfg = TINY if quick else TUTORIAL
    with placed(name, device):
        trainer, run, windows_per_call = warm_runner(name, device, cfg)
        loss = benchmark(run)
        trainer.close()
        record(benchmark, name, device, cfg, windows_per_call)
    assert np.isfinite(loss).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.benchmark(group="epoch")
def test_epoch(benchmark, quick, name, device):
    quick_peer_skip(quick, name, "the epoch group")
    cfg = TINY if quick else TUTORIAL
    with placed(name, device):
        trainer = new_trainer(name, device, cfg)
        run = epoch_runner(trainer, cfg)
        run()  # compile and warm up, untimed
        losses = benchmark.pedantic(run, rounds=3 if quick else 5, iterations=1)
        record(benchmark, name, device, cfg, cfg.num_batches)
    assert losses.shape == (cfg.num_batches,)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("model", list(SERIES))
@pytest.mark.benchmark(group="series")
def test_series(benchmark, quick, model, name, device):
    """Training cost per window of every model of the series, in every implementation and peer.

    At the tutorial's sizes: epoch-level implementations train one epoch (666 windows) per call,
    per-window ones one window per call, with the state carried. A peer whose cell differs from
    TF1's in math (the GRU of PyTorch and Flax) is timed, with ``exact_math`` False.
    """
    m = SERIES[model]
    if quick and m.cfg == TUTORIAL:
        pytest.skip("quick mode: part 1's cases are the window group's (same config and calls)")
    if model != "part3":
        quick_peer_skip(quick, name, "series models other than part 3")
    cfg = quick_config(m.cfg) if quick else m.cfg
    with placed(name, device):
        trainer, run, windows_per_call = warm_runner(name, device, cfg)
        loss = benchmark(run)
        trainer.close()
        record(
            benchmark,
            name,
            device,
            cfg,
            windows_per_call,
            model=model,
            part=m.part,
            what_changed=m.what_changed,
        )
    assert np.isfinite(loss).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.benchmark(group="compile")
def test_compile(benchmark, quick, name, device):
    """First-call cost: build the trainer and run its first call (tracing and compilation)."""
    quick_peer_skip(quick, name, "the compile group")
    cfg = TINY if quick else TUTORIAL
    params = init_params(cfg)
    x, y = epoch_data(cfg, 0)
    T = cfg.truncated_backprop_length
    state = zero_state(cfg)

    def first_call():
        trainer = new_trainer(name, device, cfg, params)
        if name in PER_EPOCH:
            out = block(trainer.train_epoch(x, y))
        elif hasattr(trainer, "train_window"):
            out = block(trainer.train_window(x[:, :T], y[:, :T]))
        else:
            out = block(trainer.train_step(state, x[:, :T], y[:, :T])[1])
        trainer.close()
        return out

    with placed(name, device):
        out = benchmark.pedantic(first_call, setup=jax.clear_caches, rounds=1 if quick else 3)
        record(benchmark, name, device, cfg, 1)
    assert np.isfinite(out).all()


# (axis, change from the tutorial config, windows per timed call, JAX only, remat)
SCALING = [
    ("state", {"state_size": 4}, 200, False, False),
    ("state", {"state_size": 32}, 200, False, False),
    ("state", {"state_size": 256}, 200, False, False),
    ("batch", {"batch_size": 64}, 200, False, False),
    ("batch", {"batch_size": 1024}, 200, False, False),
    ("window", {"truncated_backprop_length": 100}, 200, False, False),
    # Sizes of real RNNs, JAX only: XLA's temporary memory is recorded with each.
    ("state", {"state_size": 1024}, 5, True, False),
    ("batch", {"batch_size": 4096}, 5, True, False),
    ("window", {"truncated_backprop_length": 1000}, 5, True, False),
    (
        "window",
        {"truncated_backprop_length": 1000, "state_size": 256, "batch_size": 64},
        5,
        True,
        False,
    ),
    (
        "window",
        {"truncated_backprop_length": 1000, "state_size": 256, "batch_size": 64},
        5,
        True,
        True,
    ),
]


def _scaling_id(case):
    axis, change, _, _, remat = case
    return "-".join([axis, *(f"{k.split('_')[0]}{v}" for k, v in change.items())]) + (
        "-remat" if remat else ""
    )


# Quick mode's largest sizes: the compile time of a window grows with its unrolled steps.
QUICK_SCALING_CAPS = {"state_size": 8, "batch_size": 8, "truncated_backprop_length": 4}


def _scaling_config(case, quick: bool) -> tuple[EchoConfig, bool]:
    """The case's config (and remat); quick mode keeps the shapes' character, not their cost."""
    _, change, windows, _, remat = case
    sizes = {**TUTORIAL.to_dict(), **change}
    if quick:
        windows = 2
        sizes |= {k: min(sizes[k], cap) for k, cap in QUICK_SCALING_CAPS.items()}
    sizes["total_series_length"] = (
        sizes["batch_size"] * sizes["truncated_backprop_length"] * windows
    )
    return EchoConfig(**sizes), remat


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["jax-epoch", FASTEST_TF])
@pytest.mark.parametrize("case", SCALING, ids=[_scaling_id(c) for c in SCALING])
@pytest.mark.benchmark(group="scaling")
def test_scaling(benchmark, quick, name, device, case):
    """Cost per window as sizes grow from the tutorial config (one call trains some windows)."""
    axis, _, _, jax_only, remat = case
    if jax_only and not name.startswith("jax"):
        pytest.skip("large configurations are measured on the JAX side only")
    if quick:
        earlier = SCALING[: SCALING.index(case)]
        if any(_scaling_config(c, quick) == _scaling_config(case, quick) for c in earlier):
            pytest.skip("quick mode shrinks this case to an earlier case's shapes")
    cfg, _ = _scaling_config(case, quick)
    params = init_params(cfg)
    (layer,) = params.cells  # part 1's one hand-written layer; W / S keeps tanh out of saturation
    params = params._replace(cells=(layer._replace(W=layer.W / cfg.state_size),))
    with placed(name, device):
        if name.startswith("jax"):
            trainer = JaxTrainer(cfg, params, remat=remat)
            # A compile of its own: quick mode runs it for the JAX-only sizes alone.
            measure = jax_only or not quick
            memory = trainer.memory_analysis(*epoch_data(cfg, 0)) if measure else None
        else:
            trainer, memory = new_trainer(name, device, cfg, params), None
        run = epoch_runner(trainer, cfg)
        run()  # compile and warm up, untimed
        losses = benchmark(run)
        record(
            benchmark,
            name,
            device,
            cfg,
            cfg.num_batches,
            axis=axis,
            remat=remat,
            xla_memory_bytes=memory,
        )
    assert np.isfinite(losses).all()


POPULATIONS = (1, 16, 256, 4096)
POPULATION_CFG = EchoConfig(num_epochs=1, total_series_length=1500)  # 20 windows per member


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["vmap", "one-by-one"])
@pytest.mark.parametrize("size", POPULATIONS)
@pytest.mark.benchmark(group="population")
def test_population(benchmark, quick, size, mode, device):
    """One epoch for every member of a population: one vmapped call, or a loop over members.

    Both train only (no accuracy pass), on the same data and initial weights, with
    ``make_optimizer``'s state (TF1's Adagrad through optax).
    """
    from jax_echo.model import train_epoch
    from jax_echo.scale import train_population_epoch

    size = min(size, 16) if quick else size
    cfg = quick_config(POPULATION_CFG, windows=20) if quick else POPULATION_CFG
    with placed("jax", device):
        members = [init_params(cfg, seed) for seed in range(size)]
        x, y = epoch_data(cfg, 0)
        # Inputs are donated, so each call trains on from the previous call's results.
        if mode == "vmap":
            params = jax.tree.map(lambda *a: np.stack(a), *members)
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
        record(
            benchmark,
            f"jax-population-{mode}",
            device,
            cfg,
            size * cfg.num_batches,
            population=size,
        )
    assert np.shape(losses) == (size, cfg.num_batches)


# Part 1 in every implementation; the LSTM parts on the fastest one only.
ACCURACY = [("part1", name) for name in ALL] + [("part3", "jax-epoch"), ("part4", "jax-epoch")]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("model", "name"), ACCURACY, ids=[f"{m}-{n}" for m, n in ACCURACY])
@pytest.mark.benchmark(group="accuracy")
def test_accuracy(benchmark, quick, model, name, device):
    """Wall time from scratch (build, compile, train) to 99.9% accuracy after window 0.

    A first, untimed pass runs the whole tutorial (100 epochs) to find the epoch at which the
    accuracy on the windows after the first reaches 99.9% and the final accuracy; the timed call
    then trains a fresh model for exactly those epochs (three times for the epoch-level
    implementations, once for the per-window ones: minutes each).
    """
    quick_peer_skip(quick, name, "the accuracy group")
    m = SERIES[model]
    cfg = quick_config(m.cfg) if quick else m.cfg
    data = [epoch_data(cfg, e) for e in range(cfg.num_epochs)]
    N = cfg.num_batches

    def accuracies(trainer, x, y):
        return prediction_accuracies(trainer.predict_epoch(x), y)

    with placed(name, device):
        trainer = new_trainer(name, device, cfg)
        reached = None
        for epoch, (x, y) in enumerate(data):
            block(trainer.train_epoch(x, y))
            if reached is None and accuracies(trainer, x, y)[1:].mean() >= THRESHOLD:
                reached = epoch + 1
        final = accuracies(trainer, x, y)
        trainer.close()
        epochs = reached or cfg.num_epochs

        def train_to_threshold():
            trainer = new_trainer(name, device, cfg)
            for x, y in data[:epochs]:
                losses = block(trainer.train_epoch(x, y))
            trainer.close()
            return losses

        # From scratch: JAX's compiled programs are dropped first (quick mode keeps them).
        setup = None if quick else jax.clear_caches
        rounds = 1 if quick or name not in PER_EPOCH else 3
        benchmark.pedantic(train_to_threshold, setup=setup, rounds=rounds)
        record(
            benchmark,
            name,
            device,
            cfg,
            epochs * N,
            model=model,
            part=m.part,
            epochs_to_threshold=reached,
            final_accuracy=float(final.mean()),
            final_accuracy_after_first=float(final[1:].mean()),
        )
    if not quick:
        assert final[1:].mean() >= THRESHOLD


# LSTMs of the sizes people train: (state, batch, window length, windows per epoch).
REALISTIC = [(128, 32, 50, 4), (256, 64, 200, 2), (256, 256, 100, 2)]
REALISTIC_NAMES = (
    "jax-epoch",
    "jax-epoch-remat",
    "jax-step",
    "tf-graph",
    "tf-function-xla",
    "tf-function-epoch-xla",
    *PEER_NAMES,
)
QUICK_REALISTIC = (8, 4, 4, 2)


def realistic_config(case: tuple[int, int, int, int]) -> EchoConfig:
    S, B, T, windows = case
    return EchoConfig(
        cell="lstm",
        state_size=S,
        batch_size=B,
        truncated_backprop_length=T,
        total_series_length=B * T * windows,
    )


def peak_memory(name: str, device: str, trainer, cfg: EchoConfig) -> tuple[int | None, str]:
    """What the row's training held at most, and what that number is.

    JAX: XLA's arguments + outputs + temporaries of the compiled epoch (``memory_analysis``);
    PyTorch on a GPU: ``torch.cuda.max_memory_allocated``; elsewhere nothing is measured: a
    process-wide peak would mix the rows.
    """
    if name.startswith("jax-epoch"):
        return trainer.memory_analysis(*epoch_data(cfg, 0))["peak"], "XLA args+outputs+temps"
    if device == "gpu" and name.startswith("torch"):
        import torch

        return torch.cuda.max_memory_allocated(), "torch.cuda.max_memory_allocated"
    return None, ""


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", REALISTIC_NAMES)
@pytest.mark.parametrize("case", REALISTIC, ids=["S{}-B{}-T{}".format(*c) for c in REALISTIC])
@pytest.mark.benchmark(group="realistic")
def test_realistic(benchmark, quick, case, name, device):
    """An LSTM of a realistic size, one epoch (per-window rows: one window) per timed call.

    Weights are TF1's initialisers for every row that maps them (``init_params``); the peak
    memory is recorded where it can be measured for the row alone (``peak_memory``).
    """
    if quick:
        if case != REALISTIC[0] or name != "jax-epoch":
            pytest.skip(
                "quick mode runs jax-epoch on the first case, shrunk (the other rows' "
                "trainers are the series group's)"
            )
        case = QUICK_REALISTIC
    cfg = realistic_config(case)
    impl = name.removesuffix("-remat")
    with placed(impl, device):
        if device == "gpu" and name.startswith("torch"):
            import torch

            torch.cuda.reset_peak_memory_stats()
        trainer, run, windows_per_call = warm_runner(name, device, cfg)
        loss = benchmark.pedantic(run, rounds=1 if quick else 3, iterations=1)
        memory, what = peak_memory(name, device, trainer, cfg)
        trainer.close()
        record(
            benchmark,
            name,
            device,
            cfg,
            windows_per_call,
            peak_bytes=memory,
            peak_what=what,
        )
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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("row", list(END_TO_END))
@pytest.mark.benchmark(group="end_to_end")
def test_end_to_end(benchmark, quick, row, device, tmp_path):
    """Wall time of the whole training run with the tutorial defaults, as a subprocess: imports,
    compilation, 100 epochs, the accuracy pass, checkpoints and the figure.

    A cold cache is a new, empty JAX compilation cache each round; a warm one was filled by an
    untimed run first. history.json's breakdown of the last round goes into the results.
    """
    if quick and row != "jax-echo train (cold cache)":
        pytest.skip("quick mode runs the cold jax-echo row (tf-echo train: tests/test_cli_tf.py)")
    if row.startswith("tf-echo"):
        pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
        if device == "gpu":
            pytest.skip("the TensorFlow runs are measured on CPU")
    elif jax_device(device) is None:
        pytest.skip(f"JAX sees no {device.upper()}")
    env = {**os.environ, "JAX_PLATFORMS": {"cpu": "cpu", "gpu": "cuda"}[device]}
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
        device,
        TUTORIAL,
        1,
        breakdown=history.get("seconds"),
        compilations=history.get("compilations"),
        compile_cache_hits=history.get("compile_cache_hits"),
    )
    assert len(history["history"]["loss"]) == (2 if quick else TUTORIAL.num_epochs)
