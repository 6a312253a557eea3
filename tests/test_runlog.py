"""The run machinery: compile counts, the wall-time breakdown, run directories."""

import jax
import jax.numpy as jnp

from jax_echo import runlog


def test_compile_log_counts_inside_its_block_only():
    """Its jax.monitoring listeners go with the block: a test session of many runs does not
    pile them up, and nothing is counted after it."""
    x, y = jnp.ones(7), jnp.ones(9)
    with runlog.CompileLog() as log:
        jax.jit(lambda x: x * 3.0 + 1)(x)
    assert log.compilations == 1 and log.seconds > 0
    jax.jit(lambda x: x * 5.0 - 2)(y)
    assert log.compilations == 1


def test_the_stopwatch_sections_sum_to_the_wall_time():
    with runlog.CompileLog() as log:
        watch = runlog.Stopwatch(log)
        with watch.section("training"):
            jax.jit(lambda x: jnp.tanh(x) * 2)(jnp.ones(5)).block_until_ready()
    seconds = watch.seconds()
    assert seconds["compile"] > 0 and seconds["training"] >= 0
    parts = sum(v for k, v in seconds.items() if k != "wall")
    assert abs(parts - seconds["wall"]) < 1e-9


def test_each_new_run_directory_is_new(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = runlog.new_run_dir()
    first.mkdir(parents=True)
    second = runlog.new_run_dir()
    assert second != first and not second.exists()
    assert first.parent == second.parent == tmp_path.joinpath("runs").relative_to(tmp_path)
