"""tf-echo: the TensorFlow reference for jax-echo, for every part of the tutorial series.

``GraphTrainer`` (the author's TF1 program) and ``FunctionTrainer`` (TF2, optionally XLA) are
``ReferenceTrainer``s (``jax_echo.registry``) computing everything in TensorFlow from given
weights; ``jax_echo`` only supplies the task, the weight layout and the files. TensorFlow loads
on first use of these names, quietly, so ``tf-echo --help`` does not wait for it.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FunctionTrainer": "tf_echo.function",
    "GraphTrainer": "tf_echo.graph",
    "IMPLEMENTATIONS": "tf_echo.train",
    "evaluate": "tf_echo.train",
    "fit": "tf_echo.train",
    "make_trainer": "tf_echo.train",
    "write_tf_run": "tf_echo.train",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tf_echo' has no attribute {name!r}")
    from jax_echo.runlog import import_tensorflow_quietly

    import_tensorflow_quietly()
    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = sorted(_LAZY)
