# Two commands for a fresh machine with Python 3.11 and pip:
#   make demo   set up .venv and run the tutorial training (defaults) into runs/tutorial-DATE
#   make test   set up .venv with TensorFlow and run the test suite (make test-slow: every other
#               implementation and model pair and the full 100-epoch runs; CI runs both)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow bench bench-gpu bench-docs bench-readme notebook lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per set of extras, redone when pyproject.toml changes.
$(VENV)/.stamp-base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.stamp-all: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[tf,bench,dev]"
	touch $@ $(VENV)/.stamp-base

# jax-echo train writes each run into a new directory, runs/tutorial-DATE-TIME.
demo: $(VENV)/.stamp-base
	$(BIN)/jax-echo train

# The suite in parallel worker processes (pytest-xdist), one per core up to 4: 7 minutes instead
# of 11 on the 2-core CPU. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= auto --maxprocesses 4

test: $(VENV)/.stamp-all
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS)

test-slow: $(VENV)/.stamp-all
	$(BIN)/python -m pytest -m slow -n $(TEST_WORKERS)

# PyTorch from the package index pip is configured with. Where PyTorch's own index is reachable,
# TORCH_INDEX=https://download.pytorch.org/whl/cpu takes its CPU-only wheel (smaller than the
# default one, which brings CUDA's libraries).
TORCH_INDEX ?=

$(VENV)/.stamp-peers: pyproject.toml $(VENV)/.stamp-all
	$(BIN)/pip install --quiet torch $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e ".[tf,bench,dev,peers]"
	touch $@

# Every speed group in 3 processes (medians with their spread), from a committed tree, into
# benchmarks/results/DEVICE-DATE/; the docs are not touched (make bench-docs DIR=... is).
# BENCH_ARGS goes to benchmarks.run: e.g. BENCH_ARGS="--select test_series --processes 2".
bench: $(VENV)/.stamp-peers
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# The GPU groups (series, window, realistic with memory, population, accuracy) for JAX, PyTorch
# (CUDA graphs in torch-compile-window) and Flax in about 8 minutes on one H100 or H200, with the
# packages that machine has (no set-up: a lent GPU has no network), into
# benchmarks/results/gpu-DATE/. BENCH_ARGS=--dry-run prints the plan; --quick runs it on the CPU.
bench-gpu:
	$(or $(wildcard $(BIN)/python),$(PYTHON)) -m benchmarks.gpu $(BENCH_ARGS)

# Writes a results directory's tables into docs/benchmarks.md and its headline into README.md
# (DIR="A B": several runs of different groups on one machine, each group from one run).
# bench-readme is its old name.
bench-docs: $(VENV)/.stamp-all
	$(BIN)/python -m benchmarks.report $(DIR) --docs docs/benchmarks.md --readme README.md

bench-readme: bench-docs

# Re-executes docs/echo_rnn_in_jax.ipynb top to bottom with its full configuration and stores it
# with its outputs (figures included); commit the result.
notebook: $(VENV)/.stamp-all
	$(BIN)/python docs/run_notebook.py

lint: $(VENV)/.stamp-all
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache .benchmarks
