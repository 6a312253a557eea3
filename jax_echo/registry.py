"""Every implementation's name, and the one interface they share; no framework imported here.

The JAX trainer (``jax_echo.compare``) and the TensorFlow ones (``tf_echo``) all follow
``Trainer``, so one test or benchmark is parametrised over all of them. Weights cross between
implementations as flat dicts in TF1's layout (``cells.params_to_dict``); a recurrent state
crosses as a tuple with one entry per layer: an array (B, S), or a pair ``(c, h)`` for the LSTM.
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
    """One implementation, trained from given weights; every array in and out is NumPy-like."""

    name: str

    def train_step(self, state: Any, x_BxT: Any, y_BxT: Any) -> tuple[Any, Any]:
        """One window from ``state``; returns the state to carry and the loss."""

    def train_epoch(self, x_BxL: Any, y_BxL: Any) -> Any:
        """Every window of a series, state reset to zeros, then carried; losses (N,)."""

    def forward(self, x_BxT: Any, state: Any) -> tuple[Any, Any]:
        """``(logits (B, T, C), final state)`` of one window, without dropout."""

    def loss_and_gradients(self, x_BxT: Any, y_BxT: Any, state: Any) -> tuple[Any, dict]:
        """``(loss, gradients as a flat TF1-layout dict)`` of one window, without dropout."""

    def predict_epoch(self, x_BxL: Any) -> Any:
        """Predicted symbols (N, B, T) over a series, state carried, without dropout."""

    @property
    def params(self) -> dict[str, Any]:
        """The weights, as a flat TF1-layout dict."""

    @property
    def accumulators(self) -> dict[str, Any]:
        """Adagrad's accumulators, as a flat TF1-layout dict."""

    def get_state(self) -> tuple[dict[str, Any], Any]:
        """``(params, optimizer state)``: what a checkpoint of this implementation holds."""

    def set_state(self, params: dict[str, Any], opt_state: Any) -> None:
        """Restores ``get_state()``'s result."""

    def close(self) -> None:
        """Frees the implementation's resources (a TF1 session)."""


def tf_impl(name: str) -> str:
    """``tf-function-xla`` -> ``function-xla``: the name ``tf-echo train --impl`` takes."""
    return name.removeprefix("tf-")
