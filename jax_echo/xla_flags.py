"""XLA:CPU's small-loop option, set for the process when ``jax_echo`` is imported.

XLA:CPU runs a ``while`` loop by launching its body's kernels one by one on every trip; at the
tutorial's sizes that launch cost is most of a window. ``xla_cpu_small_while_loop_byte_threshold``
compiles every loop under that many bytes into one kernel instead, and an LSTM window as a rolled
loop then trains faster than unrolled without it (docs/performance.md).

``jax.jit(compiler_options=...)`` refuses the option (it lives in the map-valued
``xla_backend_extra_options``), so ``apply`` appends it to ``XLA_FLAGS`` at ``import jax_echo``,
before any backend starts, unless the user's ``XLA_FLAGS`` sets ``xla_backend_extra_options`` or
``JAX_ECHO_XLA_FLAGS=0``. TensorFlow's XLA reads the same variable, so both compilers get it, as a
fair comparison needs; ``SMALL_LOOPS`` says whether it is in effect. Child processes inherit it;
``without()`` is the environment of one that must run without it.

Both XLA front ends share two choices of how to write the model (``policy`` for JAX,
``tf_echo.function``): ``FUSED_PRODUCT_LIMIT`` and ``ROLLED_WITH_SMALL_LOOPS``. This module imports
neither framework, so that either can read them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

SMALL_LOOP_BYTES = 1_000_000_000  # every loop of this project's programs counts as small
OPTION = "xla_cpu_small_while_loop_byte_threshold"
FLAG = f"--xla_backend_extra_options={OPTION}={SMALL_LOOP_BYTES}"
OPT_OUT = "JAX_ECHO_XLA_FLAGS"  # "0": leave XLA_FLAGS alone
# The suffix of a benchmark row measured without the option (TensorFlow's XLA rows: it slows TF's
# XLA once the loops hold real products), so that reports never merge it with the option's row.
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
    """Adds ``FLAG`` to ``XLA_FLAGS``; whether the option is in effect for what this process
    compiles from now on; ``backend_started``: whether XLA read its flags (default: asks JAX)."""
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
    """``environ`` for a child process that must run without the option: ``OPT_OUT`` set, and
    ``FLAG`` taken out of ``XLA_FLAGS``."""
    flags = environ.get("XLA_FLAGS", "").replace(FLAG, "")
    return {**environ, "XLA_FLAGS": " ".join(flags.split()), OPT_OUT: "0"}


SMALL_LOOPS = apply()
