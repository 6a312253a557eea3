"""``make bench-gpu`` (benchmarks/gpu.py): its plan covers every GPU group within the time a lent
GPU gives, and, run on the CPU with every group's quick sizes, writes a results directory that
``benchmarks.report`` reads."""

from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import gpu, report
from jax_echo import registry

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pytest_benchmark") is None, reason="needs the bench extra"
)


def test_the_plan_covers_every_gpu_group_within_eight_minutes(tmp_path, capsys):
    assert {group for step in gpu.STEPS for group in step.groups} == set(gpu.GROUPS)
    assert sum(step.limit_s for step in gpu.STEPS) <= 8 * 60
    assert gpu.main(["--dry-run", "--out", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
    for step in gpu.STEPS:
        command = step.command(tmp_path / "results", "gpu")
        assert " ".join(command) in out
        assert "--benchmark-enable" in command
        selection = command[command.index("-k") + 1]
        assert selection.startswith("gpu and not keras and not tf-graph and not tf-function")
    # PyTorch's compiled window (CUDA graphs on a GPU) is among the accuracy rows.
    assert "torch-compile-window" in gpu.STEPS[-1].selection
    assert "not run: tensorflow and keras rows" in out


def test_the_quick_plan_on_the_cpu_writes_results_the_report_reads(tmp_path):
    out = tmp_path / "results"
    assert gpu.main(["--quick", "--out", str(out), "--allow-dirty"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["quick"] is True and run["commit"]
    outcomes = {step["selection"]: step["outcome"] for step in run["runs"]}
    assert len(outcomes) == len(gpu.STEPS)
    for step in run["runs"]:
        torch_step = "and torch)" in step["selection"]
        if torch_step and importlib.util.find_spec("torch") is None:
            assert step["outcome"] == "no case to run" and step["json"] is None
            assert run["not_run"]["torch-eager"] == registry.row("torch-eager").missing()
        else:
            assert step["outcome"] == "ok", step
            assert (out / step["json"]).exists()
    data = report.load(out)
    assert {b["group"] for b in data["benchmarks"]} == set(gpu.GROUPS)
    assert all(b["extra_info"]["device"] == "cpu" for b in data["benchmarks"])
    text = (out / "report.md").read_text().lower()
    for group in gpu.GROUPS:  # a table of each
        assert group in text, group
    assert (out / "report-realistic.png").stat().st_size > 10_000
