"""The command line as users meet it: nothing changed or lost silently, advice that applies,
output for pipes and logs, errors that name the real problem, files others can read."""

import gc
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jax_echo import EchoConfig, bench, cli, commands, init_params, sweep, train
from jax_echo.cli import main
from jax_echo.io import (
    CHECKPOINT,
    LOCK,
    CheckpointError,
    OutputDirError,
    load_params,
    run_lock,
    save_params,
)
from jax_echo.runlog import Stopwatch

ROOT = Path(__file__).parent.parent
SMALL = ["--total-series-length", "1500", "--no-progress", "--quiet"]  # 20 windows an epoch


def history_of(out):
    return json.loads((Path(out) / "history.json").read_text())


# --- 1. Nothing changes or disappears silently ------------------------------------------------


def test_resume_continues_the_stored_config_and_refuses_a_change(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--epochs", "2", "--learning-rate", "0.1", *SMALL, "--out", out]) == 0
    capsys.readouterr()
    # No --epochs, no --learning-rate: the stored run's, not the command line's defaults.
    assert main(["train", *SMALL, "--out", out, "--resume"]) == 0
    record = history_of(out)
    assert record["config"]["num_epochs"] == 2 and record["config"]["learning_rate"] == 0.1
    assert len(record["history"]["loss"]) == 2
    capsys.readouterr()
    # An option that would change the run is refused, naming it; nothing is touched.
    before = (tmp_path / "run" / CHECKPOINT).read_bytes()
    for option in (["--learning-rate", "0.3"], ["--state-size", "5"], ["--part", "3"]):
        assert main(["train", *option, *SMALL, "--out", out, "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"--resume continues the run in {out}" in err and f"{option[0]} " in err, err
        assert err.count("\n") == 1
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == before
    # Going on longer is allowed, and said aloud; fewer epochs than done is refused.
    assert main(["train", "--epochs", "3", *SMALL, "--out", out, "--resume"]) == 0
    assert "Training to 3 epochs (the run was started for 2)" in capsys.readouterr().out
    assert len(history_of(out)["history"]["loss"]) == 3
    assert main(["train", "--epochs", "1", *SMALL, "--out", out, "--resume"]) == 2
    assert "--epochs 1 is fewer than the 3 epochs" in capsys.readouterr().err


SWEEP = ["sweep", "--epochs", "1", *SMALL[:2], "--seeds", "0", "--learning-rates", "0.1"]


def test_sweep_follows_trains_rules_for_its_output_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*SWEEP, "--no-progress"]) == 0
    (first,) = (tmp_path / "runs").iterdir()  # a new directory per run by default
    assert first.name.startswith("sweep-")
    assert sorted(p.name for p in first.iterdir()) == ["sweep.json", "sweep.md", "sweep.png"]
    capsys.readouterr()
    # A finished sweep's directory is replaced only with --overwrite.
    before = (first / "sweep.json").read_bytes()
    assert main([*SWEEP, "--seeds", "1", "--no-progress", "--out", str(first)]) == 2
    err = capsys.readouterr().err
    assert "holds a sweep's results" in err and "--overwrite" in err
    assert (first / "sweep.json").read_bytes() == before
    args = [*SWEEP, "--seeds", "1", "--no-progress", "--out", str(first), "--overwrite"]
    assert main(args) == 0
    assert [m["seed"] for m in json.loads((first / "sweep.json").read_text())["table"]] == [1]


def test_a_sweep_dying_midway_leaves_no_mix_of_old_and_new(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    assert main([*SWEEP, "--no-progress", "--out", str(out)]) == 0

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "fit_population", dies)
    assert main([*SWEEP, "--no-progress", "--out", str(out), "--overwrite"]) == 130
    assert sorted(p.name for p in out.iterdir()) == []  # the old results went first, whole


# --- 2. Interrupts -----------------------------------------------------------------------------


def interrupted_after(monkeypatch, epochs):
    """``train.run_epochs`` raises KeyboardInterrupt at the start of epoch ``epochs``."""
    real = train.epoch_data

    def data(cfg, epoch):
        if epoch == epochs:
            raise KeyboardInterrupt
        return real(cfg, epoch)

    monkeypatch.setattr(train, "epoch_data", data)


def test_ctrl_c_before_the_first_checkpoint_does_not_suggest_resume(tmp_path, monkeypatch, capsys):
    interrupted_after(monkeypatch, 0)
    out = str(tmp_path / "run")
    assert main(["train", "--epochs", "3", *SMALL, "--out", out]) == 130
    err = capsys.readouterr().err
    assert "interrupted; no checkpoint was written yet" in err and "--resume" not in err
    monkeypatch.undo()
    assert main(["train", "--epochs", "3", *SMALL, "--out", out]) == 0  # as the advice says


def test_ctrl_c_after_a_checkpoint_says_how_to_resume_and_that_works(tmp_path, monkeypatch, capsys):
    interrupted_after(monkeypatch, 1)  # the first epoch's checkpoint is on disk
    out = str(tmp_path / "run")
    assert main(["train", "--epochs", "4", *SMALL, "--out", out]) == 130
    err = capsys.readouterr().err
    assert f"rerun with --resume --out {out} to continue" in err and "(1 of 4 epochs" in err
    monkeypatch.undo()
    assert main(["train", *SMALL, "--out", out, "--resume"]) == 0
    assert len(history_of(out)["history"]["loss"]) == 4


def test_ctrl_c_in_sweep_gives_no_resume_advice(tmp_path, monkeypatch, capsys):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "fit_population", stopped)
    assert main([*SWEEP, "--no-progress", "--out", str(tmp_path / "s")]) == 130
    err = capsys.readouterr().err
    assert "sweep keeps no checkpoint" in err and "--resume" not in err


def test_a_sweep_stops_at_its_next_section_after_a_dropped_ctrl_c(tmp_path, monkeypatch, capsys):
    def fit_population(*args, timer, **kwargs):
        commands.CTRL_C.pressed = True  # as SIGINT's handler leaves it where a callback dropped it
        with timer("training"):
            raise AssertionError("the section should not start")

    monkeypatch.setattr(sweep, "fit_population", fit_population)
    assert main([*SWEEP, "--no-progress", "--out", str(tmp_path / "s")]) == 130
    assert "sweep keeps no checkpoint" in capsys.readouterr().err


def test_ctrl_c_in_bench_is_one_line_and_its_workers_say_nothing(monkeypatch, capsys):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run_worker", stopped)
    spec = json.dumps({"rows": ["jax-epoch"]})
    assert bench.main(["--worker", spec, "out.json"]) == 130
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(bench, "bench", stopped)
    assert main(["bench", "--impl", "jax-epoch", "--processes", "1"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted; its workers were stopped" in err


def test_a_ctrl_c_that_a_callback_dropped_stops_the_run_at_its_next_section(capsys):
    """Python prints a KeyboardInterrupt raised in a gc callback (JAX registers one) and drops
    it; the run's next timed section raises it again, so that Ctrl-C always stops a run."""

    def callback(phase, info):
        if phase == "start":
            signal.raise_signal(signal.SIGINT)  # handled in the callback's next instruction
            sum(range(10))

    def run(args):
        gc.callbacks.append(callback)
        try:
            gc.collect()  # the KeyboardInterrupt is raised and dropped in there
        finally:
            gc.callbacks.remove(callback)
        seen.append("went on")
        with commands.interruptible(Stopwatch().section)("training"):
            seen.append("trained")
        return 0

    seen = []
    assert commands.run_command("jax-echo", None, run) == 130
    assert seen == ["went on"]
    assert signal.getsignal(signal.SIGINT) is not commands.CTRL_C  # the handler was put back
    assert capsys.readouterr().err == "jax-echo: interrupted\n"  # no traceback of the dropped one


# --- 3. Pipes and logs -----------------------------------------------------------------------


def test_json_means_a_file_or_stdout_alone_in_every_command(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", *SMALL, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", "--params", str(out), "--json", "-"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["source"] == "params" and "accuracy" in printed.err
    assert main(["eval", "--params", str(out), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text()) == json.loads(printed.out)
    assert "accuracy" in capsys.readouterr().out  # the line, for people, where JSON is not
    for command in ("eval", "compare", "bench"):
        parser = cli.build_parser()
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--json"])  # --json always takes FILE (or -)
        assert "expected one argument" in capsys.readouterr().err


def test_a_log_gets_the_tutorials_lines_and_no_progress_bar(tmp_path):
    """stderr to a file, as a log: no carriage returns, no bar; the loss lines on stdout."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "jax_echo", "train", "--epochs", "2", *SMALL[:2]]
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\r" not in done.stdout and "epochs:" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["New data, epoch 0", "Step 0 Loss " + lines[1].split()[-1]]
    assert lines[-2].startswith("Done: 2 epochs") and lines[-1].startswith("Wrote ")


def test_tensorflows_start_up_noise_is_silenced_unless_asked_for(tmp_path):
    pytest.importorskip("tensorflow")
    cfg = EchoConfig(total_series_length=1500)
    save_params(tmp_path / "p.npz", init_params(cfg), cfg)
    command = [sys.executable, "-m", "tf_echo", "eval", "--params", str(tmp_path / "p.npz")]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert "accuracy" in quiet.stdout
    # A user's own level is respected: 0 shows TensorFlow's lines again.
    loud = subprocess.run(
        command, capture_output=True, text=True, env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"}
    )
    assert loud.returncode == 0 and loud.stderr != ""


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_jax_echo_running_tensorflow_prints_only_its_own_lines(tmp_path, command):
    # eval reading a TF checkpoint imports TensorFlow; compare in float64 runs TF's programs,
    # whose oneDNN pass logs "Not handling type DT_DOUBLE" once per op (hundreds of lines).
    pytest.importorskip("tensorflow")
    from jax_echo import params_to_tf_checkpoint

    cfg = EchoConfig(total_series_length=1500)
    params_to_tf_checkpoint(init_params(cfg), cfg, tmp_path / "model.ckpt")
    args = {
        "eval": ["eval", "--tf-checkpoint", str(tmp_path / "model.ckpt")],
        "compare": [
            "compare",
            "--float64",
            "--epochs",
            "1",
            "--windows",
            "4",
            "--impl",
            "tf-graph",
            "jax-epoch",
            "--total-series-length",
            "1500",
        ],
    }[command]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "jax_echo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert ("accuracy" if command == "eval" else "tf-graph") in done.stdout


# --- 4. Errors name the real problem ------------------------------------------------------------


def test_params_that_are_not_a_params_file_are_named_for_what_they_are(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", *SMALL, "--out", str(run)]) == 0
    (tmp_path / "notes.txt").write_text("some text\n")
    (tmp_path / "empty").mkdir()
    for path, message in (
        (tmp_path / "missing.npz", "missing.npz does not exist"),
        (tmp_path / "notes.txt", "notes.txt is not a params file: not an .npz (zip) archive"),
        (tmp_path / "empty", "empty is a directory without a params.npz"),
    ):
        capsys.readouterr()
        assert main(["eval", "--params", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert "pickle" not in err and "corrupt" not in err
    # A run's directory reads as its params.npz, a checkpoint as the weights it holds.
    params, cfg = load_params(run / "params.npz")
    for path in (run, run / CHECKPOINT):
        loaded, loaded_cfg = load_params(path)
        assert loaded_cfg == cfg
        pairs = zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True)
        assert all(np.array_equal(a, b) for a, b in pairs)
        assert main(["eval", "--params", str(path)]) == 0


def test_a_tf_checkpoint_option_naming_a_run_directory_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", *SMALL, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", "--tf-checkpoint", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a directory" in err, err


def test_bench_on_a_gpu_that_is_not_there_is_one_error_line(capsys):
    if jax.default_backend() == "gpu":
        pytest.skip("this machine has a GPU")
    assert main(["bench", "--device", "gpu", "--impl", "jax-epoch", "--processes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "jax-echo: error: --device gpu: JAX sees no GPU" in err


# --- 5. Files ------------------------------------------------------------------------------------


def test_files_get_the_umasks_permissions_and_the_lock_file_goes(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert main(["train", "--epochs", "1", *SMALL, "--out", str(out)]) == 0
        assert main([*SWEEP, "--no-progress", "--out", str(tmp_path / "sweep")]) == 0
        modes = {
            p.name: stat.S_IMODE(p.stat().st_mode)
            for p in [*out.iterdir(), *(tmp_path / "sweep").iterdir()]
        }
        assert modes == dict.fromkeys(modes, 0o644) and len(modes) == 8, modes
        os.umask(0o077)
        assert main(["train", "--epochs", "1", *SMALL, "--out", str(tmp_path / "private")]) == 0
        modes = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "private").iterdir()}
        assert modes == {0o600}
    finally:
        os.umask(old)
    assert not (out / LOCK).exists()


def test_the_lock_is_taken_once_and_a_second_take_is_refused(tmp_path):
    with run_lock(tmp_path):
        assert (tmp_path / LOCK).read_text() == str(os.getpid())
        with pytest.raises(OutputDirError, match=f"in use by another run \\(process {os.getpid()}"):
            with run_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK).exists()
    with run_lock(tmp_path):  # free again
        pass


def test_taking_the_lock_clears_a_killed_runs_temporary_files_and_directories(tmp_path):
    # atomic_write leaves a file, a TF checkpoint being written a directory (tf_checkpoint).
    (tmp_path / ".params.npz.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".model.ckpt.def456.tmp").mkdir()
    (tmp_path / ".model.ckpt.def456.tmp" / "model.ckpt.index").write_bytes(b"half")
    (tmp_path / "params.npz").write_bytes(b"kept")
    with run_lock(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK, "params.npz"]
    assert (tmp_path / "params.npz").read_bytes() == b"kept"


# --- 6. One set of timings; 7. the smaller items -----------------------------------------------


def test_one_set_of_timings_and_the_end_line_says_training_and_compiling_apart(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", *SMALL, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = history_of(out)
    assert not {"wall_seconds", "training_seconds", "compile_seconds"} & set(record)
    seconds = record["seconds"]
    line = next(s for s in printed.splitlines() if s.startswith("Done:"))
    assert line.startswith("Done: 1 epoch, ")
    assert f"{seconds['training']:.2f} s training, {seconds['compile']:.2f} s compiling" in line


def test_a_sweep_records_its_seconds_as_a_training_run_does(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main([*SWEEP, "--seeds", "0", "1", "--no-progress", "--out", str(out)]) == 0
    record = json.loads((out / "sweep.json").read_text())
    assert "wall_seconds" not in record
    seconds = record["seconds"]
    assert set(Stopwatch.KEYS) | {"other", "wall"} == set(seconds)
    assert seconds["training"] > 0 and seconds["compile"] > 0
    assert abs(sum(v for k, v in seconds.items() if k != "wall") - seconds["wall"]) < 1e-6
    assert record["compilations"] >= 1
    line = capsys.readouterr().out.splitlines()[-2]
    assert line == (
        f"Done: 2 members, {seconds['training']:.2f} s training, "
        f"{seconds['compile']:.2f} s compiling"
    )


def test_run_directories_are_named_by_part(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--part", "3", "--epochs", "1", *SMALL]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("part3-")


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["eval", "--params", "p.npz"], ["--epochs", "5"]),
        (["eval", "--params", "p.npz"], ["--learning-rate", "0.1"]),
        (["bench"], ["--epochs", "5"]),
    ],
)
def test_options_that_would_do_nothing_are_not_taken(command, option, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, *option])
    assert e.value.code == 2 and f"unrecognized arguments: {option[0]}" in capsys.readouterr().err


def test_refusals_name_the_command_lines_options_and_the_apis_arguments(tmp_path, capsys):
    cfg = EchoConfig(num_epochs=1, total_series_length=1500)
    train.fit(cfg, out_dir=tmp_path, quiet=True, progress=False)
    with pytest.raises(CheckpointError, match="pass overwrite=True to replace it") as e:
        train.fit(cfg, out_dir=tmp_path, quiet=True, progress=False)
    assert "--overwrite" not in str(e.value)
    assert main(["train", "--epochs", "1", *SMALL, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite to replace it" in err and "overwrite=True" not in err


def test_compare_in_float32_says_its_drift_is_expected_and_json_dash_is_stdout_alone(capsys):
    pytest.importorskip("tensorflow")
    args = ["--impl", "jax-epoch", "tf-graph", "--epochs", "1", "--windows", "2"]
    assert main(["compare", *args]) == 0
    assert "drift apart" in capsys.readouterr().out
    assert main(["compare", *args, "--json", "-"]) == 0
    printed = capsys.readouterr()
    assert set(json.loads(printed.out)["results"]) == {"jax-epoch", "tf-graph"}
    assert "| jax-epoch |" in printed.err and "drift apart" in printed.err


NO_JAX = """
import sys
from jax_echo import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
assert "jax" not in sys.modules, "JAX was imported"
"""


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["train", "--epochs", "x"]])
def test_help_and_a_mistyped_option_answer_without_importing_jax(argv):
    done = subprocess.run([sys.executable, "-c", NO_JAX, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage: jax-echo" in done.stdout + done.stderr


def test_the_packages_names_load_with_their_module():
    import jax_echo

    assert jax_echo.fit is train.fit and "fit" in dir(jax_echo)
    assert all(getattr(jax_echo, name) is not None for name in jax_echo.__all__)
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        jax_echo.fitt  # noqa: B018


# --- 9. The current stack ----------------------------------------------------------------------


def test_make_picks_the_newest_supported_python_with_an_environment_each():
    """``make`` takes the newest supported Python it finds (at least the one running this test,
    a supported one) unless PYTHON= says, each in its own .venv-3.X."""
    if subprocess.run(["make", "--version"], capture_output=True).returncode != 0:
        pytest.skip("no make")

    def picked(*args):
        done = subprocess.run(
            ["make", "-s", "python", *args], capture_output=True, text=True, cwd=ROOT
        )
        assert done.returncode == 0, done.stderr
        python, version, venv = done.stdout.split()
        return python, tuple(map(int, version.split("."))), venv

    here = sys.version_info[:2]
    assert picked(f"PYTHON={sys.executable}")[1:] == (here, f".venv-{here[0]}.{here[1]}")
    _, newest, venv = picked()
    assert newest >= here and venv == f".venv-{newest[0]}.{newest[1]}"
    assert newest in {(3, 11), (3, 12), (3, 13)}
