"""The speed policy: how the model's programs are computed, decided from shapes in this one place.

The cells are the math (``cells.affine``); this module decides how XLA computes it, and every
choice gives the same numbers to float rounding: how a product is written (``cell_product``,
``lane_product``), whether a window is unrolled (``Program.unroll``), and for a population
members in lanes or a ``vmap``, the chunk, the threads and the compiler options. The model takes
it as one static value, a ``Program`` (``program(cfg)``). The measurements behind each constant,
and the commands that repeat them, are in ``docs/performance.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jax_echo import xla_flags
from jax_echo.cells import dropout_masks, layer_shapes
from jax_echo.task import EchoConfig

# Windows of at most this many cell steps (time steps x layers) of a cell that is not rolled are
# unrolled completely: one straight-line block that XLA fuses across steps.
FULL_UNROLL_STEPS = 16
# Members train in lanes while one member's products of a step (all layers, B x K x M each) stay
# within this many elements; beyond, XLA:CPU runs the loop kernel by kernel.
LANE_ELEMENTS = 4800
LANE_CHUNK = 32  # members in lanes a chunk at most, where the options below are refused
VMAP_CHUNK = 16  # members one vmap runs side by side at most
WHOLE_LANE_CHUNK = 32  # members in lanes a chunk where the options below compile it whole
# With YNNPACK for dots only, a population's loops in lanes compile whole (no custom fusions in
# them), and each chunk's kernel leaves the other cores to the next chunk's thread.
LANES_COMPILER_OPTIONS = (("xla_cpu_experimental_ynn_fusion_type", "LIBRARY_FUSION_TYPE_DOT"),)
# The tanh cells' kernels are cheap anyway: past this many members they keep the default options.
WHOLE_TANH_MEMBERS = 1024
TANH_CELLS = ("tutorial", "basic_rnn")


def cell_product(members: int) -> Callable:
    """``cells.affine`` for ``members`` models side by side under ``vmap`` (it sees one member's
    shapes): a multiply and sum while all their products are within ``FUSED_PRODUCT_LIMIT``,
    which XLA fuses, a dot beyond."""

    def product(inputs, w: jax.Array, b: jax.Array, parts: int = 1):
        a = jnp.concatenate(inputs, axis=-1)
        lead = (1,) * (a.ndim - 1)
        if members * a.size * w.shape[-1] <= xla_flags.FUSED_PRODUCT_LIMIT:
            z = jnp.sum(a[..., :, None] * w.reshape(lead + w.shape), axis=-2)
        else:
            z = a @ w
        z = z + b.reshape(lead + b.shape[-1:])
        return z if parts == 1 else jnp.split(z, parts, axis=-1)

    return product


def lane_product(inputs, w: jax.Array, b: jax.Array, parts: int = 1):
    """``cells.affine`` for P members on the last axis (inputs (..., K_i, P), ``w`` (K, M, P)): a
    multiply and a sum, every operation across the members in the CPU's vector lanes."""
    a = jnp.concatenate(inputs, axis=-2)
    lead = (1,) * (a.ndim - 2)
    z = jnp.sum(a[..., :, None, :] * w.reshape(lead + w.shape), axis=-3)
    z = z + b.reshape(lead + w.shape[-2:])
    return z if parts == 1 else jnp.split(z, parts, axis=-2)


@dataclasses.dataclass(frozen=True)
class Program:
    """How one compiled program computes the model; hashable, it keys the compiled caches."""

    members: int = 1  # models one vmap runs side by side: their products' sizes add up
    lanes: bool = False  # the members on the last axis of every array, not under vmap
    rolled: bool = False  # every window a loop (no full unroll)
    batch_axis: str | None = None  # inside shard_map: the mesh axis the batch rows are split over

    def product(self) -> Callable:
        return lane_product if self.lanes else cell_product(self.members)

    def unroll(self, T: int, layers: int) -> int:
        """How many of a window's T time steps one trip of its loop runs (T: no loop at all)."""
        return 1 if self.rolled or T * layers > FULL_UNROLL_STEPS else T

    def window_keys(self, key: jax.Array, N: int) -> jax.Array:
        """An epoch's key split into one per window, (N,); with lanes one per member, (N, P)."""
        split = functools.partial(jax.random.split, num=N)
        return jax.vmap(split, out_axes=1)(key) if self.lanes else split(key)

    def dropout_masks(self, key, T: int, L: int, B: int, S: int, keep_prob: float, dtype):
        """``cells.dropout_masks`` (T, L, B, S) of this program's rows: with lanes, each member's
        (T, L, B, S, P); over a mesh, this device's rows of the whole batch's masks."""

        def draw(key):
            if self.batch_axis is None:
                return dropout_masks(key, T, L, B, S, keep_prob, dtype)
            whole = B * lax.axis_size(self.batch_axis)
            masks = dropout_masks(key, T, L, whole, S, keep_prob, dtype)
            return lax.dynamic_slice_in_dim(masks, lax.axis_index(self.batch_axis) * B, B, 2)

        return jnp.moveaxis(jax.vmap(draw)(key), 0, -1) if self.lanes else draw(key)

    def per_device(self, tree: Any) -> Any:
        """Inside ``shard_map``, ``tree`` as each device's own copy."""
        return tree if self.batch_axis is None else lax.pcast(tree, self.batch_axis, to="varying")

    def device_mean(self, tree: Any) -> Any:
        """Inside ``shard_map``, the mean of ``tree`` over the devices' shares of the batch."""
        return tree if self.batch_axis is None else lax.pmean(tree, self.batch_axis)


def rolled(cell: str) -> bool:
    """Whether ``cell``'s windows are always loops (one kernel a window, under small loops)."""
    return xla_flags.SMALL_LOOPS and cell in xla_flags.ROLLED_WITH_SMALL_LOOPS


def program(
    cfg: EchoConfig, *, members: int = 1, lanes: bool = False, batch_axis: str | None = None
) -> Program:
    """The ``Program`` of ``cfg``'s model: ``members`` side by side (under ``vmap``, or in
    ``lanes``), or its batch rows split over the ``shard_map`` mesh axis ``batch_axis``."""
    return Program(members, lanes, rolled(cfg.cell), batch_axis)


def window_unroll(cell: str, T: int, layers: int) -> int:
    """``Program.unroll`` for a window of ``cell``."""
    return Program(rolled=rolled(cell)).unroll(T, layers)


# --- Populations ---------------------------------------------------------------------------------


def _products(cfg: EchoConfig) -> list[int]:
    """Elements (B x K x M) of each of one member's products of a time step, every layer."""
    return [
        cfg.batch_size * math.prod(shape)
        for shapes in layer_shapes(cfg)
        for shape in shapes
        if len(shape) == 2 and shape[0] > 1  # kernels; not the tutorial's (1, S) bias
    ]


def fused_members(cfg: EchoConfig) -> int:
    """How many members one ``vmap`` runs with every product still fused (at least 1)."""
    return max(1, xla_flags.FUSED_PRODUCT_LIMIT // max(_products(cfg)))


def population_lanes(cfg: EchoConfig) -> bool:
    """Whether a population of ``cfg``'s models trains with its members in lanes, not a ``vmap``."""
    return sum(_products(cfg)) <= LANE_ELEMENTS


def population_chunk(cfg: EchoConfig, size: int) -> int:
    """How many of ``size`` members train side by side in one chunk of a population."""
    if population_lanes(cfg):
        if population_compiler_options(cfg, size=size):
            return min(size, WHOLE_LANE_CHUNK)
        fit = 2 ** int(math.log2(LANE_ELEMENTS // sum(_products(cfg))))
        return min(size, LANE_CHUNK, fit)
    return vmap_chunk(cfg, size)


def vmap_chunk(cfg: EchoConfig, size: int) -> int:
    """How many of ``size`` members one ``vmap`` runs side by side."""
    return min(size, VMAP_CHUNK, fused_members(cfg))


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def population_threads(cfg: EchoConfig, size: int) -> int:
    """How many of a population's chunks train at once, each from its own thread: on a CPU one per
    core for members in lanes (a chunk's epoch is one kernel, on one core); otherwise 1."""
    if not population_lanes(cfg) or jax.default_backend() != "cpu":
        return 1
    return max(1, min(cpu_cores(), -(-size // population_chunk(cfg, size))))


def population_compiler_options(
    cfg: EchoConfig, lanes: bool | None = None, size: int | None = None
) -> dict[str, str]:
    """The ``jax.jit`` ``compiler_options`` of the population program of ``size`` members (``None``:
    any) of ``cfg``, in lanes or not (``None``: the policy's layout)."""
    in_lanes = population_lanes(cfg) if lanes is None else lanes
    large = size is not None and size > WHOLE_TANH_MEMBERS and cfg.cell in TANH_CELLS
    if large or not (in_lanes and xla_flags.SMALL_LOOPS and accepted(LANES_COMPILER_OPTIONS)):
        return {}
    return dict(LANES_COMPILER_OPTIONS)


@functools.cache
def accepted(options: tuple[tuple[str, str], ...]) -> bool:
    """Whether this jaxlib's XLA knows ``options`` (an older one refuses unknown options)."""
    try:
        jax.jit(jnp.negative, compiler_options=dict(options)).lower(1.0).compile()
    except jax.errors.JaxRuntimeError:  # "no such option" or "not a valid enum value"
        return False
    return True
