"""`--augment` as tf_keras preprocessing layers applied to the training batches.

The layers run in the `tf.data` input pipeline (the Keras guide's "apply it to the dataset"
way), never inside the model: there is nothing to remove before pruning, folding or export, and
the exported files hold no trace of them. Training, pruning's fine-tuning, clustering and QAT
all draw their batches from `training_batches`, so all of them see augmented batches.

Randomness: each layer is seeded from the run's seed (layer i gets seed + 1 + i) and draws from
its own `tf.random.Generator`, so a run repeats exactly with the same seed while every epoch
(and every call of `fit`) draws new transformations.

Grayscale samples without a channel axis, (H, W), get one for the image layers and lose it
again after them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgekit.core.augment import augment_kind, augment_value
from edgekit.core.errors import DataError
from edgekit.workstation._keras import keras, tf

# Fill of the pixels a translation, rotation or zoom uncovers: Keras' default (mirror the
# image at its border). Fashion-MNIST's borders are black, so it fills black there too.
FILL_MODE = "reflect"

_FLIP_MODES = {
    "horizontal": "horizontal",
    "vertical": "vertical",
    "both": "horizontal_and_vertical",
}


def augmentation_layers(items: Sequence[str], seed: int) -> list[keras.layers.Layer]:
    """One tf_keras layer per normalized item (edgekit.core.augment), seeded from `seed`."""
    layers = []
    for i, item in enumerate(items):
        kind, value = augment_kind(item), augment_value(item)
        s = int(seed) + 1 + i
        name = f"augment_{kind}"
        if kind == "flip":
            layers.append(keras.layers.RandomFlip(_FLIP_MODES[value], seed=s, name=name))
            continue
        f = float(value)
        if kind == "translate":
            layer = keras.layers.RandomTranslation(f, f, fill_mode=FILL_MODE, seed=s, name=name)
        elif kind == "rotate":
            layer = keras.layers.RandomRotation(f, fill_mode=FILL_MODE, seed=s, name=name)
        elif kind == "zoom":
            layer = keras.layers.RandomZoom(f, fill_mode=FILL_MODE, seed=s, name=name)
        elif kind == "contrast":
            layer = keras.layers.RandomContrast(f, seed=s, name=name)
        elif kind == "noise":
            layer = keras.layers.GaussianNoise(f, seed=s, name=name)
        else:  # parse_augment admits only the kinds above
            raise ValueError(f"unknown augmentation {item!r}")
        layers.append(layer)
    return layers


def check_augmentable(items: Sequence[str], sample_shape: Sequence[int]) -> None:
    """Raise DataError when image augmentation is asked of samples that are not images."""
    image_kinds = sorted({augment_kind(i) for i in items} - {"noise"})
    if image_kinds and len(sample_shape) not in (2, 3):
        raise DataError(
            f"--augment {','.join(image_kinds)} needs image samples (H, W) or (H, W, C), but "
            f"these are shaped {tuple(sample_shape)}: use only noise, or drop --augment"
        )


def augment_batches(
    dataset: Any, items: Sequence[str], sample_shape: Sequence[int], seed: int
) -> Any:
    """`dataset` of (x, y) batches with x augmented by `items` (training mode), y unchanged.

    Raises:
        DataError: image augmentation of samples that are not images.
    """
    if not items:
        return dataset
    check_augmentable(items, sample_shape)
    layers = augmentation_layers(items, seed)
    grayscale = len(sample_shape) == 2

    def augment(x: Any, y: Any) -> tuple[Any, Any]:
        out = x[..., tf.newaxis] if grayscale else x
        for layer in layers:
            out = layer(out, training=True)
        return (out[..., 0] if grayscale else out), y

    return dataset.map(augment)
