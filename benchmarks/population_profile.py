"""Where a population's time goes: windows per second by chunk width, and the compiled program.

    python -m benchmarks.population_profile [--members 256] [--rounds 7] [--chunks 4 8 16 32 64]
                                            [--part 1]

``train_population_epoch`` trains a population chunk after chunk, each chunk's members in the
lanes of every array or in a ``vmap`` of the epoch. This measures, in one process and interleaved
round by round (a noisy neighbour hits every row alike), the throughput of each layout and chunk
width (one program, one thread), of the form ``train_population_epoch`` ships (the policy's
chunk over one thread per core) and of a loop of ``train_epoch`` over the same members, with the
kernels XLA launches per trained window (``benchmarks.hlo.launched_kernels``: a chunk's kernel
serves every member in it) and how many are dots. Prints a Markdown table; docs/scaling.md
quotes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import jax
import numpy as np

from benchmarks.hlo import jax_epoch_hlo, launched_kernels
from jax_echo import model, policy
from jax_echo.cells import init_params
from jax_echo.optim import make_optimizer
from jax_echo.population import population_program, population_trainer, stack
from jax_echo.tables import Column, markdown
from jax_echo.task import MODELS, epoch_data


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.population_profile")
    parser.add_argument("--members", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunks", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--part", default="1", help="the series model: 1-6 or gru (default 1)")
    args = parser.parse_args(argv)
    P, part = args.members, args.part if args.part == "gru" else f"part{args.part}"
    # The series model with the population group's 20 windows an epoch.
    cfg = dataclasses.replace(MODELS[part].config, num_epochs=1, total_series_length=1500)
    x, y = epoch_data(cfg, 0)
    members = [init_params(cfg, seed) for seed in range(P)]
    optimizer = make_optimizer(cfg)
    stacked = stack(members)
    xs, ys = np.broadcast_to(x, (P, *x.shape)), np.broadcast_to(y, (P, *y.shape))

    def timed(train):
        """One call of ``train`` from every member's initial state: its seconds."""

        def run():
            state = (jax.tree.map(np.copy, stacked), jax.vmap(optimizer.init)(stacked))
            t0 = time.perf_counter()
            jax.block_until_ready(train(*state, xs, ys, None))
            return time.perf_counter() - t0

        return run

    def chunked(width: int, lanes: bool):
        population = population_program(cfg, width, lanes, size=P)
        lowered = population.lower(stacked, jax.vmap(optimizer.init)(stacked), xs, ys, None)
        return timed(population), launched_kernels(lowered.compile().as_text()), P

    def one_by_one():
        state = [(p, optimizer.init(p)) for p in members]
        t0 = time.perf_counter()
        jax.block_until_ready([model.train_epoch(p, s, x, y, cfg) for p, s in state])
        return time.perf_counter() - t0

    rows = {"one by one": (one_by_one, launched_kernels(jax_epoch_hlo(cfg)), 1)}
    for lanes in (False, True):
        layout = "lanes" if lanes else "vmap"
        rows |= {f"{layout}, chunks of {w}": chunked(w, lanes) for w in args.chunks if w <= P}
    # What train_population_epoch ships (population.population_trainer): the policy's layout and
    # chunk, the chunks shared out over threads; its kernels are its program's row's.
    chunk, threads = policy.population_chunk(cfg, P), policy.population_threads(cfg, P)
    train, lanes = population_trainer(cfg, P), policy.population_lanes(cfg)
    same = rows.get(f"{'lanes' if lanes else 'vmap'}, chunks of {chunk}")
    _, counts, _ = same or chunked(chunk, lanes)
    rows[f"shipped: chunks of {chunk} over {threads} thread(s)"] = (timed(train), counts, P)
    for run, *_ in rows.values():
        run()  # compile and warm up
    seconds = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, (run, *_) in rows.items():
            seconds[name].append(run())
    windows = P * cfg.num_batches
    base = statistics.median(seconds["one by one"])
    device = jax.devices()[0].device_kind
    print(f"{P} members x {cfg.num_batches} windows, {args.rounds} interleaved rounds, {device}\n")
    columns = ["form", Column("windows/s (median)", "{:,.0f}"), "min-max"]
    columns += [Column("vs one by one", "{:.2f}x"), Column("kernels per window", "{:.3f}")]
    columns += [Column("dots", "{:.2f}"), Column("us per kernel", "{:.2f}")]
    table = []
    for name, (_, (kernels, dots), members) in rows.items():
        t, per_window = statistics.median(seconds[name]), members * cfg.num_batches
        spread = f"{windows / max(seconds[name]):,.0f}-{windows / min(seconds[name]):,.0f}"
        per_kernel = t / (kernels * P // members) * 1e6
        ratios = (base / t, kernels / per_window, dots / per_window, per_kernel)
        table.append((name, windows / t, spread, *ratios))
    print(markdown(columns, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
