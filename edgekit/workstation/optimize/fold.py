"""Batch-normalization folding: merge each BatchNormalization into the layer before it.

In inference a BatchNormalization computes `(x - moving_mean) * s + beta` with
`s = gamma / sqrt(moving_variance + epsilon)`. When `x` is the output of a Dense, Conv2D or
DepthwiseConv2D with a linear activation, and nothing else reads that output, the same result
comes from scaling the layer's kernel by `s` on its output-channel axis and setting its bias to
`(b - moving_mean) * s + beta`. The folded model has fewer layers and no BN, which makes the
Keras model faster and is needed before quantization-aware training.

The model is rewritten through its config (`get_config` -> edit -> `from_config`), so the input
model is never modified and built-in layers need no `custom_objects`. Every BN that cannot be
folded safely is kept unchanged and reported with the reason.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.core.errors import ModelError
from edgekit.workstation._keras import keras

__all__ = [
    "FoldedPair",
    "KeptBatchNorm",
    "FoldResult",
    "fold_batchnorm",
    "foldable_batchnorms",
    "unfolded",
]

# Layers a BN can be folded into: (config class_name) -> the built-in class it must be exactly.
_FOLD_TARGETS: dict[str, Any] = {
    "Dense": keras.layers.Dense,
    "Conv2D": keras.layers.Conv2D,
    "DepthwiseConv2D": keras.layers.DepthwiseConv2D,
}
_TARGETS_TEXT = "a Dense/Conv2D/DepthwiseConv2D with linear activation"
_OUTPUT = "the model output"


@dataclass(frozen=True)
class FoldedPair:
    """One BatchNormalization folded into the layer before it."""

    batchnorm: str
    layer: str


@dataclass(frozen=True)
class KeptBatchNorm:
    """A BatchNormalization left in the model, and why it could not be folded."""

    batchnorm: str
    reason: str


@dataclass(frozen=True)
class FoldResult:
    """The folded model and what was folded or kept.

    Args:
        model: a new, uncompiled model; the input model is not modified.
        folded: every BN that was folded, in folding order.
        kept: every BN still in the model (nested ones as 'outer/bn'), in layer order.
    """

    model: keras.Model
    folded: tuple[FoldedPair, ...]
    kept: tuple[KeptBatchNorm, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the model itself is represented by its name)."""
        return {
            "model": self.model.name,
            "folded": [{"batchnorm": p.batchnorm, "layer": p.layer} for p in self.folded],
            "kept": [{"batchnorm": k.batchnorm, "reason": k.reason} for k in self.kept],
        }


@dataclass
class _Graph:
    """Mutable working copy of a model: its config, its live layers and their weights."""

    config: dict[str, Any]
    sequential: bool
    live: dict[str, Any]  # layer name -> layer object of the input model (read only)
    weights: dict[str, list[np.ndarray]]
    folded: list[FoldedPair] = field(default_factory=list)

    @property
    def entries(self) -> list[dict[str, Any]]:
        return self.config["layers"]

    def entry(self, name: str) -> dict[str, Any]:
        return next(e for e in self.entries if _name(e) == name)


def fold_batchnorm(model: keras.Model) -> FoldResult:
    """Fold every foldable BatchNormalization into the Dense/Conv2D/DepthwiseConv2D before it.

    Args:
        model: a built tf_keras Sequential or Functional model.

    Returns:
        A FoldResult with a new model (same name, uncompiled) whose predictions in inference
        mode equal the input model's, the folded pairs, and the BNs kept with their reasons.

    Raises:
        ModelError: if `model` is not a built Sequential/Functional tf_keras model, or its
            config cannot be rebuilt (unregistered custom layers).
    """
    graph = _plan(model, "fold_batchnorm")
    new_model = _rebuild(model, graph)
    return FoldResult(
        model=new_model,
        folded=tuple(graph.folded),
        kept=tuple(_kept(graph)),
    )


def unfolded(model: Any) -> FoldResult:
    """The result for a model edgekit does not fold (a Keras 3 model it could not rebuild in
    tf_keras): every BatchNormalization kept, with the reason. The TFLite converter still
    folds them into the layer before when it converts."""
    reason = (
        "a Keras 3 model edgekit could not rebuild in tf_keras is not folded in Keras; the "
        "TFLite converter folds batch norm into the .tflite"
    )
    kept = tuple(
        KeptBatchNorm(layer.name, reason)
        for layer in model.layers
        if type(layer).__name__ == "BatchNormalization"
    )
    return FoldResult(model, (), kept)


def foldable_batchnorms(model: keras.Model) -> list[str]:
    """Names of the BatchNormalization layers `fold_batchnorm` would fold (empty once folded)."""
    return [pair.batchnorm for pair in _plan(model, "foldable_batchnorms").folded]


# --------------------------------------------------------------------------- planning


def _check_model(model: Any, caller: str) -> None:
    if not isinstance(model, keras.Model):
        raise ModelError(
            f"{caller} received {type(model).__name__}, expected a tf_keras Model: "
            "pass a model built with `from edgekit.workstation._keras import keras` "
            "(Sequential or Functional)"
        )
    if not model.built:
        raise ModelError(
            f"model {model.name!r} is not built, expected a model with weights: "
            "give it an Input (or input_shape) or call it on data once before folding"
        )
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise ModelError(
            f"model {model.name!r} is a subclassed {type(model).__name__}, expected a "
            "Sequential or Functional model: rebuild it with the Sequential or Functional API"
        )


def _plan(model: Any, caller: str) -> _Graph:
    """Fold BNs on a copy of the config and weights until nothing foldable is left."""
    _check_model(model, caller)
    try:
        config = copy.deepcopy(model.get_config())
    except NotImplementedError as exc:
        raise ModelError(
            f"model {model.name!r} has no config ({exc}), expected a Sequential or Functional "
            "model of serializable layers: implement get_config on its custom layers"
        ) from None
    live = {layer.name: layer for layer in model.layers}
    graph = _Graph(
        config=config,
        sequential=isinstance(model, keras.Sequential),
        live=live,
        weights={name: layer.get_weights() for name, layer in live.items()},
    )
    # Repeat until stable: folding one BN can make another foldable (Dense -> BN -> BN).
    progress = True
    while progress:
        progress = False
        for entry in graph.entries:
            if not _is_batchnorm(graph, entry):
                continue
            bn_name = _name(entry)
            reason, source = _why_kept(graph, bn_name)
            if reason is None and source is not None:
                _fold(graph, bn_name, source)
                progress = True
                break
    return graph


def _name(entry: dict[str, Any]) -> str:
    return str(entry.get("name") or entry["config"]["name"])


def _is_batchnorm(graph: _Graph, entry: dict[str, Any]) -> bool:
    return isinstance(graph.live.get(_name(entry)), keras.layers.BatchNormalization)


def _kept(graph: _Graph) -> Iterator[KeptBatchNorm]:
    """Every BN still in the planned model, in layer order, with the reason it stays."""
    for entry in graph.entries:
        layer = graph.live.get(_name(entry))
        if _is_batchnorm(graph, entry):
            reason, _ = _why_kept(graph, _name(entry))
            yield KeptBatchNorm(_name(entry), reason or "not folded")
        elif isinstance(layer, keras.Model):
            for path in _nested_batchnorms(layer, layer.name):
                yield KeptBatchNorm(
                    path,
                    f"inside nested model {layer.name!r}; only top-level layers are folded "
                    "(fold the nested model on its own, or flatten it into the outer model)",
                )


def _nested_batchnorms(model: keras.Model, prefix: str) -> Iterator[str]:
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            yield f"{prefix}/{layer.name}"
        elif isinstance(layer, keras.Model):
            yield from _nested_batchnorms(layer, f"{prefix}/{layer.name}")


def _is_ref(obj: Any, names: set[str]) -> bool:
    """Whether `obj` is a tensor reference [layer_name, node_index, tensor_index(, kwargs)]."""
    return (
        isinstance(obj, list)
        and len(obj) in (3, 4)
        and isinstance(obj[0], str)
        and obj[0] in names
        and type(obj[1]) is int
        and type(obj[2]) is int
        and (len(obj) == 3 or isinstance(obj[3], dict))
    )


def _refs(obj: Any, names: set[str]) -> Iterator[list[Any]]:
    """Every tensor reference inside a config structure (also ones passed as call kwargs)."""
    if _is_ref(obj, names):
        yield obj
        if len(obj) == 4:
            yield from _refs(obj[3], names)
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _refs(item, names)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _refs(item, names)


def _consumers(graph: _Graph, name: str) -> list[str]:
    """Names of the layers that read `name`'s output; `_OUTPUT` if it is a model output."""
    entries = graph.entries
    if graph.sequential:
        index = [_name(e) for e in entries].index(name)
        return [_name(entries[index + 1])] if index + 1 < len(entries) else [_OUTPUT]
    names = {_name(e) for e in entries}
    found = []
    for entry in entries:
        found += [
            _name(entry) for ref in _refs(entry.get("inbound_nodes", []), names) if ref[0] == name
        ]
    found += [
        _OUTPUT for ref in _refs(graph.config.get("output_layers", []), names) if ref[0] == name
    ]
    return found


def _source(graph: _Graph, bn_name: str) -> tuple[str | None, str | None]:
    """(name of the layer feeding the BN, reason why that cannot be established)."""
    entries = graph.entries
    names = [_name(e) for e in entries]
    if graph.sequential:
        if names.count(bn_name) > 1:
            return None, f"the layer is used {names.count(bn_name)} times in the model"
        index = names.index(bn_name)
        if index == 0:
            return None, "its input is the model input, not " + _TARGETS_TEXT
        return names[index - 1], None
    nodes = graph.entry(bn_name).get("inbound_nodes", [])
    if len(nodes) != 1:
        return None, f"the layer is called {len(nodes)} times in the model (shared layer)"
    refs = list(_refs(nodes[0], set(names)))
    if len(refs) != 1:
        return None, "it does not have exactly one input tensor"
    kwargs = refs[0][3] if len(refs[0]) == 4 else {}
    if kwargs.get("training") not in (None, False):
        training = kwargs["training"]
        return None, f"it is called with training={training!r}, so it uses batch statistics"
    extra = sorted(set(kwargs) - {"training"})
    if extra:
        return None, f"it is called with extra arguments {extra}"
    return str(refs[0][0]), None


def _why_kept(graph: _Graph, bn_name: str) -> tuple[str | None, str | None]:
    """(reason the BN cannot be folded or None, name of the layer it would fold into)."""
    bn = graph.live[bn_name]
    if type(bn) is not keras.layers.BatchNormalization:
        return f"it is a {type(bn).__name__}, not the built-in BatchNormalization", None
    if bn.renorm or bn.virtual_batch_size is not None or bn.adjustment is not None:
        return "it uses renorm, virtual_batch_size or adjustment, which folding cannot keep", None
    source, problem = _source(graph, bn_name)
    if problem is not None or source is None:
        return problem, None
    entry = graph.entry(source)
    cfg = entry["config"]
    layer = graph.live.get(source)  # Sequential.layers lists no InputLayer
    kind = entry.get("class_name")
    if layer is None or isinstance(layer, keras.layers.InputLayer):
        return f"input comes from the model input {source!r}, not {_TARGETS_TEXT}", None
    if kind not in _FOLD_TARGETS or type(layer) is not _FOLD_TARGETS[kind]:
        return f"input comes from {type(layer).__name__} {source!r}, not {_TARGETS_TEXT}", None
    activation = cfg.get("activation")
    if activation not in (None, "linear"):
        return (
            f"input comes from {kind} {source!r} with activation {activation!r}, not "
            f"{_TARGETS_TEXT}"
        ), None
    if not graph.sequential and len(entry.get("inbound_nodes", [])) != 1:
        times = len(entry.get("inbound_nodes", []))
        return f"{kind} {source!r} is called {times} times in the model (shared layer)", None
    if graph.sequential and [_name(e) for e in graph.entries].count(source) > 1:
        return f"{kind} {source!r} is used more than once in the model (shared layer)", None
    readers = [r for r in _consumers(graph, source) if r != bn_name]
    if readers:
        return (
            f"the output of {kind} {source!r} also feeds {', '.join(sorted(set(readers)))}; "
            "folding would change what those see"
        ), None
    rank = bn.input_spec.ndim if bn.input_spec is not None else None
    if kind == "Dense" or cfg.get("data_format") == "channels_last":
        channel_axis = rank - 1 if rank is not None else None
    else:
        channel_axis = 1
    if list(bn.axis) != [channel_axis]:
        return (
            f"it normalizes axis {list(bn.axis)}, but the channel axis of {kind} {source!r} "
            f"output is {channel_axis}; use BatchNormalization(axis={channel_axis})"
        ), None
    kernel = graph.weights[source][0]
    channels = kernel.shape[-1] * (kernel.shape[-2] if kind == "DepthwiseConv2D" else 1)
    if tuple(bn.moving_mean.shape) != (channels,):
        return (
            f"it has {tuple(bn.moving_mean.shape)} parameters but {kind} {source!r} has "
            f"{channels} output channels"
        ), None
    if not np.all(np.isfinite(_bn_scale(bn))):
        return "moving_variance + epsilon is not positive in some channel (scale not finite)", None
    return None, source


# --------------------------------------------------------------------------- folding


def _value(variable: Any) -> np.ndarray:
    return np.asarray(keras.backend.get_value(variable), dtype=np.float64)


def _bn_scale(bn: keras.layers.BatchNormalization) -> np.ndarray:
    """s = gamma / sqrt(moving_variance + epsilon), gamma = 1 when scale=False."""
    variance = _value(bn.moving_variance)
    gamma = _value(bn.gamma) if bn.scale else np.ones_like(variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        return gamma / np.sqrt(variance + float(bn.epsilon))


def _fold(graph: _Graph, bn_name: str, source: str) -> None:
    """Fold BN `bn_name` into layer `source`: new kernel/bias, BN removed, readers rewired."""
    bn = graph.live[bn_name]
    entry = graph.entry(source)
    cfg = entry["config"]
    kind = entry["class_name"]
    weights = graph.weights[source]
    kernel = weights[0]
    bias = _value(weights[1]) if cfg.get("use_bias", True) else 0.0

    scale = _bn_scale(bn)
    mean = _value(bn.moving_mean)
    beta = _value(bn.beta) if bn.center else 0.0
    # Output channel c of a DepthwiseConv2D is in_channel * depth_multiplier + m.
    kernel_scale = scale.reshape(kernel.shape[-2:]) if kind == "DepthwiseConv2D" else scale
    # Only a product: a weight that is exactly zero stays exactly zero.
    new_kernel = (kernel.astype(np.float64) * kernel_scale).astype(kernel.dtype)
    new_bias = ((bias - mean) * scale + beta).astype(kernel.dtype)
    graph.weights[source] = [new_kernel, new_bias]
    cfg["use_bias"] = True

    # Remove the BN and make every reader of its output read the folded layer instead.
    if not graph.sequential:
        names = {_name(e) for e in graph.entries}
        (bn_input,) = _refs(graph.entry(bn_name)["inbound_nodes"][0], names)
        for obj in (graph.entries, graph.config.get("output_layers", [])):
            for ref in _refs(obj, names):
                if ref[0] == bn_name:
                    ref[0], ref[1], ref[2] = bn_input[0], bn_input[1], bn_input[2]
    graph.config["layers"] = [e for e in graph.entries if _name(e) != bn_name]
    graph.folded.append(FoldedPair(batchnorm=bn_name, layer=source))


def _rebuild(model: keras.Model, graph: _Graph) -> keras.Model:
    """A new model from the edited config, with the original or folded weights."""
    cls = keras.Sequential if graph.sequential else keras.Model
    try:
        new_model = cls.from_config(graph.config)
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelError(
            f"model {model.name!r} could not be rebuilt from its config ({exc}), expected "
            "built-in or registered layers: call tfmot.sparsity.keras.strip_pruning first, and "
            "register custom layers with keras.saving.register_keras_serializable"
        ) from None
    for layer in new_model.layers:
        if graph.weights.get(layer.name):
            layer.set_weights(graph.weights[layer.name])
    return new_model
