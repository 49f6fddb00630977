"""Per-node int8 quantization error, and int8 files in which chosen nodes stay float.

Both use TFLite's QuantizationDebugger (`tf.lite.experimental`). It needs a converter with
float input and output (it refuses int8 I/O) and sets `_experimental_calibrate_only` on the
converter it is given, so every call builds a fresh converter. A "node" is an op of the
converted model named by its output tensor, the name `denylisted_nodes` takes; with
`fully_quantize=True` the debugger's file still has int8 input and output, like edgekit's int8
recipe, and each denylisted node runs in float between DEQUANTIZE and QUANTIZE.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgekit.core.data.arrays import Samples
from edgekit.core.errors import ExportError, first_line
from edgekit.core.io.process import quiet_native_stderr
from edgekit.device.modelfile import parse_model_bytes
from edgekit.device.tflite_schema import schema
from edgekit.workstation._keras import keras, tf
from edgekit.workstation.export.converter import representative_dataset

_NUMERIC_VERIFY = "NumericVerify"
_NAMES_IN_ERRORS = 5


@dataclass(frozen=True)
class LayerError:
    """The int8 error of one node, measured on its own float input (QuantizationDebugger).

    Args:
        name: the node's output tensor name (what `denylisted_nodes` / --float-layers takes).
        op: the TFLite op, e.g. FULLY_CONNECTED.
        layer: the Keras layer the node comes from (best effort, from the tensor name).
        weights: elements of the op's constant inputs of rank >= 2 (kernels); 0 if none.
        rmse_scale: root mean squared error over the output's quantization step; about 0.29
            (1/sqrt(12)) is plain rounding noise, much more means the node quantizes badly.
        mean_abs_error / mean_squared_error: of the dequantized output against float.
        scale: the output's quantization step.
    """

    name: str
    op: str
    layer: str
    weights: int
    rmse_scale: float
    mean_abs_error: float
    mean_squared_error: float
    scale: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Node:
    name: str  # its output tensor's name in the calibrated model: what denylisted_nodes takes
    op: str
    verify_name: str  # the NumericVerify output tensor: the key of layer_statistics
    weights: int
    scale: float


@contextmanager
def _converting(what: str) -> Iterator[None]:
    """Keep the converter's native logs and Python warnings quiet; one-line ExportError."""
    try:
        with quiet_native_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except ExportError:
        raise
    except Exception as e:  # the converter raises ConverterError, ValueError, RuntimeError...
        first = first_line(e)
        raise ExportError(
            f"the QuantizationDebugger failed to {what} ({first}): the model may use layers "
            "without an int8 TFLite op; try `edgekit export --precision int8` to see why"
        ) from None


def _debugger(
    model: keras.Model,
    calibration_x: Samples,
    calibration_samples: int,
    debug_samples: int,
    seed: int,
    options: Any,
) -> Any:
    """A QuantizationDebugger on a fresh float-I/O converter calibrated like the int8 recipe."""
    if calibration_x is None or len(calibration_x) == 0:
        raise ExportError(
            "int8 quantization needs a calibration set, got none: pass training data "
            "(--data) so a representative sample can be drawn"
        )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(
        calibration_x, calibration_samples, seed
    )
    return tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=representative_dataset(calibration_x, debug_samples, seed),
        debug_options=options,
    )


def _opcode_names(model: Any) -> list[str]:
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int)}
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        op = builtin.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        if op == "CUSTOM":
            op = (code.CustomCode() or b"?").decode(errors="replace")
        names.append(op)
    return names


def _original_name(float_copy: str, quantized_copy: str, known: set[str]) -> str:
    """The name a node has in the calibrated model, which is what denylisted_nodes matches.

    The debug model holds a float and a quantized copy of each node; the exporter tells them
    apart by appending digits, to the quantized copy as a rule but to the float copy of a graph
    output, whose name is fixed ("StatefulPartitionedCall:0" vs "...:01").
    """
    for name in (float_copy, quantized_copy, float_copy[:-1]):
        if name in known:
            return name
    return float_copy


def _verified_nodes(debug_model: bytes, known: set[str]) -> list[_Node]:
    """The nodes the debug model checks (one NumericVerify op each), in graph order.

    `known`: tensor names of the calibrated model, the names nodes are given.
    """
    tensors = parse_model_bytes(debug_model, "debug model").tensors
    model = schema.Model.GetRootAs(debug_model, 0)
    codes = _opcode_names(model)
    sub = model.Subgraphs(0)
    ops = [sub.Operators(i) for i in range(sub.OperatorsLength())]
    producer = {int(t): op for op in ops for t in op.OutputsAsNumpy()}
    nodes = []
    for op in ops:
        if codes[op.OpcodeIndex()] != _NUMERIC_VERIFY:
            continue
        quantized, original = (int(t) for t in op.InputsAsNumpy()[:2])
        name = _original_name(tensors[original].name, tensors[quantized].name, known)
        source = producer.get(quantized)
        if source is None:  # a verified tensor is always an op's output; skip anything else
            continue
        kernels = [tensors[int(t)] for t in source.InputsAsNumpy() if t >= 0]
        weights = sum(math.prod(t.shape) for t in kernels if t.constant and len(t.shape) >= 2)
        scale = tensors[quantized].scale
        nodes.append(
            _Node(
                name=name,
                op=codes[source.OpcodeIndex()],
                verify_name=tensors[int(op.OutputsAsNumpy()[0])].name,
                weights=int(weights),
                scale=float(scale[0]) if scale else 0.0,
            )
        )
    return nodes


def _layer_names(model: keras.Model) -> list[str]:
    """Names of the model's layers, nested models' layers included, in model order."""
    out: list[str] = []
    for layer in model.layers:
        out.append(layer.name)
        if isinstance(layer, keras.Model):
            out += _layer_names(layer)
    return out


def _layer_namer(model: keras.Model, graph_outputs: Sequence[str]) -> Callable[[str], str]:
    """Maps a tensor name ("sequential/dense_1/MatMul;...") to its Keras layer ("dense_1")."""
    known = set(_layer_names(model))
    output_layers = list(getattr(model, "output_names", None) or [])

    def layer_of(tensor: str) -> str:
        for part in tensor.split(";"):
            for segment in part.split("/")[1:]:
                if segment in known:
                    return segment
        # The model's output tensor ("StatefulPartitionedCall:0") keeps no layer in its name.
        if tensor in graph_outputs and len(output_layers) == 1:
            return str(output_layers[0])
        segments = tensor.split(";")[0].split("/")
        return segments[1] if len(segments) > 2 else ""

    return layer_of


def _calibrated_names(calibrated_model: bytes) -> tuple[set[str], list[str]]:
    """Tensor names and graph output names of the calibrated (float) model."""
    parsed = parse_model_bytes(calibrated_model, "calibrated model")
    return {t.name for t in parsed.tensors}, [t.name for t in parsed.outputs]


def _sort_key(e: LayerError) -> float:
    return -e.rmse_scale if math.isfinite(e.rmse_scale) else math.inf


def debug_layers(
    model: keras.Model,
    calibration_x: Samples,
    samples: int = 100,
    seed: int = 42,
    calibration_samples: int = 500,
) -> list[LayerError]:
    """The int8 error of every quantized node of `model`, worst first (by rmse/scale).

    The model is calibrated as `edgekit export --precision int8` does (`calibration_samples`
    drawn with `seed`), so the scales are those of the int8 file; errors are averaged over
    `samples` samples drawn with the same rule.

    Raises:
        ExportError: no calibration data, or the converter or the debugger failed.
    """
    if samples < 1:
        raise ExportError(f"samples must be >= 1, got {samples}: e.g. 100")
    # fully_quantize: int8 input and output, the file `convert_int8_with_float_layers` writes.
    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_debug_metrics={"mean_abs_error": lambda diffs: float(np.mean(np.abs(diffs)))},
        fully_quantize=True,
    )
    with _converting("measure per-layer errors"):
        debugger = _debugger(model, calibration_x, calibration_samples, samples, seed, options)
        debugger.run()
    stats = debugger.layer_statistics or {}
    known, outputs = _calibrated_names(debugger.calibrated_model)
    layer_of = _layer_namer(model, outputs)
    errors = []
    for node in _verified_nodes(debugger.quant_model, known):
        metrics = stats.get(node.verify_name)
        if metrics is None:
            continue
        mse = float(metrics["mean_squared_error"])
        errors.append(
            LayerError(
                name=node.name,
                op=node.op,
                layer=layer_of(node.name),
                weights=node.weights,
                rmse_scale=math.sqrt(mse) / node.scale if node.scale > 0 else math.nan,
                mean_abs_error=float(metrics["mean_abs_error"]),
                mean_squared_error=mse,
                scale=node.scale,
            )
        )
    return sorted(errors, key=_sort_key)


def worst_layer_nodes(errors: Sequence[LayerError], k: int) -> list[str]:
    """Nodes of the `k` Keras layers holding the worst nodes, for a fallback that helps.

    Keeping one node float rarely helps: its input was already rounded by the quantized node
    before it, and its output is rounded again after it (SELU: the worst nodes are MULs, but
    the damage is EXP's coarse output scale). So each chosen layer gives its worst node and
    all its weightless nodes (its activation's chain); its other weight-carrying ops stay int8,
    since their float weights would cost 4x the bytes. Nodes with no Keras layer count alone.
    """
    if k < 1:
        raise ExportError(f"auto:K needs K >= 1, got {k}: e.g. auto:3")
    ranked = sorted(errors, key=_sort_key)
    groups: dict[str, LayerError] = {}
    for e in ranked:
        groups.setdefault(e.layer or e.name, e)
    chosen = list(groups)[:k]
    return [
        e.name
        for e in ranked
        if (e.layer or e.name) in chosen and (e.weights == 0 or groups[e.layer or e.name] is e)
    ]


def _resolve(
    requested: Sequence[str],
    nodes: Sequence[_Node],
    layer_of: Callable[[str], str],
    model_layers: Sequence[str],
) -> list[str]:
    """Node names for node or Keras layer names, in graph order; ExportError for unknown ones."""
    by_layer: dict[str, list[str]] = {}
    for node in nodes:
        by_layer.setdefault(layer_of(node.name), []).append(node.name)
    node_names = [n.name for n in nodes]
    choices = [n for n in model_layers if n in by_layer] + node_names
    chosen: set[str] = set()
    for name in requested:
        if name in node_names:
            chosen.add(name)
        elif name in by_layer and name:
            chosen.update(by_layer[name])
        else:
            more = ", ..." if len(choices) > _NAMES_IN_ERRORS else ""
            what = (
                f"layer {name} has no quantized op in the converted model"
                if name in model_layers
                else f"no layer named {name} in the model"
            )
            raise ExportError(
                f"{what}: pick from {', '.join(choices[:_NAMES_IN_ERRORS])}{more}; "
                "`edgekit quantize-report` lists them"
            )
    return [n for n in node_names if n in chosen]


def convert_int8_with_float_layers(
    model: keras.Model,
    float_nodes: Sequence[str],
    calibration_x: Samples,
    samples: int = 500,
    seed: int = 42,
) -> bytes:
    """A full-integer int8 file (int8 input and output) in which `float_nodes` stay float.

    Each name is a node (as `debug_layers` names them) or a Keras layer name, which stands for
    all of that layer's nodes. Calibration draws `samples` samples of `calibration_x` with
    `seed`, as edgekit's int8 recipe does. Kept nodes run in float between DEQUANTIZE and
    QUANTIZE: the file grows by their float weights and loses speed; check what it buys.

    Raises:
        ExportError: an unknown name, no calibration data, or the converter failed.
    """
    options = tf.lite.experimental.QuantizationDebugOptions(fully_quantize=True)
    with _converting("quantize the model"):
        debugger = _debugger(model, calibration_x, samples, 1, seed, options)
    known, outputs = _calibrated_names(debugger.calibrated_model)
    nodes = _resolve(
        list(float_nodes),
        _verified_nodes(debugger.quant_model, known),
        _layer_namer(model, outputs),
        _layer_names(model),
    )
    with _converting("quantize the model"):
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=nodes or None, fully_quantize=True
        )
        return bytes(debugger.get_nondebug_quantized_model())
