"""Figures: the tutorial's (loss history and the current window of every row), loss overlays.

Drawn on ``matplotlib.figure.Figure`` directly: no pyplot, no display, no global figure state.
Matplotlib is imported by the functions that draw, not with this module: it takes about as long
to import as JAX, and only the commands that draw need it (``jax-echo eval`` does not).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from jax_echo.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    on the axis [0, T, 0, 2], as in the tutorial. Drawn cheaply (a fixed layout, one filled step
    outline per series rather than a bar per step, few ticks, no mathtext): it is part of every
    training run.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 6))
    fig.subplots_adjust(left=0.065, right=0.98, bottom=0.07, top=0.88, wspace=0.18, hspace=0.4)
    axes = fig.subplots(2, 3).ravel()
    axes[0].plot(np.asarray(losses))
    axes[0].set(title="loss per window", xlabel="window", yscale="log")
    axes[0].minorticks_off()
    axes[0].yaxis.set_major_formatter("{x:g}")  # plain text: no mathtext parser to build
    T = np.shape(x_BxT)[1]
    edges = np.arange(T + 1)
    for row, ax in enumerate(axes[1:6]):
        if row >= np.shape(x_BxT)[0]:
            ax.axis("off")
            continue
        ax.stairs(np.asarray(x_BxT[row]), edges, fill=True, color="blue")
        ax.stairs(np.asarray(y_BxT[row]) * 0.5, edges, fill=True, color="red")
        ax.stairs(np.asarray(pred_BxT[row]) * 0.3, edges, fill=True, color="green")
        ax.axis([0, T, 0, 2])
        ax.set(xticks=np.linspace(0, T, 4).round(), yticks=[0, 1, 2])
        ax.set_title(f"row {row}: input, target, prediction", fontsize=9)
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
