"""Every row of ``registry.ROWS`` behind the one trainer protocol (``registry.Trainer``):
``JaxTrainer`` holds the pure ``jax_echo`` functions' pytrees between calls; TensorFlow's trainers
come from ``tf_echo``, the peers' from ``jax_echo.peers``.
"""

from __future__ import annotations

import importlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jax_echo import cells, model, optim, parallel, registry
from jax_echo.cells import Params, initial_state, params_from_dict, params_to_dict
from jax_echo.task import EchoConfig, split_windows


class JaxTrainer:
    """The pure ``jax_echo`` functions as a ``registry.ReferenceTrainer``.

    ``per_epoch``: ``train_epoch`` is the compiled ``model.train_epoch``; otherwise a Python loop
    over the jitted ``model.train_step`` (the tutorial's ``session.run`` loop); both draw window
    ``i`` of epoch ``e``'s dropout from ``model.window_key(cfg, e, i)``. ``remat``: rematerialise
    time steps in the backward pass. ``mesh``: ``train_epoch`` splits the batch over its devices
    (``parallel.data_parallel_epoch``).
    """

    def __init__(
        self,
        cfg: EchoConfig,
        params: Params | dict,
        dtype=np.float32,
        per_epoch: bool = True,
        remat: bool = False,
        mesh: Mesh | None = None,
    ):
        self.cfg, self.dtype, self.per_epoch, self.remat = cfg, np.dtype(dtype), per_epoch, remat
        self.name = ("jax-epoch" if per_epoch else "jax-step") + ("-remat" if remat else "")
        params = jax.tree.map(lambda p: p.astype(self.dtype), params_from_dict(params, cfg))
        self._params = jax.device_put(params)
        self._opt_state = optim.make_optimizer(cfg).init(self._params)
        self._state = initial_state(cfg, dtype=self.dtype)  # train_window's carried state
        self._mesh = mesh
        if mesh is not None:
            if remat or not per_epoch:
                raise ValueError("a mesh splits train_epoch's batch: per_epoch, without remat")
            self.name = registry.DATA_PARALLEL
            self._epoch = parallel.data_parallel_epoch(cfg, mesh)
            self._rows = NamedSharding(mesh, PartitionSpec("batch"))
            copies = NamedSharding(mesh, PartitionSpec())
            self._params, self._opt_state = parallel.place((self._params, self._opt_state), copies)

    def _epoch_key(self, epoch: int) -> jax.Array | None:
        return model.epoch_key(self.cfg, epoch) if self.cfg.keep_prob < 1 else None

    def train_step(self, state, x_BxT, y_BxT, *, key=None):
        """One window from ``state``: ``(state, loss)``; ``key`` drops units (``keep_prob < 1``)."""
        self._params, self._opt_state, state, loss = model.train_step(
            self._params, self._opt_state, self._state_in(state), x_BxT, y_BxT, self.cfg, key=key
        )
        return state, loss

    def train_window(self, x_BxT, y_BxT, *, epoch: int = 0, window: int = 0) -> jax.Array:
        key = model.window_key(self.cfg, epoch, window) if self.cfg.keep_prob < 1 else None
        self._params, self._opt_state, self._state, loss = model.train_step(
            self._params, self._opt_state, self._state, x_BxT, y_BxT, self.cfg, key=key
        )
        return loss

    def train_epoch(self, x, y, *, epoch: int = 0) -> jax.Array:
        """Per-window losses, not yet waited for (call ``jax.block_until_ready`` to time it)."""
        x = np.asarray(x, self.dtype)
        if self._mesh is not None:
            x, y = parallel.place((x, np.asarray(y)), self._rows)
            self._params, self._opt_state, losses = self._epoch(
                self._params, self._opt_state, x, y, self._epoch_key(epoch)
            )
            return losses
        if self.per_epoch:
            key = self._epoch_key(epoch)
            self._params, self._opt_state, losses = model.train_epoch(
                self._params, self._opt_state, x, y, self.cfg, key=key, remat=self.remat
            )
            return losses
        # Windows are sliced in NumPy: iterating over a jax.Array dispatches one op a slice.
        T = self.cfg.truncated_backprop_length
        self._state = initial_state(self.cfg, dtype=self.dtype)
        windows = zip(split_windows(x, T), split_windows(np.asarray(y), T), strict=True)
        losses = [
            self.train_window(x_BxT, y_BxT, epoch=epoch, window=i)
            for i, (x_BxT, y_BxT) in enumerate(windows)
        ]
        return jnp.stack(losses)

    def _state_in(self, state):
        """Another implementation's state (per-layer tuples) as the cell's pytree, in our dtype."""
        state = cells.state_from_layers(self.cfg, state)
        return jax.tree.map(lambda s: jnp.asarray(s, self.dtype), state)

    def peak_bytes(self, x, y) -> int:
        """XLA's peak for one compiled ``train_epoch`` call (with a mesh, one device's): its
        arguments + outputs - aliased (outputs written into donated arguments) + temporaries."""
        x, key = np.asarray(x, self.dtype), self._epoch_key(0)
        if self._mesh is None:
            epoch = jax.jit(model.make_train_epoch(self.cfg, remat=self.remat))
        else:
            epoch, (x, y) = self._epoch, parallel.place((x, np.asarray(y)), self._rows)
        m = epoch.lower(self._params, self._opt_state, x, y, key).compile().memory_analysis()
        written = m.output_size_in_bytes - m.alias_size_in_bytes
        return m.argument_size_in_bytes + written + m.temp_size_in_bytes

    def forward(self, x_BxT, state):
        logits, state = model.forward(self._params, x_BxT, self._state_in(state), self.cfg)
        return np.asarray(logits), jax.tree.map(np.asarray, state)

    def loss_and_gradients(self, x_BxT, y_BxT, state):
        (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
            self._params, x_BxT, y_BxT, self._state_in(state), self.cfg
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
    name: str,
    cfg: EchoConfig,
    params: Params | dict,
    dtype=np.float32,
    *,
    part: int | None = None,
    device: str | None = None,
) -> registry.Trainer:
    """A trainer for any row of ``registry.ROWS`` (``IMPLEMENTATIONS`` are ``ReferenceTrainer``s);
    TensorFlow's need the ``tf`` extra, the peers' the ``peers`` extra.

    Args:
      name: the row's name, e.g. ``"jax-epoch"``, ``"tf-graph"``, ``"torch-eager"``.
      params: the initial weights, ``Params`` or a flat TF1-layout dict.
      part: for TensorFlow, parts 5 and 6 run the author's ``dynamic_rnn`` program.
      device: "cpu" or "gpu" for ``tf-graph``'s graph, a peer's arrays and the data-parallel
        row's mesh; other rows run where the caller's ``jax.default_device`` or ``tf.device``
        puts them (``timing.placed``).

    >>> from jax_echo.cells import init_params
    >>> cfg = EchoConfig(truncated_backprop_length=5, total_series_length=100)
    >>> make_trainer("jax-step", cfg, init_params(cfg)).name
    'jax-step'
    """
    r = registry.row(name)
    module, attribute = r.build.split(":")
    factory = getattr(importlib.import_module(module), attribute)
    options = dict(r.options) | ({"part": part} if r.by_part else {})
    if device is not None:  # else each factory's own default
        options["device"] = device
    return factory(cfg, params, dtype=dtype, **options)


def jax_trainer(
    cfg: EchoConfig,
    params: Params | dict,
    dtype=np.float32,
    device: str | None = None,
    *,
    per_epoch: bool = True,
    remat: bool = False,
    data_parallel: bool = False,
) -> JaxTrainer:
    """A JAX row's trainer; ``data_parallel``: the batch split over ``device``'s JAX devices."""
    mesh = parallel.data_parallel_mesh(jax.devices(device)) if data_parallel else None
    return JaxTrainer(cfg, params, dtype, per_epoch=per_epoch, remat=remat, mesh=mesh)


def tf_trainer(
    cfg: EchoConfig,
    params: Params | dict,
    dtype=np.float32,
    device: str | None = None,
    *,
    impl: str,
    part: int | None = None,
) -> registry.ReferenceTrainer:
    """A TensorFlow row's trainer (``tf_echo``'s ``impl``); ``tf-graph``'s graph on ``device``."""
    dynamic = part in registry.DYNAMIC_RNN_PARTS
    place = None if device is None else f"/{device.upper()}:0"
    return import_tf_echo().make_trainer(impl, cfg, params, dtype, place, dynamic=dynamic)


def import_tf_echo():
    """``tf_echo`` with TensorFlow loaded, or a clear error naming the extra to install."""
    try:
        importlib.import_module("tensorflow")
        return importlib.import_module("tf_echo")
    except ImportError as e:
        raise registry.MissingExtraError(
            f"TensorFlow is not installed ({e}); install the extra: pip install 'jax-echo[tf]'"
        ) from e


def block(value: Any) -> np.ndarray:
    """Waits for a JAX, TensorFlow or PyTorch result and returns it as NumPy."""
    value = jax.block_until_ready(value)
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu()
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)
