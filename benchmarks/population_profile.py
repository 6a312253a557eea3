"""Where a population's time goes: windows per second by chunk width, and the compiled program.

    python -m benchmarks.population_profile [--members 256] [--rounds 7] [--chunks 4 8 16 32 64]
                                            [--part 1]

``train_population_epoch`` runs a population chunk after chunk (``population.by_chunks``), each
chunk either with its members on the last axis of every array (lanes) or as a ``vmap`` of the epoch
(``population.make_population_epoch``). This measures, in one process and interleaved round by round
(so a noisy neighbour hits every row alike), the population's training throughput for each
layout and chunk width (one program, one thread), and of the form ``train_population_epoch``
ships (the policy's chunk, shared out over one thread per core), against a loop of
``train_epoch`` calls over the same members, and what
XLA launches for each width (``benchmarks.hlo.launched_kernels``): kernels per trained window
(a chunk's kernel serves every member in it) and how many of them are dots. Prints a Markdown table;
docs/scaling.md quotes it.
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
from jax_echo.task import MODELS, EchoConfig, epoch_data


def _model(part: str) -> EchoConfig:
    """A series model with the population group's 20 windows an epoch."""
    cfg = MODELS[part if part == "gru" else f"part{part}"].config
    return dataclasses.replace(cfg, num_epochs=1, total_series_length=1500)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.population_profile")
    parser.add_argument("--members", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunks", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--part", default="1", help="the series model: 1-6 or gru (default 1)")
    args = parser.parse_args(argv)
    P, cfg = args.members, _model(args.part)
    x, y = epoch_data(cfg, 0)
    members = [init_params(cfg, seed) for seed in range(P)]
    optimizer = make_optimizer(cfg)
    stacked = stack(members)
    xs, ys = np.broadcast_to(x, (P, *x.shape)), np.broadcast_to(y, (P, *y.shape))

    def chunked(width: int, lanes: bool):
        population = population_program(cfg, width, lanes, size=P)
        lowered = population.lower(stacked, jax.vmap(optimizer.init)(stacked), xs, ys, None)
        counts = launched_kernels(lowered.compile().as_text())

        def run():
            state = (jax.tree.map(np.copy, stacked), jax.vmap(optimizer.init)(stacked))
            t0 = time.perf_counter()
            jax.block_until_ready(population(*state, xs, ys, None))
            return time.perf_counter() - t0

        return run, counts, P

    def one_by_one():
        state = [(p, optimizer.init(p)) for p in members]
        t0 = time.perf_counter()
        jax.block_until_ready([model.train_epoch(p, s, x, y, cfg) for p, s in state])
        return time.perf_counter() - t0

    def shipped(rows):
        """``train_population_epoch``'s form: the policy's layout and chunk, the chunks shared
        out over ``policy.population_threads`` threads (``population.population_trainer``); its
        kernel counts are those of its program's row, compiled for them if ``rows`` lacks it."""
        chunk, threads = policy.population_chunk(cfg, P), policy.population_threads(cfg, P)
        train = population_trainer(cfg, P)
        lanes = policy.population_lanes(cfg)
        same = rows.get(f"{'lanes' if lanes else 'vmap'}, chunks of {chunk}")
        _, counts, _ = same or chunked(chunk, lanes)

        def run():
            state = (jax.tree.map(np.copy, stacked), jax.vmap(optimizer.init)(stacked))
            t0 = time.perf_counter()
            jax.block_until_ready(train(*state, xs, ys, None))
            return time.perf_counter() - t0

        return f"shipped: chunks of {chunk} over {threads} thread(s)", (run, counts, P)

    rows = {"one by one": (one_by_one, launched_kernels(jax_epoch_hlo(cfg)), 1)}
    for lanes in (False, True):
        layout = "lanes" if lanes else "vmap"
        rows |= {f"{layout}, chunks of {w}": chunked(w, lanes) for w in args.chunks if w <= P}
    name, row = shipped(rows)
    rows[name] = row
    for run, *_ in rows.values():
        run()  # compile and warm up
    seconds = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, (run, *_) in rows.items():
            seconds[name].append(run())
    windows = P * cfg.num_batches
    base = statistics.median(seconds["one by one"])
    print(
        f"{P} members x {cfg.num_batches} windows, {args.rounds} interleaved rounds, "
        f"{jax.devices()[0].device_kind}\n"
    )
    columns = [
        Column("form", right=False),
        Column("windows/s (median)", "{:,.0f}"),
        Column("min-max", right=False),
        Column("vs one by one", "{:.2f}x"),
        Column("kernels per window", "{:.3f}"),
        Column("dots", "{:.2f}"),
        Column("us per kernel", "{:.2f}"),
    ]
    table = []
    for name, (_, (kernels, dots), members) in rows.items():
        t, per_window = statistics.median(seconds[name]), members * cfg.num_batches
        fastest, slowest = windows / min(seconds[name]), windows / max(seconds[name])
        table.append(
            (
                name,
                windows / t,
                f"{slowest:,.0f}-{fastest:,.0f}",
                base / t,
                kernels / per_window,
                dots / per_window,
                t / (kernels * P // members) * 1e6,
            )
        )
    print(markdown(columns, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
