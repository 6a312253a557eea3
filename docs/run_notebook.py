"""Executes docs/echo_rnn_in_jax.ipynb top to bottom, as a reader would.

    python docs/run_notebook.py           # the full configuration; stores the outputs in place
    python docs/run_notebook.py --quick   # JAX_ECHO_NOTEBOOK_QUICK=1; checks, stores nothing

``make notebook`` runs the first; ``tests/test_notebook.py`` the second. A cell that raises
fails the run. Needs the ``dev`` extra (nbclient, nbformat, ipykernel).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

NOTEBOOK = Path(__file__).with_name("echo_rnn_in_jax.ipynb")
QUICK_ENV = "JAX_ECHO_NOTEBOOK_QUICK"
# The quick run spends most of its time compiling. LLVM's optimisations speed up what XLA
# compiles, not the compiling: without them the quick run takes about a third less time.
QUICK_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def execute(path: Path = NOTEBOOK, *, quick: bool, timeout: int = 600):
    """Runs every cell of the notebook at ``path`` in a fresh kernel; returns it with outputs.

    ``quick`` sets ``JAX_ECHO_NOTEBOOK_QUICK=1``, which the notebook's parameter cell reads, and
    turns XLA:CPU's backend optimisations off (``QUICK_XLA_FLAGS``).
    Raises ``nbclient.exceptions.CellExecutionError`` for the first cell that fails.
    """
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's own paths, no warning
    import nbformat
    from nbclient import NotebookClient

    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the notebook draws inline: a non-interactive backend hides it
    env[QUICK_ENV] = "1" if quick else "0"
    if quick:  # it checks that every cell runs and its assertions hold, not how fast
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {QUICK_XLA_FLAGS}".strip()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,  # no timestamps: a re-run changes only what it computes
        # Python's output goes into the notebook; C++ libraries' own logs (TensorFlow's CUDA
        # probing on a machine without a GPU) stay on the terminal.
        extra_arguments=["--IPKernelApp.capture_fd_output=False"],
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env=env)
    return nb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; store nothing")
    parser.add_argument("path", nargs="?", type=Path, default=NOTEBOOK)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    nb = execute(args.path, quick=args.quick)
    if not args.quick:
        import nbformat

        nbformat.write(nb, args.path)
    seconds = time.perf_counter() - start
    print(f"{args.path}: executed in {seconds:.0f} s" + ("" if args.quick else ", outputs stored"))


if __name__ == "__main__":
    sys.exit(main())
