"""Remove data-augmentation layers (RandomFlip, RandomTranslation, ...) from a model.

Keras' augmentation layers change their input only in training; in inference they pass it
through. A user's model that carries them (the Keras tutorials put a `data_augmentation`
Sequential in front of the network) would take them through pruning, folding and conversion,
where they are at best dead weight: TF-MOT cannot wrap them and the converter traces their
inference branch. `strip_augmentation` rewrites the model without them, through its config as
`fold_batchnorm` does (the input model is not modified), so its outputs in inference are the
same.

edgekit's own augmentation (`--augment`) never enters the model: it runs in the input pipeline
(edgekit.workstation.train.augment).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from edgekit.workstation._keras import keras
from edgekit.workstation.optimize.fold import _check_model, _Graph, _name, _rebuild, _refs

__all__ = ["AUGMENTATION_LAYERS", "StripResult", "augmentation_layer_names", "strip_augmentation"]

# Layers that are the identity in inference and random in training. RandomCrop is not here:
# in inference it crops to its size, which changes the output.
AUGMENTATION_LAYERS: tuple[type[Any], ...] = (
    keras.layers.RandomFlip,
    keras.layers.RandomTranslation,
    keras.layers.RandomRotation,
    keras.layers.RandomZoom,
    keras.layers.RandomContrast,
    keras.layers.RandomBrightness,
    keras.layers.RandomHeight,
    keras.layers.RandomWidth,
    keras.layers.GaussianNoise,
)


@dataclass(frozen=True)
class StripResult:
    """The model without its augmentation layers (the input model itself when it had none),
    the layers removed (nested ones as 'outer/inner'), and those left inside nested models."""

    model: keras.Model
    removed: tuple[str, ...]
    left: tuple[str, ...] = ()


def _is_augmentation(layer: Any) -> bool:
    """An augmentation layer, or a nested model made of nothing else (the tutorials'
    `data_augmentation = keras.Sequential([RandomFlip(...), ...])`)."""
    if isinstance(layer, AUGMENTATION_LAYERS):
        return True
    if isinstance(layer, keras.Model):
        inner = [lyr for lyr in layer.layers if not isinstance(lyr, keras.layers.InputLayer)]
        return bool(inner) and all(_is_augmentation(lyr) for lyr in inner)
    return False


def augmentation_layer_names(model: keras.Model) -> list[str]:
    """Every augmentation layer of `model`, nested ones as 'outer/inner', in layer order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, AUGMENTATION_LAYERS):
            found.append(layer.name)
        elif isinstance(layer, keras.Model):
            found += [f"{layer.name}/{n}" for n in augmentation_layer_names(layer)]
    return found


def strip_augmentation(model: keras.Model) -> StripResult:
    """`model` without the augmentation layers at its top level (and nested models made only
    of them), rewired so each reader reads the removed layer's input.

    Augmentation layers inside a nested model that also holds other layers stay, and are
    listed in `left`.

    Raises:
        ModelError: `model` is not a built Sequential/Functional tf_keras model, or it cannot
            be rebuilt from its config.
    """
    _check_model(model, "strip_augmentation")
    candidates = [layer for layer in model.layers if _is_augmentation(layer)]
    if not candidates:
        return StripResult(model, (), tuple(augmentation_layer_names(model)))
    live = {layer.name: layer for layer in model.layers}
    graph = _Graph(
        config=copy.deepcopy(model.get_config()),
        sequential=isinstance(model, keras.Sequential),
        live=live,
        weights={name: layer.get_weights() for name, layer in live.items()},
    )
    gone = {layer.name for layer in candidates if _remove(graph, layer.name)}
    left = tuple(n for n in augmentation_layer_names(model) if n.split("/")[0] not in gone)
    if not gone:
        return StripResult(model, (), left)
    removed = tuple(n for n in augmentation_layer_names(model) if n.split("/")[0] in gone)
    return StripResult(_rebuild(model, graph), removed, left)


def _remove(graph: _Graph, name: str) -> bool:
    """Take layer `name` out of the config, its readers reading its input instead; False
    when it is not a plain pass-through (called more than once, or on several inputs)."""
    entries = graph.entries
    index = [_name(e) for e in entries].index(name)
    entry = entries[index]
    if graph.sequential:
        # A first layer built with input_shape= carries the model's input shape: hand it on.
        shape = entry.get("config", {}).get("batch_input_shape")
        if shape is not None and index + 1 < len(entries):
            entries[index + 1]["config"].setdefault("batch_input_shape", shape)
    else:
        layer_names = {_name(e) for e in entries}
        nodes = entry.get("inbound_nodes", [])
        refs = list(_refs(nodes[0], layer_names)) if len(nodes) == 1 else []
        if len(refs) != 1:
            return False
        source = refs[0]
        for obj in (entries, graph.config.get("output_layers", [])):
            for ref in _refs(obj, layer_names):
                if ref[0] == name:
                    ref[0], ref[1], ref[2] = source[0], source[1], source[2]
    graph.config["layers"] = [e for e in entries if _name(e) != name]
    return True
