"""Recurrent cells as pure functions, their TF1 weight layout, and the model's parameters.

Every cell is a ``Cell(layout, initial_state, step)``, the one contract the model, training,
files, parity tests and benchmarks rely on (in the spirit of stax's ``(init_fun, apply_fun)``):

- ``layout(I, S)``: the cell's params NamedTuple with ``(shape, initialiser)`` leaves, for input
  width I and state size S; ``Cell.init(rng, I, S, dtype)`` draws NumPy arrays from it;
- ``initial_state(shape, dtype)``: one layer's zero state (``h``, or ``LSTMState(c, h)``) of
  ``shape`` (B, S); ``zero_state`` stacks it over the layers, the one zero state of every caller;
- ``step(params, state, x, product=affine) -> (state, out)``: one time step of one model, pure
  JAX: elementwise math, and its products ``concat(inputs) @ w + b`` written as
  ``product(inputs, w, b, parts)`` (in ``parts`` column blocks, as TF1 splits its gates). How XLA
  computes a product, and on which axis the features lie, is the speed policy's choice
  (``policy``): the cells know nothing of sizes, populations or compilers.

A new cell is one layout and one step function, and a row in ``CELLS``. ``stack_step`` runs
``num_layers`` cells per time step (layer 0's input is the 1-wide series, layer k+1's layer k's
output) with part 6's output dropout. ``Params(cells, W2, b2)`` adds the output layer.

Weights leave and enter the package as a flat dict in TF1's layout (``params_to_dict`` /
``params_from_dict``): part 1 ``W``, ``b``, ``W2``, ``b2``; otherwise ``cell_{k}/kernel``,
``cell_{k}/bias`` (LSTM gate columns i, j, f, o), or ``cell_{k}/gates/kernel``, ... for the GRU;
kernel rows are the input first, then the state.

Shape legend: B batch, I a cell's input width, S state, C classes. A step's arrays are (B, I) and
(B, S) for one model; the policy may add a trailing member axis P, so the steps give no shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_echo.task import EchoConfig, init_stream

LSTM_FORGET_BIAS = 1.0  # TF1's LSTM cells add it to the forget gate at run time


def affine(
    inputs: Sequence[jax.Array], w: jax.Array, b: jax.Array, parts: int = 1
) -> jax.Array | list[jax.Array]:
    """``concat(inputs, -1) @ w + b`` for inputs (..., K_i) with K = sum K_i, ``w`` (K, M) and
    ``b`` (M,) or (1, M); with ``parts`` > 1, the result split into that many column blocks."""
    a = jnp.concatenate(inputs, axis=-1)
    z = a @ w + b.reshape((1,) * (a.ndim - 1) + b.shape[-1:])
    return z if parts == 1 else jnp.split(z, parts, axis=-1)


# --- The cells' parameters and state ------------------------------------------------------------


class TutorialParams(NamedTuple):
    """Part 1's hand-written layer, with the tutorial's names."""

    W: Any  # (I+S, S): input rows, then state rows
    b: Any  # (1, S)

    PREFIX = ""  # flat names: W, b


class RNNParams(NamedTuple):
    """``BasicRNNCell``."""

    kernel: Any  # (I+S, S)
    bias: Any  # (S,)

    PREFIX = "cell_{layer}/"


class LSTMParams(NamedTuple):
    """``BasicLSTMCell`` / ``LSTMCell`` (no peepholes, no projection)."""

    kernel: Any  # (I+S, 4S): gate columns i, j, f, o
    bias: Any  # (4S,)

    PREFIX = "cell_{layer}/"


class GRUParams(NamedTuple):
    """TF1's ``GRUCell``."""

    gates_kernel: Any  # (I+S, 2S): reset r, then update u
    gates_bias: Any  # (2S,), initialised to 1.0
    candidate_kernel: Any  # (I+S, S)
    candidate_bias: Any  # (S,)

    PREFIX = "cell_{layer}/"


class LSTMState(NamedTuple):
    """TF1's ``LSTMStateTuple``: cell state first, then the output."""

    c: Any  # (B, S)
    h: Any  # (B, S)


CELL_PARAMS = (TutorialParams, RNNParams, LSTMParams, GRUParams)


def flat_names(cell_params: Any, layer: int) -> list[str]:
    """TF1's variable names of one layer's params: ``cell_0/gates/kernel``, ``W``, ..."""
    prefix = type(cell_params).PREFIX.format(layer=layer)
    return [prefix + field.replace("_", "/") for field in cell_params._fields]


def flat_dict(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of ``tree`` under one flat name, as every file the project writes names it:
    a layer's cell params wherever they sit get TF1's names (``flat_names``), other leaves their
    key path joined by ``/`` (``W2``, ``inner_state/0/sum_of_squares/cell_0/kernel``)."""
    flat = {}
    nodes, _ = jax.tree.flatten_with_path(tree, is_leaf=lambda node: isinstance(node, CELL_PARAMS))
    for path, node in nodes:
        keys = [prefix.rstrip("/"), *(_key_name(k) for k in path)]
        if isinstance(node, CELL_PARAMS):  # ... cells / k: the layer's TF1 names
            for name, leaf in zip(flat_names(node, int(keys[-1])), node, strict=True):
                flat["/".join([*keys[:-2], name]).strip("/")] = leaf
        else:
            flat["/".join(keys).strip("/")] = node
    return flat


def _key_name(key: Any) -> str:
    for attr in ("name", "key", "idx"):  # GetAttrKey, DictKey, SequenceKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


# --- The cells ----------------------------------------------------------------------------------


def _tutorial_layout(I: int, S: int) -> TutorialParams:
    return TutorialParams(W=((I + S, S), "uniform01"), b=((1, S), "zeros"))


def _basic_rnn_layout(I: int, S: int) -> RNNParams:
    return RNNParams(kernel=((I + S, S), "glorot"), bias=((S,), "zeros"))


def _lstm_layout(I: int, S: int) -> LSTMParams:
    return LSTMParams(kernel=((I + S, 4 * S), "glorot"), bias=((4 * S,), "zeros"))


def _gru_layout(I: int, S: int) -> GRUParams:
    return GRUParams(
        gates_kernel=((I + S, 2 * S), "glorot"),
        gates_bias=((2 * S,), "ones"),
        candidate_kernel=((I + S, S), "glorot"),
        candidate_bias=((S,), "zeros"),
    )


def _zeros_h(shape: tuple[int, ...], dtype: Any) -> jax.Array:
    return jnp.zeros(shape, dtype)


def _zeros_lstm(shape: tuple[int, ...], dtype: Any) -> LSTMState:
    return LSTMState(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def _tanh_step(
    params: TutorialParams | RNNParams, h: jax.Array, x: jax.Array, product=affine
) -> tuple[jax.Array, jax.Array]:
    """Parts 1 and 2: ``h = tanh(concat([x, h]) @ W + b)``; the output is the state."""
    kernel, bias = params
    h = jnp.tanh(product([x, h], kernel, bias))
    return h, h


def _lstm_step(
    params: LSTMParams, state: LSTMState, x: jax.Array, product=affine
) -> tuple[LSTMState, jax.Array]:
    c, h = state
    i, j, f, o = product([x, h], params.kernel, params.bias, parts=4)
    c = c * jax.nn.sigmoid(f + LSTM_FORGET_BIAS) + jax.nn.sigmoid(i) * jnp.tanh(j)
    h = jnp.tanh(c) * jax.nn.sigmoid(o)
    return LSTMState(c, h), h


def _gru_step(
    params: GRUParams, h: jax.Array, x: jax.Array, product=affine
) -> tuple[jax.Array, jax.Array]:
    """TF1's GRUCell: the reset gate scales the state before the candidate's matmul."""
    gates = product([x, h], params.gates_kernel, params.gates_bias, parts=2)
    r, u = (jax.nn.sigmoid(g) for g in gates)
    candidate = jnp.tanh(product([x, r * h], params.candidate_kernel, params.candidate_bias))
    h = u * h + (1 - u) * candidate
    return h, h


def _draw(rng: np.random.Generator, shape: tuple[int, ...], how: str, dtype: Any) -> np.ndarray:
    if how == "uniform01":  # the tutorial's np.random.rand
        return rng.random(shape).astype(dtype)
    if how == "glorot":  # TF1's default kernel initialiser
        limit = np.sqrt(6.0 / sum(shape))
        return rng.uniform(-limit, limit, shape).astype(dtype)
    return (np.ones if how == "ones" else np.zeros)(shape, dtype)


class Cell(NamedTuple):
    """One recurrent cell: its weight layout, its zero state and its step (module docstring)."""

    layout: Callable[[int, int], Any]
    initial_state: Callable[[tuple[int, ...], Any], Any]  # (shape, dtype): one layer's zeros
    step: Callable[..., tuple[Any, jax.Array]]  # (params, state, x, product=affine)

    def init(self, rng: np.random.Generator, I: int, S: int, dtype: Any = np.float32) -> Any:
        """NumPy params drawn from the layout's initialisers, field by field."""
        layout = self.layout(I, S)
        return type(layout)(*(_draw(rng, shape, how, dtype) for shape, how in layout))

    def shapes(self, I: int, S: int) -> Any:
        layout = self.layout(I, S)
        return type(layout)(*(shape for shape, _ in layout))


CELLS: dict[str, Cell] = {
    "tutorial": Cell(_tutorial_layout, _zeros_h, _tanh_step),
    "basic_rnn": Cell(_basic_rnn_layout, _zeros_h, _tanh_step),
    "lstm": Cell(_lstm_layout, _zeros_lstm, _lstm_step),
    "gru": Cell(_gru_layout, _zeros_h, _gru_step),
}


def input_width(layer: int, S: int) -> int:
    """I of a layer: the 1-wide series for layer 0, the layer below's output otherwise."""
    return 1 if layer == 0 else S


# --- Stacking and dropout -----------------------------------------------------------------------


def dropout_masks(key: jax.Array, T: int, L: int, B: int, S: int, keep_prob: float, dtype):
    """The dropout masks of one window, (T, L, B, S): 1/p where kept (probability p), else 0;
    all drawn before the window's scan, so the recurrence stays free of random-number code."""

    def mask(t, layer):
        step_layer_key = jax.random.fold_in(jax.random.fold_in(key, t), layer)
        keep = jax.random.bernoulli(step_layer_key, keep_prob, (B, S))
        return jnp.where(keep, 1 / keep_prob, 0).astype(dtype)

    steps, layers = jnp.arange(T), jnp.arange(L)
    return jax.vmap(lambda t: jax.vmap(lambda k: mask(t, k))(layers))(steps)


def stack_step(
    cell: Cell,
    cells_params: tuple[Any, ...],
    states: tuple[Any, ...],
    x: jax.Array,
    masks: jax.Array | None = None,
    product: Callable = affine,
) -> tuple[tuple[Any, ...], jax.Array]:
    """One time step through every layer (TF1's ``MultiRNNCell``): the new per-layer states and
    the top layer's output. With ``masks`` (one per layer) each layer's output, not its carried
    state, is multiplied by its mask (``DropoutWrapper(output_keep_prob=p)``)."""
    new_states = []
    out = x
    for layer, (params, state) in enumerate(zip(cells_params, states, strict=True)):
        state, out = cell.step(params, state, out, product)
        if masks is not None:
            out = out * masks[layer]
        new_states.append(state)
    return tuple(new_states), out


def zero_state(
    cell: str, num_layers: int, B: int, S: int, dtype: Any, members: tuple[int, ...] = ()
) -> tuple[Any, ...]:
    """The model's zero state: one ``h`` or ``LSTMState(c, h)`` of zeros (B, S) per layer, or
    (B, S, P) for ``members`` (P,) in lanes."""
    zeros = CELLS[cell].initial_state
    return tuple(zeros((B, S, *members), dtype) for _ in range(num_layers))


def initial_state(cfg: EchoConfig, batch_size: int | None = None, dtype: Any = jnp.float32):
    """``zero_state`` of ``cfg``'s model, for ``batch_size`` rows (default ``cfg.batch_size``)."""
    B = cfg.batch_size if batch_size is None else batch_size
    return zero_state(cfg.cell, cfg.num_layers, B, cfg.state_size, dtype)


def check_state(state: Any, zeros: Any) -> None:
    """Refuses a state without ``zeros``' structure and shapes: a plain ``(h, c)`` is never read
    as ``LSTMState(c, h)`` in the wrong order (``state_from_layers`` converts TF1's)."""
    if not isinstance(state, tuple) or len(state) != len(zeros):
        raise ValueError(
            f"state must be a tuple of {len(zeros)} per-layer state(s) (cells.initial_state), "
            f"got {type(state).__name__} of {len(state) if isinstance(state, tuple) else 1}"
        )
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


def state_from_layers(cfg: EchoConfig, layers: Any) -> tuple[Any, ...]:
    """A state as TF1 gives it (per layer an array (B, S), or an ``LSTMStateTuple`` pair
    ``(c, h)``) as ``initial_state``'s pytree; ``ValueError`` for layers that are not ``cfg``'s."""
    layers = tuple(layers)
    lstm = cfg.cell == "lstm"
    if len(layers) != cfg.num_layers or any(
        (len(layer) != 2 if lstm else np.ndim(layer) != 2) for layer in layers
    ):
        what = "(c, h) pairs" if lstm else "arrays (B, S)"
        raise ValueError(f"the state must be {cfg.num_layers} per-layer {what}")
    return tuple(LSTMState(c, h) for c, h in layers) if lstm else layers


# --- The model's parameters -------------------------------------------------------------------


class Params(NamedTuple):
    """Every weight of the model: the stacked cells' params, then the output layer."""

    cells: tuple[Any, ...]  # one params NamedTuple per layer
    W2: Any  # (S, C)
    b2: Any  # (1, C)


def init_params(
    cfg: EchoConfig, rng: np.random.Generator | int | None = None, dtype: Any = np.float32
) -> Params:
    """TF1's initialisation for ``cfg.cell``, layer by layer, then ``W2`` uniform in [0, 1).

    Kernels glorot-uniform, biases zeros (the GRU's gates 1.0), part 1's ``W`` uniform in [0, 1),
    drawn in that order (layer 0's arrays, ..., then ``W2``: part 1's are the tutorial's draws).

    Args:
      cfg: the configuration (cell, num_layers, state_size, num_classes).
      rng: a ``numpy.random.Generator`` or an int seed (default: the stream of ``cfg.seed``).
      dtype: the parameters' dtype (float64 for the high-precision parity checks).

    >>> params = init_params(EchoConfig.for_part(4))
    >>> [name for name in params_to_dict(params)][:3]
    ['cell_0/kernel', 'cell_0/bias', 'cell_1/kernel']
    """
    if rng is None:
        rng = init_stream(cfg)
    elif not hasattr(rng, "random"):
        rng = np.random.default_rng(rng)
    cell, S, C = CELLS[cfg.cell], cfg.state_size, cfg.num_classes
    cells = tuple(cell.init(rng, input_width(k, S), S, dtype) for k in range(cfg.num_layers))
    return Params(cells, rng.random((S, C)).astype(dtype), np.zeros((1, C), dtype))


def layer_shapes(cfg: EchoConfig) -> list[Any]:
    """Each layer's params NamedTuple of shapes, for ``cfg``'s model."""
    cell, S = CELLS[cfg.cell], cfg.state_size
    return [cell.shapes(input_width(k, S), S) for k in range(cfg.num_layers)]


def param_shapes(cfg: EchoConfig) -> dict[str, tuple[int, ...]]:
    """The shape of each weight of ``cfg``'s model by its flat TF1 name, in flat order."""
    flat = {}
    for layer, shapes in enumerate(layer_shapes(cfg)):
        flat |= dict(zip(flat_names(shapes, layer), map(tuple, shapes), strict=True))
    return flat | {"W2": (cfg.state_size, cfg.num_classes), "b2": (1, cfg.num_classes)}


def params_to_dict(params: Params) -> dict[str, np.ndarray]:
    """Params as a flat dict of NumPy arrays in TF1's layout (see the module docstring)."""
    return {name: np.asarray(leaf) for name, leaf in flat_dict(params).items()}


def params_from_dict(d: Any, cfg: EchoConfig) -> Params:
    """``Params`` for ``cfg`` from a flat TF1-layout mapping (or an ``np.load`` result); ``Params``
    pass through, checked. ``ValueError`` names a missing key or a shape that is not ``cfg``'s."""
    if isinstance(d, Params):
        d = params_to_dict(d)
    expected = param_shapes(cfg)
    missing = [name for name in expected if name not in d]
    unexpected = [name for name in d if name not in expected]
    if missing or unexpected:
        problem = f"missing {missing}" if missing else f"unexpected arrays {unexpected}"
        raise ValueError(
            f"params are {problem}: a {cfg.cell} model with {cfg.num_layers} layer(s) has "
            f"exactly the arrays {list(expected)}"
        )
    for name, shape in expected.items():
        got = np.shape(d[name])
        if got != shape:
            raise ValueError(
                f"params[{name!r}] has shape {got}, expected {shape} (cell={cfg.cell!r}, "
                f"num_layers={cfg.num_layers}, state_size={cfg.state_size}, "
                f"num_classes={cfg.num_classes})"
            )
    cells = tuple(
        type(shapes)(*(np.asarray(d[name]) for name in flat_names(shapes, layer)))
        for layer, shapes in enumerate(layer_shapes(cfg))
    )
    return Params(cells, np.asarray(d["W2"]), np.asarray(d["b2"]))
