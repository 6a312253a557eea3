"""Where a population's time goes: windows per second by chunk width, and the compiled program.

    python -m benchmarks.population_profile [--members 256] [--rounds 7] [--chunks 1 2 4 8 16 32]

``train_population_epoch`` runs a population as ``lax.map`` over chunks of members, each chunk a
``vmap`` of the epoch. This measures, in one process and interleaved round by round (so a noisy
neighbour hits every row alike), the population's training throughput for each chunk width
against a loop of ``train_epoch`` calls over the same members, and counts what XLA compiled for
each width: the kernels (fusions and other thunks) of the epoch's optimized HLO, and its
``dot`` operations. Prints a Markdown table; the numbers in docs/scaling.md come from it.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time

import jax
import numpy as np

from jax_echo import model
from jax_echo.cells import init_params
from jax_echo.optim import make_optimizer
from jax_echo.scale import population_program
from jax_echo.task import EchoConfig, epoch_data

CFG = EchoConfig(num_epochs=1, total_series_length=1500)  # the population group's: 20 windows


def hlo_counts(compiled) -> tuple[int, int]:
    """(kernels, dots) of a compiled program's optimized HLO, counted in the computations that
    run as such (the entry, and the bodies and conditions of while loops): every instruction
    that launches work on its own (a fusion, or an unfused op; not parameters, constants,
    tuples, bitcasts, or the loops themselves), and the ``dot`` instructions among them or
    inside their fusions."""
    text = compiled.as_text()
    computations = {}
    for block in text.split("\n\n"):
        header = re.match(r"\s*(ENTRY\s+)?%?([\w.\-]+)", block)
        if header:
            computations[header.group(2)] = (bool(header.group(1)), block)
    running = {name for name, (entry, _) in computations.items() if entry}
    running |= set(re.findall(r"(?:body|condition)=%?([\w.\-]+)", text))
    skipped = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "while"}
    kernels = 0
    for name in running:
        for line in computations.get(name, (False, ""))[1].splitlines()[1:]:
            op = re.search(r"=\s.*?\s([a-z][a-z0-9\-]*)\(", line)
            if op and op.group(1) not in skipped:
                kernels += 1
    dots = len(re.findall(r"\sdot\(", text))
    return kernels, dots


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.population_profile")
    parser.add_argument("--members", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    args = parser.parse_args(argv)
    P, cfg = args.members, CFG
    x, y = epoch_data(cfg, 0)
    members = [init_params(cfg, seed) for seed in range(P)]
    optimizer = make_optimizer(cfg)
    stacked = jax.tree.map(lambda *a: np.stack(a), *members)
    xs, ys = np.broadcast_to(x, (P, *x.shape)), np.broadcast_to(y, (P, *y.shape))

    def chunked(width: int):
        population = population_program(cfg, width)
        lowered = population.lower(stacked, jax.vmap(optimizer.init)(stacked), xs, ys, None)
        counts = hlo_counts(lowered.compile())

        def run():
            state = (jax.tree.map(np.copy, stacked), jax.vmap(optimizer.init)(stacked))
            t0 = time.perf_counter()
            jax.block_until_ready(population(*state, xs, ys, None))
            return time.perf_counter() - t0

        return run, counts

    def one_by_one():
        state = [(p, optimizer.init(p)) for p in members]
        t0 = time.perf_counter()
        jax.block_until_ready([model.train_epoch(p, s, x, y, cfg) for p, s in state])
        return time.perf_counter() - t0

    single = jax.jit(model.make_train_epoch(cfg)).lower(
        members[0], optimizer.init(members[0]), x, y, None
    )
    rows = {"one by one": (one_by_one, hlo_counts(single.compile()))}
    rows |= {f"chunks of {w}": chunked(w) for w in args.chunks if w <= P}
    for run, _ in rows.values():
        run()  # compile and warm up
    seconds = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, (run, _) in rows.items():
            seconds[name].append(run())
    windows = P * cfg.num_batches
    base = statistics.median(seconds["one by one"])
    print(
        f"{P} members x {cfg.num_batches} windows, {args.rounds} interleaved rounds, "
        f"{jax.devices()[0].device_kind}\n"
    )
    print("| form | windows/s (median) | min-max | vs one by one | kernels | dots |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for name, (_, (kernels, dots)) in rows.items():
        t = seconds[name]
        print(
            f"| {name} | {windows / statistics.median(t):,.0f} | {windows / max(t):,.0f}-"
            f"{windows / min(t):,.0f} | {base / statistics.median(t):.2f}x | {kernels} | {dots} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
