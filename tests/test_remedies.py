"""--qat and --clusters through the whole pipeline, on the default MLP (300-100) at 80%."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekit.core.config import (
    ClusterConfig,
    DataConfig,
    ExportConfig,
    PipelineConfig,
    PruneConfig,
    QatConfig,
    TrainConfig,
)

pytestmark = pytest.mark.slow

DATA = DataConfig(train_samples=12000, test_samples=2000, validation_size=1000, seed=5)
TRAIN = TrainConfig(epochs=4, seed=5)  # the default 300-100 MLP with BN
PRUNE = PruneConfig(target_sparsity=0.8, epochs=3, seed=5)


def _run(out: Path, **kw: Any) -> Any:
    from edgekit.workstation.pipeline import run_pipeline

    config = PipelineConfig(
        data=DATA,
        train=TRAIN,
        prune=PRUNE,
        output_dir=str(out),
        export=ExportConfig(precisions=("float32", "int8"), calibration_samples=300),
        **kw,
    )
    return run_pipeline(config, progress=lambda msg: None)


@pytest.mark.heavy
def test_qat_after_pruning_keeps_int8_kernels_zeros_and_accuracy(tmp_path: Path) -> None:
    from edgekit.device.modelfile import read_model_file
    from edgekit.device.opcheck import compute_layers

    result = _run(tmp_path, qat=QatConfig(epochs=2, seed=5))
    path = tmp_path / "fashion_mnist_mlp_sp80_int8_qat.tflite"
    layers = compute_layers(path.read_bytes())
    assert len(layers) == 3
    assert all(c.activation_dtype == "int8" and c.weight_dtype == "int8" for c in layers)
    kernels = [w for w in read_model_file(path).weights if w.elements >= 1000]
    assert len(kernels) == 3 and all(abs(w.sparsity - 0.80) <= 0.01 for w in kernels)
    qat = next(f for f in result.export.files if f.file == path.name)
    assert qat.record.accuracy is not None
    assert qat.record.accuracy.accuracy >= result.accuracy["pruned_keras"] - 0.003
    assert qat.record.variant["tag"] == "int8_qat"


@pytest.mark.heavy
def test_clusters_after_pruning_keep_zeros_and_few_values(tmp_path: Path) -> None:
    from edgekit.device.modelfile import read_model_file
    from edgekit.workstation.export.model_io import load_keras_model

    result = _run(tmp_path, cluster=ClusterConfig(clusters=16, epochs=1, seed=5))
    assert result.info["clustering"]["preserve_sparsity"] is True
    folded = load_keras_model(tmp_path / "fashion_mnist_mlp_sp80_folded.keras")
    big = [w for w in folded.get_weights() if w.ndim == 2 and w.size >= 10000]
    # 16 centroids, zero among them; folding BN scales each output column, so count per column.
    assert big and all(len(np.unique(w[:, j])) <= 17 for w in big for j in range(w.shape[1]))
    int8 = read_model_file(tmp_path / "fashion_mnist_mlp_sp80_int8.tflite")
    kernels = [w for w in int8.weights if w.elements >= 10000]
    assert all(abs(w.sparsity - 0.80) <= 0.01 for w in kernels)
    assert result.accuracy["tflite_int8"] >= result.accuracy["pruned_keras"] - 0.015


@pytest.mark.heavy
def test_qat_of_a_clustered_model_keeps_clusters_and_zeros(tmp_path: Path) -> None:
    from edgekit.device.modelfile import read_model_file

    result = _run(
        tmp_path,
        cluster=ClusterConfig(clusters=16, epochs=1, seed=5),
        qat=QatConfig(epochs=1, seed=5),
    )
    files = {f.record.variant["tag"]: f for f in result.export.files}
    qat, ptq = files["int8_qat"], files["int8"]
    # Cluster-preserving QAT: the int8 kernels still hold at most 16 values (+ zero) per
    # output channel, the zeros stay, and the gzipped file is no larger than post-training's.
    info = read_model_file(tmp_path / qat.file)
    for w in (w for w in info.weights if w.elements >= 10000):
        assert abs(w.sparsity - 0.80) <= 0.01
    raw = qat.data
    from edgekit.device.opcheck import compute_layers

    assert all(c.weight_dtype == "int8" for c in compute_layers(raw))
    assert qat.record.gzip_bytes is not None and ptq.record.gzip_bytes is not None
    assert qat.record.gzip_bytes <= ptq.record.gzip_bytes * 1.02
    assert "tflite_int8_qat" in result.accuracy and "tflite_int8" in result.accuracy
