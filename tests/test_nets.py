"""Edge architectures end to end through the real CLI: the full MobileNetV3-Small (hard swish,
squeeze-excite), EfficientNet-Lite-like MBConv blocks, a ResNet-18-like net and tf_keras'
own MobileNetV2/V3-Small, each `edgekit export MODEL --data DIR --prune --sparsity 0.5`:
per-layer sparsity checked, depthwise kernels pruned, batch norm folded, int8 compute ops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_edgekit
from nets import build, rgb, write_rgb_folder

from edgekit.core.data import FASHION_MNIST_LABELS, load_fashion_mnist_arrays
from edgekit.device.modelfile import read_model_file
from edgekit.device.opcheck import compute_layers

SIZE = 32
CLASSES = 3
PER_CLASS = 20  # 60 images: 43 train, 5 validation, 12 test
EPOCHS = 10  # enough for the label-order check to see the model's classes as the data's
TARGET = 0.5
MIN_WEIGHTS = 512  # export's default: smaller kernels stay dense, each listed with why
# ResNet-18-like at width 8 (8-64 channels): TensorFlow 2.21's oneDNN kernels crashed (SIGSEGV
# or abort) in a plain `fit` on batches of 3 or 5 (export's last batch: 43 % 8 = 3) on the
# AVX-512 EPYC, Keras 3 and tf_keras alike; width 16 ran (docs/models.md).
OPTIONS = {"resnet18": {"width": 16}}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """PER_CLASS real Fashion-MNIST images of each of the first CLASSES classes, as 32x32 RGB
    PNGs in a class folder, and as arrays (uint8 pixels, labels)."""
    raw, _ = load_fashion_mnist_arrays()
    keep = np.concatenate([np.flatnonzero(raw["y_train"] == c)[:PER_CLASS] for c in range(CLASSES)])
    keep.sort()
    x, y = rgb(raw["x_train"][keep], SIZE), raw["y_train"][keep].astype(np.int64)
    root = tmp_path_factory.mktemp("nets")
    return write_rgb_folder(root / "images", x, y, FASHION_MNIST_LABELS), x, y


def _trained(arch: str, kind: str, x: np.ndarray, y: np.ndarray) -> Any:
    """`arch` built and trained briefly with Keras 3 (kind 'keras3') or tf_keras."""
    if kind == "keras3":
        from edgekit.workstation._keras import import_keras3

        keras = import_keras3()
    else:
        from edgekit.workstation._keras import keras
    keras.utils.set_random_seed(3)
    model = build(arch, keras, SIZE, CLASSES, **OPTIONS.get(arch, {}))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x.astype(np.float32), y, epochs=EPOCHS, batch_size=16, verbose=0)
    return model


CASES = [
    ("mobilenetv3small", "keras3", ".keras"),  # full: hard swish, squeeze-excite, x + 3.0
    ("efficientnet_lite", "keras3", ".keras"),
    ("resnet18", "keras3", ".keras"),
    ("mobilenetv3small", "tf_keras", ".h5"),  # tf_keras' own: TFOpLambda for x + 3.0
    ("mobilenetv2", "tf_keras", ".keras"),
    ("efficientnet_lite", "tf_keras", ".h5"),
    ("resnet18", "tf_keras", ".keras"),
]


@pytest.mark.heavy
@pytest.mark.parametrize(("arch", "kind", "suffix"), CASES, ids=[f"{a}-{k}" for a, k, _ in CASES])
def test_the_architecture_exports_pruned_folded_and_int8(
    arch: str,
    kind: str,
    suffix: str,
    images: tuple[Path, np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    folder, x, y = images
    model = _trained(arch, kind, x, y)
    batchnorms = sum(type(layer).__name__ == "BatchNormalization" for layer in model.layers)
    path = tmp_path / f"{arch}{suffix}"
    model.save(path)
    out = tmp_path / "out"
    res = run_edgekit(
        "export",
        str(path),
        "--data",
        str(folder),
        "--prune",
        "--sparsity",
        str(TARGET),
        "--prune-epochs",
        "2",
        "--batch-size",
        "8",
        "--precision",
        "int8",
        # 12 test images: one changed answer is 8 points; the claims here are about the files.
        "--max-accuracy-drop",
        "100",
        "--name",
        arch,
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    run = json.loads((out / "manifest.json").read_text())["config"]["run"]
    if kind == "keras3":
        rebuild = run["source_model"]["keras3"]
        assert rebuild["rebuilt_in_tf_keras"] is True and rebuild["max_abs_difference"] < 1e-5
    sparsity, skipped = run["kernel_sparsity"], run["pruning_skipped"]
    pruned = {k: v for k, v in sparsity.items() if k not in skipped}
    # Every kernel of >= 512 weights at the target, the smaller ones dense with the reason.
    assert len(pruned) >= 10, sparsity
    assert all(abs(v - TARGET) <= 0.01 for v in pruned.values()), pruned
    assert all(sparsity[k] == 0.0 and f"min_weights={MIN_WEIGHTS}" in skipped[k] for k in skipped)
    depthwise = [k for k in pruned if "depthwise" in k]
    if arch == "resnet18":
        assert not depthwise  # no depthwise layer in a ResNet
    else:
        assert len(depthwise) >= 4, sparsity
    folding = run["batchnorm_folding"]
    assert len(folding["folded"]) == batchnorms and folding["kept"] == []
    # The int8 file: every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED computes in int8,
    # and each kernel the manifest calls pruned keeps its zeros in it (symmetric per-channel
    # int8: a zero stays zero; folding scales a kernel per output channel).
    file = out / f"{arch}_int8.tflite"
    blob = file.read_bytes()
    layers = compute_layers(blob)
    assert {c.op for c in layers} >= {"CONV_2D", "FULLY_CONNECTED"}
    assert all(c.activation_dtype == c.weight_dtype == "int8" for c in layers), [
        c.describe() for c in layers if c.weight_dtype != "int8"
    ]
    weights = {w.name: w for w in read_model_file(file).weights}
    big = [weights[c.weight_name] for c in layers if c.weight_elements >= MIN_WEIGHTS]
    assert len(big) == len(pruned)
    assert all(0.49 <= w.sparsity <= 0.56 for w in big), [round(w.sparsity, 3) for w in big]
    if arch == "mobilenetv3small":
        # Keras 3's hard swish is rebuilt as (x / 6) * relu6(x + 3): int8 ADD and MUL that
        # XNNPACK runs, so the whole int8 graph but its SOFTMAX is delegated. tf_keras' own
        # model keeps its x * relu6(x + 3) / 6, which the converter fuses into HARD_SWISH ops
        # that LiteRT 2.3.0's XNNPACK leaves to the builtin kernels (docs/models.md).
        from ai_edge_litert.interpreter import Interpreter

        from edgekit.device.runtime import undelegated_ops

        interpreter = Interpreter(model_path=str(file), num_threads=1)
        interpreter.allocate_tensors()
        ops = interpreter._get_ops_details()
        undelegated = {ops[i]["op_name"] for i in undelegated_ops(interpreter) or ()}
        hard_swish = read_model_file(file).operators.get("HARD_SWISH", 0)
        if kind == "keras3":
            assert hard_swish == 0 and undelegated == {"SOFTMAX"}
        else:
            assert hard_swish >= 10 and undelegated == {"HARD_SWISH", "SOFTMAX"}
