"""Workstation side: rewrites of a trained tf_keras model before conversion (batch-norm folding,
ReLU fusing)."""

from edgekit.workstation.optimize.fold import FoldResult, fold_batchnorm, foldable_batchnorms
from edgekit.workstation.optimize.fuse import FuseResult, fuse_relu

__all__ = ["FoldResult", "FuseResult", "fold_batchnorm", "foldable_batchnorms", "fuse_relu"]
