"""The notebook docs/echo_rnn_in_jax.ipynb runs top to bottom, and is stored as a reader sees it.

The run uses the notebook's quick sizes (``JAX_ECHO_NOTEBOOK_QUICK=1``, read by its parameter
cell); ``python docs/run_notebook.py`` (``make notebook``) re-executes it with the full ones and
stores the outputs, which the other tests check.
"""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
RUNNER = ROOT / "docs" / "run_notebook.py"


def load_runner():
    spec = importlib.util.spec_from_file_location("run_notebook", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = load_runner()


def stored():
    return json.loads(runner.NOTEBOOK.read_text())


def code_cells(nb):
    return [cell for cell in nb["cells"] if cell["cell_type"] == "code"]


def source(cell):
    text = cell["source"]
    return text if isinstance(text, str) else "".join(text)


def images(nb):
    return [
        output
        for cell in code_cells(nb)
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]


def test_the_notebook_runs_top_to_bottom():
    pytest.importorskip("nbclient", reason="executing the notebook needs the dev extra")
    nb = runner.execute(quick=True)  # raises CellExecutionError naming the cell that failed
    outputs = [output for cell in code_cells(nb) for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output["output_type"] == "error"]
    assert len(images(nb)) >= 4  # the batch, the echo figure, the differences, the population
    text = "".join(output.get("text", "") for output in outputs)
    assert "resumed == uninterrupted, bit for bit" in text
    if importlib.util.find_spec("tensorflow") is not None:
        assert "TF1 and from scratch" in text


def test_the_stored_notebook_has_its_outputs_and_figures():
    nb = stored()
    counts = [cell["execution_count"] for cell in code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), "re-execute it in order: make notebook"
    assert len(images(nb)) >= 4
    for cell in code_cells(nb):
        for output in cell["outputs"]:
            assert output["output_type"] != "error", source(cell)
            assert output.get("name") != "stderr", (source(cell), output["text"])
    assert runner.NOTEBOOK.stat().st_size < 1_500_000


def test_part_1_from_scratch_fits_on_one_screen_without_the_library():
    cells = [
        cell for cell in code_cells(stored()) if "from-scratch" in cell["metadata"].get("tags", [])
    ]
    lines = [line for cell in cells for line in source(cell).splitlines() if line.strip()]
    assert 20 < len(lines) <= 60
    assert not [line for line in lines if "jax_echo" in line or "je." in line]
