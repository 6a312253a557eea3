"""Every implementation's name, and the one interface they share; no framework imported here.

The JAX trainer (``jax_echo.trainers``), the TensorFlow ones (``tf_echo``) and every peer library
(``jax_echo.peers``) follow ``Trainer``, so one test or benchmark is parametrised over all of
them; JAX and TensorFlow also follow ``ReferenceTrainer``, which exposes each step for parity.
Weights cross between implementations as flat dicts in TF1's layout (``cells.params_to_dict``);
a recurrent state crosses as a tuple with one entry per layer: an array (B, S), or a pair
``(c, h)`` for the LSTM (``cells.state_from_layers`` makes it JAX's ``LSTMState(c, h)``).
"""

from __future__ import annotations

from typing import Any, Protocol

JAX_IMPLEMENTATIONS = ("jax-step", "jax-epoch")
TF_IMPLEMENTATIONS = (
    "tf-graph",
    "tf-function",
    "tf-function-xla",
    "tf-function-epoch",
    "tf-function-epoch-xla",
)
IMPLEMENTATIONS = JAX_IMPLEMENTATIONS + TF_IMPLEMENTATIONS
REFERENCE = "tf-graph"  # the tutorial's own program (static_rnn; dynamic_rnn for parts 5-6)
# Parts whose TF1 program runs its cells through dynamic_rnn rather than static_rnn.
DYNAMIC_RNN_PARTS = (5, 6)


class MissingExtraError(RuntimeError):
    """An optional dependency (an extra of the package, like ``tf``) is not installed."""


class Trainer(Protocol):
    """One implementation or peer library, trained from given weights: the one interface that
    every test and benchmark row runs. Arrays in are NumPy-like; results may be the library's
    own (``jax.Array``, ``torch.Tensor``): wait for them with ``compare.block``.

    The trainer carries the recurrent state, as the tutorial's loop does: zeros when it is built,
    then fed from each window to the next; ``train_epoch`` starts from zeros. Dropout is drawn
    from the ``epoch`` (and ``window``) passed in, never from a count kept inside, so window
    ``i`` of epoch ``e`` drops the same units whether it is trained alone or in its epoch (JAX;
    TensorFlow draws from its own stream).
    """

    name: str

    def train_window(self, x_BxT: Any, y_BxT: Any, *, epoch: int = 0, window: int = 0) -> Any:
        """One training window from the carried state, which it carries on; the loss."""

    def train_epoch(self, x_BxL: Any, y_BxL: Any, *, epoch: int = 0) -> Any:
        """Every window of a series, state reset to zeros, then carried; losses (N,)."""

    def predict_epoch(self, x_BxL: Any) -> Any:
        """Predicted symbols (N, B, T) over a series, state carried from zeros, without dropout."""

    @property
    def params(self) -> dict[str, Any]:
        """The weights, as a flat TF1-layout dict."""

    def close(self) -> None:
        """Frees the implementation's resources (a TF1 session, compiled programs)."""


class ReferenceTrainer(Trainer, Protocol):
    """A ``Trainer`` whose every intermediate can be checked against TF1's: ``jax_echo``'s and
    ``tf_echo``'s. A state crosses as a tuple with one entry per layer: (B, S), or ``(c, h)``."""

    def train_step(self, state: Any, x_BxT: Any, y_BxT: Any) -> tuple[Any, Any]:
        """One window from the given ``state`` (the author's ``session.run``); ``(state, loss)``."""

    def forward(self, x_BxT: Any, state: Any) -> tuple[Any, Any]:
        """``(logits (B, T, C), final state)`` of one window, without dropout."""

    def loss_and_gradients(self, x_BxT: Any, y_BxT: Any, state: Any) -> tuple[Any, dict]:
        """``(loss, gradients as a flat TF1-layout dict)`` of one window, without dropout."""

    @property
    def accumulators(self) -> dict[str, Any]:
        """Adagrad's accumulators, as a flat TF1-layout dict."""

    def get_state(self) -> tuple[dict[str, Any], Any]:
        """``(params, optimizer state)``: what a checkpoint of this implementation holds."""

    def set_state(self, params: dict[str, Any], opt_state: Any) -> None:
        """Restores ``get_state()``'s result."""


def tf_impl(name: str) -> str:
    """``tf-function-xla`` -> ``function-xla``: the name ``tf-echo train --impl`` takes."""
    return name.removeprefix("tf-")
