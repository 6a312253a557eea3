"""Every implementation behind one interface, and ``jax-echo compare``.

The JAX and TensorFlow trainers share these methods, so one test or benchmark can be
parametrised over all of them: ``train_step(h, x, y) -> (h, loss)``, ``train_epoch(x, y) ->
losses``, ``params``, ``forward(x, h)``, ``loss_and_gradients(x, y, h)``, ``predict_epoch(x)``,
``get_state()``/``set_state(params, opt_state)``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_echo import model
from jax_echo.task import (
    EchoConfig,
    Params,
    epoch_data,
    init_params,
    prediction_accuracies,
    split_windows,
)

JAX_IMPLEMENTATIONS = ("jax-step", "jax-epoch")
TF_IMPLEMENTATIONS = (
    "tf-graph",
    "tf-function",
    "tf-function-xla",
    "tf-function-epoch",
    "tf-function-epoch-xla",
)
IMPLEMENTATIONS = JAX_IMPLEMENTATIONS + TF_IMPLEMENTATIONS
REFERENCE = "tf-graph"  # the tutorial's own program


class JaxTrainer:
    """The pure ``jax_echo`` functions, holding their pytrees between calls.

    ``per_epoch``: ``train_epoch`` is the compiled ``model.train_epoch``; otherwise a Python loop
    over the jitted ``model.train_step`` (the shape of the tutorial's ``session.run`` loop).
    ``remat``: rematerialise time steps in ``train_epoch``'s backward pass.
    """

    def __init__(
        self,
        cfg: EchoConfig,
        params: Params | dict,
        dtype=np.float32,
        per_epoch: bool = True,
        remat: bool = False,
    ):
        self.cfg, self.dtype, self.per_epoch, self.remat = cfg, np.dtype(dtype), per_epoch, remat
        self.name = "jax-epoch" if per_epoch else "jax-step"
        params = Params(*(p.astype(self.dtype) for p in Params.from_dict(params, cfg)))
        self._params = jax.device_put(params)
        self._opt_state = model.make_optimizer(cfg).init(self._params)

    def train_step(self, h_BxS, x_BxT, y_BxT):
        self._params, self._opt_state, h_BxS, loss = model.train_step(
            self._params, self._opt_state, h_BxS, x_BxT, y_BxT
        )
        return h_BxS, loss

    def train_epoch(self, x, y) -> jax.Array:
        """Per-window losses, not yet waited for (call ``jax.block_until_ready`` to time it)."""
        if self.per_epoch:
            self._params, self._opt_state, losses = model.train_epoch(
                self._params,
                self._opt_state,
                jnp.asarray(x, self.dtype),
                y,
                self.cfg,
                remat=self.remat,
            )
            return losses
        # Windows are sliced in NumPy: iterating over a jax.Array would dispatch one op a slice.
        h_BxS = jnp.zeros((self.cfg.batch_size, self.cfg.state_size), self.dtype)
        losses = []
        T = self.cfg.truncated_backprop_length
        x_NxBxT = split_windows(np.asarray(x, self.dtype), T)
        for x_BxT, y_BxT in zip(x_NxBxT, split_windows(np.asarray(y), T), strict=True):
            h_BxS, loss = self.train_step(h_BxS, x_BxT, y_BxT)
            losses.append(loss)
        return jnp.stack(losses)

    def memory_bytes(self, x, y) -> int:
        """XLA's temporary buffers for one ``train_epoch`` call (its activations and workspace)."""
        compiled = model._train_epoch.lower(
            self._params,
            self._opt_state,
            jnp.asarray(x, self.dtype),
            y,
            window=self.cfg.truncated_backprop_length,
            remat=self.remat,
        ).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    def forward(self, x_BxT, h_BxS):
        logits, h = model.forward(self._params, jnp.asarray(x_BxT, self.dtype), h_BxS)
        return np.asarray(logits), np.asarray(h)

    def loss_and_gradients(self, x_BxT, y_BxT, h_BxS):
        (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
            self._params, jnp.asarray(x_BxT, self.dtype), y_BxT, jnp.asarray(h_BxS, self.dtype)
        )
        return np.asarray(loss), Params(*(np.asarray(g) for g in grads))

    def predict_epoch(self, x) -> np.ndarray:
        return np.asarray(model.predict_epoch(self._params, jnp.asarray(x, self.dtype), self.cfg))

    @property
    def params(self) -> Params:
        return Params(*(np.asarray(p) for p in self._params))

    def get_state(self):
        return self.params, jax.tree.map(np.asarray, self._opt_state)

    def set_state(self, params, opt_state) -> None:
        self._params = jax.device_put(Params(*params))
        self._opt_state = jax.device_put(opt_state)

    def close(self) -> None:
        pass


def make_trainer(name: str, cfg: EchoConfig, params: Params | dict, dtype=np.float32):
    """A trainer for any of ``IMPLEMENTATIONS``; TensorFlow ones need the ``tf`` extra."""
    if name in JAX_IMPLEMENTATIONS:
        return JaxTrainer(cfg, params, dtype, per_epoch=name == "jax-epoch")
    if name in TF_IMPLEMENTATIONS:
        tf_echo = import_tf_echo()
        return tf_echo.make_trainer(name.removeprefix("tf-"), cfg, params, dtype)
    raise ValueError(f"unknown implementation {name!r}; choose from {', '.join(IMPLEMENTATIONS)}")


def import_tf_echo():
    """``tf_echo``, or a clear error naming the extra to install."""
    try:
        import tf_echo
    except ImportError as e:
        raise RuntimeError(
            f"TensorFlow is not installed ({e}); install the extra: pip install 'jax-echo[tf]'"
        ) from e
    return tf_echo


def block(value):
    """Waits for a JAX or TensorFlow result and returns it as NumPy."""
    value = jax.block_until_ready(value)
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


# --- jax-echo compare ------------------------------------------------------------------------


def compare(cfg: EchoConfig, names: list[str], windows: int | None = None) -> dict[str, Any]:
    """Trains every implementation from the same weights on the same data.

    Runs ``cfg.num_epochs`` epochs (with ``windows``, each epoch's series is generated just long
    enough for that many windows) and returns, per implementation, the seconds per window (the
    first epoch, with its compilation, excluded when there are more), the final accuracy on the
    windows after the first, and the largest per-window loss difference from the TF1 reference.
    """
    params = init_params(cfg)
    if windows is not None:
        T = cfg.truncated_backprop_length
        cfg = EchoConfig(**{**cfg.to_dict(), "total_series_length": windows * T * cfg.batch_size})
    data = [epoch_data(cfg, e) for e in range(cfg.num_epochs)]
    results: dict[str, Any] = {}
    for name in names:
        trainer = make_trainer(name, cfg, params)
        losses, seconds = [], []
        for x, y in data:
            t0 = time.perf_counter()
            losses.append(block(trainer.train_epoch(x, y)))
            seconds.append(time.perf_counter() - t0)
        x, y = data[-1]
        accs = prediction_accuracies(trainer.predict_epoch(x), y)
        timed = seconds[1:] or seconds
        results[name] = {
            "us_per_window": 1e6 * float(np.mean(timed)) / cfg.num_batches,
            "first_epoch_seconds": seconds[0],
            "accuracy_after_first": float(accs[1:].mean()) if len(accs) > 1 else float("nan"),
            "losses": np.concatenate(losses).astype(float).tolist(),
            "params": {k: v.tolist() for k, v in trainer.params.to_dict().items()},
        }
        trainer.close()
    reference = results.get(REFERENCE)
    for result in results.values():
        result["max_loss_diff_vs_tf1"] = (
            float(np.max(np.abs(np.subtract(result["losses"], reference["losses"]))))
            if reference is not None
            else None
        )
    return {"config": cfg.to_dict(), "results": results}


def format_table(report: dict[str, Any]) -> str:
    rows = [
        "| implementation | us / window | first epoch s | accuracy after window 0 | "
        "max loss diff vs tf-graph |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["results"].items():
        diff = "n/a" if r["max_loss_diff_vs_tf1"] is None else f"{r['max_loss_diff_vs_tf1']:.2e}"
        rows.append(
            f"| {name} | {r['us_per_window']:.1f} | {r['first_epoch_seconds']:.2f} | "
            f"{r['accuracy_after_first']:.4%} | {diff} |"
        )
    return "\n".join(rows)


def plot_losses(report: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jax_echo.plot import save_figure

    fig, ax = plt.subplots(figsize=(10, 5))
    for name, r in report["results"].items():
        ax.plot(r["losses"], label=name, linewidth=1, alpha=0.8)
    ax.set(
        xlabel="window", ylabel="loss", yscale="log", title="per-window loss, same weights and data"
    )
    ax.legend()
    save_figure(fig, path)


def add_compare_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--impl",
        nargs="+",
        default=list(IMPLEMENTATIONS),
        choices=IMPLEMENTATIONS,
        metavar="NAME",
        help=f"implementations to compare (default all: {', '.join(IMPLEMENTATIONS)})",
    )
    parser.add_argument(
        "--windows",
        type=int,
        default=None,
        help="N windows per epoch (each epoch gets a series just long enough)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the table and loss curves as JSON")
    parser.add_argument("--plot", metavar="FILE", help="write an overlay plot of the loss curves")


def cmd_compare(args: argparse.Namespace, cfg: EchoConfig) -> int:
    if any(name in TF_IMPLEMENTATIONS for name in args.impl):
        import_tf_echo()
    report = compare(cfg, args.impl, args.windows)
    print(format_table(report))
    if args.json:
        from jax_echo.train import atomic_write

        atomic_write(args.json, lambda f: json.dump(report, f), mode="w")
    if args.plot:
        plot_losses(report, args.plot)
    return 0
