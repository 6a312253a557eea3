"""jax-echo: the echo RNN of the classic TensorFlow tutorial, as pure JAX functions."""

from jax_echo.model import (
    AdagradState,
    accuracy,
    forward,
    loss_fn,
    make_optimizer,
    predict,
    predict_epoch,
    train_epoch,
    train_step,
    window_accuracies,
)
from jax_echo.scale import fit_population
from jax_echo.task import (
    EchoConfig,
    Params,
    epoch_data,
    eval_data,
    generate_data,
    init_params,
    prediction_accuracies,
    split_windows,
)
from jax_echo.train import (
    CheckpointError,
    TrainingDivergedError,
    fit,
    load_checkpoint,
    load_params,
    save_params,
)

__all__ = [
    "AdagradState",
    "CheckpointError",
    "EchoConfig",
    "Params",
    "TrainingDivergedError",
    "accuracy",
    "epoch_data",
    "eval_data",
    "fit",
    "fit_population",
    "forward",
    "generate_data",
    "init_params",
    "load_checkpoint",
    "load_params",
    "loss_fn",
    "make_optimizer",
    "predict",
    "predict_epoch",
    "prediction_accuracies",
    "save_params",
    "split_windows",
    "train_epoch",
    "train_step",
    "window_accuracies",
]
