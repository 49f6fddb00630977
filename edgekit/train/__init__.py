"""Workstation side: build and train the regularized network, prune it with TF-MOT (tf_keras)."""

from edgekit.train.model import (
    TrainResult,
    build_model,
    check_data_fits,
    compile_model,
    keras_accuracy,
    train_model,
)
from edgekit.train.prune import PruneResult, kernel_sparsity, plan_schedule, prune_model

__all__ = [
    "PruneResult",
    "TrainResult",
    "build_model",
    "check_data_fits",
    "compile_model",
    "keras_accuracy",
    "kernel_sparsity",
    "plan_schedule",
    "prune_model",
    "train_model",
]
