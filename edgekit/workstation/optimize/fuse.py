"""Activation fusing: merge a ReLU layer into the Dense/Conv2D/DepthwiseConv2D before it.

TF-MOT's default 8-bit scheme gives a Dense/Conv followed by a separate `ReLU` layer a
`NoOpQuantizeConfig` (its `LayerReLUQuantize` transform, meant for Add -> ReLU): the kernel is
then not fake-quantized during quantization-aware training, and the pruning-preserving scheme
never applies its sparsity mask, so fine-tuning brings the pruned zeros back. `Dense(...,
activation="relu")` computes the same and is quantized like TFLite's fused FULLY_CONNECTED.

Like `fold_batchnorm`, the model is rewritten through its config and the input model is not
modified.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from edgekit.workstation._keras import keras
from edgekit.workstation.optimize.fold import (
    _FOLD_TARGETS,
    _OUTPUT,
    _check_model,
    _consumers,
    _Graph,
    _name,
    _rebuild,
    _refs,
    _source,
)

__all__ = ["FusedActivation", "FuseResult", "fuse_relu"]


@dataclass(frozen=True)
class FusedActivation:
    """One ReLU layer merged into the layer before it as `activation=<activation>`."""

    relu: str
    layer: str
    activation: str  # "relu" or "relu6"


@dataclass(frozen=True)
class FuseResult:
    """The rewritten model (new, uncompiled) and every ReLU layer fused, in order."""

    model: keras.Model
    fused: tuple[FusedActivation, ...]


def fuse_relu(model: keras.Model) -> FuseResult:
    """Fuse each plain ReLU (or ReLU6) layer into a linear Dense/Conv2D/DepthwiseConv2D before it.

    A ReLU is fused only when the layer before is one of those built-in layers with a linear
    activation, is used once, and feeds nothing but the ReLU; other ReLUs stay as they are.

    Raises:
        ModelError: `model` is not a built Sequential/Functional tf_keras model, or it cannot
            be rebuilt from its config.
    """
    _check_model(model, "fuse_relu")
    live = {layer.name: layer for layer in model.layers}
    graph = _Graph(
        config=copy.deepcopy(model.get_config()),
        sequential=isinstance(model, keras.Sequential),
        live=live,
        weights={name: layer.get_weights() for name, layer in live.items()},
    )
    fused: list[FusedActivation] = []
    progress = True
    while progress:
        progress = False
        for entry in graph.entries:
            kind = _relu_kind(entry)
            source = _fusable_source(graph, _name(entry)) if kind else None
            if kind and source:
                _fuse(graph, _name(entry), source, kind)
                fused.append(FusedActivation(_name(entry), source, kind))
                progress = True
                break
    if not fused:
        return FuseResult(model, ())
    return FuseResult(_rebuild(model, graph), tuple(fused))


def _relu_kind(entry: dict[str, Any]) -> str | None:
    """'relu' / 'relu6' for a ReLU layer or Activation the fused layer can compute, else None."""
    cfg = entry.get("config", {})
    if entry.get("class_name") == "Activation":
        act = cfg.get("activation")
        return act if act in ("relu", "relu6") else None
    if entry.get("class_name") != "ReLU":
        return None
    if float(cfg.get("negative_slope") or 0.0) != 0.0 or float(cfg.get("threshold") or 0.0) != 0:
        return None
    max_value = cfg.get("max_value")
    if max_value is None:
        return "relu"
    return "relu6" if float(max_value) == 6.0 else None


def _fusable_source(graph: _Graph, relu: str) -> str | None:
    """The layer `relu` can be fused into, or None."""
    if type(graph.live.get(relu)) not in (keras.layers.ReLU, keras.layers.Activation):
        return None
    source, problem = _source(graph, relu)
    if problem is not None or source is None:
        return None
    entry = graph.entry(source)
    layer = graph.live.get(source)
    kind = entry.get("class_name")
    if layer is None or kind not in _FOLD_TARGETS or type(layer) is not _FOLD_TARGETS[kind]:
        return None
    if entry["config"].get("activation") not in (None, "linear"):
        return None
    names = [_name(e) for e in graph.entries]
    if names.count(source) > 1 or names.count(relu) > 1:
        return None
    if not graph.sequential and len(entry.get("inbound_nodes", [])) != 1:
        return None
    readers = _consumers(graph, source)
    return source if readers == [relu] and _OUTPUT not in readers else None


def _fuse(graph: _Graph, relu: str, source: str, kind: str) -> None:
    """Set `source`'s activation, remove the ReLU and make its readers read `source`."""
    graph.entry(source)["config"]["activation"] = kind
    if not graph.sequential:
        names = {_name(e) for e in graph.entries}
        (relu_input,) = _refs(graph.entry(relu)["inbound_nodes"][0], names)
        for obj in (graph.entries, graph.config.get("output_layers", [])):
            for ref in _refs(obj, names):
                if ref[0] == relu:
                    ref[0], ref[1], ref[2] = relu_input[0], relu_input[1], relu_input[2]
    graph.config["layers"] = [e for e in graph.entries if _name(e) != relu]
