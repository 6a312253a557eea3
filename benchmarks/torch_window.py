"""PyTorch's compiled training window in every form tried, side by side with the benchmark row.

    python -m benchmarks.torch_window [--part N | --cell lstm --state-size 128 ...]
                                      [--windows 100] [--rounds 5]

The ``torch-compile-window`` row (``jax_echo.peers.torch_peer.WindowCompiledTrainer``) must be
PyTorch at its best, so this times it beside the other forms an expert would try, in one process
and interleaved round by round (us per window, float32, the state carried): ``row`` (functional
update, C++ wrapper), ``in-place`` (Adagrad's update as ``add_`` / ``sub_`` in the graph),
``hoisted`` (each layer's input product for all T steps before the recurrence, as cuDNN does)
and ``python-wrapper`` (the row without Inductor's C++ wrapper). The row's ratio to the fastest
form in the printed table checks that it is not handicapped (at most 1.3x).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time

import torch
from torch import nn

from jax_echo import EchoConfig, epoch_data, init_params
from jax_echo.arguments import add_config_args, config_from_args
from jax_echo.cells import LSTM_FORGET_BIAS, input_width, params_to_dict
from jax_echo.peers import torch_peer
from jax_echo.tables import Column, markdown
from jax_echo.task import split_windows


def hoisted_loss(cfg: EchoConfig):
    """``window_loss`` with each layer's input product taken for all steps at once (tanh and
    LSTM cells; the GRU's reset gate sits inside its candidate product)."""

    def loss_fn(weights, state, x_BxT, y_BxT):
        inputs_TxBxI, final = x_BxT.T.unsqueeze(-1), []
        for k in range(cfg.num_layers):
            kernel, bias = torch_peer.layer_weights(cfg, weights, k)
            I = input_width(k, cfg.state_size)
            recurrent, layer, out = kernel[I:], state[k], []
            for z_in in (inputs_TxBxI @ kernel[:I] + bias).unbind(0):
                if cfg.cell == "lstm":
                    c_BxS, h_BxS = layer
                    i, j, f, o = (z_in + h_BxS @ recurrent).chunk(4, -1)
                    forget = torch.sigmoid(f + LSTM_FORGET_BIAS)
                    c_BxS = c_BxS * forget + torch.sigmoid(i) * torch.tanh(j)
                    h_BxS = torch.tanh(c_BxS) * torch.sigmoid(o)
                    layer = (c_BxS, h_BxS)
                else:
                    layer = h_BxS = torch.tanh(z_in + layer @ recurrent)
                out.append(h_BxS)
            final.append(layer)
            inputs_TxBxI = torch.stack(out)
        logits = inputs_TxBxI @ weights["W2"] + weights["b2"].reshape(-1)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y_BxT.T.flatten())
        return loss, tuple(final)

    return loss_fn


def in_place_step(cfg: EchoConfig):
    """``window_step``'s contract with Adagrad's update in place (``add_`` / ``sub_``)."""

    loss = functools.partial(torch_peer.window_loss, cfg)
    grad_and_loss = torch.func.grad_and_value(loss, has_aux=True)
    rate = cfg.learning_rate

    def step(weights, accumulators, state, x_BxT, y_BxT):
        grads, (loss, state) = grad_and_loss(weights, state, x_BxT, y_BxT)
        for k, w in weights.items():
            accumulators[k].add_(grads[k] * grads[k])
            w.sub_(rate * grads[k] / accumulators[k].sqrt())
        return weights, accumulators, state, loss

    return step


def forms(cfg: EchoConfig) -> dict[str, object]:
    """Each form's compiled step (the row's own first)."""
    cpp = {"cpp_wrapper": True}
    found = {
        "row": torch.compile(torch_peer.window_step(cfg), fullgraph=True, options=cpp),
        "in-place": torch.compile(in_place_step(cfg), fullgraph=True, options=cpp),
        "python-wrapper": torch.compile(torch_peer.window_step(cfg), fullgraph=True),
    }
    if cfg.cell != "gru":
        hoisted = torch_peer.window_step(cfg, hoisted_loss(cfg))
        found["hoisted"] = torch.compile(hoisted, fullgraph=True, options=cpp)
    return found


def measure(cfg: EchoConfig, windows: int, rounds: int) -> dict[str, dict[str, float]]:
    """Per form: compile seconds and the median, min and max us per window over ``rounds``."""
    T = cfg.truncated_backprop_length
    x, y = epoch_data(cfg, 0)
    N = min(windows, cfg.num_batches)
    x_NxBxT = split_windows(torch.tensor(x, dtype=torch.float32), T)[:N].contiguous()
    y_NxBxT = split_windows(torch.tensor(y, dtype=torch.int64), T)[:N].contiguous()
    batches = list(zip(x_NxBxT, y_NxBxT, strict=True))
    flat = params_to_dict(init_params(cfg))
    runs, results, times = {}, {}, {}
    for name, step in forms(cfg).items():
        weights = {k: torch.tensor(v) for k, v in flat.items()}
        carried = [
            weights,
            {k: torch.full_like(v, 0.1) for k, v in weights.items()},
            torch_peer.zero_state(cfg, torch.float32, torch.device("cpu")),
        ]
        start = time.perf_counter()
        *carried, loss = step(*carried, *batches[0])
        loss.item()
        results[name] = {"compile_seconds": time.perf_counter() - start}
        runs[name], times[name] = (step, carried), []
    for _ in range(rounds):
        for name, (step, carried) in runs.items():
            start = time.perf_counter()
            for x_BxT, y_BxT in batches:
                *carried, loss = step(*carried, x_BxT, y_BxT)
            loss.item()
            times[name].append((time.perf_counter() - start) / N * 1e6)
            runs[name] = (step, carried)
    for name, t in times.items():
        results[name] |= {"median": statistics.median(t), "min": min(t), "max": max(t)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_config_args(parser)
    parser.add_argument("--windows", type=int, default=100, help="windows a round (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    results = measure(cfg, args.windows, args.rounds)
    fastest = min(r["median"] for r in results.values())
    spread = Column(
        "us per window (min-max)", lambda r: f"{r['median']:,.1f} ({r['min']:,.1f}-{r['max']:,.1f})"
    )
    columns = ["form", spread, Column("x the fastest", lambda r: f"{r['median'] / fastest:.2f}x")]
    columns.append(Column("compile s", lambda r: f"{r['compile_seconds']:.1f}"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cfg}")
    print(markdown(columns, [(name, r, r, r) for name, r in results.items()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
