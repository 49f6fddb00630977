"""Weight clustering with TF-MOT: kmeans++ centroids per kernel, fine-tuned, then stripped.

Each clustered kernel ends with at most `clusters` distinct values, which gzip (and any
entropy coder) stores far better than the same number of distinct weights. Two traps (measured,
see STACK.md) shape this stage:
- batch norm is folded BEFORE clustering: folding afterwards (or the TFLite converter's own
  fold) scales every output channel by its own factor and turns 16 shared values per tensor
  into 16 per channel;
- a pruned model is clustered with `preserve_sparsity=True`, else its zeros are pulled into
  non-zero centroids and lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.core.config import ClusterConfig
from edgekit.core.data import Dataset
from edgekit.core.errors import EdgekitError, ModelError, first_line
from edgekit.core.io.console import Progress
from edgekit.workstation._keras import keras, set_determinism, tfmot
from edgekit.workstation.optimize.fold import fold_batchnorm
from edgekit.workstation.train.model import check_data_fits, compile_model, fine_tune
from edgekit.workstation.train.prune import SPARSITY_TOLERANCE
from edgekit.workstation.train.qat import (
    has_sparse_kernels,
    kernel_values,
    model_kernels,
    require_training_data,
)

__all__ = ["ClusterResult", "cluster_weights"]

# TF-MOT clusters these layers' kernels (ClusteringRegistry); other layers are left alone.
_CLUSTERABLE = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


@dataclass(frozen=True)
class ClusterResult:
    """A clustered, stripped model and what was done to it.

    Args:
        model: plain tf_keras layers (compiled); every clustered kernel holds at most
            `clusters` distinct values.
        clusters: centroids per kernel (with preserve_sparsity one of them is held at zero).
        preserve_sparsity: whether zeros were kept (asked for, or because the model was sparse).
        kernel_sparsity: zeros in every kernel after clustering, by layer name.
        unique_values: distinct values in each clustered kernel.
        skipped: kernels left unclustered -> why.
        folded_batchnorms: BatchNormalization layers folded before clustering.
        epochs_run: fine-tuning epochs.
        history: Keras training history.
    """

    model: keras.Model
    clusters: int
    preserve_sparsity: bool
    kernel_sparsity: dict[str, float]
    unique_values: dict[str, int]
    skipped: dict[str, str]
    folded_batchnorms: list[str]
    epochs_run: int
    history: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "clusters": self.clusters,
            "preserve_sparsity": self.preserve_sparsity,
            "kernel_sparsity": self.kernel_sparsity,
            "unique_values": self.unique_values,
            "skipped": self.skipped,
            "folded_batchnorms": self.folded_batchnorms,
            "epochs_run": self.epochs_run,
        }


def _sparsity(kernels: dict[str, np.ndarray]) -> dict[str, float]:
    return {n: float((k == 0).mean()) if k.size else 0.0 for n, k in kernels.items()}


# ~60 lines with its docstring: one straight run (fold, wrap, fine-tune, strip, check).
def cluster_weights(
    model: keras.Model,
    data: Dataset | None,
    config: ClusterConfig,
    progress: Progress | None = None,
    augment: Sequence[str] = (),
) -> ClusterResult:
    """Fold batch norm, cluster every Dense/Conv kernel of >= config.min_weights weights into
    config.clusters kmeans++ centroids, fine-tune on `data` and strip the clustering wrappers.

    The input model is not modified.

    Raises:
        EdgekitError: no training data, too few clusters to hold a zero centroid, or a
            clustered kernel lost its zeros or has more distinct values than clusters.
        DataError: the data does not fit the model.
        ModelError: TF-MOT cannot cluster the model.
    """
    data = require_training_data(data, "--cluster")
    check_data_fits(model, data)
    folded = fold_batchnorm(model)
    float_model = folded.model  # a new model: clustering wraps its layers, not the caller's
    before = _sparsity(model_kernels(float_model))
    preserve = (
        has_sparse_kernels(before) if config.preserve_sparsity is None else config.preserve_sparsity
    )
    if preserve and config.clusters < 3:
        raise EdgekitError(
            f"clusters must be >= 3 to keep the zeros of a pruned model, got {config.clusters}: "
            "one centroid is held at zero; pass e.g. 16"
        )
    set_determinism(config.seed)
    wrapped, skipped = _wrap_for_clustering(float_model, config, preserve, model.name)
    clustered = [n for n in before if n not in skipped]
    if not clustered:
        raise ModelError(
            f"no kernel of the model has >= {config.min_weights} weights to cluster: lower "
            "min_weights or export without clustering"
        )
    hist = fine_tune(
        wrapped,
        data,
        config.epochs,
        config.batch_size,
        config.learning_rate,
        config.seed,
        "cluster",
        progress,
        augment,
    )
    stripped = tfmot.clustering.keras.strip_clustering(wrapped)
    compile_model(stripped, config.learning_rate)
    kernels = model_kernels(stripped)
    after = _sparsity(kernels)
    unique = {n: int(np.unique(kernels[n]).size) for n in clustered}
    _check(config.clusters, preserve, before, after, unique)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return ClusterResult(
        model=stripped,
        clusters=config.clusters,
        preserve_sparsity=preserve,
        kernel_sparsity=after,
        unique_values=unique,
        skipped=skipped,
        folded_batchnorms=[p.batchnorm for p in folded.folded],
        epochs_run=len(history.get("loss", [])),
        history=history,
    )


def _wrap_for_clustering(
    float_model: keras.Model, config: ClusterConfig, preserve: bool, name: str
) -> tuple[keras.Model, dict[str, str]]:
    """A copy of `float_model` with every clusterable kernel of >= config.min_weights weights
    wrapped for clustering, and the kernels left unclustered -> why.

    Raises:
        ModelError: the model nests a model, or TF-MOT cannot wrap it.
    """
    if any(isinstance(layer, keras.Model) for layer in float_model.layers):
        raise ModelError(
            "the model nests another model, which TF-MOT cannot cluster layer by layer: "
            "flatten it into one Sequential/Functional model, or export without clustering"
        )
    skipped: dict[str, str] = {}
    init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        kernel = kernel_values(layer)
        if kernel is None or isinstance(layer, keras.layers.InputLayer):
            return layer
        if type(layer) not in _CLUSTERABLE:
            skipped[layer.name] = f"TF-MOT does not cluster {type(layer).__name__} kernels"
            return layer
        if kernel.size < max(config.min_weights, config.clusters):
            skipped[layer.name] = (
                f"{kernel.size} kernel weights < min_weights={config.min_weights}: left "
                "unclustered (clustering it saves little and costs accuracy)"
            )
            return layer
        return tfmot.clustering.keras.cluster_weights(
            layer,
            number_of_clusters=config.clusters,
            cluster_centroids_init=init,
            preserve_sparsity=preserve,
        )

    try:
        wrapped = keras.models.clone_model(float_model, clone_function=wrap)
    except ValueError as e:
        first = first_line(e)
        raise ModelError(
            f"TF-MOT cannot cluster model {name!r} ({first}): use built-in tf_keras "
            "layers, or export without clustering"
        ) from None
    return wrapped, skipped


def _check(
    clusters: int,
    preserve: bool,
    before: dict[str, float],
    after: dict[str, float],
    unique: dict[str, int],
) -> None:
    """Raise when a clustered kernel has too many distinct values or lost kept zeros."""
    # Without preserve_sparsity, zero is not a centroid but may remain as a weight value.
    limit = clusters if preserve else clusters + 1
    many = {n: u for n, u in unique.items() if u > limit}
    if many:
        detail = ", ".join(f"{n}={u}" for n, u in many.items())
        raise EdgekitError(
            f"clustering left more than {limit} distinct values in some kernels ({detail}): "
            "re-run clustering; report this with the model"
        )
    if preserve:
        lost = {
            n: (before[n], after[n]) for n in unique if after[n] < before[n] - SPARSITY_TOLERANCE
        }
        if lost:
            detail = ", ".join(f"{n} {a:.2f} -> {b:.2f}" for n, (a, b) in lost.items())
            raise EdgekitError(
                f"clustering lost pruned zeros ({detail}): re-run clustering with "
                "preserve_sparsity=True"
            )
