"""jax-echo: the echo RNN of the classic TensorFlow tutorial, as pure JAX functions."""

from jax_echo.model import (
    AdagradState,
    accuracy,
    forward,
    loss_fn,
    make_optimizer,
    predict,
    predict_epoch,
    split_windows,
    train_epoch,
    train_step,
    window_accuracies,
)
from jax_echo.task import EchoConfig, Params, epoch_data, eval_data, generate_data, init_params

__all__ = [
    "AdagradState",
    "EchoConfig",
    "Params",
    "accuracy",
    "epoch_data",
    "eval_data",
    "forward",
    "generate_data",
    "init_params",
    "loss_fn",
    "make_optimizer",
    "predict",
    "predict_epoch",
    "split_windows",
    "train_epoch",
    "train_step",
    "window_accuracies",
]
