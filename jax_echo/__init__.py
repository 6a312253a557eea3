"""jax-echo: the echo RNN of the classic TensorFlow tutorial series, as pure JAX functions."""

# First: XLA:CPU's small-loop option goes into XLA_FLAGS before any backend starts (xla_flags).
from jax_echo import xla_flags  # noqa: F401  (isort: skip)

from jax_echo.cells import (
    CELLS,
    Cell,
    GRUParams,
    LSTMParams,
    LSTMState,
    Params,
    RNNParams,
    TutorialParams,
    init_params,
    initial_state,
    params_from_dict,
    params_to_dict,
)
from jax_echo.io import CheckpointError, load_checkpoint, load_params, save_params
from jax_echo.model import (
    accuracy,
    epoch_key,
    forward,
    loss_fn,
    make_predict_epoch,
    make_train_epoch,
    predict,
    predict_epoch,
    train_epoch,
    train_step,
    window_accuracies,
)
from jax_echo.optim import make_optimizer, with_learning_rate
from jax_echo.population import fit_population
from jax_echo.task import (
    EchoConfig,
    epoch_data,
    eval_data,
    generate_data,
    prediction_accuracies,
    split_windows,
)
from jax_echo.tf_checkpoint import params_from_tf_checkpoint, params_to_tf_checkpoint
from jax_echo.train import TrainingDivergedError, fit

__all__ = [
    "CELLS",
    "Cell",
    "CheckpointError",
    "EchoConfig",
    "GRUParams",
    "LSTMParams",
    "LSTMState",
    "Params",
    "RNNParams",
    "TrainingDivergedError",
    "TutorialParams",
    "accuracy",
    "epoch_data",
    "epoch_key",
    "eval_data",
    "fit",
    "fit_population",
    "forward",
    "generate_data",
    "init_params",
    "initial_state",
    "load_checkpoint",
    "load_params",
    "loss_fn",
    "make_optimizer",
    "make_predict_epoch",
    "make_train_epoch",
    "params_from_dict",
    "params_from_tf_checkpoint",
    "params_to_dict",
    "params_to_tf_checkpoint",
    "predict",
    "predict_epoch",
    "prediction_accuracies",
    "save_params",
    "split_windows",
    "train_epoch",
    "train_step",
    "window_accuracies",
    "with_learning_rate",
]
