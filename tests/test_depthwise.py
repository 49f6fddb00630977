"""MobileNet-class models: depthwise kernels are pruned like the others (TF-MOT alone leaves
them dense), through fold and int8, and their zeros are in the written file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_edgekit

from edgekit.core.config import PruneConfig
from edgekit.core.data import FASHION_MNIST_LABELS, load_fashion_mnist_arrays
from edgekit.core.data.arrays import ScaledSamples
from edgekit.core.data.dataset import Dataset
from edgekit.device.modelfile import read_model_file
from edgekit.device.opcheck import compute_layers

SIZE = 32  # the smallest input keras.applications.MobileNetV2 takes
CLASSES = 3
PER_CLASS = 16


def _rgb(images: np.ndarray, size: int) -> np.ndarray:
    """28x28 grayscale Fashion-MNIST as size x size RGB uint8 (nearest-neighbour upscale)."""
    idx = np.arange(size) * 28 // size
    return np.repeat(images[:, idx][:, :, idx][..., None], 3, axis=-1)


@pytest.fixture(scope="module")
def rgb() -> tuple[np.ndarray, np.ndarray]:
    """PER_CLASS real images of each of the first CLASSES Fashion-MNIST classes, 32x32 RGB."""
    raw, _ = load_fashion_mnist_arrays()
    keep = np.concatenate([np.flatnonzero(raw["y_train"] == c)[:PER_CLASS] for c in range(CLASSES)])
    keep.sort()
    return _rgb(raw["x_train"][keep], SIZE), raw["y_train"][keep].astype(np.int64)


def _depthwise_separable_net() -> Any:
    """Conv2D+BN+ReLU6, DepthwiseConv2D+BN+ReLU6, SeparableConv2D, pooling, Dense: tf_keras."""
    from edgekit.workstation._keras import keras

    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 3))
    h = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    h = layers.ReLU(6.0)(layers.BatchNormalization()(h))
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(h)
    h = layers.ReLU(6.0)(layers.BatchNormalization()(h))
    h = layers.SeparableConv2D(64, 3, padding="same", name="sep")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, layers.Dense(CLASSES, activation="softmax", name="head")(h))


def test_depthwise_and_separable_kernels_reach_the_target_sparsity(
    rgb: tuple[np.ndarray, np.ndarray],
) -> None:
    from edgekit.workstation.train.prune import kernel_sparsity, prune_model

    x, y = rgb
    n = len(y)
    data = Dataset(
        "rgb",
        "fashion_mnist",
        FASHION_MNIST_LABELS[:CLASSES],
        ScaledSamples(x, np.arange(n - 12), None, "x_train"),
        y[: n - 12],
        x[n - 12 : n - 6] / np.float32(255),
        y[n - 12 : n - 6],
        x[n - 6 :] / np.float32(255),
        y[n - 6 :],
    )
    config = PruneConfig(target_sparsity=0.5, epochs=3, batch_size=8, min_weights=250, seed=1)
    result = prune_model(_depthwise_separable_net(), data, config, progress=lambda m: None)
    # The 3x3x32 depthwise kernel (288 weights) and the separable layer's two kernels
    # (288 + 2,048) are pruned; on TF-MOT's registry alone they would end at 0.000.
    for name in ("stem", "dw", "sep"):
        assert abs(result.kernel_sparsity[name] - 0.5) <= 0.01, result.kernel_sparsity
    assert set(result.skipped) == {"head"}  # 64x3 = 192 weights < min_weights
    sep = result.model.get_layer("sep")
    depthwise = np.asarray(sep.depthwise_kernel.numpy())
    assert 0.45 <= float((depthwise == 0).mean()) <= 0.55  # both kernels, not one of them
    # The pruning hook is gone from the stripped layers; kernel_sparsity reads them alike.
    assert not any("get_prunable_weights" in vars(layer) for layer in result.model.layers)
    assert kernel_sparsity(result.model) == result.kernel_sparsity


@pytest.fixture(scope="module")
def mobilenet_folder(
    rgb: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A Keras 3 MobileNetV2 (alpha 0.35, 32x32x3, random weights) with a new head, saved as
    .keras, and a class folder of 48 real RGB PNGs (folder names sorted in label order)."""
    from PIL import Image

    from edgekit.workstation._keras import import_keras3

    k3 = import_keras3()
    k3.utils.set_random_seed(3)
    root = tmp_path_factory.mktemp("mobilenet")
    x, y = rgb
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        folder = root / "images" / f"{label}_{FASHION_MNIST_LABELS[label].replace('/', '-')}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    base = k3.applications.MobileNetV2(
        alpha=0.35, input_shape=(SIZE, SIZE, 3), weights=None, include_top=False, pooling="avg"
    )
    model = k3.Model(base.input, k3.layers.Dense(CLASSES, activation="softmax")(base.output))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x / np.float32(255), y, epochs=1, batch_size=16, verbose=0)
    path = root / "mobilenet.keras"
    model.save(path)
    return path, root / "images"


@pytest.mark.heavy
def test_a_keras3_mobilenetv2_exports_with_its_depthwise_kernels_pruned(
    mobilenet_folder: tuple[Path, Path], tmp_path: Path
) -> None:
    model, images = mobilenet_folder
    out = tmp_path / "out"
    res = run_edgekit(
        "export",
        str(model),
        "--data",
        str(images),
        "--prune",
        "--sparsity",
        "0.5",
        "--prune-epochs",
        "3",
        "--batch-size",
        "8",
        "--precision",
        "float32,int8",
        "--max-accuracy-drop",
        "100",
        "--name",
        "mnv2",
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    run = json.loads((out / "manifest.json").read_text())["config"]["run"]
    assert run["source_model"]["keras3"]["rebuilt_in_tf_keras"] is True
    sparsity, skipped = run["kernel_sparsity"], run["pruning_skipped"]
    depthwise = {k: v for k, v in sparsity.items() if k.endswith("_depthwise")}
    pruned = {k: v for k, v in depthwise.items() if k not in skipped}
    # 3x3 kernels of >= 512 weights: the blocks with >= 57 channels (block_4 onwards at 0.35).
    assert len(pruned) >= 10, depthwise
    assert all(abs(v - 0.5) <= 0.01 for v in pruned.values()), pruned
    assert all(depthwise[k] == 0.0 for k in skipped if k in depthwise)  # small ones: dense
    assert all("min_weights" in skipped[k] for k in depthwise if k in skipped)
    assert run["batchnorm_folding"]["folded"], "batch norms were not folded"
    # In the written int8 file: each DEPTHWISE_CONV_2D of >= 512 weights keeps its zeros.
    blob = (out / "mnv2_int8.tflite").read_bytes()
    info = read_model_file(out / "mnv2_int8.tflite")
    weights = {w.name: w for w in info.weights}
    ops = [c for c in compute_layers(blob) if c.op == "DEPTHWISE_CONV_2D"]
    assert {c.weight_dtype for c in ops} == {"int8"}
    big = [weights[c.weight_name] for c in ops if weights[c.weight_name].elements >= 512]
    assert len(big) == len(pruned)
    assert all(0.49 <= w.sparsity <= 0.55 for w in big), [round(w.sparsity, 3) for w in big]


@pytest.mark.heavy
def test_mobilenetv3_small_is_rebuilt_and_its_depthwise_kernels_pruned(
    rgb: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from edgekit.workstation._keras import import_keras3
    from edgekit.workstation.export.keras3 import max_abs_difference
    from edgekit.workstation.export.model_io import load_user_model
    from edgekit.workstation.train.prune import prune_model

    k3 = import_keras3()
    k3.utils.set_random_seed(5)
    paths = {}
    for minimalistic in (True, False):
        base = k3.applications.MobileNetV3Small(
            alpha=0.75,
            minimalistic=minimalistic,
            input_shape=(SIZE, SIZE, 3),
            weights=None,
            include_top=False,
            pooling="avg",
        )
        head = k3.layers.Dense(CLASSES, activation="softmax")(base.output)
        paths[minimalistic] = tmp_path / f"v3small_{minimalistic}.keras"
        k3.Model(base.input, head).save(paths[minimalistic])
    # The full V3-Small uses hard_silu (tf_keras has none), a hard sigmoid written as
    # `ReLU(6)(x + 3.0) * (1 / 6)` and squeeze-excite Multiply: rebuilt from built-in layers
    # (tests/test_nets.py exports it with --prune through the CLI).
    full = load_user_model(paths[False])
    assert full.rebuild_error is None
    x, y = rgb
    assert max_abs_difference(full.original, full.model, x.astype(np.float32)) < 1e-5
    kinds = {type(layer).__name__ for layer in full.model.layers}
    assert {"Multiply", "Rescaling", "ReLU"} <= kinds and "Activation" not in kinds
    user = load_user_model(paths[True])
    assert user.rebuild_error is None
    n = len(y)
    data = Dataset(
        "rgb",
        "fashion_mnist",
        FASHION_MNIST_LABELS[:CLASSES],
        ScaledSamples(x, np.arange(n - 12), None, "x_train"),
        y[: n - 12],
        x[n - 12 : n - 6] / np.float32(255),
        y[n - 12 : n - 6],
        x[n - 6 :] / np.float32(255),
        y[n - 6 :],
    )
    config = PruneConfig(target_sparsity=0.5, epochs=2, batch_size=8, seed=1)
    result = prune_model(user.model, data, config, progress=lambda m: None)
    depthwise = {
        k: v
        for k, v in result.kernel_sparsity.items()
        if "depthwise" in k and k not in result.skipped
    }
    assert len(depthwise) >= 5, result.kernel_sparsity
    assert all(abs(v - 0.5) <= 0.01 for v in depthwise.values()), depthwise
