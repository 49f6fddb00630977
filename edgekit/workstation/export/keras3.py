"""Keras 3 models in: tell Keras 3 files from tf_keras ones, rebuild a Keras 3 model in tf_keras.

TF-MOT (pruning, and everything after it) works only on tf_keras (Keras 2) models, and tf_keras
cannot read a Keras 3 file. So a Keras 3 model is loaded with Keras 3, the same architecture is
built layer by layer with tf_keras (nested models are inlined, so batch norm folds there too),
and the weights are copied over. The caller checks the rebuilt model's outputs against the
Keras 3 model on real samples (`max_abs_difference`).

Two things of Keras 3 have no tf_keras layer of the same name and are rebuilt from built-in
layers that TF-MOT, batch norm folding and the TFLite converter all handle (so the saved
tf_keras model loads anywhere, without edgekit):

- the activations `hard_sigmoid` (Keras 3: relu6(x + 3) / 6; tf_keras' own is the older
  clip(0.2 x + 0.5, 0, 1), up to 0.083 apart) and `hard_silu`/`hard_swish` (x * hard_sigmoid(x),
  none in tf_keras), as Rescaling(offset=3) -> ReLU(6) -> Rescaling(1/6), and hard_silu as
  Multiply(Rescaling(1/6)(x), ReLU(6)(Rescaling(offset=3)(x))) (a form the converter leaves
  as int8 ADD and MUL ops, which XNNPACK runs: see _hard_activation_layers);
- arithmetic written on tensors in a functional model (`x + 3.0`, `x * (1 / 6)`, `x * y`, as
  MobileNetV3's hard sigmoid and squeeze-excite do), as Rescaling (with a number) or
  Add/Subtract/Multiply (two tensors).
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
    "GlobalMaxPooling2D",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Concatenate",
    "Rescaling",
    "Normalization",
)
# Keras 3 activations tf_keras lacks or defines differently, rebuilt from layers (_hard_sigmoid).
HARD_ACTIVATIONS = ("hard_sigmoid", "hard_silu", "hard_swish")
# Keras 3 operations (keras.ops, written as `x + 3.0` in a functional model) rebuilt as layers.
SUPPORTED_OPS = ("Add", "Subtract", "Multiply", "TrueDivide", "Divide")
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
        elif not isinstance(op, import_keras3().layers.Layer):
            result = _operation(op, args, kwargs, state, prefix)
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


def _unique_name(state: _Rebuild, name: str) -> str:
    while name in state.names:  # inlined nested models may reuse names
        name += "_"
    state.names.add(name)
    return name


def _layer(k3_layer: Any, state: _Rebuild, prefix: str) -> Callable[..., Any]:
    """The tf_keras twin of a Keras 3 layer (made once: a shared layer stays shared)."""
    if id(k3_layer) in state.layers:
        return state.layers[id(k3_layer)]
    cls_name = type(k3_layer).__name__
    if cls_name not in SUPPORTED_LAYERS or not hasattr(keras.layers, cls_name):
        raise UnsupportedLayerError(
            f"layer {k3_layer.name!r} ({cls_name}) has no tf_keras twin edgekit can rebuild, "
            "so TF-MOT (--prune) cannot work on this Keras 3 model: export it without --prune "
            f"(converted as it is), or use only {', '.join(SUPPORTED_LAYERS)}"
        )
    cls = getattr(keras.layers, cls_name)
    config = dict(k3_layer.get_config())
    name = _unique_name(state, prefix + k3_layer.name)
    hard = _hard_activation(config.get("activation"))
    if hard is not None:  # no tf_keras twin: the layer stays linear, the activation is layers
        activation = _hard_activation_layers(hard, name, state)
        if cls_name == "Activation":
            state.layers[id(k3_layer)] = activation
            return activation
        config["activation"] = "linear"
    elif "activation" in config:
        _check_activation(config["activation"], k3_layer.name, cls_name)
    config = _translate(cls_name, config, k3_layer.name, cls)
    config["name"] = name
    tf_layer = cls.from_config(config)
    state.pairs.append((k3_layer, tf_layer))
    if hard is not None:

        def layer_then_activation(*args: Any, **kwargs: Any) -> Any:
            return activation(tf_layer(*args, **kwargs))

        state.layers[id(k3_layer)] = layer_then_activation
        return layer_then_activation
    state.layers[id(k3_layer)] = tf_layer
    return tf_layer


def _hard_activation(activation: Any) -> str | None:
    """'hard_sigmoid' or 'hard_silu' if a Keras 3 activation config names one, else None."""
    if isinstance(activation, dict):  # {"module": "keras.activations", "class_name": ...}
        activation = activation.get("config", activation.get("class_name"))
    if activation not in HARD_ACTIVATIONS:
        return None
    return "hard_sigmoid" if activation == "hard_sigmoid" else "hard_silu"


def _check_activation(activation: Any, name: str, cls_name: str) -> None:
    """Refuse, in one line, an activation tf_keras does not have (celu, glu, hard_tanh...)."""
    if isinstance(activation, dict):
        activation = activation.get("config", activation.get("class_name"))
    if not isinstance(activation, str):
        return  # a serialized object: tf_keras' from_config says what it makes of it
    try:
        keras.activations.get(activation)
    except ValueError:
        raise UnsupportedLayerError(
            f"layer {name!r} ({cls_name}) uses the activation {activation!r}, which tf_keras "
            "does not have, so TF-MOT (--prune) cannot work on this Keras 3 model: export it "
            "without --prune (converted as it is), or use one tf_keras has (relu, relu6, elu, "
            "selu, silu, gelu, mish, tanh, sigmoid, softmax; hard_sigmoid and hard_silu are "
            "rebuilt from layers)"
        ) from None


def _hard_activation_layers(kind: str, name: str, state: _Rebuild) -> Callable[[Any], Any]:
    """Keras 3's hard_sigmoid (relu6(x + 3) / 6) or hard_silu (x * hard_sigmoid(x)) as
    built-in tf_keras layers (made once, so a shared activation stays shared)."""
    layers = keras.layers
    plus3 = layers.Rescaling(1.0, offset=3.0, name=_unique_name(state, f"{name}_plus3"))
    relu6 = layers.ReLU(6.0, name=_unique_name(state, f"{name}_relu6"))
    div6 = layers.Rescaling(1.0 / 6.0, name=_unique_name(state, f"{name}_div6"))
    if kind == "hard_sigmoid":
        return lambda x: div6(relu6(plus3(x)))
    # (x / 6) * relu6(x + 3), not x * (relu6(x + 3) / 6): the converter fuses the latter into
    # one HARD_SWISH op, which LiteRT 2.3.0's XNNPACK does not take in int8, so an int8
    # MobileNetV3-Small ran in 19 partitions, 2.5x slower than its float32 file; this form
    # runs whole in XNNPACK (int8 1.28x faster than float32 at 96x96: docs/models.md).
    times = layers.Multiply(name=_unique_name(state, f"{name}_times"))
    return lambda x: times([div6(x), relu6(plus3(x))])


def _operation(op: Any, args: Any, kwargs: dict[str, Any], state: _Rebuild, prefix: str) -> Any:
    """A Keras 3 operation in the graph (`x + 3.0`, `x * y`) done by tf_keras layers.

    A tensor and a number become Rescaling (x * scale + offset); two tensors become Add,
    Subtract or Multiply. Anything else is refused in one line.
    """
    cls_name = type(op).__name__
    tensors = [a for a in args if _is_tensor(a)]
    numbers = [a for a in args if _is_number(a)]
    name = _unique_name(state, prefix + op.name)
    if cls_name in SUPPORTED_OPS and not kwargs and len(args) == 2:
        if len(tensors) == 2 and cls_name in ("Add", "Subtract", "Multiply"):
            return getattr(keras.layers, cls_name)(name=name)(list(args))
        if len(tensors) == 1 and len(numbers) == 1:
            c, tensor_first = float(numbers[0]), _is_tensor(args[0])
            scale_offset = {
                "Add": (1.0, c),
                "Subtract": (1.0, -c) if tensor_first else (-1.0, c),
                "Multiply": (c, 0.0),
            }
            if cls_name in ("TrueDivide", "Divide") and tensor_first and c != 0.0:
                scale_offset[cls_name] = (1.0 / c, 0.0)
            if cls_name in scale_offset:
                scale, offset = scale_offset[cls_name]
                return keras.layers.Rescaling(scale, offset=offset, name=name)(tensors[0])
    raise UnsupportedLayerError(
        f"operation {op.name!r} ({cls_name}) is a Keras 3 op in the graph that edgekit cannot "
        "rebuild in tf_keras (it rebuilds +, -, * of two tensors and +, -, *, / of a tensor "
        "and a number), so TF-MOT (--prune) cannot work on this Keras 3 model: export it "
        "without --prune (converted as it is), or use layers (keras.layers.Add)"
    )


def _is_tensor(value: Any) -> bool:
    """A tf_keras symbolic tensor (is_keras_tensor raises on anything but tensors)."""
    return (
        hasattr(value, "shape") and hasattr(value, "dtype") and keras.backend.is_keras_tensor(value)
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


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
