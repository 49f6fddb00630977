"""Workstation side: rewrites of a trained tf_keras model before conversion (batch-norm folding)."""

from edgekit.optimize.fold import FoldResult, fold_batchnorm, foldable_batchnorms

__all__ = ["FoldResult", "fold_batchnorm", "foldable_batchnorms"]
