"""Every implementation behind one interface (``registry.Trainer``), and ``jax-echo compare``.

``JaxTrainer`` holds the pure ``jax_echo`` functions' pytrees between calls; the TensorFlow
trainers come from ``tf_echo`` (the ``tf`` extra). One test or benchmark is parametrised over
all of them through ``make_trainer``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_echo import model, optim
from jax_echo.cells import Params, init_params, initial_state, params_from_dict, params_to_dict
from jax_echo.io import atomic_write
from jax_echo.plot import loss_curves, save_figure
from jax_echo.registry import (
    DYNAMIC_RNN_PARTS,
    IMPLEMENTATIONS,
    JAX_IMPLEMENTATIONS,
    REFERENCE,
    TF_IMPLEMENTATIONS,
    MissingExtraError,
    tf_impl,
)
from jax_echo.task import EchoConfig, epoch_data, prediction_accuracies, split_windows


class JaxTrainer:
    """The pure ``jax_echo`` functions as a ``registry.Trainer``.

    ``per_epoch``: ``train_epoch`` is the compiled ``model.train_epoch``; otherwise a Python loop
    over the jitted ``model.train_step`` (the shape of the tutorial's ``session.run`` loop). Both
    draw epoch e's dropout from ``model.epoch_key(cfg, e)``, split into one key per window.
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
        params = jax.tree.map(lambda p: p.astype(self.dtype), params_from_dict(params, cfg))
        self._params = jax.device_put(params)
        self._opt_state = optim.make_optimizer(cfg).init(self._params)
        self._epochs = 0  # epochs trained: the next epoch's dropout key
        self._steps = 0  # windows trained by train_step alone

    def _window_keys(self) -> list[Any]:
        if self.cfg.keep_prob == 1:
            return [None] * self.cfg.num_batches
        return list(jax.random.split(model.epoch_key(self.cfg, self._epochs), self.cfg.num_batches))

    def train_step(self, state, x_BxT, y_BxT, key=None):
        if key is None and self.cfg.keep_prob < 1:
            key = jax.random.fold_in(model.epoch_key(self.cfg, -1), self._steps)
            self._steps += 1
        self._params, self._opt_state, state, loss = model.train_step(
            self._params, self._opt_state, state, x_BxT, y_BxT, self.cfg, key=key
        )
        return state, loss

    def train_epoch(self, x, y) -> jax.Array:
        """Per-window losses, not yet waited for (call ``jax.block_until_ready`` to time it)."""
        x = np.asarray(x, self.dtype)
        if self.per_epoch:
            key = model.epoch_key(self.cfg, self._epochs) if self.cfg.keep_prob < 1 else None
            self._params, self._opt_state, losses = model.train_epoch(
                self._params, self._opt_state, x, y, self.cfg, key=key, remat=self.remat
            )
        else:
            # Windows are sliced in NumPy: iterating over a jax.Array dispatches one op a slice.
            T = self.cfg.truncated_backprop_length
            state = self.zero_state()
            losses = []
            windows = zip(split_windows(x, T), split_windows(np.asarray(y), T), strict=True)
            for (x_BxT, y_BxT), key in zip(windows, self._window_keys(), strict=True):
                state, loss = self.train_step(state, x_BxT, y_BxT, key)
                losses.append(loss)
            losses = jnp.stack(losses)
        self._epochs += 1
        return losses

    def zero_state(self):
        return jax.tree.map(np.asarray, initial_state(self.cfg, dtype=self.dtype))

    def memory_analysis(self, x, y) -> dict[str, int]:
        """XLA's buffers for one compiled ``train_epoch`` call, in bytes.

        ``arguments`` (params, optimizer state, the epoch's series), ``outputs``, ``aliased``
        (outputs written into donated arguments), ``temporaries`` (activations saved for the
        backward pass, the data rearranged into windows, workspace) and ``peak``: what the call
        holds at once at most, ``arguments + outputs - aliased + temporaries``.
        """
        epoch = jax.jit(model.make_train_epoch(self.cfg, remat=self.remat))
        key = model.epoch_key(self.cfg, 0) if self.cfg.keep_prob < 1 else None
        compiled = epoch.lower(
            self._params, self._opt_state, np.asarray(x, self.dtype), y, key
        ).compile()
        m = compiled.memory_analysis()
        out = {
            "arguments": m.argument_size_in_bytes,
            "outputs": m.output_size_in_bytes,
            "aliased": m.alias_size_in_bytes,
            "temporaries": m.temp_size_in_bytes,
        }
        out["peak"] = out["arguments"] + out["outputs"] - out["aliased"] + out["temporaries"]
        return out

    def forward(self, x_BxT, state):
        logits, state = model.forward(self._params, x_BxT, state, self.cfg)
        return np.asarray(logits), jax.tree.map(np.asarray, state)

    def loss_and_gradients(self, x_BxT, y_BxT, state):
        (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
            self._params, x_BxT, y_BxT, state, self.cfg
        )
        return np.asarray(loss), params_to_dict(grads)

    def predict_epoch(self, x) -> np.ndarray:
        return np.asarray(model.predict_epoch(self._params, np.asarray(x, self.dtype), self.cfg))

    @property
    def params(self) -> dict[str, np.ndarray]:
        return params_to_dict(self._params)

    @property
    def accumulators(self) -> dict[str, np.ndarray]:
        return params_to_dict(optim.accumulators(self._opt_state))

    def get_state(self):
        return self.params, jax.tree.map(np.asarray, self._opt_state)

    def set_state(self, params, opt_state) -> None:
        self._params = jax.device_put(params_from_dict(params, self.cfg))
        self._opt_state = jax.device_put(opt_state)

    def close(self) -> None:
        pass


def make_trainer(
    name: str, cfg: EchoConfig, params: Params | dict, dtype=np.float32, *, part: int | None = None
):
    """A trainer for any of ``IMPLEMENTATIONS``; TensorFlow ones need the ``tf`` extra.

    ``part``: for ``tf-graph``, parts 5 and 6 run the author's ``dynamic_rnn`` program.
    """
    if name in JAX_IMPLEMENTATIONS:
        return JaxTrainer(cfg, params, dtype, per_epoch=name == "jax-epoch")
    if name in TF_IMPLEMENTATIONS:
        dynamic = part in DYNAMIC_RNN_PARTS
        return import_tf_echo().make_trainer(tf_impl(name), cfg, params, dtype, dynamic=dynamic)
    raise ValueError(f"unknown implementation {name!r}; choose from {', '.join(IMPLEMENTATIONS)}")


def import_tf_echo():
    """``tf_echo``, or a clear error naming the extra to install."""
    try:
        return importlib.import_module("tf_echo")
    except ImportError as e:
        raise MissingExtraError(
            f"TensorFlow is not installed ({e}); install the extra: pip install 'jax-echo[tf]'"
        ) from e


def block(value):
    """Waits for a JAX or TensorFlow result and returns it as NumPy."""
    value = jax.block_until_ready(value)
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


# --- jax-echo compare ------------------------------------------------------------------------


def compare(
    cfg: EchoConfig,
    names: list[str],
    windows: int | None = None,
    *,
    dtype=np.float32,
    part: int | None = None,
) -> dict[str, Any]:
    """Trains every implementation from the same weights on the same data.

    Each implementation first trains one untimed epoch (tracing and compilation, reported as
    ``first_epoch_seconds``) and is then set back to the initial weights; it then trains
    ``cfg.num_epochs`` timed epochs (with ``windows``, each epoch's series is just long enough for
    that many windows). Returned per implementation: the mean seconds per window, the final
    accuracy on the windows after the first, and the largest per-window loss difference from the
    TF1 reference. ``dtype=np.float64`` runs everything in float64
    (JAX with ``jax_enable_x64``), where the trajectories agree to about 1e-10.
    """
    with jax.enable_x64(np.dtype(dtype) == np.float64):
        return _compare(cfg, names, windows, np.dtype(dtype), part)


def _compare(cfg, names, windows, dtype, part) -> dict[str, Any]:
    params = init_params(cfg, dtype=dtype)
    if windows is not None:
        T = cfg.truncated_backprop_length
        length = windows * T * cfg.batch_size
        cfg = dataclasses.replace(cfg, total_series_length=length)
    data = [epoch_data(cfg, e) for e in range(cfg.num_epochs)]
    results: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        trainer = make_trainer(name, cfg, params, dtype, part=part)
        start = trainer.get_state()
        block(trainer.train_epoch(*data[0]))  # trace and compile, untimed
        first_epoch_seconds = time.perf_counter() - t0
        trainer.set_state(*start)
        losses, seconds = [], []
        for x, y in data:
            t0 = time.perf_counter()
            losses.append(block(trainer.train_epoch(x, y)))
            seconds.append(time.perf_counter() - t0)
        x, y = data[-1]
        accs = prediction_accuracies(trainer.predict_epoch(x), y)
        results[name] = {
            "us_per_window": 1e6 * float(np.mean(seconds)) / cfg.num_batches,
            "first_epoch_seconds": first_epoch_seconds,
            "accuracy_after_first": float(accs[1:].mean()) if len(accs) > 1 else float("nan"),
            "losses": np.concatenate(losses).astype(float).tolist(),
            "params": {k: v.tolist() for k, v in trainer.params.items()},
        }
        trainer.close()
    reference = results.get(REFERENCE)
    for result in results.values():
        result["max_loss_diff_vs_tf1"] = (
            float(np.max(np.abs(np.subtract(result["losses"], reference["losses"]))))
            if reference is not None
            else None
        )
    return {"config": cfg.to_dict(), "dtype": str(dtype), "part": part, "results": results}


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
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
    """An overlay of every implementation's per-window losses."""
    curves = {name: r["losses"] for name, r in report["results"].items()}
    save_figure(loss_curves(curves, "per-window loss, same weights and data"), path)


def write_json(report: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda f: json.dump(report, f), mode="w")
