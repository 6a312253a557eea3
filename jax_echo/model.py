"""The echo RNN of every part of the series, and its training, as pure functions of pytrees.

The model is an ``(init, apply)`` pair over any cell of ``cells.CELLS``: ``init_params(cfg,
rng) -> Params`` and ``forward(params, x_BxT, state, cfg) -> (logits_BxTxC, state)``, where
``state`` is a tuple with one entry per layer (``h``, or ``LSTMState(c, h)``). Everything else is
built from the same window function: the loss, predictions, one jitted training window
(``train_step``) and one jitted epoch (``train_epoch``, a ``lax.scan`` over windows carrying the
state). ``make_train_epoch`` returns the epoch as a plain function, to ``vmap`` or ``jit``.

Dropout (``cfg.keep_prob < 1``) takes an explicit key: an epoch's key is split into one key per
window, folded in per time step and per layer. Without a key nothing is dropped (predictions).

Every function is dtype-generic (float64 params and data compute in float64 under
``jax_enable_x64``) and works under ``jax.vmap`` over a leading population axis.

Shape legend: B batch, T time steps of a window, S state, C classes, N windows per epoch.
"""

from __future__ import annotations

import functools
import math
import os
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jax_echo import optim, xla_flags
from jax_echo.cells import CELLS, Params, dropout_masks, input_width, stack_step, zero_state
from jax_echo.task import DROPOUT_STREAM, EchoConfig, prediction_accuracies, split_windows

# --- The speed policy --------------------------------------------------------------------------
# How this model's programs are computed, decided here alone from the shapes, for every cell,
# depth and population (the cells are the math, ``cells.affine``): how each product is written,
# whether a window's time steps are unrolled or a loop, and with which XLA option (``xla_flags``).
# Every choice gives the same numbers to float rounding; the measurements behind them are the
# README's ("How the JAX side reaches its speed", "Why the LSTM parts cost what they cost").

# Contractions whose broadcast product has at most this many elements are written as a multiply
# and a sum, which XLA:CPU fuses with the surrounding elementwise work; larger ones go to a dot.
# At the tutorial's 4-unit state a dot's fixed cost per call dominates: a 15-step window costs
# ~40 us with dots and ~7 us fused (2-core CPU). Beyond ~2k elements the dot wins. Under vmap the
# product counts every member: 16 tutorial members (1600 elements) fused were 3.7x faster than a
# batched dot, 16 LSTM members (6400) or 16 members of state 16 (21760) 1.7-2.6x slower.
_FUSED_CONTRACTION_LIMIT = 2048

# Windows of up to this many cell steps (time steps x layers) of the tanh cells are unrolled
# completely, so the window compiles to one straight-line block that XLA fuses across steps.
# Larger windows, and the LSTM's and GRU's while XLA compiles small loops whole
# (``xla_flags.SMALL_LOOPS``), keep a rolled loop: one kernel a window instead of one launch per
# fused op (part 3: about 2x faster than unrolled; unrolling 3 LSTM layers x 15 steps compiled
# ~5x longer for no gain).
_FULL_UNROLL_LIMIT = 16
_ROLLED_WITH_SMALL_LOOPS = ("lstm", "gru")

# A population of small models trains with its members on the last axis of every array
# (``lane_product``): every elementwise operation then runs across members in the vector lanes,
# where under ``vmap`` (members first) a tutorial step works on rows 4 wide, and the whole epoch
# stays one program that XLA compiles with its loops whole. A chunk holds the largest power of
# two of members, at most LANE_CHUNK, whose products of one time step (all layers, B x K x M
# each) stay within _LANE_ELEMENTS; beyond it XLA:CPU falls back to launching the loop's kernels
# one by one (2-5x slower). Measured on the 2-core CPU, member-windows per second, 256 members:
# part 1 in chunks of 32 180-290k (a vmap of 16: 90-150k), the GRU in 16 76-88k (28-40k), part
# 3 in 8 38-47k (15-17k), part 4 in 2 18-19k (5-6k): README, "Populations". Models too large
# for lanes (one member past _LANE_ELEMENTS) are a ``vmap`` of the epoch, at most VMAP_CHUNK
# members to a chunk, fewer where their products would outgrow the fused limit. Where XLA
# accepts ``population_compiler_options`` a population program in lanes compiles whole at any
# width, and then takes WHOLE_LANE_CHUNK members a chunk (below); LANE_CHUNK's budget is the
# fallback for a jaxlib without those options.
LANE_CHUNK = 32
VMAP_CHUNK = 16
_LANE_ELEMENTS = 4800


def cell_product(members: int) -> Callable:
    """``cells.affine``'s product as XLA computes it fastest when ``members`` models run it side by
    side under ``vmap`` (the shapes it sees are one member's): a fused multiply and sum while the
    whole population's product is small, a dot (a batched ``dot_general`` under ``vmap``)
    beyond."""

    def product(inputs, w: jax.Array, b: jax.Array, parts: int = 1):
        a = jnp.concatenate(inputs, axis=-1)
        lead = (1,) * (a.ndim - 1)
        if members * a.size * w.shape[-1] <= _FUSED_CONTRACTION_LIMIT:
            z = jnp.sum(a[..., :, None] * w.reshape(lead + w.shape), axis=-2)
        else:
            z = a @ w
        z = z + b.reshape(lead + b.shape[-1:])
        return z if parts == 1 else jnp.split(z, parts, axis=-1)

    return product


def lane_product(inputs, w: jax.Array, b: jax.Array, parts: int = 1):
    """``cells.affine`` for P members carried on the last axis of every array (``lanes``):
    inputs (..., K_i, P), ``w`` (K, M, P), ``b`` (M, P) or (1, M, P); a multiply and a sum, so
    every operation runs across the members in the CPU's vector lanes."""
    a = jnp.concatenate(inputs, axis=-2)
    lead = (1,) * (a.ndim - 2)
    z = jnp.sum(a[..., :, None, :] * w.reshape(lead + w.shape), axis=-3)
    z = z + b.reshape(lead + w.shape[-2:])
    return z if parts == 1 else jnp.split(z, parts, axis=-2)


def window_unroll(cell: str, T: int, layers: int) -> int:
    """How many of a window's T time steps one trip of its loop runs (T: no loop at all)."""
    if xla_flags.SMALL_LOOPS and cell in _ROLLED_WITH_SMALL_LOOPS:
        return 1
    return T if T * layers <= _FULL_UNROLL_LIMIT else 1


def _products(cfg: EchoConfig) -> list[int]:
    """Elements (B x K x M) of each of one member's products of a time step, every layer."""
    cell, S = CELLS[cfg.cell], cfg.state_size
    return [
        cfg.batch_size * math.prod(shape)
        for k in range(cfg.num_layers)
        for shape in cell.shapes(input_width(k, S), S)
        if len(shape) == 2 and shape[0] > 1  # kernels; not the tutorial's (1, S) bias
    ]


def fused_members(cfg: EchoConfig) -> int:
    """How many members one ``vmap`` can run with every cell product still fused (``cell_product``),
    at least 1: ``_FUSED_CONTRACTION_LIMIT`` over the largest B x K x M product of one step."""
    return max(1, _FUSED_CONTRACTION_LIMIT // max(_products(cfg)))


def population_lanes(cfg: EchoConfig) -> bool:
    """Whether a population of ``cfg``'s models trains with its members on the last axis
    (``lane_product``), or as a ``vmap`` of the epoch: lanes while one member's products of a
    step stay within ``_LANE_ELEMENTS``."""
    return sum(_products(cfg)) <= _LANE_ELEMENTS


def population_chunk(cfg: EchoConfig, size: int) -> int:
    """How many of ``size`` members train side by side in one chunk of a population (the
    policy above ``LANE_CHUNK``; ``WHOLE_LANE_CHUNK`` where the program compiles with
    ``population_compiler_options``)."""
    if population_lanes(cfg):
        if population_compiler_options(cfg, size=size):
            return min(size, WHOLE_LANE_CHUNK)
        fit = 2 ** int(math.log2(_LANE_ELEMENTS // sum(_products(cfg))))
        return min(size, LANE_CHUNK, fit)
    return vmap_chunk(cfg, size)


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def population_threads(cfg: EchoConfig, size: int) -> int:
    """How many of a population's chunks train at once, each from its own thread: on a CPU, one
    per core for members in lanes (their chunk's epoch compiles whole, one kernel, which runs on
    one core: one thread left the other core idle), at most one per chunk; otherwise 1."""
    if not population_lanes(cfg) or jax.default_backend() != "cpu":
        return 1
    return max(1, min(cpu_cores(), -(-size // population_chunk(cfg, size))))


# By default XLA:CPU hands some reductions to YNNPACK as custom fusions, and a loop holding a
# custom fusion is never compiled whole under the small-loop option. A population in lanes has
# such reductions in every window (the log-softmax over classes, the gradients' sums over the
# batch), so its loops ran kernel by kernel; compiled with YNNPACK for dots only, its whole epoch
# is one kernel (benchmarks/population_profile.py counts them), and a kernel that runs on one
# core leaves the other to the next chunk's thread (``population_threads``). Measured on the
# 2-core AMD EPYC, 256 members, interleaved in one process: part 3 1.7x faster, the GRU 1.17x,
# part 1 no faster. On the 2-core Intel Xeon (AVX-512), in the shipped form (chunks over two
# threads), fresh processes in turn, 3 each, median member-windows/s: part 1's 256 members 565k
# against 490k (1.15x), but 4096 641k against 756k (0.85x), 1024 level (606k and 612k, one
# process each): so the tanh cells, whose kernels are cheap anyway, take the options up to
# _WHOLE_TANH_MEMBERS.
_LANES_COMPILER_OPTIONS = (("xla_cpu_experimental_ynn_fusion_type", "LIBRARY_FUSION_TYPE_DOT"),)
_TANH_CELLS = ("tutorial", "basic_rnn")
_WHOLE_TANH_MEMBERS = 1024
# With those options no chunk width falls back to kernel by kernel (what ``_LANE_ELEMENTS``
# guards against). 256 members, member-windows per second in the shipped form, one process each,
# on the Intel Xeon: part 1 565k in chunks of 16, 534k in 32, 410k in 64; part 3 257k, 277k and
# 269k; part 4 124k in 32, 127k in 64; the GRU 296k, 317k and 259k. 32 is within 6% of the best
# width of every cell (on the AMD EPYC, LSTMs and GRUs alone: 64 was 1.1-1.2x faster than 32).
WHOLE_LANE_CHUNK = 32


def population_compiler_options(
    cfg: EchoConfig, lanes: bool | None = None, size: int | None = None
) -> dict[str, str]:
    """The XLA options (``jax.jit(compiler_options=...)``) of the population program of ``size``
    members of ``cfg`` (``lanes``: ``None`` for the policy's layout; ``size``: ``None`` for
    any): ``_LANES_COMPILER_OPTIONS`` for members in lanes (tanh cells: at most
    ``_WHOLE_TANH_MEMBERS``), while XLA compiles small loops whole and accepts the options;
    otherwise none."""
    in_lanes = population_lanes(cfg) if lanes is None else lanes
    large = size is not None and size > _WHOLE_TANH_MEMBERS and cfg.cell in _TANH_CELLS
    if large or not (in_lanes and xla_flags.SMALL_LOOPS and _accepted(_LANES_COMPILER_OPTIONS)):
        return {}
    return dict(_LANES_COMPILER_OPTIONS)


@functools.cache
def _accepted(options: tuple[tuple[str, str], ...]) -> bool:
    """Whether this jaxlib's XLA knows ``options`` (an older one refuses unknown options)."""
    try:
        jax.jit(jnp.negative, compiler_options=dict(options)).lower(1.0).compile()
    except jax.errors.JaxRuntimeError:  # "no such option" or "not a valid enum value"
        return False
    return True


def vmap_chunk(cfg: EchoConfig, size: int) -> int:
    """How many of ``size`` members one ``vmap`` runs side by side: at most ``VMAP_CHUNK``, and
    no more than keep their products fused (``fused_members``)."""
    return min(size, VMAP_CHUNK, fused_members(cfg))


# The update of TF1's Adagrad reads the learning rate from the optimizer state, so one
# transformation (and one compiled program) serves every rate; 0.3 here is never read.
_TF1_ADAGRAD = optim.tf1_adagrad(0.3)


class _Spec(NamedTuple):
    """What the compiled functions depend on, from the config: hashable, so a static argument.

    Fields that only change values (seed, learning rate, series length) are not in it, so they
    never cause a recompilation.
    """

    cell: str
    keep_prob: float
    window: int
    remat: bool = False
    optimizer: optax.GradientTransformation = _TF1_ADAGRAD
    members: int = 1  # models run side by side under vmap: decides fused products or dots
    lanes: bool = False  # the members on the last axis of every array, not under vmap
    batch_axis: str | None = None  # inside shard_map: the mesh axis the batch rows are split over

    def product(self) -> Callable:
        """The cells' product for this many members (``cell_product``, ``lane_product``)."""
        return lane_product if self.lanes else cell_product(self.members)


def _spec(
    cfg: EchoConfig,
    remat: bool = False,
    optimizer=None,
    members: int = 1,
    lanes: bool = False,
    batch_axis: str | None = None,
) -> _Spec:
    return _Spec(
        cfg.cell,
        cfg.keep_prob,
        cfg.truncated_backprop_length,
        remat,
        optimizer or _TF1_ADAGRAD,
        members,
        lanes,
        batch_axis,
    )


def epoch_key(cfg: EchoConfig, epoch: int) -> jax.Array:
    """The dropout key of an epoch, a pure function of ``(cfg.seed, epoch)``: resume is exact."""
    return dropout_key(cfg.seed, epoch)


def window_key(cfg: EchoConfig, epoch: int, window: int) -> jax.Array:
    """The dropout key of one window: the one ``train_epoch`` gives it from ``epoch_key``."""
    return _window_key(epoch_key(cfg, epoch), cfg.num_batches, window)


@functools.partial(jax.jit, static_argnums=1)
def _window_key(key: jax.Array, windows: int, window: Any) -> jax.Array:
    return jax.random.split(key, windows)[window]


@jax.jit
def dropout_key(seed: Any, epoch: Any) -> jax.Array:
    """``epoch_key`` from a seed (one compiled call; ``vmap`` it over a population's seeds)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), DROPOUT_STREAM), epoch)


# --- One window -------------------------------------------------------------------------------


def _outputs(
    params: Params, x_BxT: jax.Array, state: Any, spec: _Spec, key: jax.Array | None
) -> tuple[jax.Array, Any]:
    """Runs the stacked cells over the window: top-layer outputs (T, B, S) and the last state."""
    dtype = params.W2.dtype
    x_TxBx1 = jnp.moveaxis(x_BxT, 1, 0)[:, :, None].astype(dtype)  # (T, B, 1, P) with lanes
    T, B = x_TxBx1.shape[:2]
    _check_state(state, _zero_state(spec, params, B))
    state = jax.tree.map(lambda s: jnp.asarray(s, dtype), state)
    cell = CELLS[spec.cell]
    masks = None
    if key is not None and spec.keep_prob < 1:
        L, S = len(params.cells), params.W2.shape[0]

        def draw(key):
            if spec.batch_axis is None:
                return dropout_masks(key, T, L, B, S, spec.keep_prob, dtype)
            # This device's rows of the whole batch's masks: the numbers of one device.
            whole = B * lax.axis_size(spec.batch_axis)
            masks = dropout_masks(key, T, L, whole, S, spec.keep_prob, dtype)
            return lax.dynamic_slice_in_dim(masks, lax.axis_index(spec.batch_axis) * B, B, 2)

        # With lanes, one key per member and its own masks: (T, L, B, S, P).
        masks = jnp.moveaxis(jax.vmap(draw)(key), 0, -1) if spec.lanes else draw(key)

    def step(state, x_Bx1_masks):
        return stack_step(cell, params.cells, state, *x_Bx1_masks, product=spec.product())

    if spec.remat:  # keep only each step's carry for the backward pass; recompute the rest
        step = jax.checkpoint(step)
    unroll = window_unroll(spec.cell, T, len(params.cells))
    state, out_TxBxS = lax.scan(step, state, (x_TxBx1, masks), unroll=unroll)
    return out_TxBxS, state


def _check_state(state: Any, zeros: Any) -> None:
    """Refuses a state that is not the cell's own pytree (``cells.initial_state``'s structure
    and shapes): a plain ``(h, c)`` tuple in place of ``LSTMState(c, h)`` is not re-nested, so
    it cannot be read in the wrong order. ``cells.state_from_layers`` converts TF1's tuples."""
    got, expected = jax.tree.structure(state), jax.tree.structure(zeros)
    if got != expected:
        raise ValueError(
            f"the state must have the structure of cells.initial_state(cfg), {expected}, got "
            f"{got}; convert TF1's per-layer tuples with cells.state_from_layers(cfg, state)"
        )
    for leaf, zero in zip(jax.tree.leaves(state), jax.tree.leaves(zeros), strict=True):
        if jnp.shape(leaf) != zero.shape:
            raise ValueError(
                f"state has shape {jnp.shape(leaf)}, expected (batch, state_size) = {zero.shape}"
            )


def _logits(params, x_BxT, state, spec, key=None):
    out_TxBxS, state = _outputs(params, x_BxT, state, spec, key)
    return spec.product()([out_TxBxS], params.W2, params.b2), state


def _loss(params, x_BxT, y_BxT, state, spec, key=None):
    logits_TxBxC, state = _logits(params, x_BxT, state, spec, key)  # (T, B, C, P) with lanes
    log_p_TxBxC = jax.nn.log_softmax(logits_TxBxC, axis=2)
    y_TxB = jnp.moveaxis(y_BxT, 1, 0)
    # The label's log-probability as a sum against its one-hot row, not a gather: a gather's
    # gradient is a scatter, and XLA:CPU runs a loop that holds a scatter kernel by kernel even
    # with the small-loop option. The same numbers (one nonzero term per sum).
    C = logits_TxBxC.shape[2]
    one_hot_TxBxC = jax.nn.one_hot(y_TxB, C, axis=2, dtype=log_p_TxBxC.dtype)
    nll_TxB = -jnp.sum(log_p_TxBxC * one_hot_TxBxC, axis=2)
    return jnp.mean(nll_TxB, axis=(0, 1)), state  # one loss per member with lanes


def forward(
    params: Params, x_BxT: jax.Array, state: Any, cfg: EchoConfig, *, key: jax.Array | None = None
) -> tuple[jax.Array, Any]:
    """Runs one window from ``state``.

    Args:
      params: the weights (``init_params(cfg)``).
      x_BxT: the window's input symbols (any numeric dtype; computed in the params' dtype).
      state: the state carried in from the previous window (``cells.initial_state(cfg)``).
      cfg: the configuration (its cell and keep_prob).
      key: a dropout key; ``None`` (the default) drops nothing.

    Returns:
      ``(logits_BxTxC, state)``: per-step logits and the state after the last step.
    """
    logits_TxBxC, state = _logits(params, x_BxT, state, _spec(cfg), key)
    return jnp.swapaxes(logits_TxBxC, 0, 1), state


def loss_fn(
    params: Params,
    x_BxT: jax.Array,
    y_BxT: jax.Array,
    state: Any,
    cfg: EchoConfig,
    *,
    key: jax.Array | None = None,
    remat: bool = False,
) -> tuple[jax.Array, Any]:
    """The tutorial's loss (mean sparse softmax cross-entropy over B*T steps) and the last state.

    ``remat=True`` rematerialises each time step in the backward pass (``jax.checkpoint``):
    less memory for long windows, some more compute.
    """
    return _loss(params, x_BxT, y_BxT, state, _spec(cfg, remat), key)


def predict(params: Params, x_BxT: jax.Array, state: Any, cfg: EchoConfig) -> tuple[jax.Array, Any]:
    """Predicted symbols (B, T) and the last state, without dropout.

    The most probable class; for two classes this is the tutorial's ``1 if p[0] < 0.5 else 0``.
    """
    logits_BxTxC, state = forward(params, x_BxT, state, cfg)
    return jnp.argmax(logits_BxTxC, axis=-1).astype(jnp.int32), state


def accuracy(
    params: Params, x_BxT: jax.Array, y_BxT: jax.Array, state: Any, cfg: EchoConfig
) -> tuple[jax.Array, Any]:
    """Fraction of correctly predicted steps in the window, and the last state."""
    pred_BxT, state = predict(params, x_BxT, state, cfg)
    return jnp.mean(pred_BxT == y_BxT), state


# --- Training ---------------------------------------------------------------------------------


def _train_window(params, opt_state, state, x_BxT, y_BxT, key, spec: _Spec):
    def total(params):  # with lanes the members' losses, whose sum has each member's gradient
        loss, state_out = _loss(params, x_BxT, y_BxT, state, spec, key)
        return jnp.sum(loss), (loss, state_out)

    if spec.batch_axis is None:
        (_, (loss, state)), grads = jax.value_and_grad(total, has_aux=True)(params)
    else:  # this device's gradient (taken at its own copy of the params), then the mean of all
        at = lax.pcast(params, spec.batch_axis, to="varying")
        (_, (loss, state)), grads = jax.value_and_grad(total, has_aux=True)(at)
        grads, loss = lax.pmean((grads, loss), spec.batch_axis)  # equal shares of the batch
    updates, opt_state = spec.optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, state, loss


def _check_inputs(params: Params, x: Any, y: Any, state: Any = None, lanes: bool = False) -> None:
    """Raises ``ValueError`` for mismatched shapes; called while tracing, so free at run time."""
    if jnp.ndim(x) != 2 + lanes or jnp.shape(y) != jnp.shape(x):
        raise ValueError(
            f"x and y must be (batch, time) arrays of one shape, "
            f"got x {jnp.shape(x)} and y {jnp.shape(y)}"
        )
    if state is None:
        return
    layers = len(params.cells)
    if not isinstance(state, tuple) or len(state) != layers:
        raise ValueError(
            f"state must be a tuple of {layers} per-layer state(s) (cells.initial_state), "
            f"got {type(state).__name__} of {len(state) if isinstance(state, tuple) else 1}"
        )


# The learning rates already read from the device: id of a state's rate array -> its value. The
# state a training call returns holds its input's rate, so that rate is recorded without reading
# it back (which would wait for the call: a host sync per window); an entry goes with its array.
_KNOWN_RATES: dict[int, float] = {}


def _check_training(cfg: EchoConfig, opt_state: Any, key: Any) -> float | None:
    """Refuses training that would silently differ from ``cfg``: no key for dropout, or an
    optimizer state holding another learning rate. Returns the state's rate (``None`` for a
    state without one); it is read from the device once per optimizer state, not per call."""
    if cfg.keep_prob < 1 and key is None:
        raise ValueError(
            f"EchoConfig.keep_prob is {cfg.keep_prob}: dropout needs a key "
            "(key=jax.random.key(...); fit uses epoch_key(cfg, epoch))"
        )
    rate = optim.learning_rate(opt_state)
    if rate is None or isinstance(rate, jax.core.Tracer) or np.ndim(rate):
        return None
    value = _KNOWN_RATES.get(id(rate)) if isinstance(rate, jax.Array) else None
    if value is None:
        value = float(rate)
    if value != float(np.asarray(cfg.learning_rate, getattr(rate, "dtype", np.float64))):
        raise ValueError(
            f"the optimizer state holds learning rate {value}, but "
            f"EchoConfig.learning_rate is {cfg.learning_rate}: build it with "
            "make_optimizer(cfg).init(params)"
        )
    return value


def _known_rate(opt_state: Any, value: float | None) -> None:
    """Records that ``opt_state`` (a training call's output) holds the rate ``value``."""
    rate = optim.learning_rate(opt_state)
    if value is not None and isinstance(rate, jax.Array):
        _KNOWN_RATES[id(rate)] = value
        weakref.finalize(rate, _KNOWN_RATES.pop, id(rate), None)


@functools.cache
def _compiled_step(spec: _Spec) -> Callable:
    def step(params, opt_state, state, x_BxT, y_BxT, key):
        _check_inputs(params, x_BxT, y_BxT, state)
        return _train_window(params, opt_state, state, x_BxT, y_BxT, key, spec)

    return jax.jit(step, donate_argnums=(0, 1, 2))


def train_step(
    params: Params,
    opt_state: Any,
    state: Any,
    x_BxT: jax.Array,
    y_BxT: jax.Array,
    cfg: EchoConfig,
    *,
    key: jax.Array | None = None,
    optimizer: optax.GradientTransformation | None = None,
) -> tuple[Params, Any, Any, jax.Array]:
    """One training window: forward, gradient and optimizer update in one compiled call.

    Args:
      params: the weights.
      opt_state: from ``make_optimizer(cfg).init(params)`` (or ``optimizer.init``).
      state: the state carried in from the previous window (zeros at the start of an epoch).
      x_BxT: the window's inputs. y_BxT: its int targets.
      cfg: the configuration (cell, keep_prob; the learning rate must be ``opt_state``'s).
      key: the window's dropout key; required when ``cfg.keep_prob < 1``.
      optimizer: any optax transformation (default TF1's Adagrad); create it once.

    Returns:
      ``(params, opt_state, state, loss)``; ``state`` is the state to carry into the next window
      (a value: no gradient flows across the window edge). ``params``, ``opt_state`` and
      ``state`` are donated, so their input buffers must not be used afterwards.
    """
    rate = _check_training(cfg, opt_state, key)
    step = _compiled_step(_spec(cfg, optimizer=optimizer))
    params, opt_state, state, loss = step(params, opt_state, state, x_BxT, y_BxT, key)
    _known_rate(opt_state, rate)
    return params, opt_state, state, loss


def make_train_epoch(
    cfg: EchoConfig,
    *,
    optimizer: optax.GradientTransformation | None = None,
    remat: bool = False,
    members: int = 1,
    batch_axis: str | None = None,
) -> Callable:
    """One epoch as a plain function ``(params, opt_state, x_BxL, y_BxL, key) -> (params,
    opt_state, losses_N)``, not yet compiled: ``jit`` it, or ``vmap`` it over a population.

    Reads ``cfg.cell``, ``cfg.keep_prob`` and ``cfg.truncated_backprop_length``; the learning
    rate comes from ``opt_state``. ``key`` may be ``None`` when nothing is dropped. ``members``:
    how many models one ``vmap`` of it runs side by side (it picks fused products or dots,
    ``cell_product``; same numbers either way). ``batch_axis``: for a ``jax.shard_map`` over a
    mesh axis of that name that splits the batch rows into equal shares: every window's
    gradients and loss are averaged over the axis (one ``lax.pmean``), and each device takes its
    rows of the whole batch's dropout masks, so the numbers are one device's.
    """
    return _epoch_function(_spec(cfg, remat, optimizer, members, batch_axis=batch_axis))


def make_population_epoch(
    cfg: EchoConfig,
    members: int,
    *,
    optimizer: optax.GradientTransformation | None = None,
    lanes: bool | None = None,
) -> Callable:
    """The epoch of ``members`` models trained side by side, as a plain function of their stacked
    pytrees (members on a leading axis P, as ``jax.vmap(make_train_epoch(cfg))`` takes them):
    ``(params_P, opt_state_P, x_PxBxL, y_PxBxL, keys_P) -> (params_P, opt_state_P, losses_PxN)``.

    The layout inside is the speed policy's (``population_lanes``): for small models the members
    move to the last axis of every array for the epoch (``lane_product``); otherwise it is that
    ``vmap``. Member i's numbers are those of ``train_epoch`` on member i alone, to float
    rounding. ``keys_P``: one dropout key per member, or ``None`` when nothing is dropped.
    ``lanes`` overrides the policy (``benchmarks/population_profile.py`` measures both).
    """
    if not (population_lanes(cfg) if lanes is None else lanes):
        return jax.vmap(make_train_epoch(cfg, optimizer=optimizer, members=members))
    epoch = _epoch_function(_spec(cfg, optimizer=optimizer, members=members, lanes=True))

    def population_epoch(params_P, opt_state_P, x_PxBxL, y_PxBxL, keys_P):
        for name, a in (("x_PxBxL", x_PxBxL), ("y_PxBxL", y_PxBxL)):
            if jnp.ndim(a) != 3:
                raise ValueError(f"{name} must be (members, batch, time), got {jnp.shape(a)}")
        last = functools.partial(jax.tree.map, lambda a: jnp.moveaxis(a, 0, -1))
        first = functools.partial(jax.tree.map, lambda a: jnp.moveaxis(a, -1, 0))
        # Each member's scalars (its learning rate, the step count) meet its arrays along the
        # last axis: the optimizer's ``rate * update`` broadcasts (P,) against (K, M, P).
        with jax.numpy_rank_promotion("allow"):
            params, opt_state, losses_NxP = epoch(
                last(params_P), last(opt_state_P), last(x_PxBxL), last(y_PxBxL), keys_P
            )
        return first(params), first(opt_state), losses_NxP.T

    return population_epoch


def _epoch_function(spec: _Spec) -> Callable:
    def train_epoch(params, opt_state, x_BxL, y_BxL, key):
        _check_inputs(params, x_BxL, y_BxL, lanes=spec.lanes)
        x_NxBxT, y_NxBxT = split_windows(x_BxL, spec.window), split_windows(y_BxL, spec.window)
        N = x_NxBxT.shape[0]
        keys = None
        if key is not None and spec.keep_prob < 1:
            split = functools.partial(jax.random.split, num=N)
            keys = jax.vmap(split, out_axes=1)(key) if spec.lanes else split(key)  # (N, P)

        def step(carry, window):
            params, opt_state, state = carry
            params, opt_state, state, loss = _train_window(params, opt_state, state, *window, spec)
            return (params, opt_state, state), loss

        state = _zero_state(spec, params, x_BxL.shape[0])
        if spec.batch_axis is not None:  # each device carries its own rows' state
            state = lax.pcast(state, spec.batch_axis, to="varying")
        (params, opt_state, _), losses_N = lax.scan(
            step, (params, opt_state, state), (x_NxBxT, y_NxBxT, keys)
        )
        return params, opt_state, losses_N

    return train_epoch


def _zero_state(spec: _Spec, params: Params, B: int) -> tuple[Any, ...]:
    """Every layer's zero state, shaped from the params (so it also works under ``vmap``, and
    with lanes: (B, S, P))."""
    S, lanes = params.W2.shape[0], params.W2.shape[2:]
    zeros = zero_state(spec.cell, len(params.cells), B, S, params.W2.dtype)
    return jax.tree.map(lambda z: jnp.zeros(z.shape + lanes, z.dtype), zeros) if lanes else zeros


@functools.cache
def _compiled_epoch(spec: _Spec) -> Callable:
    return jax.jit(_epoch_function(spec), donate_argnums=(0, 1))


def train_epoch(
    params: Params,
    opt_state: Any,
    x: jax.Array,
    y: jax.Array,
    cfg: EchoConfig,
    *,
    key: jax.Array | None = None,
    optimizer: optax.GradientTransformation | None = None,
    remat: bool = False,
) -> tuple[Params, Any, jax.Array]:
    """One epoch as one compiled call: a ``lax.scan`` of the training window over the windows.

    The state starts at zeros and is carried from window to window, as in the tutorial. Equal to
    a Python loop over ``train_step`` up to float rounding. Config fields that only change values
    (seed, learning rate) never cause a recompilation.

    Args:
      params, opt_state: as for ``train_step`` (both donated).
      x, y: one epoch's series, shape (batch_size, total_series_length // batch_size).
      cfg: the configuration (cell, keep_prob, window length; the learning rate must be the one
        ``opt_state`` holds).
      key: the epoch's dropout key (``epoch_key(cfg, epoch)``), split into one key per window;
        required when ``cfg.keep_prob < 1``.
      optimizer: any optax transformation (default TF1's Adagrad); create it once.
      remat: rematerialise time steps in the backward pass (``jax.checkpoint``), trading compute
        for memory on long windows; same numbers.

    Returns:
      ``(params, opt_state, losses)``, ``losses`` of shape (num_batches,): one per window.

    >>> from jax_echo import epoch_data, init_params, make_optimizer
    >>> cfg = EchoConfig.for_part(3, total_series_length=750)
    >>> params = init_params(cfg)
    >>> params, opt_state, losses = train_epoch(params, make_optimizer(cfg).init(params),
    ...                                         *epoch_data(cfg, 0), cfg)
    >>> losses.shape
    (10,)
    """
    rate = _check_training(cfg, opt_state, key)
    epoch = _compiled_epoch(_spec(cfg, remat, optimizer))
    params, opt_state, losses = epoch(params, opt_state, x, y, key)
    _known_rate(opt_state, rate)
    return params, opt_state, losses


def make_predict_epoch(cfg: EchoConfig, *, members: int = 1) -> Callable:
    """``(params, x_BxL) -> predictions (N, B, T)`` as a plain function, state carried from
    zeros, without dropout. ``members`` as for ``make_train_epoch``."""
    return _predict_function(_spec(cfg, members=members))


def _predict_function(spec: _Spec) -> Callable:
    def predict_epoch(params, x_BxL):
        def step(state, x_BxT):
            logits_TxBxC, state = _logits(params, x_BxT, state, spec)
            return state, jnp.swapaxes(jnp.argmax(logits_TxBxC, axis=-1), 0, 1).astype(jnp.int32)

        state = _zero_state(spec, params, x_BxL.shape[0])
        _, pred_NxBxT = lax.scan(step, state, split_windows(x_BxL, spec.window))
        return pred_NxBxT

    return predict_epoch


@functools.cache
def _compiled_predict(spec: _Spec) -> Callable:
    return jax.jit(_predict_function(spec))


def predict_epoch(params: Params, x: jax.Array, cfg: EchoConfig) -> jax.Array:
    """Predictions for every window of a series, state carried as in training: (N, B, T)."""
    return _compiled_predict(_spec(cfg))(params, x)


def window_accuracies(params: Params, x: jax.Array, y: jax.Array, cfg: EchoConfig) -> jax.Array:
    """Per-window accuracy (N,) of fixed params over a series, state carried from window to window.

    Window 0 is the one the tutorial explains cannot be fully predicted. Compared on the host:
    no extra compiled programs.
    """
    return prediction_accuracies(np.asarray(predict_epoch(params, x, cfg)), np.asarray(y))
