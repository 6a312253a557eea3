"""What XLA runs per training window: kernels counted in the optimized HLO, JAX beside TF2 + XLA.

    python -m benchmarks.hlo [--models part1 part3 part4 gru]

At the tutorial's sizes XLA:CPU's time follows the kernels it launches (each fusion, or op left
unfused, is a call with a fixed cost), not the arithmetic. This compiles one epoch of each series
model with ``jax_echo`` (``make_train_epoch``) and with ``tf_echo``'s ``tf.function`` epoch under
XLA, and prints a Markdown table of the kernels one epoch launches, per epoch and per window
(docs/performance.md quotes it). ``JAX_ECHO_XLA_FLAGS=0`` counts them without the small-loop option.
"""

from __future__ import annotations

import argparse
import re
import sys

import jax

from jax_echo import model, xla_flags
from jax_echo.cells import init_params
from jax_echo.optim import make_optimizer
from jax_echo.tables import Column, markdown
from jax_echo.task import DISTINCT_MODELS, MODELS, epoch_data

# A loop that XLA:CPU's small-loop option (jax_echo.xla_flags) compiled whole is a call with this
# attribute: one kernel, however many ops and trips it holds.
SMALL_CALL = 'xla_cpu_small_call="true"'
# Instructions that launch no work of their own.
_NOT_KERNELS = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "while"}


def _computations(hlo: str) -> tuple[dict[str, list[str]], str]:
    """``({name: instruction lines}, entry name)`` of an HLO module's text."""
    computations, entry = {}, ""
    for block in hlo.split("\n\n"):
        lines = block.strip("\n").splitlines()
        header = re.match(r"(ENTRY\s+)?%?([\w.\-]+)\s*\(", lines[0]) if lines else None
        if header:
            computations[header.group(2)] = lines[1:]
            entry = header.group(2) if header.group(1) else entry
    return computations, entry


def launched_kernels(hlo: str, unknown_trips: int | None = None) -> tuple[int, int]:
    """``(kernels, dots)`` one run of an optimized HLO module launches: the instructions that do
    work (fusions, unfused ops) of the entry and of every while loop, a loop's body and condition
    counted its known trip count times (else ``unknown_trips`` times; without it, ValueError), a
    ``call``'s computation once and a ``SMALL_CALL`` as one kernel; ``dots``: the kernels that
    are, or fuse, a ``dot``."""
    computations, entry = _computations(hlo)
    has_dot = {name for name, lines in computations.items() if any(" dot(" in x for x in lines)}

    def count(name: str) -> tuple[int, int]:
        kernels = dots = 0
        for line in computations[name]:
            op = re.search(r"=\s.*?\s([a-z][a-z0-9\-]*)\(", line)
            if op is None:
                continue
            if op.group(1) == "while":
                trips = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', line)
                if trips is None and unknown_trips is None:
                    raise ValueError(f"a while loop without a known trip count: {line[:80]}")
                n = unknown_trips if trips is None else int(trips.group(1))
                for part in re.findall(r"(?:body|condition)=%?([\w.\-]+)", line):
                    k, d = count(part)
                    kernels, dots = kernels + n * k, dots + n * d
            elif op.group(1) == "call":  # XLA:CPU wraps some loops in a call
                k, d = count(re.search(r"to_apply=%?([\w.\-]+)", line).group(1))
                kernels, dots = kernels + (1 if SMALL_CALL in line else k), dots + d
            elif op.group(1) not in _NOT_KERNELS:
                kernels += 1
                called = re.search(r"calls=%?([\w.\-]+)", line)
                dots += op.group(1) == "dot" or bool(called and called.group(1) in has_dot)
        return kernels, dots

    return count(entry)


def jax_epoch_hlo(cfg) -> str:
    params = init_params(cfg)
    opt_state = make_optimizer(cfg).init(params)
    epoch = jax.jit(model.make_train_epoch(cfg))
    return epoch.lower(params, opt_state, *epoch_data(cfg, 0), None).compile().as_text()


def tf_epoch_hlo(cfg) -> str:
    import tf_echo  # TensorFlow: imported by the one function that needs it

    trainer = tf_echo.make_trainer("function-epoch-xla", cfg, init_params(cfg))
    return trainer.epoch_hlo(*epoch_data(cfg, 0))


def main(argv: list[str]) -> int:
    models = {name: MODELS[name].config for name in DISTINCT_MODELS}
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hlo")
    parser.add_argument("--models", nargs="+", choices=list(models), default=list(models))
    args = parser.parse_args(argv)
    rows = []
    for name in args.models:
        cfg = models[name]
        # TF's loop over the epoch's windows (a tf.range of the data's length) has no known
        # trip count in the HLO: it runs once per window.
        jax_k, _ = launched_kernels(jax_epoch_hlo(cfg))
        tf_k, _ = launched_kernels(tf_epoch_hlo(cfg), unknown_trips=cfg.num_batches)
        rows.append((name, jax_k, jax_k / cfg.num_batches, tf_k, tf_k / cfg.num_batches))
    per_window = Column("per window", "{:.2f}")
    columns = ["model", Column("jax-epoch kernels/epoch", "{:,.0f}"), per_window]
    columns += [Column("tf-function-epoch-xla kernels/epoch", "{:,.0f}"), per_window]
    print(f"XLA:CPU's small-loop option: {'on' if xla_flags.SMALL_LOOPS else 'off'}\n")
    print(markdown(columns, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
