"""Accuracy and training speed of every implementation, side by side.

Groups (one ``group`` per measurement, so pytest-benchmark and the report put all
implementations of it in one table): ``window``, ``epoch``, ``compile``, ``scaling``,
``accuracy``, each on CPU and, where the library sees one, GPU.

Timing rules: the trainer is built, compiled and warmed up before the timed call; the timed call
ends in ``jax.block_until_ready`` or a host read of the result (``compare.block``).
Epoch-level implementations appear in the ``window`` group as one epoch per call, with
``extra_info["windows_per_call"]`` saying so; the report divides by it.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np
import pytest

from benchmarks.conftest import DEVICES, jax_device, tf_gpu_available
from jax_echo import EchoConfig, epoch_data, init_params, prediction_accuracies, split_windows
from jax_echo.compare import IMPLEMENTATIONS, block, make_trainer

TORCH = "torch-eager"
ALL = (*IMPLEMENTATIONS, TORCH)
PER_EPOCH = ("jax-epoch", "tf-function-epoch", "tf-function-epoch-xla")
FASTEST_TF = "tf-function-epoch-xla"
TUTORIAL = EchoConfig()
TINY = EchoConfig(num_epochs=2, total_series_length=750)  # quick mode: 10 windows
THRESHOLD = 0.999


@contextlib.contextmanager
def placed(name: str, device: str):
    """Runs the block on ``device`` for implementation ``name``; skips with the reason if none."""
    if name.startswith("jax"):  # "jax" alone: a JAX-only measurement
        dev = jax_device(device)
        if dev is None:
            pytest.skip(f"JAX sees no {device.upper()}")
        with jax.default_device(dev):
            yield
    elif name.startswith("tf"):
        tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
        if device == "gpu" and not tf_gpu_available():
            pytest.skip("TensorFlow sees no GPU")
        with tf.device(f"/{device.upper()}:0"):
            yield
    else:
        torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional row)")
        if device == "gpu" and not torch.cuda.is_available():
            pytest.skip("PyTorch sees no GPU")
        yield


def new_trainer(name: str, device: str, cfg: EchoConfig, params=None):
    params = init_params(cfg) if params is None else params
    if name == TORCH:
        from benchmarks.torch_echo import TorchTrainer

        return TorchTrainer(cfg, params, device="cuda" if device == "gpu" else "cpu")
    if name == "tf-graph":
        import tf_echo

        return tf_echo.make_trainer("graph", cfg, params, device=f"/{device.upper()}:0")
    return make_trainer(name, cfg, params)


def record(benchmark, name: str, device: str, cfg: EchoConfig, windows_per_call: int, **extra):
    benchmark.extra_info.update(
        implementation=name,
        device=device,
        windows_per_call=windows_per_call,
        state_size=cfg.state_size,
        batch_size=cfg.batch_size,
        window_length=cfg.truncated_backprop_length,
        **extra,
    )


def window_runner(trainer, cfg: EchoConfig):
    """One training window per call, carrying the state as the tutorial does."""
    x, y = epoch_data(cfg, 0)
    N, T = cfg.num_batches, cfg.truncated_backprop_length
    xs = list(np.ascontiguousarray(split_windows(x, T)))
    ys = list(np.ascontiguousarray(split_windows(y, T)))
    h = np.zeros((cfg.batch_size, cfg.state_size), np.float32)
    i = 0

    def run():
        nonlocal h, i
        h, loss = trainer.train_step(h, xs[i % N], ys[i % N])
        i += 1
        return block(loss)

    return run


def epoch_runner(trainer, cfg: EchoConfig):
    x, y = epoch_data(cfg, 0)
    return lambda: block(trainer.train_epoch(x, y))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.benchmark(group="window")
def test_window(benchmark, quick, name, device):
    cfg = TINY if quick else TUTORIAL
    with placed(name, device):
        trainer = new_trainer(name, device, cfg)
        per_epoch = name in PER_EPOCH
        run = (epoch_runner if per_epoch else window_runner)(trainer, cfg)
        run()  # compile and warm up, untimed
        run()
        loss = benchmark(run)
        record(benchmark, name, device, cfg, cfg.num_batches if per_epoch else 1)
    assert np.isfinite(loss).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.benchmark(group="epoch")
def test_epoch(benchmark, quick, name, device):
    cfg = TINY if quick else TUTORIAL
    with placed(name, device):
        trainer = new_trainer(name, device, cfg)
        run = epoch_runner(trainer, cfg)
        run()  # compile and warm up, untimed
        losses = benchmark.pedantic(run, rounds=3 if quick else 5, iterations=1)
        record(benchmark, name, device, cfg, cfg.num_batches)
    assert losses.shape == (cfg.num_batches,)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.benchmark(group="compile")
def test_compile(benchmark, quick, name, device):
    """First-call cost: build the trainer and run its first call (tracing and compilation)."""
    cfg = TINY if quick else TUTORIAL
    params = init_params(cfg)
    x, y = epoch_data(cfg, 0)
    T = cfg.truncated_backprop_length
    h0 = np.zeros((cfg.batch_size, cfg.state_size), np.float32)

    def first_call():
        trainer = new_trainer(name, device, cfg, params)
        if name in PER_EPOCH:
            out = block(trainer.train_epoch(x, y))
        else:
            out = block(trainer.train_step(h0, x[:, :T], y[:, :T])[1])
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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["jax-epoch", FASTEST_TF])
@pytest.mark.parametrize("case", SCALING, ids=[_scaling_id(c) for c in SCALING])
@pytest.mark.benchmark(group="scaling")
def test_scaling(benchmark, quick, name, device, case):
    """Cost per window as sizes grow from the tutorial config (one call trains some windows)."""
    axis, change, windows, jax_only, remat = case
    if jax_only and not name.startswith("jax"):
        pytest.skip("large configurations are measured on the JAX side only")
    sizes = {**TUTORIAL.to_dict(), **change}
    if quick:  # keep the shapes' character, not their cost
        windows = 2
        sizes = {
            k: min(v, 32) if k in ("state_size", "batch_size", "truncated_backprop_length") else v
            for k, v in sizes.items()
        }
    sizes["total_series_length"] = (
        sizes["batch_size"] * sizes["truncated_backprop_length"] * windows
    )
    cfg = EchoConfig(**sizes)
    params = init_params(cfg)
    params = params._replace(W=params.W / cfg.state_size)  # keep tanh out of saturation
    with placed(name, device):
        if name.startswith("jax"):
            from jax_echo.compare import JaxTrainer

            trainer = JaxTrainer(cfg, params, remat=remat)
            memory = trainer.memory_bytes(*epoch_data(cfg, 0))
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
            xla_temp_bytes=memory,
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

    Both train only (no accuracy pass), on the same data and initial weights.
    """
    from jax_echo import make_optimizer
    from jax_echo.model import train_epoch
    from jax_echo.scale import train_population_epoch

    size = min(size, 16) if quick else size
    cfg = POPULATION_CFG
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
        losses = benchmark.pedantic(run, rounds=1 if quick else 3, iterations=1)
        record(
            benchmark,
            f"jax-population-{mode}",
            device,
            cfg,
            size * cfg.num_batches,
            population=size,
        )
    assert np.shape(losses) == (size, cfg.num_batches)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.benchmark(group="accuracy")
def test_accuracy(benchmark, quick, name, device):
    """Wall time from scratch (build, compile, train) to 99.9% accuracy after window 0.

    A first, untimed pass runs the whole tutorial (100 epochs) to find the epoch at which the
    accuracy on the windows after the first reaches 99.9% and the final accuracy; the timed call
    then trains a fresh model for exactly those epochs.
    """
    cfg = TINY if quick else TUTORIAL
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

        benchmark.pedantic(train_to_threshold, setup=jax.clear_caches, rounds=1 if quick else 3)
        record(
            benchmark,
            name,
            device,
            cfg,
            epochs * N,
            epochs_to_threshold=reached,
            final_accuracy=float(final.mean()),
            final_accuracy_after_first=float(final[1:].mean()),
        )
    if not quick:
        assert final[1:].mean() >= THRESHOLD
