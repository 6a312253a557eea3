"""jax-echo: the echo RNN of the classic TensorFlow tutorial series, as pure JAX functions.

The public names below load with their module on first use (``jax_echo.fit`` imports
``jax_echo.train``), so that ``jax-echo --help`` answers without importing JAX.
"""

import importlib
from typing import Any

# XLA:CPU's small-loop option goes into XLA_FLAGS before any backend starts (xla_flags).
from jax_echo import xla_flags  # noqa: F401

# Each public name, by the module that defines it.
_PUBLIC = {
    "cells": (
        "CELLS",
        "Cell",
        "GRUParams",
        "LSTMParams",
        "LSTMState",
        "Params",
        "RNNParams",
        "TutorialParams",
        "init_params",
        "initial_state",
        "params_from_dict",
        "params_to_dict",
    ),
    "io": ("CheckpointError", "load_checkpoint", "load_params", "save_params"),
    "model": (
        "accuracy",
        "epoch_key",
        "forward",
        "loss_fn",
        "make_predict_epoch",
        "make_train_epoch",
        "predict",
        "predict_epoch",
        "train_epoch",
        "train_step",
        "window_accuracies",
    ),
    "optim": ("make_optimizer", "with_learning_rate"),
    "population": ("fit_population",),
    "task": (
        "EchoConfig",
        "epoch_data",
        "eval_data",
        "generate_data",
        "prediction_accuracies",
        "split_windows",
    ),
    "tf_checkpoint": ("params_from_tf_checkpoint", "params_to_tf_checkpoint"),
    "train": ("TrainingDivergedError", "fit"),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'jax_echo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"jax_echo.{_MODULE_OF[name]}"), name)
    globals()[name] = value  # the next lookup is an ordinary one
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
