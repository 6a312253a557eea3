"""The notebook docs/echo_rnn_in_jax.ipynb runs top to bottom, and is stored as a reader sees it.

The quick test runs the notebook's quick sizes (``JAX_ECHO_NOTEBOOK_QUICK=1``, read by its
parameter cell); ``python docs/run_notebook.py`` (``make notebook``) re-executes it with the full
ones and stores the outputs. Every claim the prose makes about those outputs (``check_claims``)
is checked on the stored copy, and, in the slow tier, on a full re-execution on this machine,
whose accuracies must match the stored ones within 0.1 point.
"""

import importlib.util
import json
import re
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


def text_of(nb) -> str:
    return "".join(
        "".join(output.get("text", ""))  # a string, or a list of lines as stored
        for cell in code_cells(nb)
        for output in cell.get("outputs", [])
        if output.get("name") != "stderr"
    )


def number(pattern: str, text: str) -> float:
    """The number a regular expression's one group captures in ``text`` (it must be there)."""
    found = re.search(pattern, text)
    assert found, f"the notebook no longer prints {pattern!r}"
    return float(found.group(1).replace(",", ""))


def accuracies(text: str) -> dict[str, float]:
    """Every accuracy the full notebook prints, in percent, by what it is of."""
    return {
        "part 1 from scratch": number(r"accuracy on a fresh series: ([\d.]+)%", text),
        "part 1 from scratch, 100 epochs": number(
            r"from scratch after 100 epochs: accuracy ([\d.]+)%", text
        ),
        "part 1 jax_echo, 100 epochs": number(
            r"jax_echo after 100 epochs: accuracy ([\d.]+)%", text
        ),
        "part 3": number(r"part 3, LSTM: .*accuracy ([\d.]+)%", text),
        "parts 4-5": number(r"parts 4-5, .*accuracy ([\d.]+)%", text),
        "part 6": number(r"part 6, .*accuracy ([\d.]+)%", text),
    }


def check_claims(nb) -> dict[str, float]:
    """Asserts what the prose of the full notebook says of its outputs; returns the accuracies."""
    text = text_of(nb)
    found = accuracies(text)
    # Part 1 reaches the tutorial's accuracy after its 100 epochs, from scratch and in jax_echo
    # (wherever float32 rounding took the run); the LSTM parts learn the echo too.
    for name, accuracy in found.items():
        assert accuracy >= (99.9 if name.startswith("part 1") else 99.5), (name, accuracy)
    # The loss starts at a fair coin's (ln 2) and ends near zero.
    assert 0.68 <= number(r"mean loss of epoch 1: ([\d.]+)", text) <= 0.71
    assert number(r"of epoch 100: ([\d.]+)", text) < 0.01
    # float32: equal to rounding for 300 windows, then apart; float64: together on every window.
    assert number(r"first 300 windows: at most (\d+) float32 ulps apart", text) <= 16
    assert number(r"float64, all (\d+) windows: within 1e-4 of each other", text) == 1332
    assert number(r"float32, the same windows: up to ([\d,]+)% apart", text) > 1
    assert number(r"TF1 and from scratch, first 300 windows: at most (\d+) ulps", text) <= 16
    assert "16 models, 3330 windows each" in text
    assert "resumed == uninterrupted, bit for bit" in text
    # The pitfalls, each with its effect: a deleted buffer, a compilation per call against none,
    # a call that returns before its result is ready.
    assert "deleted after the call: True\nRuntimeError: Array has been deleted" in text
    assert re.search(r"every call: 3 epochs in [\d.]+ s, 3 compilations", text)
    assert re.search(r"default optimizer every call:  3 epochs in [\d.]+ s, 0 compilations", text)
    fresh = number(r"a new optax.adam\(1e-2\) every call: 3 epochs in ([\d.]+) s", text)
    default = number(r"default optimizer every call:  3 epochs in ([\d.]+) s", text)
    assert fresh > 10 * default, (fresh, default)
    assert "result ready then: False" in text
    assert number(r"the work finished after [\d.]+ ms, (\d+)x later", text) >= 2
    return found


def test_the_stored_notebook_says_what_its_prose_says():
    check_claims(stored())


@pytest.mark.slow
def test_the_full_notebook_reproduces_its_stored_results_on_this_machine():
    pytest.importorskip("nbclient", reason="executing the notebook needs the dev extra")
    ran = check_claims(runner.execute(quick=False))
    kept = accuracies(text_of(stored()))
    for name, accuracy in ran.items():
        assert abs(accuracy - kept[name]) <= 0.1, (name, accuracy, kept[name])


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
