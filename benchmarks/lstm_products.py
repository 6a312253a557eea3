"""The matrix products of one LSTM step, timed alone in XLA:CPU (JAX) and in PyTorch.

    python -m benchmarks.lstm_products [--state 128] [--batch 32] [--reps 500] [--rounds 7]

An LSTM step of state S on a batch B runs three products, most of the time at the realistic
sizes: ``[x, h] (B, S+1) @ kernel (S+1, 4S)`` forward, ``dz (B, 4S) @ kernel.T`` and ``[x, h].T
(S+1, B) @ dz`` backward. Each is timed over ``reps`` left operands (JAX: one compiled loop;
PyTorch: a Python loop of ``torch.mm``), float32, interleaved round by round. Prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jax_echo.tables import Column, markdown


def shapes(S: int, B: int) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    return {
        "forward: [x, h] @ kernel": ((B, S + 1), (S + 1, 4 * S)),
        "backward: dz @ kernel.T": ((B, 4 * S), (4 * S, S + 1)),
        "backward: [x, h].T @ dz": ((S + 1, B), (B, 4 * S)),
    }


def jax_timer(a_R: np.ndarray, b: np.ndarray):
    """One compiled loop over the R left operands (``lax.map``: a while loop with a dot)."""
    products = jax.jit(lambda a_R, b: lax.map(lambda a: a @ b, a_R))
    a_R, b = jnp.asarray(a_R), jnp.asarray(b)
    jax.block_until_ready(products(a_R, b))

    def run() -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(products(a_R, b))
        return (time.perf_counter() - t0) / len(a_R)

    return run


def torch_timer(a_R: np.ndarray, b: np.ndarray):
    """A Python loop of ``torch.mm`` into a preallocated output: PyTorch's per-call cost is in
    the number, as it is in its eager training."""
    import torch

    a_R, b = torch.from_numpy(a_R), torch.from_numpy(b)
    out = torch.empty(a_R.shape[0], a_R.shape[1], b.shape[1])

    def run() -> float:
        t0 = time.perf_counter()
        for i in range(len(a_R)):
            torch.mm(a_R[i], b, out=out[i])
        return (time.perf_counter() - t0) / len(a_R)

    run()
    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lstm_products")
    parser.add_argument("--state", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    timers = {}
    for name, (shape_a, shape_b) in shapes(args.state, args.batch).items():
        a_R = rng.standard_normal((args.reps, *shape_a), dtype=np.float32)
        b = rng.standard_normal(shape_b, dtype=np.float32)
        timers[name] = {"jax": jax_timer(a_R, b), "torch": torch_timer(a_R, b)}
    seconds = {(name, lib): [] for name, libs in timers.items() for lib in libs}
    for _ in range(args.rounds):
        for name, libs in timers.items():
            for lib, run in libs.items():
                seconds[name, lib].append(run())
    print(f"LSTM state {args.state}, batch {args.batch}; {args.rounds} rounds of {args.reps}\n")
    rows = []
    for name, (shape_a, shape_b) in shapes(args.state, args.batch).items():
        jax_us, torch_us = (statistics.median(seconds[name, lib]) * 1e6 for lib in ("jax", "torch"))
        rows.append((name, f"{shape_a} @ {shape_b}", jax_us, torch_us, jax_us / torch_us))
    columns = ["product", "shapes", Column("JAX (XLA:CPU) us", "{:.1f}")]
    columns += [Column("PyTorch us", "{:.1f}"), Column("JAX / PyTorch", "{:.2f}")]
    print(markdown(columns, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
