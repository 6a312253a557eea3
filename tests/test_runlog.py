"""The run machinery: compile counts, the wall-time breakdown, run directories."""

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
