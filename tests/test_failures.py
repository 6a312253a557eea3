"""Failure paths with real processes: kill -9, Ctrl-C, unwritable and busy output directories,
and several processes that do not share a filesystem. Every subprocess is cleaned up."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jax_echo import EchoConfig, init_params, make_optimizer
from jax_echo.cli import main
from jax_echo.io import CHECKPOINT, HISTORY, LOCK, load_checkpoint, load_params

ROOT = Path(__file__).parent.parent
# Six epochs of 20 windows: long enough to be killed in the middle, short enough for a test.
RUN = ["--epochs", "6", "--total-series-length", "1500", "--no-progress", "--quiet"]


@contextlib.contextmanager
def started(*args, **kwargs):
    """A subprocess that is killed, whatever happens, when the block ends."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def run(*args, timeout=300):
    with started(*args) as proc:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err


def wait_for(condition, proc, timeout=120):
    t0 = time.monotonic()
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.05)


def assert_same_params(a, b, rtol=0.0):
    """The params files ``a`` and ``b`` hold the same arrays (bit for bit by default)."""
    pairs = zip(jax.tree.leaves(load_params(a)[0]), jax.tree.leaves(load_params(b)[0]), strict=True)
    for x, y in pairs:
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol)


@pytest.mark.parametrize(
    ("module", "extra", "kills"),
    [
        ("jax_echo", ["--part", "3"], 3),
        pytest.param(
            "tf_echo", ["--impl", "function-epoch"], 2, id="tf_echo", marks=pytest.mark.slow
        ),
    ],
    ids=["jax_echo", "tf_echo"],
)
def test_kill_9_at_random_moments_then_resume_is_bit_identical(tmp_path, module, extra, kills):
    if module == "tf_echo":
        pytest.importorskip("tensorflow")
    cmd = ["-m", module, "train", *extra, *RUN]
    t0 = time.monotonic()
    code, _, err = run(*cmd, "--out", str(tmp_path / "whole"))
    assert code == 0, err
    duration = time.monotonic() - t0
    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    for _ in range(kills):
        resume = ["--resume"] if (out / CHECKPOINT).exists() else []
        with started(*cmd, "--out", str(out), *resume) as proc:
            time.sleep(rng.uniform(0.3, 1.0) * duration)
            proc.send_signal(signal.SIGKILL)
    while True:  # finish, as a user would: resume while there is a checkpoint
        resume = ["--resume"] if (out / CHECKPOINT).exists() else []
        code, _, err = run(*cmd, "--out", str(out), *resume)
        assert code == 0, err
        if (out / "params.npz").exists():
            break
    assert_same_run(tmp_path / "whole", out)
    whole = json.loads((tmp_path / "whole" / "history.json").read_text())["history"]
    assert history_losses(out / HISTORY) == whole["loss"]


TIMINGS = ("seconds", "compilations", "compile_cache_hits")  # history.json's, per process


def without_timings(record):
    """A history.json record or history.jsonl line without what differs from run to run."""
    record = {k: v for k, v in record.items() if k not in TIMINGS}
    if "history" in record:
        record["history"] = without_timings(record["history"])
    record.pop("epoch_seconds", None)
    return record


def assert_same_run(whole, other):
    """The run directory ``other`` holds what the uninterrupted run's ``whole`` does: the same
    files (no temporary file or lock left behind), the same params and config bit for bit, the
    same optimizer state in the checkpoint, and the same history but for its timings."""
    names = sorted(p.name for p in Path(other).iterdir())
    assert names == sorted(p.name for p in Path(whole).iterdir()), names
    assert not [n for n in names if n.endswith(".tmp") or n == LOCK], names
    assert_same_params(whole / "params.npz", other / "params.npz")
    assert load_params(whole / "params.npz")[1] == load_params(other / "params.npz")[1]
    records = [json.loads((d / "history.json").read_text()) for d in (whole, other)]
    assert without_timings(records[1]) == without_timings(records[0])
    lines = [(d / HISTORY).read_text().splitlines() for d in (whole, other)]
    assert [without_timings(json.loads(x)) for x in lines[1]] == [
        without_timings(json.loads(x)) for x in lines[0]
    ]
    with np.load(whole / CHECKPOINT) as a, np.load(other / CHECKPOINT) as b:
        assert a.files == b.files
        for key in a.files:
            if key != "meta":  # its history mark covers the timings too
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        meta = [json.loads(str(f["meta"])) for f in (a, b)]
    assert meta[1]["config"] == meta[0]["config"]
    assert meta[1]["history"]["epochs"] == meta[0]["history"]["epochs"]


def history_losses(path):
    """The per-epoch losses of a history file, checking it has each epoch once, in order."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == list(range(len(lines)))
    return [line["loss"] for line in lines]


# Dies (exit code 9, no cleanup) as run_epochs is about to save the checkpoint of the last epoch:
# every epoch's history line is on disk, the checkpoint has fewer epochs (1 if the run takes
# under the second between checkpoints).
DIE_BEFORE_THE_LAST_CHECKPOINT = """
import os, sys
from jax_echo import train
from jax_echo.cli import main

def save_checkpoint(path, cfg, params, opt_state, mark, implementation):
    if mark.epochs == cfg.num_epochs:
        os._exit(9)
    save(path, cfg, params, opt_state, mark, implementation)

save, train.save_checkpoint = train.save_checkpoint, save_checkpoint
sys.exit(main(sys.argv[1:]))
"""


def test_a_death_between_the_history_line_and_the_checkpoint_then_resume_is_bit_identical(
    tmp_path,
):
    run_args = ["train", "--part", "3", *RUN]
    assert main([*run_args, "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "died"
    code, _, err = run("-c", DIE_BEFORE_THE_LAST_CHECKPOINT, *run_args, "--out", str(out))
    assert code == 9, err
    assert len(history_losses(out / HISTORY)) == 6
    cfg = EchoConfig.for_part(3, num_epochs=6, total_series_length=1500)
    like = make_optimizer(cfg).init(init_params(cfg))
    assert 1 <= len(load_checkpoint(out / CHECKPOINT, cfg, like, "jax")[2]["loss"]) < 6
    assert main([*run_args, "--out", str(out), "--resume"]) == 0
    assert_same_run(tmp_path / "whole", out)
    whole = json.loads((tmp_path / "whole" / "history.json").read_text())["history"]
    assert history_losses(out / HISTORY) == whole["loss"]


def test_ctrl_c_keeps_the_last_checkpoint_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    cmd = ["-m", "jax_echo", "train", *RUN, "--epochs", "100000", "--out", str(out)]
    with started(*cmd) as proc:
        wait_for(lambda: (out / CHECKPOINT).exists(), proc)
        time.sleep(1.0)  # in the middle of training, past compilation and the first files
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.count("\n") == 1, err  # one line: no traceback
    assert f"interrupted; rerun with --resume --out {out} to continue" in err
    # The checkpoint is whole; the run resumes from it, and ends as one never interrupted.
    cfg = EchoConfig(num_epochs=100000, total_series_length=1500)
    like = make_optimizer(cfg).init(init_params(cfg))
    _, _, history = load_checkpoint(out / CHECKPOINT, cfg, like, "jax")
    done = len(history["loss"])
    assert 1 <= done < 100000 and f"({done} of 100000 epochs done)" in err
    assert main(["train", *RUN, "--epochs", str(done + 1), "--out", str(out), "--resume"]) == 0
    assert main(["train", *RUN, "--epochs", str(done + 1), "--out", str(tmp_path / "whole")]) == 0
    assert_same_run(tmp_path / "whole", out)


def test_an_output_directory_that_cannot_be_written_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["train", *RUN, "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert f"output directory {blocker / 'run'} cannot be written" in err
    assert err.count("\n") == 1 and not (blocker / "run").exists()
    with read_only_directory(tmp_path) as locked:
        before = sorted(locked.iterdir())
        assert main(["train", *RUN, "--out", str(locked)]) == 2
        err = capsys.readouterr().err
        assert f"output directory {locked} cannot be written" in err and err.count("\n") == 1
        assert sorted(locked.iterdir()) == before  # nothing written, nothing trained


@contextlib.contextmanager
def read_only_directory(tmp_path):
    """A directory that cannot be written, also by root (as CI runs): mode 0555 for a user;
    for root, who writes anywhere, the immutable attribute (``chattr +i``) where the filesystem
    has it, else sysfs, which no one can add a file to."""
    path = tmp_path / "readonly"
    path.mkdir(mode=0o555)
    if os.geteuid() != 0:
        yield path
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        yield Path("/sys")
        return
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_second_run_on_a_busy_directory_is_refused_and_a_killed_run_frees_it(tmp_path, capsys):
    out = tmp_path / "run"
    cmd = ["-m", "jax_echo", "train", *RUN, "--epochs", "100000", "--out", str(out)]
    with started(*cmd) as proc:
        wait_for(lambda: (out / CHECKPOINT).exists(), proc)
        assert main(["train", *RUN, "--out", str(out), "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"is in use by another run (process {proc.pid})" in err
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The kernel released the dead run's lock (its file stays: the run could not remove it);
    # resuming works and ends as a run never interrupted.
    assert (out / LOCK).exists()
    cfg = EchoConfig(num_epochs=100000, total_series_length=1500)
    like = make_optimizer(cfg).init(init_params(cfg))
    done = len(load_checkpoint(out / CHECKPOINT, cfg, like, "jax")[2]["loss"])
    assert main(["train", *RUN, "--out", str(out), "--resume", "--epochs", str(done + 1)]) == 0
    assert main(["train", *RUN, "--epochs", str(done + 1), "--out", str(tmp_path / "whole")]) == 0
    assert_same_run(tmp_path / "whole", out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_processes(common, outs):
    port = free_port()
    coordinator = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id"]
    procs = [
        ["-m", "jax_echo", "train", *common, "--out", str(outs[i]), *coordinator, str(i)]
        for i in range(2)
    ]
    with started(*procs[0]) as p0, started(*procs[1]) as p1:
        results = [p.communicate(timeout=240) for p in (p0, p1)]
        return [p0.returncode, p1.returncode], results


@pytest.mark.slow  # two processes, twice (about 20 s)
def test_processes_resume_from_the_checkpoint_only_process_0_sees(tmp_path):
    common = ["--batch-size", "4", "--total-series-length", "1200", "--no-progress", "--quiet"]
    assert main(["train", "--epochs", "2", *common, "--out", str(tmp_path / "single")]) == 0
    shared = tmp_path / "process0"  # process 1 gets an empty directory of its own
    assert main(["train", "--epochs", "1", *common, "--out", str(shared)]) == 0
    # Resuming continues the stored run's config, which only process 0 sees (the command line
    # gives no --batch-size: the default would not divide over the two processes).
    codes, outputs = two_processes(
        ["--epochs", "2", "--resume", "--no-progress", "--quiet"], [shared, tmp_path / "process1"]
    )
    assert codes == [0, 0], outputs
    # Sharded gradients are summed in another order: equal to rounding.
    assert_same_params(tmp_path / "single" / "params.npz", shared / "params.npz", rtol=1e-5)
    # Where process 0 sees no checkpoint, every process fails with its message: no hang.
    codes, outputs = two_processes(
        ["--epochs", "2", "--resume", *common], [tmp_path / "none", shared]
    )
    assert codes == [2, 2], outputs
    for _, err in outputs:
        assert "cannot resume: no checkpoint" in err
