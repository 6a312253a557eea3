"""XLA:CPU's small-loop option, set for the process when ``jax_echo`` is imported.

XLA:CPU runs a ``while`` loop by launching its body's kernels one by one on every trip; at the
tutorial's sizes (4 units, 5 rows) that launch cost is most of a window. With
``xla_cpu_small_while_loop_byte_threshold=N`` it compiles every loop whose buffers stay under N
bytes into one kernel instead, and an LSTM window as a rolled loop then trains faster than the
same window unrolled without the option (measurements: docs/performance.md).

``jax.jit(..., compiler_options=...)`` refuses this option (it lives in the map-valued
``xla_backend_extra_options``: "not a valid message value", jax 0.10.2), so it goes through
``XLA_FLAGS``, which XLA reads once, when a backend starts. ``apply`` appends it there at
``import jax_echo``, before any computation, unless the user's ``XLA_FLAGS`` already sets
``xla_backend_extra_options`` (theirs is kept) or ``JAX_ECHO_XLA_FLAGS=0``. TensorFlow's XLA reads
the same variable, so in one process both compilers get the same option, as a fair comparison
needs. ``policy`` (and ``tf_echo``'s XLA peer) roll the loops that it makes faster only when it is
in effect (``SMALL_LOOPS``). A child process inherits the option through ``XLA_FLAGS``;
``without()`` is an environment for one that must run without it (``make bench`` gives
TensorFlow's XLA such processes at the realistic sizes, where the option slows it).

Both XLA front ends also share two choices of how to write the model for it (``policy`` for JAX,
``tf_echo.function`` for TensorFlow): ``FUSED_PRODUCT_LIMIT`` and ``ROLLED_WITH_SMALL_LOOPS``.
This module imports neither framework, so that either can read them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

SMALL_LOOP_BYTES = 1_000_000_000  # every loop of this project's programs counts as small
OPTION = "xla_cpu_small_while_loop_byte_threshold"
FLAG = f"--xla_backend_extra_options={OPTION}={SMALL_LOOP_BYTES}"
OPT_OUT = "JAX_ECHO_XLA_FLAGS"  # "0": leave XLA_FLAGS alone
# A benchmark row measured in a process without the option carries this suffix (TensorFlow's
# XLA rows: the option slows TF's XLA once its loops hold real products), so that reports never
# merge it with the option's row.
SUFFIX = "-no-small-loops"

# Products of at most this many elements are written as a multiply and a sum, which XLA:CPU fuses
# with the elementwise work around them; a larger one is a dot (docs/performance.md).
FUSED_PRODUCT_LIMIT = 2048
# Under the small-loop option these cells' windows stay loops: one kernel a window, faster than
# the unrolled window (docs/performance.md).
ROLLED_WITH_SMALL_LOOPS = ("lstm", "gru")


def _backend_started() -> bool:
    """Whether a JAX backend already runs (then XLA has read its flags for this process)."""
    xla_bridge = sys.modules.get("jax._src.xla_bridge")  # None: JAX is not even imported yet
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else False


def apply(
    environ: MutableMapping[str, str] = os.environ, backend_started: bool | None = None
) -> bool:
    """Adds ``FLAG`` to ``XLA_FLAGS`` (see the module docstring); whether the small-loop option is
    in effect for the programs this process compiles from now on. ``backend_started``: whether
    XLA has read its flags already (default: whether a JAX backend runs)."""
    flags = environ.get("XLA_FLAGS", "")
    if OPTION in flags:
        return True  # the user's own threshold
    if environ.get(OPT_OUT) == "0" or "xla_backend_extra_options" in flags:
        return False
    if _backend_started() if backend_started is None else backend_started:
        return False  # too late for this process: XLA has read its flags
    environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return True


def without(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """``environ``'s variables for a child process that must not have the option: ``OPT_OUT``
    set, and ``FLAG`` taken out of ``XLA_FLAGS`` (``apply`` put it there for this process, and a
    child inherits it)."""
    flags = environ.get("XLA_FLAGS", "").replace(FLAG, "")
    return {**environ, "XLA_FLAGS": " ".join(flags.split()), OPT_OUT: "0"}


SMALL_LOOPS = apply()
