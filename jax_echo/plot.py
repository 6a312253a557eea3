"""Figures: the tutorial's (loss history and one window), ``compare``'s losses with their
differences from the reference, a sweep's losses, and the ratio dots of ``bench`` and the report.

Drawn on ``matplotlib.figure.Figure`` directly: no pyplot, no global figure state. Matplotlib is
imported by the functions that draw: it takes about as long to import as JAX.
"""

from __future__ import annotations

import contextlib
import math
import os
import textwrap
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jax_echo.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FLOOR = 1e-12  # where compare_figure draws a difference of exactly 0 on its log axis
# One colour per library, in every figure that compares them.
COLOURS = {
    "jax": "tab:blue",
    "tensorflow": "tab:orange",
    "torch": "tab:red",
    "flax": "tab:green",
    "keras": "tab:purple",
}


def preload() -> threading.Thread:
    """Imports Matplotlib's ``Figure`` and Agg canvas in a background thread, while XLA compiles
    and trains (docs/performance.md). Drawing needs no join: Python waits for an import under way
    in another thread, and retries (and raises) one that failed there."""

    def load() -> None:
        with contextlib.suppress(ImportError):
            import matplotlib.backends.backend_agg  # savefig's canvas
            import matplotlib.figure  # noqa: F401

    thread = threading.Thread(target=load, name="jax-echo-preload-matplotlib", daemon=True)
    thread.start()
    return thread


def echo_figure(losses: Any, x_BxT: Any, y_BxT: Any, pred_BxT: Any, title: str = "") -> Figure:
    """A 2x3 grid: per-window loss history, then rows 0-4 of one window as bars.

    Input in blue (height 1), target in red (0.5), prediction in green (0.3) on [0, T, 0, 2], as
    in the tutorial. Drawn cheaply (a fixed layout, one filled step outline per series, few
    ticks, no mathtext): it is part of every training run.
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
        for series, height, colour, label in (
            (x_BxT, 1, "blue", "input"),
            (y_BxT, 0.5, "red", "target"),
            (pred_BxT, 0.3, "green", "prediction"),
        ):
            ax.stairs(np.asarray(series[row]) * height, edges, fill=True, color=colour, label=label)
        ax.axis([0, T, 0, 2])
        ax.set(xticks=np.linspace(0, T, 4).round(), yticks=[0, 1, 2], xlabel="step")
        ax.set_title(f"row {row} of the batch", fontsize=9)
    axes[1].legend(loc="upper right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def compare_figure(curves: dict[str, Any], reference: str, title: str) -> Figure:
    """Two panels sharing the window axis: every curve's per-window loss (log), then each one's
    absolute difference from ``reference``'s (log; an exact zero drawn at ``FLOOR``, counted)."""
    from matplotlib.figure import Figure

    if reference not in curves:
        raise ValueError(f"the reference {reference!r} is not among the curves {list(curves)}")
    fig = Figure(figsize=(10, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    ref = np.asarray(curves[reference], np.float64)
    colours = {label: f"C{k % 10}" for k, label in enumerate(curves)}
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
    ylabel = f"|loss - {reference}'s| (log)"
    bottom.set(xlabel="window", ylabel=ylabel, yscale="log", ylim=(FLOOR / 3, None))
    if len(curves) > 1:
        bottom.legend(fontsize=8, ncols=2 if len(curves) > 7 else 1)
    return fig


def jax_first(libraries: Iterable[str]) -> list[str]:
    """The libraries named, once each, JAX's first: the order of every figure's legend."""
    return sorted(set(libraries), key=lambda lib: (lib != "jax", lib))


def bench_figure(report: dict[str, Any]) -> Figure:
    """``jax-echo bench``'s report as ``ratio_panel``: each row against the fastest."""
    from matplotlib.figure import Figure

    results = report["results"]
    both = len({r.get("cores") for r in results}) > 1  # --cores both: each row twice
    cores = {"all": ", all cores", "one": ", one core", None: ""}
    keys = ("library", "us_per_window", "us_per_window_min", "us_per_window_max")
    rows = sorted(
        (
            (r["implementation"] + cores[r.get("cores") if both else None], *(r[k] for k in keys))
            for r in results
        ),
        key=lambda row: row[2],
    )
    cfg, settings = report["config"], report["settings"]
    title = (
        f"{cfg['cell']}, state {cfg['state_size']}, batch {cfg['batch_size']}, window "
        f"{cfg['truncated_backprop_length']} ({settings['dtype']}, {settings['device']}): us per "
        f"window, median of {settings['processes']} processes (whiskers: min-max)"
    )
    fig = Figure(figsize=(6.5, max(3.0, 0.22 * len(rows) + 1.6)), layout="constrained")
    ratio_panel(fig.subplots(), rows, rows[0][0], title)
    return fig


Row = tuple[str, str, float, float, float]  # name, library, median, min, max


def dot(ax: Axes, row: Row, base: float, at: float, across: bool, **style: Any) -> list[float]:
    """``row``'s median over ``base`` as a dot at ``at`` (on the x axis when ``across``), its
    min-max as whiskers, in its library's colour; the whiskers' ends."""
    _, library, value, low, high = row
    spread = [[(value - low) / base], [(high - value) / base]]
    style = {"fmt": "o", "color": COLOURS.get(library, "tab:gray"), "capsize": 3, **style}
    if across:
        ax.errorbar(value / base, at, xerr=spread, **style)
    else:
        ax.errorbar(at, value / base, yerr=spread, **style)
    return [low / base, high / base]


def decades(ax: Axes, values: Sequence[float], axis: str = "x", one: bool = True) -> None:
    """A log axis of whole decades around every value (and 1, for a ratio)."""
    values = [*values, 1.0] if one else list(values)
    low = 10 ** math.floor(math.log10(min(values) / 1.0001))
    high = 10 ** math.ceil(math.log10(max(values) * 1.0001))
    getattr(ax, f"set_{axis}scale")("log")
    getattr(ax, f"set_{axis}lim")(low, high)


def ratio_panel(ax: Axes, rows: Sequence[Row], reference: str, title: str) -> None:
    """One dot per row, best first at the top: its median over ``reference``'s, on a log axis of
    whole decades with the ratio-1 line; min-max whiskers; one colour per library, a legend."""
    base = next(row[2] for row in rows if row[0] == reference)
    values = []
    for i, row in enumerate(rows[::-1]):
        values += dot(ax, row, base, i, across=True)
    ax.axvline(1.0, color="black", linewidth=0.8)
    decades(ax, values)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([row[0] for row in rows[::-1]], fontsize=7)
    ax.set_xlabel(f"time relative to {reference} (log axis)", fontsize=8)
    width = ax.get_figure().get_figwidth() * ax.get_position().width
    ax.set_title(textwrap.fill(title, max(40, int(width * 12))), fontsize=9)
    ax.grid(axis="x", which="major", alpha=0.3)
    handles = [
        ax.plot([], [], "o", color=COLOURS.get(lib, "tab:gray"), label=lib)[0]
        for lib in jax_first(row[1] for row in rows)
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper right")


def sweep_figure(history: dict[str, Any]) -> Figure:
    """The per-window losses of every member of a ``fit_population`` run, on a log scale (a
    legend up to 12 members)."""
    from matplotlib.figure import Figure

    losses = np.concatenate(np.asarray(history["loss"]), axis=-1)  # (P, epochs * N)
    fig = Figure(figsize=(10, 5), layout="tight")
    ax = fig.subplots()
    for member, curve in zip(history["members"], losses, strict=True):
        label = f"seed {member['seed']}, lr {member['learning_rate']:g}"
        ax.plot(curve, linewidth=0.8, alpha=0.8, label=label)
    title = f"population of {len(losses)}: per-window loss"
    ax.set(xlabel="window", ylabel="loss", yscale="log", title=title)
    if len(losses) <= 12:
        ax.legend(fontsize=8)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Saves as PNG atomically (temporary file, then rename)."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
