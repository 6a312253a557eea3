"""The figures say what they show: legends, labelled axes, honest scales (jax_echo.plot)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jax_echo import plot

pytest.importorskip("matplotlib")


def legend_labels(ax) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None, ax.get_title()
    return [text.get_text() for text in legend.get_texts()]


def test_the_echo_figure_has_a_legend_and_labelled_axes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (5, 15))
    fig = plot.echo_figure(np.linspace(0.7, 0.01, 50), x, np.roll(x, 3), x, title="part 1")
    axes = fig.axes
    assert axes[0].get_yscale() == "log" and axes[0].get_xlabel() == "window"
    assert "loss" in axes[0].get_ylabel()
    assert legend_labels(axes[1]) == ["input", "target", "prediction"]
    plot.save_figure(fig, tmp_path / "echo.png")
    assert (tmp_path / "echo.png").read_bytes().startswith(b"\x89PNG")


def test_the_compare_figure_shows_each_difference_from_the_reference(tmp_path):
    ref = np.linspace(0.7, 0.1, 40)
    other = ref + np.r_[np.zeros(20), np.full(20, 1e-3)]  # equal, then apart
    fig = plot.compare_figure({"tf-graph": ref, "jax-epoch": other}, "tf-graph", "losses")
    top, bottom = fig.axes
    assert legend_labels(top) == ["tf-graph", "jax-epoch"]
    assert legend_labels(bottom) == ["jax-epoch (20 windows equal)"]
    assert bottom.get_yscale() == "log" and "tf-graph" in bottom.get_ylabel()
    (line,) = bottom.get_lines()
    np.testing.assert_allclose(line.get_ydata(), np.r_[np.full(20, plot.FLOOR), np.full(20, 1e-3)])
    assert bottom.get_ylim()[0] < plot.FLOOR  # the exact zeros stay inside the axis
    plot.save_figure(fig, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="reference 'tf1'"):
        plot.compare_figure({"tf-graph": ref}, "tf1", "losses")


def report(us: dict[str, tuple[str, float]]) -> dict:
    """A jax-echo bench report with the fields the figure reads; min-max at -10% / +20%."""
    rows = [
        {
            "implementation": name,
            "library": library,
            "us_per_window": value,
            "us_per_window_min": 0.9 * value,
            "us_per_window_max": 1.2 * value,
        }
        for name, (library, value) in us.items()
    ]
    return {
        "results": rows,
        "config": {
            "cell": "tutorial",
            "state_size": 4,
            "batch_size": 5,
            "truncated_backprop_length": 15,
        },
        "settings": {"dtype": "float32", "device": "cpu", "processes": 3},
    }


def bar_heights(ax) -> list[float]:
    return [patch.get_height() for patch in ax.patches]


def test_bench_bars_close_together_are_ratios_on_a_linear_axis_from_zero(tmp_path):
    fig = plot.bench_figure(
        report({"jax-epoch": ("jax", 10.0), "torch-eager": ("torch", 12.9), "flax": ("flax", 20)})
    )
    (ax,) = fig.axes
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0
    np.testing.assert_allclose(bar_heights(ax), [1.0, 1.29, 2.0])
    assert ax.get_ylim()[1] >= 1.2 * 2.0  # the slowest whisker's top is inside
    assert [tuple(line.get_ydata()) for line in ax.get_lines() if line.get_linestyle() == "--"] == [
        (1, 1)
    ]
    assert legend_labels(ax) == ["jax", "torch", "flax", "1 = jax-epoch"]
    assert "x the fastest row" in ax.get_ylabel()
    # One colour per library.
    colours = {tuple(patch.get_facecolor()) for patch in ax.patches}
    assert len(colours) == 3
    plot.save_figure(fig, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_bench_bars_far_apart_are_on_a_log_axis_of_whole_decades_with_ratio_1_inside():
    fig = plot.bench_figure(
        report(
            {
                "jax-step": ("jax", 300.0),
                "jax-epoch": ("jax", 3.9),
                "tf-graph": ("tensorflow", 1200),
            }
        )
    )
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    low, high = ax.get_ylim()
    assert math.log10(low).is_integer() and math.log10(high).is_integer()
    assert low < 0.9 and high >= 1.2 * 1200 / 3.9  # ratio 1 and every whisker inside
    assert legend_labels(ax) == ["jax", "tensorflow", "1 = jax-epoch"]


def test_bench_titles_are_wrapped_to_the_axis():
    rows = [("a", "jax", 1.0, 1.0, 1.0), ("b", "torch", 2.0, 2.0, 2.0)]
    from matplotlib.figure import Figure

    ax = Figure(figsize=(6, 4)).subplots()
    plot.bars(ax, rows, ylabel="us per window (log)", title="word " * 40)
    assert max(len(line) for line in ax.get_title().splitlines()) <= 80
    assert ax.get_ylabel().startswith("us per window, x the fastest row")
