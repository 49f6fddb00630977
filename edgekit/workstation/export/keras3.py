"""Keras 3 models in: tell Keras 3 files from tf_keras ones, rebuild a Keras 3 model in tf_keras.

TF-MOT (pruning, and everything after it) works only on tf_keras (Keras 2) models, and tf_keras
cannot read a Keras 3 file. So a Keras 3 model is loaded with Keras 3, the same architecture is
built layer by layer with tf_keras (nested models are inlined, so batch norm folds there too),
and the weights are copied over. The caller checks the rebuilt model's outputs against the
Keras 3 model on real samples (`max_abs_difference`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.data.arrays import Samples
from edgekit.core.errors import ModelError
from edgekit.core.model_path import lambda_refused
from edgekit.workstation._keras import import_keras3, keras

# Keras 3 layers edgekit rebuilds in tf_keras, by class name.
SUPPORTED_LAYERS = (
    "InputLayer",
    "Dense",
    "Conv2D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "BatchNormalization",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softmax",
    "Dropout",
    "Flatten",
    "Reshape",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "ZeroPadding2D",
    "Add",
    "Concatenate",
    "Rescaling",
    "Normalization",
)
# Keyword arguments every tf_keras layer takes (base Layer), besides its own.
_BASE_KWARGS = frozenset({"name", "dtype", "trainable", "activity_regularizer"})
# Largest difference allowed between the Keras 3 model and its tf_keras rebuild (float32).
MAX_REBUILD_DIFFERENCE = 1e-5


class UnsupportedLayerError(ModelError):
    """A Keras 3 layer edgekit cannot rebuild in tf_keras."""


def load_keras3_model(path: str | Path, unsafe: bool = False) -> Any:
    """Load a Keras 3 model with safe mode on (unless `unsafe`)."""
    k3 = import_keras3()
    try:
        return k3.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as e:
        msg = str(e).strip().replace("\n", " ")
        if "lambda" in msg.lower() and "safe" in msg.lower():
            raise ModelError(lambda_refused(path)) from None
        raise ModelError(
            f"{path} is a Keras 3 file that Keras {k3.__version__} cannot load "
            f"({type(e).__name__}: {msg[:160]}): save it again with `model.save('model.keras')`"
        ) from None


@dataclass
class _Rebuild:
    """State of one rebuild: tf_keras layers made so far, keyed by the Keras 3 layer."""

    layers: dict[int, Any]
    pairs: list[tuple[Any, Any]]  # (Keras 3 layer, tf_keras layer), for the weights
    names: set[str]


def rebuild_in_tf_keras(model: Any) -> keras.Model:
    """The same architecture as the Keras 3 `model`, built with tf_keras, with its weights.

    Raises:
        UnsupportedLayerError: a layer edgekit cannot rebuild (named, with its class).
    """
    state = _Rebuild({}, [], set())
    inputs = [
        keras.Input(batch_shape=tuple(t.shape), dtype=str(t.dtype), name=_input_name(t))
        for t in model.inputs
    ]
    outputs = _call_graph(model, inputs, state, prefix="")
    rebuilt = keras.Model(
        inputs if len(inputs) > 1 else inputs[0],
        outputs if len(outputs) > 1 else outputs[0],
        name=model.name,
    )
    for k3_layer, tf_layer in state.pairs:
        weights = k3_layer.get_weights()
        if weights:
            tf_layer.set_weights(weights)
    return rebuilt


def _input_name(tensor: Any) -> str | None:
    op = tensor._keras_history.operation
    return str(op.name) if op is not None else None


def _call_graph(model: Any, inputs: list[Any], state: _Rebuild, prefix: str) -> list[Any]:
    """Rebuild `model`'s graph on the tf_keras tensors `inputs`; returns its outputs.

    Walks the graph with an explicit stack (a deep network would exhaust Python's recursion).
    """
    built: dict[int, Any] = {id(t): x for t, x in zip(model.inputs, inputs, strict=True)}
    stack = list(model.outputs)
    while stack:
        t = stack[-1]
        if id(t) in built:
            stack.pop()
            continue
        op, node_index, _ = t._keras_history
        node = op._inbound_nodes[node_index]
        missing = [
            a
            for a in _leaves(node.arguments.args, node.arguments.kwargs)
            if hasattr(a, "_keras_history") and id(a) not in built
        ]
        if missing:
            stack.extend(missing)
            continue
        stack.pop()

        def lookup(a: Any) -> Any:
            return built[id(a)]

        args = _map(node.arguments.args, lookup)
        kwargs = {k: v for k, v in _map(node.arguments.kwargs, lookup).items() if v is not None}
        if _is_model(op):  # a nested model: inlined, so its batch norms fold like the others
            flat = [a for a in _flatten(args) if keras.backend.is_keras_tensor(a)]
            out = _call_graph(op, flat, state, prefix=f"{prefix}{op.name}_")
            result = out if len(out) > 1 else out[0]
        else:
            result = _layer(op, state, prefix)(*args, **kwargs)
        outs = _flatten(result)
        for i, out_tensor in enumerate(_flatten(node.outputs)):
            built[id(out_tensor)] = outs[i]
    return [built[id(t)] for t in model.outputs]


def _leaves(*structures: Any) -> list[Any]:
    out: list[Any] = []
    for s in structures:
        if isinstance(s, dict):
            out += _leaves(*s.values())
        elif isinstance(s, (list, tuple)):
            out += _leaves(*s)
        else:
            out.append(s)
    return out


def _is_model(op: Any) -> bool:
    return hasattr(op, "inputs") and hasattr(op, "outputs") and hasattr(op, "layers")


def _map(structure: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(structure, (list, tuple)):
        return type(structure)(_map(v, fn) for v in structure)
    if isinstance(structure, dict):
        return {k: _map(v, fn) for k, v in structure.items()}
    if hasattr(structure, "_keras_history"):
        return fn(structure)
    return structure


def _flatten(structure: Any) -> list[Any]:
    if isinstance(structure, (list, tuple)):
        return [x for v in structure for x in _flatten(v)]
    return [structure]


def _layer(k3_layer: Any, state: _Rebuild, prefix: str) -> Any:
    """The tf_keras twin of a Keras 3 layer (made once: a shared layer stays shared)."""
    if id(k3_layer) in state.layers:
        return state.layers[id(k3_layer)]
    cls_name = type(k3_layer).__name__
    if not isinstance(k3_layer, import_keras3().layers.Layer):
        raise UnsupportedLayerError(
            f"operation {k3_layer.name!r} ({cls_name}) is a Keras 3 op in the graph (such as "
            "x + y), not a layer, so the model cannot be rebuilt in tf_keras for TF-MOT: "
            "export it without --prune (converted as it is), or use layers (keras.layers.Add)"
        )
    if cls_name not in SUPPORTED_LAYERS or not hasattr(keras.layers, cls_name):
        raise UnsupportedLayerError(
            f"layer {k3_layer.name!r} ({cls_name}) has no tf_keras twin edgekit can rebuild, "
            "so TF-MOT (--prune) cannot work on this Keras 3 model: export it without --prune "
            f"(converted as it is), or use only {', '.join(SUPPORTED_LAYERS)}"
        )
    cls = getattr(keras.layers, cls_name)
    config = _translate(cls_name, dict(k3_layer.get_config()), k3_layer.name, cls)
    name = prefix + k3_layer.name
    while name in state.names:  # inlined nested models may reuse names
        name += "_"
    state.names.add(name)
    config["name"] = name
    tf_layer = cls.from_config(config)
    state.layers[id(k3_layer)] = tf_layer
    state.pairs.append((k3_layer, tf_layer))
    return tf_layer


def _translate(cls_name: str, config: dict[str, Any], name: str, cls: Any) -> dict[str, Any]:
    """A Keras 3 layer config as tf_keras' `from_config` takes it."""
    dtype = config.get("dtype")
    if isinstance(dtype, dict):  # Keras 3 DTypePolicy
        config["dtype"] = (dtype.get("config") or {}).get("name", "float32")
    if cls_name == "LeakyReLU" and "negative_slope" in config:
        config["alpha"] = config.pop("negative_slope")
    for key in [k for k in config if k.endswith("_initializer")]:
        del config[key]  # the weights are copied over: initializers do not matter
    for key in [k for k in config if k.endswith(("_regularizer", "_constraint"))]:
        config[key] = _translate_object(config[key])
    accepted = _accepted_kwargs(cls)
    for key in [k for k in config if k not in accepted]:
        value = config.pop(key)
        if value not in (None, False, 0, "", [], {}):
            raise UnsupportedLayerError(
                f"layer {name!r} ({cls_name}) sets {key}={value!r}, which tf_keras' "
                f"{cls_name} does not have, so TF-MOT (--prune) cannot work on this Keras 3 "
                "model: export it without --prune (converted as it is)"
            )
    return config


def _accepted_kwargs(cls: Any) -> set[str]:
    """Keyword arguments a tf_keras layer class takes, its base classes' included."""
    accepted = set(_BASE_KWARGS)
    for klass in cls.__mro__:
        if klass is keras.layers.Layer or "__init__" not in vars(klass):
            continue
        accepted |= set(inspect.signature(klass.__init__).parameters) - {"self", "kwargs"}
    return accepted


def _translate_object(obj: Any) -> Any:
    """A Keras 3 regularizer/constraint reference as tf_keras reads it ({class_name, config})."""
    if isinstance(obj, dict) and "class_name" in obj:
        return {"class_name": obj["class_name"], "config": obj.get("config") or {}}
    return obj


def max_abs_difference(k3_model: Any, tf_model: keras.Model, x: Samples) -> float:
    """Largest difference between the two models' outputs on samples `x` (batches of 256;
    a few samples: they are read into memory at once)."""
    x = np.asarray(x)
    a = np.asarray(k3_model.predict(x, batch_size=256, verbose=0), np.float32)
    b = np.asarray(tf_model.predict(x, batch_size=256, verbose=0), np.float32)
    return float(np.abs(a - b).max()) if a.size else 0.0
