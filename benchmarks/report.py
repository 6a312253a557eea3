"""Renders a pytest-benchmark JSON file as markdown tables and PNG plots.

    python -m benchmarks.report benchmarks/results/FILE.json [--readme README.md]

Writes ``FILE.md`` beside the JSON, and ``FILE-window.png`` and ``FILE-scaling.png`` where the
file has those groups. First, per device, the ``series`` table: one row per model of the
tutorial series, its cost per window in JAX and TensorFlow, and a check of the targets
(``COST_VS_PART1``, ``MIN_SPEEDUP_VS_TF1``, ``MIN_SPEEDUP_VS_TF2``). Then per group and device,
a table of medians per implementation with ratios to the TF1 reference (``tf-graph``) and to the
fastest TensorFlow variant; ``x faster`` means that implementation's time divides into the
other's that many times. With ``--readme``, the block between ``<!-- bench:DEVICE:start -->``
and ``<!-- bench:DEVICE:end -->`` is replaced with the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

REFERENCE = "tf-graph"  # the tutorial's own TF1 program
JAX_EPOCH = "jax-epoch"
TF2_PREFIX = "tf-function"  # every TF2 variant: tf-function[-epoch][-xla]

# Targets of the series: a model's JAX epoch may cost at most this many times part 1's ...
COST_VS_PART1 = {3: 2.5, 4: 6.0}
# ... and every model's JAX epoch must be at least this many times faster than its TF1
# reference and than its fastest TF2 variant.
MIN_SPEEDUP_VS_TF1 = 40.0
MIN_SPEEDUP_VS_TF2 = 5.0


def load(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def per_window_us(bench: dict[str, Any]) -> float:
    return 1e6 * bench["stats"]["median"] / bench["extra_info"]["windows_per_call"]


def by_device(benches: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out = defaultdict(list)
    for b in benches:
        out[b["extra_info"]["device"]].append(b)
    return out


def _ratio(num: float | None, den: float) -> str:
    return "" if num is None else f"{num / den:.1f}x"


def speed_table(benches: list[dict[str, Any]], value, unit: str) -> list[str]:
    """Rows sorted fastest first, with ratios to tf-graph and to the fastest TF variant."""
    values = {b["extra_info"]["implementation"]: value(b) for b in benches}
    ref = values.get(REFERENCE)
    tf_values = [v for k, v in values.items() if k.startswith("tf-")]
    fastest_tf = min(tf_values) if tf_values else None
    rows = [
        f"| implementation | median {unit} | vs TF1 graph | vs fastest TF |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, v in sorted(values.items(), key=lambda kv: kv[1]):
        rows.append(f"| {name} | {v:,.1f} | {_ratio(ref, v)} | {_ratio(fastest_tf, v)} |")
    return rows


def _us(v: float | None) -> str:
    return "" if v is None else f"{v:,.1f}"


def _check(ratio: float | None, op: str, target: float, what: str) -> str:
    if ratio is None:
        return f"{what} {op} {target:g}x: NOT MEASURED"
    met = ratio <= target if op == "<=" else ratio >= target
    return f"{what} {op} {target:g}x: {'MET' if met else 'NOT MET'} ({ratio:.1f}x)"


def series_table(benches: list[dict[str, Any]]) -> list[str]:
    """One row per model: us per window per implementation, ratios, then the targets' checks.

    "JAX" in the ratios is ``jax-epoch``; the fastest TF2 variant is the fastest ``tf-function*``
    of that model (``tf-graph`` is the TF1 reference).
    """
    models: dict[str, dict[str, Any]] = {}
    times: dict[str, dict[str, float]] = defaultdict(dict)
    for b in benches:
        e = b["extra_info"]
        models[e["model"]] = e
        times[e["model"]][e["implementation"]] = per_window_us(b)
    order = sorted(models, key=lambda m: (models[m].get("part") is None, models[m].get("part"), m))
    part1 = next((m for m in order if models[m].get("part") == 1), None)
    base = times[part1].get(JAX_EPOCH) if part1 else None
    rows = [
        "| model | cell | layers | what changed | jax-epoch us/window | jax-step | tf-graph (TF1) "
        "| fastest TF2 | cost vs part 1 | TF1 / JAX | fastest TF2 / JAX |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    checks = []
    for m in order:
        e, t = models[m], times[m]
        jax_us, tf1_us = t.get(JAX_EPOCH), t.get(REFERENCE)
        tf2 = {k: v for k, v in t.items() if k.startswith(TF2_PREFIX)}
        tf2_name = min(tf2, key=tf2.get) if tf2 else None
        tf2_us = tf2.get(tf2_name)
        vs_part1 = jax_us / base if jax_us and base else None
        vs_tf1 = tf1_us / jax_us if jax_us and tf1_us else None
        vs_tf2 = tf2_us / jax_us if jax_us and tf2_us else None
        label = f"part {e['part']}" if e.get("part") is not None else m
        fastest = f"{_us(tf2_us)} ({tf2_name})" if tf2_name else ""
        rows.append(
            f"| {label} | {e['cell']} | {e['num_layers']} | {e.get('what_changed', '')} | "
            f"{_us(jax_us)} | {_us(t.get('jax-step'))} | {_us(tf1_us)} | {fastest} | "
            f"{_ratio(jax_us, base) if base else ''} | {'' if vs_tf1 is None else f'{vs_tf1:.1f}x'}"
            f" | {'' if vs_tf2 is None else f'{vs_tf2:.1f}x'} |"
        )
        line = []
        if e.get("part") in COST_VS_PART1:
            line.append(_check(vs_part1, "<=", COST_VS_PART1[e["part"]], "cost vs part 1"))
        line.append(_check(vs_tf1, ">=", MIN_SPEEDUP_VS_TF1, "TF1 / JAX"))
        line.append(_check(vs_tf2, ">=", MIN_SPEEDUP_VS_TF2, "fastest TF2 / JAX"))
        checks.append(f"- {label}: " + "; ".join(line))
    return [*rows, "", "Targets:", "", *checks]


def scaling_table(benches: list[dict[str, Any]]) -> list[str]:
    impls = sorted({b["extra_info"]["implementation"] for b in benches})
    cells: dict[tuple, dict[str, float]] = defaultdict(dict)
    memory: dict[tuple, float] = {}
    for b in benches:
        e = b["extra_info"]
        key = (e["axis"], e["state_size"], e["batch_size"], e["window_length"], e.get("remat"))
        cells[key][e["implementation"]] = per_window_us(b)
        if e.get("xla_temp_bytes") is not None:
            memory[key] = e["xla_temp_bytes"] / 2**20
    rows = [
        "| grows | state | batch | window | remat | "
        + " | ".join(f"{i} us/window" for i in impls)
        + " | ratio | JAX XLA temp MiB |",
        "| --- | ---: | ---: | ---: | --- | "
        + " | ".join("---:" for _ in impls)
        + " | ---: | ---: |",
    ]
    for key in sorted(cells, key=lambda k: (k[0], k[1], k[2], k[3], bool(k[4]))):
        vals = [cells[key].get(i) for i in impls]
        ratio = (
            f"{max(vals) / min(vals):.1f}x ({impls[vals.index(min(vals))]} faster)"
            if None not in vals and len(vals) > 1
            else ""
        )
        shown = " | ".join("" if v is None else f"{v:,.1f}" for v in vals)
        mem = f"{memory[key]:,.2f}" if key in memory else ""
        remat = "yes" if key[4] else ""
        rows.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {remat} | {shown} | {ratio} | {mem} |"
        )
    return rows


def population_table(benches: list[dict[str, Any]]) -> list[str]:
    cells: dict[int, dict[str, float]] = defaultdict(dict)
    for b in benches:
        e = b["extra_info"]
        mode = e["implementation"].removeprefix("jax-population-")
        cells[e["population"]][mode] = e["windows_per_call"] / b["stats"]["median"]
    rows = [
        "| models | vmap: windows / s | one by one: windows / s | vmap speed-up |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for size in sorted(cells):
        v, o = cells[size].get("vmap"), cells[size].get("one-by-one")
        speedup = f"{v / o:.1f}x" if v and o else ""
        rows.append(
            f"| {size} | {'' if v is None else f'{v:,.0f}'} | "
            f"{'' if o is None else f'{o:,.0f}'} | {speedup} |"
        )
    return rows


def accuracy_table(benches: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| model | implementation | seconds to 99.9% (from scratch) | epochs | final accuracy "
        "after window 0 | final accuracy |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]

    def order(b):
        part = b["extra_info"].get("part", 1)  # files from before the series have part 1 only
        return (part is None, part, b["stats"]["median"])

    for b in sorted(benches, key=order):
        e = b["extra_info"]
        epochs = e["epochs_to_threshold"] if e["epochs_to_threshold"] is not None else "not reached"
        part = e.get("part", 1)
        model = f"part {part}" if part is not None else e.get("model", "")
        rows.append(
            f"| {model} | {e['implementation']} | {b['stats']['median']:.2f} | {epochs} | "
            f"{e['final_accuracy_after_first']:.4%} | {e['final_accuracy']:.4%} |"
        )
    return rows


def machine_line(data: dict[str, Any]) -> str:
    m = data["machine_info"]
    v = m.get("library_versions", {})
    libs = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    cpu = m.get("cpu", {}).get("brand_raw", m.get("processor", ""))
    return (
        f"Machine: {cpu}, {m.get('cpu_count')} cores, {m.get('system')} {m.get('release', '')}; "
        f"JAX devices: {', '.join(m.get('jax_devices', []))}. {libs}. "
        f"Run {data.get('datetime', '')[:19]}."
    )


def render(data: dict[str, Any], stem: str) -> dict[str, str]:
    """Markdown per device: every group's table."""
    groups: dict[str, list] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"]].append(b)
    docs: dict[str, list[str]] = defaultdict(list)
    sections = [
        (
            "series",
            "The series: training cost per window of each model (median us; epoch-level "
            "implementations: one epoch / 666)",
            series_table,
        ),
        (
            "window",
            "One training window (epoch-level implementations: one epoch / 666)",
            lambda bs: speed_table(bs, per_window_us, "us / window"),
        ),
        (
            "epoch",
            "One epoch (666 windows)",
            lambda bs: speed_table(bs, lambda b: 1e3 * b["stats"]["median"], "ms / epoch"),
        ),
        (
            "compile",
            "First call: build, trace and compile",
            lambda bs: speed_table(bs, lambda b: 1e3 * b["stats"]["median"], "ms"),
        ),
        (
            "scaling",
            "Scaling: sizes grown from the tutorial config (us per window)",
            scaling_table,
        ),
        (
            "population",
            "Population: trained windows per second, one epoch of 20 windows per model",
            population_table,
        ),
        (
            "accuracy",
            "Accuracy: the tutorial run, and wall time to 99.9% from scratch",
            accuracy_table,
        ),
    ]
    for group, title, table in sections:
        for device, benches in sorted(by_device(groups.get(group, [])).items()):
            docs[device] += [f"**{title}** ({device})", "", *table(benches), ""]
    figures = [f"![{alt}]({stem}-{group}.png)" for group, alt in PLOTS.items() if group in groups]
    for lines in docs.values():
        lines += [*figures, "", machine_line(data)]
    return {device: "\n".join(lines) for device, lines in docs.items()}


# The groups that get a figure (FILE-GROUP.png), with its alt text; only if the file has them.
PLOTS = {"window": "per-window time", "scaling": "scaling"}


def plot(data: dict[str, Any], out_prefix: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = [b for b in data["benchmarks"] if b["group"] == "window"]
    scaling = [b for b in data["benchmarks"] if b["group"] == "scaling"]
    if window:
        _plot_window(plt, window, out_prefix)
    if scaling:
        _plot_scaling(plt, scaling, out_prefix)


def _plot_window(plt, window: list[dict[str, Any]], out_prefix: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(window), 4) + 1))
    window.sort(key=per_window_us, reverse=True)
    labels = [f"{b['extra_info']['implementation']} ({b['extra_info']['device']})" for b in window]
    values = [per_window_us(b) for b in window]
    colors = ["tab:orange" if "tf-" in name else "tab:blue" for name in labels]
    ax.barh(labels, values, color=colors)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.1f}", va="center", fontsize=8)
    ax.set(
        xscale="log",
        xlabel="microseconds per training window (median, log scale)",
        title="Echo RNN, tutorial config: one training window",
    )
    fig.tight_layout()
    fig.savefig(f"{out_prefix}-window.png", dpi=100)
    plt.close(fig)


def _plot_scaling(plt, scaling: list[dict[str, Any]], out_prefix: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, field in zip(axes, ["state_size", "batch_size", "window_length"], strict=True):
        lines = defaultdict(list)
        tutorial = {"state_size": 4, "batch_size": 5, "window_length": 15}
        for b in scaling:
            e = b["extra_info"]
            # Points that differ from the tutorial config in this field only (or not at all).
            others = all(e[f] == v for f, v in tutorial.items() if f != field)
            if others and not e.get("remat"):
                lines[(e["implementation"], e["device"])].append((e[field], per_window_us(b)))
        for (impl, device), points in sorted(lines.items()):
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, marker="o", label=f"{impl} ({device})")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel=field,
            ylabel="us per window",
            title=f"growing {field}",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{out_prefix}-scaling.png", dpi=100)
    plt.close(fig)


def update_readme(readme: Path, device: str, markdown: str) -> None:
    text = readme.read_text()
    start, end = f"<!-- bench:{device}:start -->", f"<!-- bench:{device}:end -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{readme} has no {start} ... {end} block")
    text = pattern.sub(lambda _: f"{start}\n{markdown}\n{end}", text)
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="a pytest-benchmark JSON file")
    parser.add_argument("--readme", type=Path, help="update this README's benchmark blocks")
    args = parser.parse_args(argv)
    data = load(args.file)
    prefix = args.file.with_suffix("")
    plot(data, prefix)
    docs = render(data, prefix.name)
    md = "\n\n".join(f"### {device.upper()}\n\n{doc}" for device, doc in docs.items())
    prefix.with_suffix(".md").write_text(md + "\n")
    print(md)
    if args.readme:
        relative = os.path.relpath(prefix.parent.resolve(), args.readme.resolve().parent)
        for device, doc in render(data, f"{relative}/{prefix.name}").items():
            update_readme(args.readme, device, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
