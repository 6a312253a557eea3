"""Figures: the tutorial's (loss history and the current window of every row), loss overlays,
``compare``'s losses with their differences from the reference, and ``bench``'s bars.

Drawn on ``matplotlib.figure.Figure`` directly: no pyplot, no display, no global figure state.
Matplotlib is imported by the functions that draw, not with this module: it takes about as long
to import as JAX, and only the commands that draw need it (``jax-echo eval`` does not).
"""

from __future__ import annotations

import contextlib
import math
import os
import textwrap
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jax_echo.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# One colour per library, in every figure that compares them.
COLOURS = {
    "jax": "tab:blue",
    "tensorflow": "tab:orange",
    "torch": "tab:red",
    "flax": "tab:green",
    "keras": "tab:purple",
}


def preload() -> threading.Thread:
    """Imports Matplotlib's ``Figure`` and Agg canvas in a background thread, and returns it.

    ``jax-echo train`` starts it before compiling: the import (docs/performance.md) then
    runs while XLA compiles and trains, which release the GIL, instead of after them. Drawing
    needs no join: an import that is under way in another thread is waited for, and one that
    failed there is tried again (and raises) where the figure is drawn.
    """

    def load() -> None:
        with contextlib.suppress(ImportError):
            import matplotlib.backends.backend_agg  # savefig's canvas
            import matplotlib.figure  # noqa: F401

    thread = threading.Thread(target=load, name="jax-echo-preload-matplotlib", daemon=True)
    thread.start()
    return thread


def echo_figure(losses: Any, x_BxT: Any, y_BxT: Any, pred_BxT: Any, title: str = "") -> Figure:
    """A 2x3 grid: per-window loss history, then rows 0-4 of one window as bars.

    Input in blue (height 1), target in red (height 0.5), prediction in green (height 0.3),
    on the axis [0, T, 0, 2], as in the tutorial, with a legend on row 0. Drawn cheaply (a
    fixed layout, one filled step outline per series rather than a bar per step, few ticks, no
    mathtext): it is part of every training run.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 6))
    fig.subplots_adjust(left=0.065, right=0.98, bottom=0.07, top=0.88, wspace=0.18, hspace=0.4)
    axes = fig.subplots(2, 3).ravel()
    axes[0].plot(np.asarray(losses))
    axes[0].set(title="loss per window", xlabel="window", ylabel="loss (log)", yscale="log")
    axes[0].minorticks_off()
    axes[0].yaxis.set_major_formatter("{x:g}")  # plain text: no mathtext parser to build
    T = np.shape(x_BxT)[1]
    edges = np.arange(T + 1)
    for row, ax in enumerate(axes[1:6]):
        if row >= np.shape(x_BxT)[0]:
            ax.axis("off")
            continue
        ax.stairs(np.asarray(x_BxT[row]), edges, fill=True, color="blue", label="input")
        ax.stairs(np.asarray(y_BxT[row]) * 0.5, edges, fill=True, color="red", label="target")
        ax.stairs(
            np.asarray(pred_BxT[row]) * 0.3, edges, fill=True, color="green", label="prediction"
        )
        ax.axis([0, T, 0, 2])
        ax.set(xticks=np.linspace(0, T, 4).round(), yticks=[0, 1, 2], xlabel="step")
        ax.set_title(f"row {row} of the batch", fontsize=9)
    axes[1].legend(loc="upper right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def loss_curves(curves: dict[str, Any], title: str) -> Figure:
    """Per-window loss curves, one per label, on a log scale (a legend up to 12 curves)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5), layout="tight")
    ax = fig.subplots()
    for label, curve in curves.items():
        ax.plot(np.asarray(curve), linewidth=0.8, alpha=0.8, label=label)
    ax.set(xlabel="window", ylabel="loss", yscale="log", title=title)
    if len(curves) <= 12:
        ax.legend(fontsize=8)
    return fig


def compare_figure(curves: dict[str, Any], reference: str, title: str) -> Figure:
    """Two panels sharing the window axis: every curve's per-window loss (log), then each one's
    absolute difference from ``reference``'s curve (log; an exact zero is drawn at the floor
    1e-12 and counted in the legend), so that a difference the overlay hides is visible."""
    from matplotlib.figure import Figure

    if reference not in curves:
        raise ValueError(f"the reference {reference!r} is not among the curves {list(curves)}")
    fig = Figure(figsize=(10, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    ref = np.asarray(curves[reference], np.float64)
    colours = dict(zip(curves, _cycle(len(curves)), strict=True))
    for label, curve in curves.items():
        curve = np.asarray(curve, np.float64)
        top.plot(curve, linewidth=0.8, alpha=0.8, color=colours[label], label=label)
        if label == reference:
            continue
        diff = np.abs(curve - ref[: len(curve)])
        zeros = int(np.sum(diff == 0))
        note = f" ({zeros} windows equal)" if zeros else ""
        bottom.plot(
            np.maximum(diff, FLOOR), linewidth=0.8, color=colours[label], label=label + note
        )
    top.set(ylabel="loss (log)", yscale="log", title=title)
    top.yaxis.set_major_formatter("{x:g}")
    losses = np.concatenate([np.ravel(c) for c in curves.values()]).astype(np.float64)
    losses = losses[np.isfinite(losses) & (losses > 0)]
    if losses.size and losses.max() < 10 * losses.min():  # under a decade: minor ticks labelled
        top.yaxis.set_minor_formatter("{x:g}")  # 0.7, not 7 x 10^-1
    top.legend(fontsize=8, ncols=2 if len(curves) > 6 else 1)
    bottom.set(
        xlabel="window",
        ylabel=f"|loss - {reference}'s| (log)",
        yscale="log",
        ylim=(FLOOR / 3, None),
    )
    if len(curves) > 1:
        bottom.legend(fontsize=8, ncols=2 if len(curves) > 7 else 1)
    return fig


FLOOR = 1e-12  # where compare_figure draws a difference of exactly 0 on its log axis


def _cycle(n: int) -> list[str]:
    return [f"C{k % 10}" for k in range(n)]


def bench_figure(report: dict[str, Any]) -> Figure:
    """``jax-echo bench``'s report as ``bars``: one bar per row, its time relative to the fastest
    row, the process min-max as whiskers, a colour per library."""
    from matplotlib.figure import Figure

    results = report["results"]
    fig = Figure(figsize=(max(6.5, 0.6 * len(results) + 3), 5.5), layout="constrained")
    cfg, settings = report["config"], report["settings"]
    rows = [
        (
            r["implementation"],
            r["library"],
            r["us_per_window"],
            r["us_per_window_min"],
            r["us_per_window_max"],
        )
        for r in results
    ]
    title = (
        f"{cfg['cell']}, state {cfg['state_size']}, batch {cfg['batch_size']}, window "
        f"{cfg['truncated_backprop_length']} ({settings['dtype']}, {settings['device']}): "
        f"median of {settings['processes']} processes"
    )
    bars(fig.subplots(), rows, ylabel="us per window", title=title)
    return fig


def bars(
    ax: Axes, rows: Sequence[tuple[str, str, float, float, float]], *, ylabel: str, title: str
) -> None:
    """Bars of ``(name, library, median, min, max)`` rows on ``ax``, each as its ratio to the
    fastest row's median.

    The axis is linear from 0 while the largest ratio is at most 10, logarithmic with whole
    decades at both ends beyond that; a dashed line marks ratio 1 (the fastest row), the process
    min-max are whiskers, each bar carries its median in ``ylabel``'s unit, one colour per
    library (``COLOURS``) with a legend. A long ``title`` is wrapped to the axis' width.
    """
    from matplotlib.patches import Patch

    names, libraries, value, low, high = (list(column) for column in zip(*rows, strict=True))
    value, low, high = (np.asarray(v, np.float64) for v in (value, low, high))
    fastest = int(np.argmin(value))
    unit = value[fastest]
    ratio, ratio_low, ratio_high = value / unit, low / unit, high / unit
    x = np.arange(len(rows))
    colours = [COLOURS.get(lib, "tab:gray") for lib in libraries]
    ax.bar(x, ratio, color=colours, width=0.7)
    ax.errorbar(
        x,
        ratio,
        yerr=[ratio - ratio_low, ratio_high - ratio],
        fmt="none",
        ecolor="black",
        elinewidth=1,
        capsize=3,
    )
    unit_name = ylabel.replace(" (log)", "")
    top = float(max(ratio_high.max(), ratio.max()))
    if top <= 10:
        ax.set_ylim(0, top * 1.3)  # room for the labels and the legend
        scale = "linear"
    else:
        bottom = min(float(ratio_low.min()), 1.0) * 0.999  # the fastest bar: a decade at least
        ax.set_yscale("log")
        ax.set_ylim(10 ** math.floor(math.log10(bottom)), 10 ** math.ceil(math.log10(top * 1.3)))
        scale = "log"
    for k, v in enumerate(value):
        ax.annotate(
            f"{v:,.0f}" if v >= 100 else f"{v:.3g}",
            (x[k], ratio_high[k]),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    line = ax.axhline(
        1, color="black", linestyle="--", linewidth=0.8, label=f"1 = {names[fastest]}"
    )
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"{unit_name}, x the fastest row ({scale} axis)", fontsize=9)
    width = ax.get_figure().get_figwidth() * ax.get_position().width
    ax.set_title(textwrap.fill(title, max(40, int(width * 12))), fontsize=9)
    handles = [
        Patch(color=COLOURS.get(lib, "tab:gray"), label=lib) for lib in dict.fromkeys(libraries)
    ]
    ax.legend(
        handles=[*handles, line],
        loc="upper left",
        ncols=2 if len(handles) > 2 else 1,
        fontsize=7,
        title=f"bar labels: {unit_name}",
        title_fontsize=7,
    )


def sweep_figure(history: dict[str, Any]) -> Figure:
    """The per-window losses of every member of a ``fit_population`` run."""
    losses = np.concatenate(np.asarray(history["loss"]), axis=-1)  # (P, epochs * N)
    labels = [f"seed {m['seed']}, lr {m['learning_rate']:g}" for m in history["members"]]
    return loss_curves(
        dict(zip(labels, losses, strict=True)), f"population of {len(losses)}: per-window loss"
    )


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Saves as PNG atomically (temporary file, then rename)."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
