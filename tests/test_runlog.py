"""The run machinery: compile counts, the wall-time breakdown, run directories."""

import threading

import jax
import jax.numpy as jnp

from jax_echo import arguments, runlog


def test_compile_log_counts_inside_its_block_only():
    """Its jax.monitoring listeners go with the block: a test session of many runs does not
    pile them up, and nothing is counted after it."""
    x, y = jnp.ones(7), jnp.ones(9)
    with runlog.CompileLog() as log:
        jax.jit(lambda x: x * 3.0 + 1)(x)
    assert log.compilations == 1 and log.seconds > 0
    jax.jit(lambda x: x * 5.0 - 2)(y)
    assert log.compilations == 1


def test_a_program_compiled_on_another_thread_is_counted_but_not_its_seconds():
    """train.jax_verbs compiles the accuracy program beside the first epoch's: its seconds
    overlap the run's own, and taking them off a section would leave that section short."""
    x = jnp.ones(6)
    with runlog.CompileLog() as log:
        ahead = threading.Thread(target=jax.jit(lambda x: jnp.sin(x) * 4.0), args=(x,))
        ahead.start()
        ahead.join()
    assert log.compilations == 1 and log.seconds == 0.0


def test_a_jax_run_compiles_its_accuracy_program_off_its_own_thread():
    from jax_echo import EchoConfig, train

    threads = []

    def seen(event: str, seconds: float, **kwargs) -> None:
        if event == runlog.CompileLog.STEPS[-1]:
            threads.append(threading.current_thread() is threading.main_thread())

    cfg = EchoConfig(num_epochs=1, total_series_length=1500, state_size=7)  # not compiled before
    jax.monitoring.register_event_duration_secs_listener(seen)
    try:
        train.fit(cfg, quiet=True, progress=False)
    finally:
        jax.monitoring.unregister_event_duration_listener(seen)
    # This thread: the optimizer's state and the epoch; another: the accuracy pass's program.
    assert sorted(threads) == [False, True, True]


def test_each_new_run_directory_is_new(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = arguments.new_run_dir()
    first.mkdir(parents=True)
    second = arguments.new_run_dir()
    assert second != first and not second.exists()
    assert first.parent == second.parent == tmp_path.joinpath("runs").relative_to(tmp_path)


# tf-echo in a process in which TensorFlow cannot be imported (as on a machine without the tf
# extra) when its first argument is "without-tf"; it says whether TensorFlow was loaded.
TF_ECHO = """
import sys
class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("No module named 'tensorflow'")
if sys.argv.pop(1) == "without-tf":
    sys.meta_path.insert(0, NoTensorFlow())
from tf_echo.cli import main
sys.argv[0] = "tf-echo"
try:
    code = main(sys.argv[1:])
finally:
    print("tensorflow loaded:", "tensorflow" in sys.modules)
raise SystemExit(code)
"""


def test_tf_echo_without_tensorflow_is_one_line_naming_the_extra(tmp_path):
    import subprocess
    import sys

    def tf_echo(*args):
        command = [sys.executable, "-c", TF_ECHO, *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)

    for tf in ("with-tf", "without-tf"):  # --help does not wait for TensorFlow either way
        helped = tf_echo(tf, "train", "--help")
        assert helped.returncode == 0 and "--impl" in helped.stdout
        assert "tensorflow loaded: False" in helped.stdout
    failed = tf_echo("without-tf", "train", "--epochs", "1", "--out", str(tmp_path / "run"))
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.count("\n") == 1
    assert "tf-echo: error: TensorFlow is not installed" in failed.stderr
    assert "pip install 'jax-echo[tf]'" in failed.stderr
