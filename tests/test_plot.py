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


def dots(ax) -> dict[str, tuple[float, float, float]]:
    """Each row's (ratio, whisker low, whisker high), by its tick label."""
    names = [tick.get_text() for tick in ax.get_yticklabels()]
    found = {}
    for container in ax.containers:
        (x,), (y,) = container.lines[0].get_data()
        (segment,) = container.lines[2][0].get_segments()
        found[names[round(y)]] = (x, segment[0][0], segment[1][0])
    return found


def test_bench_rows_are_ratios_to_the_fastest_on_a_log_axis_of_whole_decades(tmp_path):
    us = {"jax-step": ("jax", 300.0), "jax-epoch": ("jax", 3.9), "tf-graph": ("tensorflow", 1200)}
    fig = plot.bench_figure(report(us))
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    low, high = ax.get_xlim()
    assert math.log10(low).is_integer() and math.log10(high).is_integer()
    ratios = dots(ax)
    np.testing.assert_allclose(ratios["jax-epoch"][0], 1.0)
    np.testing.assert_allclose(ratios["tf-graph"][0], 1200 / 3.9)
    assert low <= min(r[1] for r in ratios.values()) and max(r[2] for r in ratios.values()) <= high
    ones = [line for line in ax.get_lines() if tuple(line.get_xdata()) == (1, 1)]
    assert len(ones) == 1  # the ratio-1 line
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "jax-epoch"  # the fastest on top
    assert legend_labels(ax) == ["jax", "tensorflow"]  # one colour per library
    assert ax.get_xlabel() == "time relative to jax-epoch (log axis)"
    plot.save_figure(fig, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_bench_whiskers_are_the_spread_over_processes():
    us = {"jax-epoch": ("jax", 10.0), "torch-eager": ("torch", 12.9), "flax-nnx-scan": ("flax", 20)}
    ratios = dots(plot.bench_figure(report(us)).axes[0])
    np.testing.assert_allclose(ratios["torch-eager"], [1.29, 1.29 * 0.9, 1.29 * 1.2])
    np.testing.assert_allclose(ratios["flax-nnx-scan"], [2.0, 1.8, 2.4])


def test_bench_titles_are_wrapped_to_the_axis():
    rows = [("a", "jax", 1.0, 1.0, 1.0), ("b", "torch", 2.0, 2.0, 2.0)]
    from matplotlib.figure import Figure

    ax = Figure(figsize=(6, 4)).subplots()
    plot.ratio_panel(ax, rows, "a", title="word " * 40)
    assert max(len(line) for line in ax.get_title().splitlines()) <= 80


def test_bench_rows_of_both_core_settings_say_which_they_are():
    rows = report({"jax-epoch": ("jax", 10.0), "torch-eager": ("torch", 7.0)})
    keys = ("us_per_window", "us_per_window_min", "us_per_window_max")
    one = [{**r, "cores": "one", **{k: 2 * r[k] for k in keys}} for r in rows["results"]]
    rows["results"] = [{**r, "cores": "all"} for r in rows["results"]] + one
    ratios = dots(plot.bench_figure(rows).axes[0])
    assert sorted(ratios) == [
        "jax-epoch, all cores",
        "jax-epoch, one core",
        "torch-eager, all cores",
        "torch-eager, one core",
    ]
    np.testing.assert_allclose(ratios["jax-epoch, one core"][0], 20 / 7)
