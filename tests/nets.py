"""Small builders of edge architectures for tests and benchmarks, in Keras 3 or tf_keras.

Each builder takes the Keras module to build with (`keras` 3 as users have it, or tf_keras as
edgekit's `edgekit.workstation._keras.keras`), so one function gives both twins:

- `efficientnet_lite`: EfficientNet-Lite-like MBConv blocks (1x1 expand, depthwise 3x3 or 5x5,
  1x1 project, batch norm, ReLU6, residual Add when the shape allows; no squeeze-excite);
- `resnet18`: ResNet-18-like basic blocks (two 3x3 Conv-BN-ReLU, residual Add, a strided 1x1
  Conv-BN shortcut where the shape changes), 2-2-2-2 blocks;
- `mobilenetv2`, `mobilenetv3small`: the `applications` models with a new softmax head.

Widths are tiny for tests (`width`); the benchmark uses larger ones. Batch norm momentum is 0.9
throughout: the usual 0.99/0.999 needs thousands of steps before inference-mode outputs are
anything but the initial statistics (measured on MobileNetV2, benchmarks/mobilenet.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ARCHITECTURES = ("mobilenetv2", "mobilenetv3small", "efficientnet_lite", "resnet18")
BN_MOMENTUM = 0.9
# (expansion, depthwise kernel, stride, output channels as a multiple of `width`, repeats):
# EfficientNet-Lite0's stages with the repeats cut to 1-2 and the widths scaled.
MBCONV_STAGES = (
    (1, 3, 1, 1, 1),
    (6, 3, 2, 1.5, 2),
    (6, 5, 2, 2.5, 2),
    (6, 3, 2, 5, 1),
    (6, 5, 1, 7, 1),
)


def _bn(keras: Any, name: str) -> Any:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def efficientnet_lite(
    keras: Any, size: int, classes: int, width: int = 16, name: str = "efficientnet_lite"
) -> Any:
    """An EfficientNet-Lite-like classifier on size x size RGB images (0..255 pixels in).

    Lite's changes to EfficientNet are kept: ReLU6 instead of swish, no squeeze-excite.
    """
    layers = keras.layers
    inputs = keras.Input((size, size, 3), name="image")
    h = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inputs)
    h = layers.Conv2D(width * 2, 3, strides=2, padding="same", use_bias=False, name="stem")(h)
    h = layers.ReLU(6.0, name="stem_relu6")(_bn(keras, "stem_bn")(h))
    channels = width * 2
    block = 0
    for expansion, kernel, stride, out_mult, repeats in MBCONV_STAGES:
        out = max(8, int(round(width * out_mult / 8)) * 8)
        for r in range(repeats):
            block += 1
            p = f"block{block}_"
            x = h
            if expansion != 1:
                x = layers.Conv2D(channels * expansion, 1, use_bias=False, name=p + "expand")(x)
                x = layers.ReLU(6.0, name=p + "expand_relu6")(_bn(keras, p + "expand_bn")(x))
            x = layers.DepthwiseConv2D(
                kernel,
                strides=stride if r == 0 else 1,
                padding="same",
                use_bias=False,
                name=p + "depthwise",
            )(x)
            x = layers.ReLU(6.0, name=p + "depthwise_relu6")(_bn(keras, p + "depthwise_bn")(x))
            x = layers.Conv2D(out, 1, use_bias=False, name=p + "project")(x)
            x = _bn(keras, p + "project_bn")(x)
            if (stride == 1 or r > 0) and channels == out:
                x = layers.Add(name=p + "add")([h, x])
            h, channels = x, out
    h = layers.Conv2D(width * 8, 1, use_bias=False, name="top")(h)
    h = layers.ReLU(6.0, name="top_relu6")(_bn(keras, "top_bn")(h))
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = layers.Dense(classes, activation="softmax", name="head")(h)
    return keras.Model(inputs, outputs, name=name)


def resnet18(keras: Any, size: int, classes: int, width: int = 8, name: str = "resnet18") -> Any:
    """A ResNet-18-like classifier: a 3x3 stem, four stages of two basic blocks (widths
    width, 2, 4, 8 x width; stride 2 from the second stage, with a 1x1 Conv-BN shortcut)."""
    layers = keras.layers
    inputs = keras.Input((size, size, 3), name="image")
    h = layers.Rescaling(1 / 255.0, name="scale")(inputs)
    h = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="stem")(h)
    h = layers.ReLU(name="stem_relu")(_bn(keras, "stem_bn")(h))
    channels = width
    for stage, mult in enumerate((1, 2, 4, 8), start=1):
        out = width * mult
        for b in (1, 2):
            p = f"stage{stage}_block{b}_"
            stride = 2 if stage > 1 and b == 1 else 1
            x = layers.Conv2D(
                out, 3, strides=stride, padding="same", use_bias=False, name=p + "conv1"
            )(h)
            x = layers.ReLU(name=p + "relu1")(_bn(keras, p + "bn1")(x))
            x = layers.Conv2D(out, 3, padding="same", use_bias=False, name=p + "conv2")(x)
            x = _bn(keras, p + "bn2")(x)
            shortcut = h
            if stride != 1 or channels != out:
                shortcut = layers.Conv2D(
                    out, 1, strides=stride, use_bias=False, name=p + "shortcut"
                )(h)
                shortcut = _bn(keras, p + "shortcut_bn")(shortcut)
            h = layers.ReLU(name=p + "relu2")(layers.Add(name=p + "add")([shortcut, x]))
            channels = out
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = layers.Dense(classes, activation="softmax", name="head")(h)
    return keras.Model(inputs, outputs, name=name)


def _momentum(keras: Any, model: Any) -> Any:
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return model


def mobilenetv2(keras: Any, size: int, classes: int, alpha: float = 0.35) -> Any:
    """`applications.MobileNetV2` (random weights) on a Rescaling to [-1, 1] (given as its
    input_tensor, so the model is flat: tf_keras cannot prune a nested model), a new head."""
    inputs = keras.Input((size, size, 3), name="image")
    h = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inputs)
    base = keras.applications.MobileNetV2(
        alpha=alpha, input_tensor=h, weights=None, include_top=False, pooling="avg"
    )
    _momentum(keras, base)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(base.output)
    return keras.Model(inputs, outputs, name="mobilenetv2")


def mobilenetv3small(
    keras: Any, size: int, classes: int, alpha: float = 0.75, minimalistic: bool = False
) -> Any:
    """`applications.MobileNetV3Small` (random weights, its own Rescaling of 0..255 pixels, hard
    swish and squeeze-excite unless minimalistic), flat (not nested: tf_keras cannot prune a
    nested model), with a new head."""
    base = keras.applications.MobileNetV3Small(
        alpha=alpha,
        minimalistic=minimalistic,
        input_shape=(size, size, 3),
        weights=None,
        include_top=False,
        pooling="avg",
    )
    _momentum(keras, base)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(base.output)
    return keras.Model(base.input, outputs, name="mobilenetv3small")


def build(arch: str, keras: Any, size: int, classes: int, **kwargs: Any) -> Any:
    """One of ARCHITECTURES, built with `keras` (Keras 3 or tf_keras)."""
    builders = {
        "mobilenetv2": mobilenetv2,
        "mobilenetv3small": mobilenetv3small,
        "efficientnet_lite": efficientnet_lite,
        "resnet18": resnet18,
    }
    if arch not in builders:
        raise ValueError(f"unknown architecture {arch!r}: use one of {', '.join(ARCHITECTURES)}")
    return builders[arch](keras, size, classes, **kwargs)


def rgb(images: np.ndarray, size: int) -> np.ndarray:
    """28x28 grayscale images as size x size RGB uint8 (nearest-neighbour upscale)."""
    idx = np.arange(size) * 28 // size
    return np.repeat(images[:, idx][:, :, idx][..., None], 3, axis=-1)


def write_rgb_folder(root: Path, x: np.ndarray, y: np.ndarray, labels: Any) -> Path:
    """RGB images as PNGs in root/<label>_<name>/ (folder names sorted in label order)."""
    from PIL import Image

    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        folder = root / f"{int(label)}_{str(labels[int(label)]).replace('/', '-')}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root
