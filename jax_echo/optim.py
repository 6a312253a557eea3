"""TF1's ``AdagradOptimizer`` through optax itself.

``tf.train.AdagradOptimizer(lr)`` starts its accumulator at 0.1, has no epsilon and updates
``accum += g * g; var -= lr * g / sqrt(accum)``: that is ``optax.adagrad(lr,
initial_accumulator_value=0.1, eps=0.0)``. It is wrapped in ``optax.inject_hyperparams`` so the
learning rate is a leaf of the optimizer state: a ``vmap``-ed population trains one rate per
member, and one compiled update serves every rate.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import optax

TF1_INITIAL_ACCUMULATOR = 0.1

_tf1_adagrad = optax.inject_hyperparams(
    optax.adagrad, static_args=("initial_accumulator_value", "eps")
)


def tf1_adagrad(learning_rate: float) -> optax.GradientTransformation:
    """``tf.train.AdagradOptimizer(learning_rate)``; its update reads the rate from the state."""
    return _tf1_adagrad(
        learning_rate=learning_rate,
        initial_accumulator_value=TF1_INITIAL_ACCUMULATOR,
        eps=0.0,
    )


def make_optimizer(cfg: Any) -> optax.GradientTransformation:
    """``tf.train.AdagradOptimizer(cfg.learning_rate)`` as an optax transformation.

    The state keeps the rate at ``state.hyperparams["learning_rate"]``, in the params' dtype.
    Any optax transformation can take its place in ``train_step`` and ``train_epoch``.

    >>> from jax_echo import EchoConfig, init_params
    >>> cfg = EchoConfig()
    >>> opt_state = make_optimizer(cfg).init(init_params(cfg))
    >>> float(learning_rate(opt_state))
    0.30000001192092896
    """
    return tf1_adagrad(cfg.learning_rate)


def learning_rate(opt_state: Any) -> Any:
    """The learning rate held by a ``make_optimizer`` state (or ``None`` for other states)."""
    hyperparams = getattr(opt_state, "hyperparams", None)  # optax's InjectHyperparamsState
    if isinstance(hyperparams, dict):  # the field itself: train_step reads it every window, and
        return hyperparams.get("learning_rate")  # tree_get walks the whole state
    return optax.tree_utils.tree_get(opt_state, "learning_rate")  # nested in another state


def checked_rate(opt_state: Any, expected: float) -> np.ndarray | None:
    """The learning rate ``opt_state`` holds, as a host array, checked to be ``expected``; ``None``
    for none (or a traced or per-member one). Training calls return states with this host copy,
    so only a state from ``init`` is ever read from the device: a loop never waits for one."""
    rate = learning_rate(opt_state)
    if rate is None or isinstance(rate, jax.core.Tracer) or np.ndim(rate):
        return None
    rate = np.asarray(rate)
    if float(rate) != float(np.asarray(expected, rate.dtype)):
        raise ValueError(
            f"the optimizer state holds learning rate {float(rate)}, but "
            f"EchoConfig.learning_rate is {expected}: build it with "
            "make_optimizer(cfg).init(params)"
        )
    return rate


def with_learning_rate(opt_state: Any, rate: Any) -> Any:
    """The state with another learning rate (an array for a population; ``None``: unchanged)."""
    if rate is None:
        return opt_state
    hyperparams = getattr(opt_state, "hyperparams", None)
    if isinstance(hyperparams, dict) and "learning_rate" in hyperparams:  # as learning_rate reads
        return opt_state._replace(hyperparams={**hyperparams, "learning_rate": rate})
    return optax.tree_utils.tree_set(opt_state, learning_rate=rate)


def accumulators(opt_state: Any) -> Any:
    """Adagrad's running sums of squared gradients, shaped like the params."""
    return optax.tree_utils.tree_get(opt_state, "sum_of_squares")
