"""Workstation side: build and train the regularized network; prune, cluster and QAT it with
TF-MOT (tf_keras)."""

from edgekit.workstation.train.cluster import ClusterResult, cluster_weights
from edgekit.workstation.train.model import (
    TrainResult,
    build_model,
    check_data_fits,
    compile_model,
    keras_accuracy,
    train_model,
)
from edgekit.workstation.train.prune import PruneResult, kernel_sparsity, plan_schedule, prune_model
from edgekit.workstation.train.qat import QatResult, quantize_aware_train

__all__ = [
    "ClusterResult",
    "PruneResult",
    "QatResult",
    "TrainResult",
    "build_model",
    "cluster_weights",
    "check_data_fits",
    "compile_model",
    "keras_accuracy",
    "kernel_sparsity",
    "plan_schedule",
    "prune_model",
    "quantize_aware_train",
    "train_model",
]
