# Two commands for a fresh machine with Python 3.11 or newer and pip:
#   make demo   set up .venv and run the tutorial training (defaults) into runs/partN-DATE
#   make test   set up .venv with TensorFlow and run the test suite (make test-slow: every other
#               implementation and model pair and the full 100-epoch runs; CI runs both)
# The newest supported Python found that can make a virtual environment (python3.13, 3.12, 3.11
# on the PATH, or pyenv's versions), so that pip brings the current JAX; PYTHON=python3.11 (any interpreter) chooses another. Each
# Python gets its own environment, .venv-3.X, and .venv points to the one last used.
SUPPORTED := 3.13 3.12 3.11
ifeq ($(origin PYTHON), undefined)
PYTHON := $(shell for v in $(SUPPORTED); do \
	for p in python$$v $$(pyenv root 2>/dev/null)/versions/$$v*/bin/python$$v; do \
		$$p -c 'import ensurepip, venv' 2>/dev/null && { echo $$p; exit 0; }; \
	done; done; echo python3)
endif
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV := .venv-$(PYTHON_VERSION)
BIN := $(VENV)/bin

.PHONY: demo test test-slow test-peers bench bench-gpu bench-docs bench-readme notebook lint clean python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# .venv: the environment of the Python in use (a link; an older clone's real .venv is kept).
.PHONY: link-venv
link-venv: | $(BIN)/python
	@if [ -L .venv ] || [ ! -e .venv ]; then ln -sfn $(VENV) .venv; fi

python:
	@echo $(PYTHON) $(PYTHON_VERSION) $(VENV)

# One stamp per set of extras, redone when pyproject.toml changes.
$(VENV)/.stamp-base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.stamp-all: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[tf,bench,dev]"
	touch $@ $(VENV)/.stamp-base

# jax-echo train writes each run into a new directory, runs/partN-DATE-TIME.
demo: $(VENV)/.stamp-base link-venv
	$(BIN)/jax-echo train

# The suite in parallel worker processes (pytest-xdist), one per core up to 4: 7 minutes instead
# of 11 on the 2-core CPU. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= auto --maxprocesses 4

test: $(VENV)/.stamp-all link-venv
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

# The PyTorch peer's parity tests (tests/test_peers_torch.py) with the peers extra: CI runs them
# (make test stays light: it installs no PyTorch, and those tests skip).
test-peers: $(VENV)/.stamp-peers
	$(BIN)/python -m pytest tests/test_peers_torch.py tests/test_peers_flax.py \
		tests/test_peers_keras.py -n $(TEST_WORKERS)

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
	rm -rf .venv-3.* runs .pytest_cache .benchmarks
	if [ -L .venv ]; then rm .venv; fi
