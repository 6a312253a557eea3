"""tf-echo: the TensorFlow reference for jax-echo, for every part of the tutorial series.

``GraphTrainer`` is the author's TF1 program (``tf.compat.v1`` graph and session: the hand-written
RNN of part 1, ``static_rnn`` over TF1's cells for parts 2-4, ``dynamic_rnn`` for parts 5-6);
``FunctionTrainer`` is modern TF2 (``tf.function``, optionally XLA). Both follow
``jax_echo.registry.ReferenceTrainer``, start from given weights in TF1's flat layout and compute
everything in TensorFlow: ``jax_echo`` only supplies the task, the weight layout and the files.

TensorFlow is loaded on first use of these names, so that ``tf-echo --help`` (and its error
without the ``tf`` extra) does not wait for it, and without its start-up lines
(``runlog.import_tensorflow_quietly``).
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
    "save_tf_checkpoint": "tf_echo.train",
    "write_tf_run": "tf_echo.train",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tf_echo' has no attribute {name!r}")
    from jax_echo.runlog import import_tensorflow_quietly

    import_tensorflow_quietly()  # without TensorFlow's start-up lines
    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = sorted(_LAZY)
