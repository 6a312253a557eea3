"""The training run: convergence, determinism, checkpoints, resumption, errors and the CLI."""

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest

from jax_echo import EchoConfig, Params, init_params, make_optimizer, model, params_to_dict
from jax_echo import train as train_module
from jax_echo.arguments import config_from_args
from jax_echo.cli import build_parser, main
from jax_echo.evaluate import evaluate_params_file
from jax_echo.io import (
    CHECKPOINT,
    HISTORY,
    CheckpointError,
    HistoryMark,
    load_checkpoint,
    load_params,
    save_checkpoint,
    save_params,
)
from jax_echo.train import TrainingDivergedError, fit


def assert_same_params(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def opt_like(cfg):
    return make_optimizer(cfg).init(init_params(cfg))


def test_tutorial_config_learns_the_echo():
    # The tutorial's config, shortened to 4 epochs: the echo is learned in the second.
    cfg = EchoConfig(num_epochs=4)
    _, history = fit(cfg, quiet=True, progress=False)
    assert len(history["loss"]) == 4 and all(len(e) == 666 for e in history["loss"])
    assert history["accuracy_after_first"][-1] >= 0.999
    assert history["accuracy"][0] < 0.6  # the first epoch starts from chance
    first, last = np.mean(history["loss"][0][:50]), np.mean(history["loss"][-1][1:])
    assert first > 0.6 and last < 0.01
    # The tutorial's spike: the first window of each epoch is the hardest.
    assert history["loss"][-1][0] > 10 * np.median(history["loss"][-1])


def test_same_seed_same_numbers_other_seed_other_numbers(small_cfg):
    p1, h1 = fit(small_cfg, quiet=True, progress=False)
    p2, h2 = fit(small_cfg, quiet=True, progress=False)
    _, h3 = fit(dataclasses.replace(small_cfg, seed=1), quiet=True, progress=False)
    assert h1["loss"] == h2["loss"]
    assert_same_params(p1, p2)
    assert h1["loss"] != h3["loss"]


def test_fit_prints_the_tutorials_lines(capsys):
    _, history = fit(EchoConfig(num_epochs=1, total_series_length=15000), progress=False)
    out = capsys.readouterr().out.splitlines()
    assert out == [  # 200 windows: a loss line every 100
        "New data, epoch 0",
        f"Step 0 Loss {history['loss'][0][0]:.6f}",
        f"Step 100 Loss {history['loss'][0][100]:.6f}",
    ]


@pytest.mark.parametrize("part", [1, 3, 6])
def test_resume_equals_an_uninterrupted_run(part, tmp_path):
    cfg = EchoConfig.for_part(part, num_epochs=3, total_series_length=1500)
    full, full_history = fit(cfg, out_dir=tmp_path / "full", quiet=True, progress=False)
    part_dir = tmp_path / "part"
    first = dataclasses.replace(cfg, num_epochs=1)
    fit(first, out_dir=part_dir, quiet=True, progress=False)
    resumed, history = fit(cfg, out_dir=part_dir, resume=True, quiet=True, progress=False)
    assert_same_params(full, resumed)
    assert history["loss"] == full_history["loss"]


def history_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.parametrize(("every", "saved"), [(0, [1, 2, 3]), (float("inf"), [1, 3])])
def test_the_history_grows_by_one_line_per_epoch_and_checkpoints_cover_it(
    every, saved, small_cfg, tmp_path, monkeypatch
):
    seen = []  # (the history file, the mark) as each checkpoint is saved

    def save(path, cfg, params, opt_state, mark, implementation):
        seen.append(((tmp_path / HISTORY).read_bytes(), mark))
        save_checkpoint(path, cfg, params, opt_state, mark, implementation)

    monkeypatch.setattr(train_module, "save_checkpoint", save)
    _, history = fit(
        small_cfg, out_dir=tmp_path, quiet=True, progress=False, checkpoint_seconds=every
    )
    # After the first and the last epoch, and others as often as checkpoint_seconds allows.
    assert [mark.epochs for _, mark in seen] == saved
    for (before, a), (after, b) in itertools.pairwise(seen):  # append-only
        assert after.startswith(before)
        assert after.count(b"\n") == before.count(b"\n") + b.epochs - a.epochs
    for data, mark in seen:  # each line is in the file before the checkpoint that covers it
        assert mark == HistoryMark(mark.epochs, len(data), zlib.crc32(data))
    lines = history_lines(tmp_path / HISTORY)
    assert [line["epoch"] for line in lines] == [0, 1, 2]
    assert [line["loss"] for line in lines] == history["loss"]
    loaded = load_checkpoint(tmp_path / CHECKPOINT, small_cfg, opt_like(small_cfg), "jax")
    assert loaded[2] == history


class Crash(BaseException):
    """The process dying: nothing after it runs."""


@pytest.mark.parametrize(
    ("part", "every", "crash_at", "done"),
    [(1, 0, 3, 2), (6, 0, 3, 2), (1, float("inf"), 4, 1)],
    ids=["part1-every-epoch", "part6-every-epoch", "part1-first-and-last"],
)
def test_resume_after_a_crash_between_the_history_and_the_checkpoint(
    part, every, crash_at, done, tmp_path, monkeypatch
):
    cfg = EchoConfig.for_part(part, num_epochs=4, total_series_length=1500)
    full, full_history = fit(cfg, out_dir=tmp_path / "full", quiet=True, progress=False)
    out = tmp_path / "crashed"

    def crash(path, cfg, params, opt_state, mark, implementation):
        if mark.epochs == crash_at:
            raise Crash
        save_checkpoint(path, cfg, params, opt_state, mark, implementation)

    monkeypatch.setattr(train_module, "save_checkpoint", crash)
    with pytest.raises(Crash):
        fit(cfg, out_dir=out, quiet=True, progress=False, checkpoint_seconds=every)
    monkeypatch.undo()
    # The history has the lines of crash_at epochs, the checkpoint covers done: the rest go.
    assert len(history_lines(out / HISTORY)) == crash_at
    assert len(load_checkpoint(out / CHECKPOINT, cfg, opt_like(cfg), "jax")[2]["loss"]) == done
    resumed, history = fit(cfg, out_dir=out, resume=True, quiet=True, progress=False)
    assert_same_params(full, resumed)
    assert history["loss"] == full_history["loss"]
    lines = history_lines(out / HISTORY)
    assert [line["epoch"] for line in lines] == [0, 1, 2, 3]
    assert [line["loss"] for line in lines] == full_history["loss"]


def test_a_missing_short_different_or_corrupt_history_is_refused(small_cfg, tmp_path):
    cfg = dataclasses.replace(small_cfg, num_epochs=2)
    fit(cfg, out_dir=tmp_path, quiet=True, progress=False)
    path, like = tmp_path / HISTORY, opt_like(small_cfg)
    good = path.read_bytes()

    def refused(match):
        with pytest.raises(CheckpointError, match=match):
            fit(small_cfg, out_dir=tmp_path, resume=True, quiet=True, progress=False)

    path.unlink()
    refused(f"{HISTORY} is missing: .* covers 2 epochs")
    path.write_bytes(good[:-10])
    refused(f"{HISTORY} has {len(good) - 10} bytes, fewer than the {len(good)} of the 2 epochs")
    assert path.read_bytes() == good[:-10]  # left for the user to inspect
    path.write_bytes(good.replace(b'"epoch": 1', b'"epoch": 7'))
    refused(f"{HISTORY} does not match the checkpoint: its first 2 epochs differ")
    # Lines past the checkpoint's (a crash before it was replaced) are no error.
    path.write_bytes(good + b'{"epoch": 2, "loss": [')
    _, _, history = load_checkpoint(tmp_path / CHECKPOINT, small_cfg, like, "jax")
    assert len(history["loss"]) == 2
    # A checkpoint that covers a corrupt line (written by something else than run_epochs).
    params = init_params(small_cfg)
    for bad, match in [
        (b"not json\n", "line 1, is corrupt"),
        (b'{"epoch": 1, "loss": []}\n', "line 1, is corrupt: .*out of order"),
    ]:
        path.write_bytes(bad)
        mark = HistoryMark(1, len(bad), zlib.crc32(bad))
        save_checkpoint(tmp_path / CHECKPOINT, small_cfg, params, like, mark, "jax")
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(tmp_path / CHECKPOINT, small_cfg, like, "jax")


def test_checkpoint_is_never_silently_overwritten(tmp_path):
    cfg = EchoConfig(num_epochs=1, total_series_length=7500)
    fit(cfg, out_dir=tmp_path, quiet=True, progress=False)
    before = (tmp_path / CHECKPOINT).read_bytes()
    history = (tmp_path / HISTORY).read_bytes()
    with pytest.raises(CheckpointError, match=r"holds a finished run \(1 epochs\): pass overwrite"):
        fit(cfg, out_dir=tmp_path, quiet=True, progress=False)
    with pytest.raises(CheckpointError, match="another configuration .*state_size: saved 4, now 8"):
        fit(
            dataclasses.replace(cfg, state_size=8),
            out_dir=tmp_path,
            resume=True,
            quiet=True,
            progress=False,
        )
    with pytest.raises(CheckpointError, match="another configuration .*cell: saved 'tutorial'"):
        fit(EchoConfig.for_part(3, num_epochs=1, total_series_length=7500), out_dir=tmp_path,
            resume=True, quiet=True, progress=False)  # fmt: skip
    with pytest.raises(CheckpointError, match="cannot resume: no checkpoint"):
        fit(cfg, out_dir=tmp_path / "empty", resume=True, quiet=True, progress=False)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    assert (tmp_path / HISTORY).read_bytes() == history


def test_corrupt_or_foreign_checkpoint_is_refused(small_cfg, tmp_path):
    cfg = dataclasses.replace(small_cfg, num_epochs=1)
    fit(cfg, out_dir=tmp_path, quiet=True, progress=False)
    path = tmp_path / CHECKPOINT
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="is a corrupt .npz file"):
        fit(small_cfg, out_dir=tmp_path, resume=True, quiet=True, progress=False)
    assert path.read_bytes() == good[: len(good) // 2]  # left for the user to inspect
    path.write_bytes(good)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    like = opt_like(small_cfg)
    # Another implementation's checkpoint.
    with pytest.raises(CheckpointError, match="written by jax, not tf-graph"):
        load_checkpoint(path, small_cfg, like, "tf-graph")
    # Wrong shapes inside a well-formed file.
    np.savez(path, **{**arrays, "params/W": arrays["params/W"][:2]})
    with pytest.raises(CheckpointError, match=r"params\['W'\] has shape \(2, 4\), expected"):
        load_checkpoint(path, small_cfg, like, "jax")
    # An optimizer state of another structure (another optimizer's).
    foreign = {k: v for k, v in arrays.items() if not k.startswith("opt_state")}
    np.savez(path, **foreign)
    with pytest.raises(CheckpointError, match="optimizer state opt_state.* is missing"):
        load_checkpoint(path, small_cfg, like, "jax")
    np.savez(path, **{k: v for k, v in arrays.items() if k != "meta"})
    with pytest.raises(CheckpointError, match="not a valid checkpoint"):
        load_checkpoint(path, small_cfg, like, "jax")


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(small_cfg, tmp_path, monkeypatch):
    clean = train_module.epoch_data

    def poisoned(cfg, epoch):
        x, y = clean(cfg, epoch)
        if epoch == 1:
            x[2, 40] = np.nan
        return x, y

    monkeypatch.setattr(train_module, "epoch_data", poisoned)
    with pytest.raises(TrainingDivergedError, match="epoch 1, window 2 is nan"):
        fit(small_cfg, out_dir=tmp_path, quiet=True, progress=False)
    params, _, history = load_checkpoint(
        tmp_path / CHECKPOINT, small_cfg, opt_like(small_cfg), "jax"
    )
    assert len(history["loss"]) == 1
    assert all(np.isfinite(p).all() for p in jax.tree.leaves(params))


@pytest.mark.parametrize("part", [1, 4])
def test_params_file_round_trip_and_errors(part, tmp_path):
    cfg = EchoConfig.for_part(part, state_size=6)
    params = init_params(cfg)
    save_params(tmp_path / "p.npz", params, cfg)
    loaded, loaded_cfg = load_params(tmp_path / "p.npz")
    assert loaded_cfg == cfg and isinstance(loaded, Params)
    assert_same_params(params, loaded)
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="bad.npz is not a params file: not an .npz"):
        load_params(tmp_path / "bad.npz")
    flat = {f"params/{k}": v for k, v in params_to_dict(params).items()}
    np.savez(tmp_path / "noconfig.npz", **flat)
    with pytest.raises(CheckpointError, match="noconfig.npz is not a params file: it has no valid"):
        load_params(tmp_path / "noconfig.npz")
    config = np.array(json.dumps(cfg.to_dict()))
    np.savez(tmp_path / "shape.npz", **{**flat, "params/W2": np.zeros((3, 2))}, config=config)
    with pytest.raises(CheckpointError, match=r"params\['W2'\] has shape \(3, 2\)"):
        load_params(tmp_path / "shape.npz")
    # One cell's weights under another cell's config.
    gru = EchoConfig(cell="gru", state_size=6)
    np.savez(tmp_path / "cell.npz", **flat, config=np.array(json.dumps(gru.to_dict())))
    with pytest.raises(CheckpointError, match="cell.npz: params are missing .*a gru model"):
        load_params(tmp_path / "cell.npz")


def test_cli_train_writes_its_three_files_and_eval_reads_them(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--epochs",
        "2",
        "--total-series-length",
        "7500",
        "--state-size",
        "4",
        "--out",
        str(out),
        "--no-progress",
        "--quiet",
    ]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["params.npz", "history.json", "echo.png", CHECKPOINT, HISTORY]
    )  # the lock file is removed when the run ends
    record = json.loads((out / "history.json").read_text())
    assert record["config"] == EchoConfig(num_epochs=2, total_series_length=7500).to_dict()
    assert len(record["history"]["loss"]) == 2 and len(record["history"]["loss"][0]) == 100
    assert record["implementation"] == "jax" and record["jax_version"] and record["device"]
    assert_breakdown(record)
    assert (out / "echo.png").read_bytes()[:4] == b"\x89PNG"
    params, _ = load_params(out / "params.npz")
    assert isinstance(params, Params)
    capsys.readouterr()

    assert main(["eval", "--params", str(out / "params.npz"), "--json", "-"]) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out)  # stdout holds the JSON alone; the line goes to stderr
    assert "accuracy" in printed.err and 0 <= result["accuracy"] <= 1
    assert result["params"] == str(out / "params.npz")
    assert (result["source"], result["implementation"]) == ("params", "jax")

    # Running again into the same directory is refused, saying what to pass; --resume with more
    # epochs continues the run; --overwrite replaces a finished one.
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a finished run (2 epochs): pass --overwrite" in err
    assert main([*args[:2], "3", *args[3:], "--resume"]) == 0
    record = json.loads((out / "history.json").read_text())
    assert len(record["history"]["loss"]) == 3
    assert main([*args, "--overwrite"]) == 0
    record = json.loads((out / "history.json").read_text())
    assert len(record["history"]["loss"]) == 2
    assert len((out / HISTORY).read_text().splitlines()) == 2


def test_an_unfinished_run_is_never_overwritten(small_cfg, tmp_path, monkeypatch):
    cfg = dataclasses.replace(small_cfg, num_epochs=3)
    real = model.train_epoch
    calls = []

    def dies_in_epoch_1(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "train_epoch", dies_in_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, out_dir=tmp_path, quiet=True, progress=False)
    monkeypatch.undo()
    before = (tmp_path / CHECKPOINT).read_bytes()
    for overwrite in (False, True):
        with pytest.raises(CheckpointError, match=r"unfinished run \(1 of 3 .*: pass resume=True"):
            fit(cfg, out_dir=tmp_path, overwrite=overwrite, quiet=True, progress=False)
    assert (tmp_path / CHECKPOINT).read_bytes() == before


def test_two_runs_in_a_row_with_the_default_output_both_succeed(tmp_path, monkeypatch, capsys):
    """Each run gets a new directory under runs/; --resume must name the one to continue."""
    monkeypatch.chdir(tmp_path)
    args = ["train", "--epochs", "2", "--total-series-length", "1500", "--no-progress"]
    assert main([*args, "--quiet"]) == 0
    assert main([*args, "--quiet"]) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all((r / "history.json").exists() for r in runs)
    assert all(r.name.startswith("part1-") for r in runs)
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    assert "--resume needs --out DIR" in capsys.readouterr().err


def test_the_compare_help_shows_its_own_default_epochs(capsys):
    """Whatever argparse's layout (Python 3.13 prints aliases differently): the epochs are the
    only option with a default of compare's own, and the tutorial's 100 is not shown."""
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default 3)" in text and "(tutorial default 100)" not in text
    assert config_from_args(build_parser().parse_args(["compare"])).num_epochs == 3


def test_cli_part_and_cell_options(tmp_path, capsys):
    small = ["--total-series-length", "1500", "--no-progress", "--quiet"]
    out = tmp_path / "part6"
    assert main(["train", "--part", "6", "--epochs", "1", *small, "--out", str(out)]) == 0
    record = json.loads((out / "history.json").read_text())
    assert (
        record["config"] == EchoConfig.for_part(6, num_epochs=1, total_series_length=1500).to_dict()
    )
    # Options override the part's values.
    out = tmp_path / "gru"
    args = ["train", "--part", "4", "--cell", "gru", "--num-layers", "2", "--keep-prob", "0.8"]
    assert main([*args, "--epochs", "1", *small, "--out", str(out)]) == 0
    cfg = EchoConfig.from_dict(json.loads((out / "history.json").read_text())["config"])
    assert (cfg.cell, cfg.num_layers, cfg.keep_prob) == ("gru", 2, 0.8)
    capsys.readouterr()
    assert main(["eval", "--params", str(out), "--json", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())  # a run's directory: its params
    assert (result["cell"], result["num_layers"]) == ("gru", 2)


BREAKDOWN = ["imports", "compile", "data", "training", "evaluation", "files", "figure", "other"]


def assert_breakdown(record):
    """``seconds`` has every part, none negative, and they sum to the wall time."""
    seconds = record["seconds"]
    assert list(seconds) == [*BREAKDOWN, "wall"]
    assert all(v >= 0 for v in seconds.values()), seconds
    assert sum(seconds[k] for k in BREAKDOWN) == pytest.approx(seconds["wall"], rel=1e-9)
    assert seconds["training"] > 0 and seconds["imports"] > 0
    # One set of timings: no second name for training, compile or wall time beside seconds.
    assert not {"wall_seconds", "training_seconds", "compile_seconds"} & set(record)


def test_a_second_process_compiles_nothing_and_the_breakdown_is_the_processs(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = ["train", "--epochs", "2", "--total-series-length", "1500", "--no-progress", "--quiet"]
    records = []
    for name in ["cold", "warm"]:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "jax_echo", *run, "--out", str(tmp_path / name)],
            env=env,
            cwd=Path(__file__).parent.parent,
            capture_output=True,
            text=True,
            timeout=300,
        )
        elapsed = time.monotonic() - t0
        assert proc.returncode == 0, proc.stderr
        record = json.loads((tmp_path / name / "history.json").read_text())
        assert_breakdown(record)
        # From the process's start: the interpreter and imports are in it.
        assert record["seconds"]["imports"] > 0.1
        assert record["seconds"]["wall"] <= elapsed
        records.append(record)
    cold, warm = records
    # The optimizer's init, the epoch and the evaluation: compiled once, then loaded.
    assert cold["compilations"] >= 3 and cold["compile_cache_hits"] == 0
    assert warm["compilations"] == 0
    assert warm["compile_cache_hits"] == cold["compilations"]
    assert warm["history"]["loss"] == cold["history"]["loss"]


def test_preload_imports_matplotlib_in_a_background_thread():
    code = (
        "import sys, threading; from jax_echo.plot import preload; thread = preload(); "
        "print(thread.daemon, thread is not threading.current_thread()); thread.join(); "
        "print(*(f'matplotlib.{m}' in sys.modules for m in ['figure', 'backends.backend_agg']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.split() == ["True"] * 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--state-size", "0"], "EchoConfig.state_size must be positive, got 0"),
        (["--keep-prob", "1.5"], "EchoConfig.keep_prob must be a number in (0, 1], got 1.5"),
        (["--part", "2", "--num-layers", "0"], "EchoConfig.num_layers must be positive, got 0"),
        (["--num-layers", "3"], "EchoConfig.num_layers must be 1 for cell='tutorial'"),
    ],
)
def test_cli_rejects_a_bad_config_value(capsys, args, message):
    assert main(["train", *args, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_an_unknown_cell(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--cell", "rnn"])
    assert e.value.code == 2
    assert "invalid choice: 'rnn'" in capsys.readouterr().err


def test_eval_takes_the_params_files_model_and_refuses_what_does_not_fit(tmp_path, capsys):
    cfg = EchoConfig(cell="lstm", total_series_length=1500)
    path = tmp_path / "params.npz"
    save_params(path, init_params(cfg), cfg)
    assert main(["eval", "--params", str(path), "--part", "3", "--series", "2", "--json", "-"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = evaluate_params_file(path, series=2)
    assert result == expected and expected.keys() == {
        "params", "source", "implementation", "cell", "num_layers", "series", "seed",
        "accuracy", "accuracy_after_first",
    }  # fmt: skip
    # The options override the file's config: a longer fresh series, same model.
    longer = ["--total-series-length", "3000", "--json", "-"]
    assert main(["eval", "--params", str(path), *longer]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] != result["accuracy"]
    for args, message in (
        (["--part", "4"], "does not fit the options: part 4's program has cell='lstm' with 3"),
        (["--state-size", "5"], "does not fit the options: params['cell_0/kernel'] has shape"),
        (["--series", "0"], "evaluation needs at least one series, got series=0"),
    ):
        assert main(["eval", "--params", str(path), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    for args in ([], ["--params", str(path), "--tf-checkpoint", str(path)]):
        with pytest.raises(SystemExit) as e:  # exactly one of them
            main(["eval", *args])
        assert e.value.code == 2
        assert "--params" in capsys.readouterr().err
