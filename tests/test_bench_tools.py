"""The benchmark's measuring tools: XLA's kernel count, the population profile, the report."""

import json

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from benchmarks import hlo, population_profile
from jax_echo import xla_flags


def _loop_hlo(n: int) -> str:
    """A while loop of ``n`` steps, each a product (a dot) and a tanh."""

    def loop(x, w):
        return lax.fori_loop(0, n, lambda i, x: jnp.tanh(x @ w), x)

    x = jnp.ones((64, 64))
    return jax.jit(loop).lower(x, x).compile().as_text()


def test_launched_kernels_follow_the_loops_trip_count():
    (k40, d40), (k80, d80) = (hlo.launched_kernels(_loop_hlo(n)) for n in (40, 80))
    assert (d40, d80) == (40, 80)  # one dot a step, inside a fusion or not
    per_step = (k80 - k40) / 40
    assert per_step == int(per_step) and per_step >= 1
    assert k40 - 40 * per_step >= 0  # what runs once


def test_a_loop_without_a_known_trip_count_is_refused():
    def until_small(x):
        return lax.while_loop(lambda x: x.sum() > 1.0, lambda x: x * 0.5, x)

    text = jax.jit(until_small).lower(jnp.ones(8)).compile().as_text()
    with pytest.raises(ValueError, match="known trip count"):
        hlo.launched_kernels(text)


def test_the_tutorial_epoch_launches_a_fixed_number_of_kernels_per_window():
    from jax_echo.task import EchoConfig

    short, long = (EchoConfig(total_series_length=n) for n in (750, 1500))  # 10 and 20 windows
    k_short, _ = hlo.launched_kernels(hlo.jax_epoch_hlo(short))
    k_long, _ = hlo.launched_kernels(hlo.jax_epoch_hlo(long))
    per_window = (k_long - k_short) / 10
    assert per_window == int(per_window)
    if xla_flags.SMALL_LOOPS:  # the whole epoch loop compiled into one kernel
        assert per_window == 0 and 1 <= k_short < 20
    else:
        assert 20 < per_window < 400


def test_a_loop_compiled_whole_counts_as_one_kernel():
    text = _loop_hlo(40)
    kernels, _ = hlo.launched_kernels(text)
    assert (hlo.SMALL_CALL in text) == (kernels < 40)


def test_population_profile_prints_a_row_per_form(capsys):
    assert population_profile.main(["--members", "4", "--rounds", "1", "--chunks", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    rows = rows[2:]  # below the header and its rule
    assert [row.split(" | ")[0] for row in rows] == [
        "| one by one",
        "| vmap, chunks of 1",
        "| lanes, chunks of 1",
        "| shipped: chunks of 4 over 1 thread(s)",  # the policy's chunk: 4 members, one chunk
    ]
    windows_per_s = [float(row.split(" | ")[1].replace(",", "")) for row in rows]
    kernels_per_window = [float(row.split(" | ")[4]) for row in rows]
    assert min(windows_per_s) > 0
    # One call for every member, one after another, launches fewer kernels per trained window
    # than a call each.
    assert 0 < kernels_per_window[1] < kernels_per_window[0] and kernels_per_window[2] > 0


def test_lstm_products_prints_the_three_products(capsys):
    pytest.importorskip("torch", reason="PyTorch is not installed (the peers extra)")
    from benchmarks import lstm_products

    args = ["--state", "4", "--batch", "2", "--reps", "3", "--rounds", "1"]
    assert lstm_products.main(args) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][2:]
    assert [row.split(" | ")[1] for row in rows] == [
        "(2, 5) @ (5, 16)",
        "(2, 16) @ (16, 5)",
        "(5, 2) @ (2, 16)",
    ]
    assert all(float(row.split(" | ")[2]) > 0 and float(row.split(" | ")[3]) > 0 for row in rows)


def _bench(name, model, part, seconds, group="series", windows=1, medians=None, exact=True):
    """A merged pytest-benchmark entry as ``benchmarks.report`` reads one."""
    stats = {"median": seconds, "process_medians": medians or [seconds]}
    extra = {
        "implementation": name,
        "device": "cpu",
        "windows_per_call": windows,
        "model": model,
        "part": part,
        "cell": "tutorial" if part == 1 else "lstm",
        "num_layers": 1,
        "exact_math": exact,
    }
    return {
        "group": group,
        "fullname": f"{group}-{model}-{name}",
        "stats": stats,
        "extra_info": extra,
    }


def test_report_restates_every_library_at_its_fastest_row_and_as_typically_written(tmp_path):
    from benchmarks import report
    from benchmarks.report_tables import best_table
    from benchmarks.rows import SERIES

    benches = [
        _bench(
            "jax-epoch", "part1", 1, 666 * 10e-6, windows=666, medians=[660 * 10e-6, 700 * 10e-6]
        ),
        _bench("jax-step", "part1", 1, 200e-6),
        _bench("tf-function-epoch-xla", "part1", 1, 666 * 12e-6, windows=666),
        _bench("tf-graph", "part1", 1, 1500e-6),
        _bench("torch-eager", "part1", 1, 1400e-6),
        _bench("torch-compile", "part1", 1, 3000e-6),
        _bench("torch-compile-window", "part1", 1, 300e-6),
        _bench("jax-epoch", "part3", 3, 666 * 20e-6, windows=666),
        _bench("torch-compile-window", "part3", 3, 400e-6),
        # TensorFlow's tuned form is slower than its TF1 program here: its fastest measured
        # row is tf-graph, whatever form was planned.
        _bench("tf-function-epoch-xla", "part3", 3, 666 * 18e-6, windows=666),
        _bench("tf-graph", "part3", 3, 15e-6),
    ]
    lines = best_table(benches, SERIES)
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): line for line in lines[2:12]}
    assert [h.strip() for h in lines[0].split("|")[3:5]] == [
        "part 1: us / window (row), x JAX's fastest",
        "part 3: us / window (row), x JAX's fastest",
    ]
    assert "10.0 (jax-epoch): 1.0x" in rows["jax", "fastest measured"]
    assert "200.0 (jax-step): 20.0x" in rows["jax", "as typically written"]
    # The fastest row overall, and the fastest idiomatic one: torch-eager, not torch-compile.
    assert "300.0 (torch-compile-window): 30.0x" in rows["torch", "fastest measured"]
    assert "400.0 (torch-compile-window): 20.0x" in rows["torch", "fastest measured"]
    assert "1,400.0 (torch-eager): 140.0x" in rows["torch", "as typically written"]
    assert "12.0 (tf-function-epoch-xla): 1.2x" in rows["tensorflow", "fastest measured"]
    assert "15.0 (tf-graph): 0.75x" in rows["tensorflow", "fastest measured"]
    # A model a library was not run on is an empty cell.
    assert rows["torch", "as typically written"].rstrip().endswith("|  |")

    data = {"benchmarks": benches, "machine_info": {}, "commit_info": {}, "datetime": ""}
    made = report.made_figures(data, tmp_path / "report")
    assert made == {"cpu": ["headline", "series"]}
    assert (tmp_path / "report-series.png").stat().st_size > 10_000
    assert (tmp_path / "report-headline.png").stat().st_size > 10_000
    doc = report.render(data, "report", made)["cpu"]
    assert "![the series by implementation](report-series.png)" in doc
    # The targets, from the results: part 3's cost against part 1's is 2.0x, within 2.5x.
    assert "| part 3: jax-epoch cost vs part 1 | <= 2.5x | 2.0x | MET |" in doc
    assert "| part 1: TF1 / JAX | >= 40x | 150.0x | MET |" in doc


def test_tf_xla_rows_without_the_small_loop_option_are_named_apart(monkeypatch):
    # make bench runs TF's realistic XLA rows once more with JAX_ECHO_XLA_FLAGS=0: those rows
    # carry their own name (never merged with the option's) and count as TF's best form.
    from benchmarks import report, test_bench
    from jax_echo.task import EchoConfig

    class Benchmark:  # pytest-benchmark's fixture, as far as record uses it
        def __init__(self):
            self.extra_info = {}

    names = {}
    for small_loops in (True, False):
        monkeypatch.setattr(xla_flags, "SMALL_LOOPS", small_loops)
        for name in ("tf-function-epoch-xla", "tf-graph", "jax-epoch"):
            b = Benchmark()
            test_bench.record(b, test_bench.Case(name, "cpu"), EchoConfig(), 1)
            names[small_loops, name] = b.extra_info["implementation"]
    assert names[False, "tf-function-epoch-xla"] == "tf-function-epoch-xla-no-small-loops"
    assert all(names[True, n] == n for n in ("tf-function-epoch-xla", "tf-graph", "jax-epoch"))
    assert names[False, "tf-graph"] == "tf-graph" and names[False, "jax-epoch"] == "jax-epoch"
    assert report.library_and_form(names[False, "tf-function-epoch-xla"]) == ("tensorflow", "tuned")


def _run_dir(path, commit, started, benches, cpu="CPU A"):
    """A ``benchmarks.run`` directory of one process's JSON and its run.json."""
    path.mkdir()
    stats = [{**b, "stats": {"median": b["stats"]["median"]}} for b in benches]
    process = {"benchmarks": stats, "datetime": started}
    process["machine_info"] = {"cpu": {"brand_raw": cpu}, "cpu_count": 2, "system": "Linux"}
    (path / "process-1.json").write_text(json.dumps(process))
    (path / "run.json").write_text(json.dumps({"commit": commit, "dirty": [], "runs": []}))
    return path


def test_a_report_of_several_runs_takes_each_group_whole_from_one(tmp_path):
    from benchmarks import report

    series = [_bench("jax-epoch", "part1", 1, 666 * 10e-6, windows=666)]
    realistic = [_bench("jax-epoch", "lstm-128", 3, 0.02, group="realistic")]
    first = _run_dir(tmp_path / "a", "a" * 40, "2026-12-02T09:19:00", series)
    second = _run_dir(tmp_path / "b", "b" * 40, "2026-12-02T04:39:00", realistic)

    data = report.combine([first, second])
    assert sorted(b["group"] for b in data["benchmarks"]) == ["realistic", "series"]
    line = report.machine_line(data)
    assert f"Runs by group: series: 2026-12-02T09:19:00 at commit {'a' * 10}; " in line
    assert f"realistic: 2026-12-02T04:39:00 at commit {'b' * 10};" in line
    # One run's line names its start and commit.
    line = report.machine_line(report.load(first))
    assert f"Run 2026-12-02T09:19:00 at commit {'a' * 10};" in line

    again = _run_dir(tmp_path / "c", "c" * 40, "2026-12-02T10:00:00", series)
    with pytest.raises(SystemExit, match="group 'series' is in both .*a and .*c"):
        report.combine([first, again])
    elsewhere = _run_dir(tmp_path / "d", "d" * 40, "2026-12-02T10:00:00", realistic, "CPU B")
    with pytest.raises(SystemExit, match="one report is one machine"):
        report.combine([first, elsewhere])
