# Two commands for a fresh machine with Python 3.11 and pip:
#   make demo   set up .venv and run the tutorial training (defaults) into runs/tutorial-DATE
#   make test   set up .venv with TensorFlow and run the test suite (make test-slow: every other
#               implementation and model pair and the full 100-epoch runs; CI runs both)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow bench lint clean

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

# A new directory per run, so a second demo never meets the first one's checkpoint.
demo: $(VENV)/.stamp-base
	$(BIN)/jax-echo train --out runs/tutorial-$$(date +%Y%m%d-%H%M%S)

test: $(VENV)/.stamp-all
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(VENV)/.stamp-all
	$(BIN)/python -m pytest -m slow

# PyTorch's CPU wheel unless the machine has an NVIDIA GPU (the default wheel brings CUDA's ~3 GB).
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi),https://pypi.org/simple,https://download.pytorch.org/whl/cpu)

$(VENV)/.stamp-peers: pyproject.toml $(VENV)/.stamp-all
	$(BIN)/pip install --quiet torch --index-url $(TORCH_INDEX)
	$(BIN)/pip install --quiet -e ".[tf,bench,dev,peers]"
	touch $@

# Every speed group in 3 processes (medians with their spread), from a committed tree.
bench: $(VENV)/.stamp-peers
	$(BIN)/python -m benchmarks.run --readme

lint: $(VENV)/.stamp-all
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache .benchmarks
