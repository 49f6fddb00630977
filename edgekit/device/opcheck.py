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
from typing import Any

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


# ---- sparse-encoded weights (Optimize.EXPERIMENTAL_SPARSITY) --------------------------------


@dataclass(frozen=True)
class SparseUse:
    """A sparse-encoded constant and the op that reads it.

    `op` DENSIFY: made dense when the model is prepared (smaller file, dense speed).
    `op` FULLY_CONNECTED with float32 weights and activations: the runtime's builtin sparse
    kernel (1x4 blocks) reads it as it is. Anything else reads it wrongly or not at all.
    """

    tensor: str
    dtype: str
    block: str  # the encoding's block in TFLite's (out x in) terms, e.g. "1x4"; "1x1" none
    op: str
    op_index: int  # the reading op's index in the first subgraph
    output: str  # the reading op's output tensor name
    activation_dtype: str

    @property
    def sparse_kernel(self) -> bool:
        """Read as it is by a kernel that computes with sparse weights."""
        return self.op == "FULLY_CONNECTED" and self.dtype == self.activation_dtype == "float32"

    @property
    def densified(self) -> bool:
        return self.op == "DENSIFY"

    def to_dict(self) -> dict[str, object]:
        return {
            "tensor": self.tensor,
            "dtype": self.dtype,
            "block": self.block,
            "op": self.op,
            "output": self.output,
        }


def sparse_uses(data: bytes) -> list[SparseUse]:
    """Every read of a sparse-encoded tensor in the file's first subgraph, in op order.

    Raises:
        ModelFileError: the flatbuffer cannot be read.
    """
    try:
        return _sparse_uses(data)
    except ModelFileError:
        raise
    except Exception as e:  # a damaged flatbuffer raises anything from struct.error to IndexError
        raise ModelFileError(
            f"cannot read the file's operators ({type(e).__name__}: {e})"
        ) from None


def _block(tensor: Any) -> str:
    """ "RxC" of a tensor's sparsity block (TFLite dims: out x in); "1x1" without blocks."""
    sp = tensor.Sparsity()
    rank = tensor.ShapeLength()
    sizes = [1] * rank
    for i in range(sp.BlockMapLength()):
        dim = int(sp.BlockMap(i))
        if 0 <= dim < rank and rank + i < sp.DimMetadataLength():
            sizes[dim] = int(sp.DimMetadata(rank + i).DenseSize())
    return "x".join(str(s) for s in sizes) if sizes else "1x1"


def _sparse_uses(data: bytes) -> list[SparseUse]:
    schema = _schema()
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    model = schema.Model.GetRootAs(data, 0)
    codes = [
        op_names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()), "?")
        for c in (model.OperatorCodes(i) for i in range(model.OperatorCodesLength()))
    ]
    sub = model.Subgraphs(0)

    def name(i: int) -> str:
        return (sub.Tensors(i).Name() or b"").decode(errors="replace")

    def dtype(i: int) -> str:
        return type_names.get(sub.Tensors(i).Type(), "?").lower()

    uses = []
    for k in range(sub.OperatorsLength()):
        op = sub.Operators(k)
        inputs = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
        for i in inputs:
            if i < 0 or sub.Tensors(i).Sparsity() is None:
                continue
            act = dtype(inputs[0]) if inputs and inputs[0] >= 0 and inputs[0] != i else ""
            out = name(int(op.Outputs(0))) if op.OutputsLength() else ""
            block = _block(sub.Tensors(i))
            uses.append(SparseUse(name(i), dtype(i), block, codes[op.OpcodeIndex()], k, out, act))
    return uses


def sparse_problems(data: bytes) -> list[str]:
    """Reads of sparse-encoded tensors by ops with no sparse kernel edgekit has checked: a
    DEQUANTIZE of sparse float16 (reads the blocks as dense: 10% accuracy, a file that loads),
    an integer FULLY_CONNECTED (dynamic range 1x16: wrong under XNNPACK). Empty when every
    sparse tensor is densified or read by the float32 sparse FULLY_CONNECTED kernel.

    Raises:
        ModelFileError: the flatbuffer cannot be read.
    """
    return [
        f"{u.op} {u.output} reads the sparse-encoded {u.dtype} tensor {u.tensor} (block "
        f"{u.block}) with no sparse kernel: wrong answers or no load"
        for u in sparse_uses(data)
        if not (u.densified or u.sparse_kernel)
    ]


def sparse_path(data: bytes, undelegated: set[int] | None) -> dict[str, Any] | None:
    """Whether a file's sparse encoding ran a sparse kernel, from the file and the runtime's
    delegation (`edgekit.device.runtime.undelegated_ops`); None for a file without sparse
    tensors.

    `ran`: True when an op reading sparse weights as they are ran outside any delegate (the
    runtime's builtin sparse kernel: FULLY_CONNECTED with 1x4 blocks); False when every sparse
    tensor is densified at load or taken by a delegate; None when the runtime cannot say.
    Which kernel a delegate runs inside is not visible from outside: such ops count as not run.

    Raises:
        ModelFileError: the flatbuffer cannot be read.
    """
    uses = sparse_uses(data)
    if not uses:
        return None
    direct = [u for u in uses if not u.densified]
    densified = len(uses) - len(direct)
    blocks = sorted({u.block for u in direct})
    ran: bool | None
    if not direct:
        ran, words = False, f"sparse-encoded, densified at load ({densified} DENSIFY): dense speed"
    elif undelegated is None:
        ran = None
        words = (
            f"{len(direct)} {direct[0].op} read {'/'.join(blocks)}-block sparse weights; this "
            "runtime does not say whether a delegate took them"
        )
    else:
        builtin = [u for u in direct if u.op_index in undelegated]
        ran = bool(builtin)
        words = (
            f"sparse kernel: {len(builtin)} of {len(direct)} {direct[0].op} with "
            f"{'/'.join(blocks)}-block weights ran in the runtime's builtin kernel"
            if builtin
            else f"{len(direct)} {direct[0].op} with sparse weights were taken by a delegate"
        )
    return {
        "ran": ran,
        "sparse_tensors": len(uses),
        "sparse_kernel_ops": len(direct),
        "densify_ops": densified,
        "blocks": blocks,
        "summary": words,
    }
