"""Which precision each compute layer of a .tflite file really runs in, read from the file.

A converter can leave a layer in float inside a file called "int8" without a word (QAT of
Dense+BN, an ELU, a denylisted node). `compute_layers` reads every FULLY_CONNECTED, CONV_2D and
DEPTHWISE_CONV_2D op with the dtypes of its activation input and its weights (through a
DEQUANTIZE of a constant, as float16 and weight-only files store them), and `precision_problems`
says which of them do not match the precision a file claims. No TensorFlow, no runtime.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from edgekit.core.errors import ModelFileError
from edgekit.device.modelfile import _enum_names, _schema

COMPUTE_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")

# precision -> (activation dtypes, weight dtypes) a compute layer of such a file may have.
# "dynamic"/"int4": weights quantized, activations float (quantized on the fly inside the op).
EXPECTED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "float32": (frozenset({"float32"}), frozenset({"float32"})),
    "float16": (frozenset({"float32"}), frozenset({"float16"})),
    "int8": (frozenset({"int8"}), frozenset({"int8"})),
    "int16x8": (frozenset({"int16"}), frozenset({"int8"})),
    "dynamic": (frozenset({"float32"}), frozenset({"int8"})),
    "int4": (frozenset({"float32"}), frozenset({"int4"})),
    "int4_weight_only": (frozenset({"float32"}), frozenset({"int4"})),
    # Mixed per-layer precision: each layer int4 or int8 weights, float activations.
    "int4_int8": (frozenset({"float32", "int8"}), frozenset({"int4", "int8"})),
}
# The converter's dynamic range leaves kernels under 1024 weights float, by design.
SMALL_KERNEL_FLOAT_OK = {"dynamic": 1024}


@dataclass(frozen=True)
class ComputeLayer:
    """One FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D op and the dtypes it computes in."""

    op: str
    name: str  # the op's output tensor name (the converter's node name)
    activation_dtype: str
    weight_dtype: str
    weight_name: str
    weight_elements: int = 0

    def describe(self) -> str:
        return (
            f"{self.op} {self.name} (activations {self.activation_dtype}, weights "
            f"{self.weight_dtype})"
        )


def compute_layers(data: bytes) -> list[ComputeLayer]:
    """Every compute op of the file's first subgraph, in execution order.

    Raises:
        ModelFileError: the flatbuffer cannot be read.
    """
    try:
        return _compute_layers(data)
    except ModelFileError:
        raise
    except Exception as e:  # a damaged flatbuffer raises anything from struct.error to IndexError
        raise ModelFileError(
            f"cannot read the file's operators ({type(e).__name__}: {e})"
        ) from None


def _compute_layers(data: bytes) -> list[ComputeLayer]:
    schema = _schema()
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    model = schema.Model.GetRootAs(data, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        codes.append(op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?"))
    sub = model.Subgraphs(0)

    def tensor(i: int) -> tuple[str, str]:
        t = sub.Tensors(i)
        return (t.Name() or b"").decode(errors="replace"), type_names.get(t.Type(), "?").lower()

    def elements(i: int) -> int:
        t = sub.Tensors(i)
        return int(np.prod(t.ShapeAsNumpy())) if t.ShapeLength() else 0

    ops = [sub.Operators(i) for i in range(sub.OperatorsLength())]
    producer: dict[int, int] = {}
    for k, op in enumerate(ops):
        for out in op.OutputsAsNumpy() if op.OutputsLength() else ():
            producer[int(out)] = k
    layers = []
    for op in ops:
        name = codes[op.OpcodeIndex()]
        if name not in COMPUTE_OPS or op.InputsLength() < 2:
            continue
        act, weight = int(op.Inputs(0)), int(op.Inputs(1))
        _, act_dtype = tensor(act)
        weight_name, weight_dtype = tensor(weight)
        src = producer.get(weight)
        if src is not None and codes[ops[src].OpcodeIndex()] == "DEQUANTIZE":
            # float16 / weight-only files: a constant in the narrow type, widened at load.
            weight_name, weight_dtype = tensor(int(ops[src].Inputs(0)))
        out_name, _ = tensor(int(op.Outputs(0)))
        layers.append(
            ComputeLayer(name, out_name, act_dtype, weight_dtype, weight_name, elements(weight))
        )
    return layers


def precision_problems(data: bytes, precision: str, float_layers: Iterable[str] = ()) -> list[str]:
    """Compute layers whose dtypes are not those of `precision`, described one per entry.

    Args:
        float_layers: node or layer names the user asked to keep in float (allowed float32).

    Raises:
        ModelFileError: the file cannot be read.
    """
    if precision not in EXPECTED:
        return []
    acts, weights = EXPECTED[precision]
    allowed = [n for n in float_layers if n]
    small = SMALL_KERNEL_FLOAT_OK.get(precision, 0)
    problems = []
    for layer in compute_layers(data):
        if layer.activation_dtype in acts and layer.weight_dtype in weights:
            continue
        if layer.weight_elements < small and layer.weight_dtype == "float32":
            continue
        if any(_matches(n, layer) for n in allowed) and layer.activation_dtype == "float32":
            continue
        problems.append(layer.describe())
    return problems


def _matches(name: str, layer: ComputeLayer) -> bool:
    """A float-layer name covers the op whose output or weight tensor it names or prefixes."""
    parts = [*layer.name.split(";"), layer.weight_name]
    return any(p == name or p.startswith(name + "/") or f"/{name}/" in f"/{p}/" for p in parts)


# Ops that only convert between integer and float: no computation of their own.
_CONVERSIONS = ("QUANTIZE", "DEQUANTIZE")
_INTEGER_ACTIVATIONS = ("int8", "int16")


def float_ops(data: bytes) -> list[str]:
    """Non-compute ops left in float32 inside an integer file, e.g. an ELU the converter kept
    between DEQUANTIZE and QUANTIZE in an "int8" file ("ELU name"). Empty for a float file.

    Raises:
        ModelFileError: the flatbuffer cannot be read.
    """
    try:
        if not any(c.activation_dtype in _INTEGER_ACTIVATIONS for c in compute_layers(data)):
            return []
        schema = _schema()
        op_names = _enum_names(schema.BuiltinOperator)
        type_names = _enum_names(schema.TensorType)
        model = schema.Model.GetRootAs(data, 0)
        codes = [
            op_names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()), "?")
            for c in (model.OperatorCodes(i) for i in range(model.OperatorCodesLength()))
        ]
        sub = model.Subgraphs(0)
        ops = [sub.Operators(i) for i in range(sub.OperatorsLength())]
        # Activations: the subgraph's inputs and every op's outputs (not constant weights).
        live = set(sub.InputsAsNumpy().tolist()) if sub.InputsLength() else set()
        for op in ops:
            live.update(op.OutputsAsNumpy().tolist() if op.OutputsLength() else ())
        found = []
        for op in ops:
            name = codes[op.OpcodeIndex()]
            if name in COMPUTE_OPS or name in _CONVERSIONS or not op.OutputsLength():
                continue
            inputs = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
            floats = [i for i in inputs if type_names.get(sub.Tensors(i).Type()) == "FLOAT32"]
            if any(i in live for i in floats):
                out = sub.Tensors(int(op.Outputs(0)))
                found.append(f"{name} {(out.Name() or b'').decode(errors='replace')}")
        return found
    except ModelFileError:
        raise
    except Exception as e:  # a damaged flatbuffer raises anything from struct.error to IndexError
        what = f"{type(e).__name__}: {e}"
        raise ModelFileError(f"cannot read the file's operators ({what})") from None
