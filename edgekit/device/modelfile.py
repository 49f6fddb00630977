"""Read a .tflite flatbuffer without running it: operators, tensors, quantization, sparsity.

Parsing happens in Python (the schema edgekit carries, `edgekit.device.tflite_schema`, plus
`flatbuffers`), so a damaged file raises ModelFileError instead of crashing the process, and
no runtime is needed at all. Never imports TensorFlow.
"""

from __future__ import annotations

import builtins
import functools
import gzip
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.errors import ModelFileError
from edgekit.device.metadata import TFLITE_IDENTIFIER, FileMetadata, read_metadata

__all__ = ["TFLITE_IDENTIFIER", "ModelFile", "parse_model_bytes", "read_model_file"]
_NUMPY_TYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "BOOL": np.bool_,
    "INT4": np.int8,  # packed two per byte: unpacked by _values
}


def _schema() -> Any:
    """The schema edgekit carries: the same on every device, whatever the runtime."""
    from edgekit.device.tflite_schema import schema

    return schema


def _enum_names(enum_cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass(frozen=True)
class WeightTensor:
    """A constant tensor of rank >= 2 (a kernel): its size and how many entries are zero."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    elements: int
    zeros: int
    sparse_encoded: bool = False

    @property
    def sparsity(self) -> float:
        return self.zeros / self.elements if self.elements else 0.0


@dataclass(frozen=True)
class TensorSummary:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    constant: bool


@dataclass(frozen=True)
class ModelFile:
    """What a .tflite file holds, read from its flatbuffer."""

    path: str
    bytes: int
    sha256: str
    operators: dict[str, int]  # op name -> count
    inputs: list[TensorSummary]
    outputs: list[TensorSummary]
    tensors: list[TensorSummary]
    weights: list[WeightTensor] = field(default_factory=list)
    # The file itself (`bytes` above names the size field, hence builtins.bytes).
    content: builtins.bytes = field(default=b"", repr=False, compare=False)
    # Its TFLite Model Metadata and labels (edgekit.device.metadata), None if it has none.
    metadata: FileMetadata | None = field(default=None, compare=False)

    @functools.cached_property
    def gzip_bytes(self) -> int:
        """Size after gzip -9, computed on first use: it takes ~30x longer than the parse."""
        return gzip_size(self.content)

    @property
    def weight_elements(self) -> int:
        return sum(w.elements for w in self.weights)

    @property
    def weight_sparsity(self) -> float:
        total = self.weight_elements
        return sum(w.zeros for w in self.weights) / total if total else 0.0


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gzip_size(data: bytes) -> int:
    """Bytes after gzip -9 with a fixed mtime (so the figure is reproducible)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def read_model_file(path: str | os.PathLike[str]) -> ModelFile:
    """Parse a .tflite file. Raises ModelFileError with a reason for anything that is not one."""
    path = Path(path)
    if path.exists() and not path.is_file():
        # A folder, a FIFO or a device such as /dev/zero: reading could fail or never end.
        raise ModelFileError(f"{path} is not a regular file: pass the path of a .tflite file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path} does not exist: pass the path of a .tflite file") from None
    except OSError as e:
        raise ModelFileError(
            f"cannot read {path} ({e.strerror or e}): pass a readable .tflite file"
        ) from None
    except ValueError:  # a NUL character in the path
        raise ModelFileError(
            f"{str(path)!r} is not a valid path (it holds a NUL character): pass the path of "
            "a .tflite file"
        ) from None
    return parse_model_bytes(data, str(path))


def parse_model_bytes(data: bytes, label: str = "model") -> ModelFile:
    """Parse .tflite bytes; see read_model_file."""
    if len(data) == 0:
        raise ModelFileError(f"{label} is empty (0 bytes): re-export or re-copy it")
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(
            f"{label} is not a TensorFlow Lite flatbuffer (no 'TFL3' identifier at byte 4): "
            "pass a .tflite file written by `edgekit export` or the TFLite converter"
        )
    try:
        return _parse(data, label)
    except ModelFileError as e:
        if str(e).startswith(label):
            raise
        raise ModelFileError(f"{label} is damaged: {e}; re-export or re-copy it") from None
    except Exception as e:  # a damaged flatbuffer raises anything from struct.error to IndexError
        raise ModelFileError(
            f"{label} is damaged: its flatbuffer cannot be parsed ({type(e).__name__}: {e}); "
            "re-export or re-copy it"
        ) from None


# No tensor of an edge model at batch 1 comes near this; a damaged shape (a flipped bit in a
# dimension) does, and LiteRT would then allocate and compute for minutes, or fail to.
MAX_TENSOR_BYTES = 2**30


def check_tensor_sizes(data: bytes, label: str = "model") -> None:
    """Refuse a file with a tensor over MAX_TENSOR_BYTES before a runtime allocates it. A
    flatbuffer this cannot read is left to the runtime to judge (nothing raised here).

    Raises:
        ModelFileError: such a tensor (named, with its shape).
    """
    try:
        schema = _schema()
        itemsize = {
            code: np.dtype(_NUMPY_TYPES.get(name, np.float32)).itemsize
            for code, name in _enum_names(schema.TensorType).items()
        }
        model = schema.Model.GetRootAs(data, 0)
        for g in range(model.SubgraphsLength()):
            sub = model.Subgraphs(g)
            for t in range(sub.TensorsLength()):
                tensor = sub.Tensors(t)
                shape = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
                size = itemsize.get(tensor.Type(), 4)
                for d in shape:
                    size *= max(d, 1)
                if size > MAX_TENSOR_BYTES:
                    name = (tensor.Name() or b"").decode(errors="replace")
                    raise ModelFileError(
                        f"{label} is damaged: tensor {name!r} of shape {tuple(shape)} would take "
                        f"{size / 2**30:.1f} GiB; re-export or re-copy it"
                    )
    except ModelFileError:
        raise
    except Exception:  # a damaged flatbuffer raises anything from struct.error to IndexError
        return


# Long but flat: one pass over the flatbuffer's tables (operator codes, tensors, operators,
# buffers, signatures), each read once into the ModelFile it returns.
def _parse(data: bytes, label: str) -> ModelFile:
    schema = _schema()
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise ModelFileError(f"{label} holds no subgraph: re-export it")
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom = code.CustomCode()
            name = f"CUSTOM:{custom.decode(errors='replace') if custom else '?'}"
        codes.append(name)
    buffers_len = model.BuffersLength()
    sub = model.Subgraphs(0)
    n_tensors = sub.TensorsLength()
    # Every element of a vector is at least a 4-byte offset inside the file: a larger count
    # is a damaged length field, and walking it would only waste time.
    for what, count in (
        ("tensors", n_tensors),
        ("buffers", buffers_len),
        ("operators", sub.OperatorsLength()),
    ):
        if count * 4 > len(data):
            raise ModelFileError(
                f"{label} is damaged: it claims {count} {what} in {len(data)} bytes; "
                "re-export or re-copy it"
            )
    seen_buffers: dict[int, bytes | None] = {}
    counted: dict[tuple[Any, ...], tuple[int, int]] = {}
    tensors: list[TensorSummary] = []
    weights: list[WeightTensor] = []
    for t in range(n_tensors):
        tensor = sub.Tensors(t)
        name = (tensor.Name() or b"").decode(errors="replace")
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        dtype = type_names.get(tensor.Type(), f"TYPE_{tensor.Type()}").lower()
        q = tensor.Quantization()
        scale: tuple[float, ...] = ()
        zp: tuple[int, ...] = ()
        if q is not None and q.ScaleLength():
            scale = tuple(float(s) for s in q.ScaleAsNumpy())
            zp = tuple(int(z) for z in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else ()
        buf_idx = tensor.Buffer()
        if not 0 <= buf_idx < max(buffers_len, 1):
            raise ModelFileError(f"{label} is damaged: tensor {t} points at buffer {buf_idx}")
        if buf_idx not in seen_buffers:  # tensors may share a buffer: read it once
            seen_buffers[buf_idx] = _buffer_bytes(model, buf_idx, data)
        raw = seen_buffers[buf_idx]
        constant = raw is not None and len(raw) > 0
        tensors.append(TensorSummary(name, shape, dtype, scale, zp, constant))
        if raw and len(shape) >= 2 and dtype.upper() in _NUMPY_TYPES:
            sparse = tensor.Sparsity() is not None
            weights.append(_weight(name, shape, dtype, raw, zp, sparse, counted, buf_idx))
    ops: Counter[str] = Counter()
    for i in range(sub.OperatorsLength()):
        idx = sub.Operators(i).OpcodeIndex()
        if not 0 <= idx < len(codes):
            raise ModelFileError(f"{label} is damaged: operator {i} has opcode index {idx}")
        ops[codes[idx]] += 1
    ins = [_tensor_at(tensors, int(i), label) for i in sub.InputsAsNumpy()]
    outs = [_tensor_at(tensors, int(i), label) for i in sub.OutputsAsNumpy()]
    return ModelFile(
        path=label,
        bytes=len(data),
        sha256=sha256_bytes(data),
        operators=dict(sorted(ops.items())),
        inputs=ins,
        outputs=outs,
        tensors=tensors,
        weights=weights,
        content=data,
        metadata=read_metadata(data, label),
    )


def _tensor_at(tensors: list[TensorSummary], i: int, label: str) -> TensorSummary:
    if not 0 <= i < len(tensors):
        raise ModelFileError(f"{label} is damaged: input/output tensor index {i} out of range")
    return tensors[i]


def _buffer_bytes(model: Any, idx: int, data: bytes) -> bytes | None:
    if model.BuffersLength() == 0:
        return None
    buf = model.Buffers(idx)
    if buf.DataLength():
        return buf.DataAsNumpy().tobytes()
    # Files over 2 GB keep buffers outside the flatbuffer, addressed by offset/size.
    offset, size = int(buf.Offset()), int(buf.Size())
    if offset > 1 and size > 0:
        if offset + size > len(data):
            raise ModelFileError("buffer points past the end of the file (truncated?)")
        return data[offset : offset + size]
    return None


def _weight(
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    raw: bytes,
    zp: tuple[int, ...],
    sparse: bool,
    counted: dict[tuple[Any, ...], tuple[int, int]] | None = None,
    buffer_index: int = -1,
) -> WeightTensor:
    """A kernel's size and zero count; `counted` remembers buffers already counted, so a
    damaged file whose tensors all point at one big buffer costs one pass, not one each."""
    np_type = np.dtype(_NUMPY_TYPES[dtype.upper()])
    elements = int(np.prod(shape))
    integer_zp = np.issubdtype(np_type, np.integer) and zp and len(set(zp)) == 1
    # Sparse-encoded tensors store only the non-zero blocks: count exact zeros there.
    zero = zp[0] if integer_zp and not sparse else 0
    key = (buffer_index, dtype, zero)
    if counted is not None and buffer_index >= 0 and key in counted:
        size, zeros = counted[key]
    else:
        values = _values(raw, dtype, np_type, elements, sparse)
        size, zeros = int(values.size), int((values == zero).sum())
        if counted is not None and buffer_index >= 0:
            counted[key] = (size, zeros)
    if sparse:
        return WeightTensor(name, shape, dtype, elements, max(elements - (size - zeros), 0), True)
    if size != elements:
        raise ModelFileError(
            f"tensor {name!r} of shape {shape} holds {size} values, expected {elements}"
        )
    return WeightTensor(name, shape, dtype, elements, zeros, False)


def _values(raw: bytes, dtype: str, np_type: np.dtype, elements: int, sparse: bool) -> np.ndarray:
    """A constant's values; INT4 ones are unpacked from two per byte (element 2i in the low
    nibble, 2i+1 in the high one, as LiteRT's UnpackDenseInt4IntoInt8 and the quantizer's
    packing have it) and sign-extended, so a symmetric zero is 0."""
    if dtype.upper() != "INT4":
        return np.frombuffer(raw, dtype=np_type)
    packed = np.frombuffer(raw, dtype=np.int8)
    # An odd count leaves the last high nibble unused; any other size is left for the caller's
    # size check to report.
    fits = not sparse and len(packed) == (elements + 1) // 2
    count = elements if fits else 2 * len(packed)
    nibbles = np.empty((len(packed), 2), dtype=np.int8)
    nibbles[:, 0] = (packed << 4) >> 4  # int8 shifts are arithmetic: sign-extended
    nibbles[:, 1] = packed >> 4
    return nibbles.reshape(-1)[:count]
