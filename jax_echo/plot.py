"""The tutorial's figure: the loss history and the current window of every row."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def echo_figure(losses: Any, x_BxT: Any, y_BxT: Any, pred_BxT: Any, title: str = ""):
    """A 2x3 grid: per-window loss history, then rows 0-4 of one window as bars.

    Input in blue (height 1), target in red (height 0.5), prediction in green (height 0.3),
    on the axis [0, T, 0, 2], as in the tutorial. Returns the matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    axes = axes.ravel()
    axes[0].plot(np.asarray(losses))
    axes[0].set(title="loss per window", xlabel="window", yscale="log")
    T = np.shape(x_BxT)[1]
    for row, ax in enumerate(axes[1:6]):
        if row >= np.shape(x_BxT)[0]:
            ax.axis("off")
            continue
        left = np.arange(T)
        ax.bar(left, np.asarray(x_BxT[row]), width=1, color="blue", align="edge")
        ax.bar(left, np.asarray(y_BxT[row]) * 0.5, width=1, color="red", align="edge")
        ax.bar(left, np.asarray(pred_BxT[row]) * 0.3, width=1, color="green", align="edge")
        ax.axis([0, T, 0, 2])
        ax.set_title(f"row {row}: input, target, prediction", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | os.PathLike) -> None:
    """Saves atomically (temporary file, then rename) and closes the figure."""
    import matplotlib.pyplot as plt

    from jax_echo.train import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
