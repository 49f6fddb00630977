"""A .tflite file as an editable object (the carried schema's object API) and back to bytes.

`unpack_model` and `pack_model` are what `outputs` and `metadata` edit files with. Packing puts
every weight buffer at a multiple of 16 bytes, as `force_align: 16` in LiteRT's schema.fbs asks
(the generated Python code ignores it and would align them to 1 byte; the converter's own files
measured here align them to 4): a float kernel at an odd address is a slow or faulting load on
some ARM cores. No TensorFlow.
"""

from __future__ import annotations

from typing import Any

import flatbuffers
import numpy as np

from edgekit.core.errors import ExportError
from edgekit.device.modelfile import TFLITE_IDENTIFIER
from edgekit.device.tflite_schema import schema

BUFFER_ALIGNMENT = 16


class _AlignedBufferT(schema.BufferT):
    """A Buffer whose data vector starts at a multiple of BUFFER_ALIGNMENT in the file."""

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 (the schema's name)
        data = None
        if self.data is not None:
            raw = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head -= len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            builder.vectorNumElems = len(raw)
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return int(schema.BufferEnd(builder))


def unpack_model(data: bytes) -> Any:
    """The file as a `schema.ModelT` (every table an object, weights as numpy arrays).

    Raises:
        ExportError: not a .tflite flatbuffer, or one that cannot be read.
    """
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ExportError("the converted file is not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # a damaged flatbuffer raises anything from struct.error on
        raise ExportError(
            f"the converted file cannot be read back ({type(e).__name__}: {e})"
        ) from None
    _inline_external_buffers(model, data)
    return model


def _inline_external_buffers(model: Any, data: bytes) -> None:
    """Move buffers kept after the flatbuffer (`offset`/`size`, as ai-edge-quantizer writes
    files whose weights pass 256 KB) into it: packing writes a new flatbuffer, and the old
    offsets would point past its end ("Constant buffer N specified an out of range offset")."""
    for i, buffer in enumerate(model.buffers or []):
        offset, size = int(buffer.offset or 0), int(buffer.size or 0)
        if offset <= 1 or size <= 0:  # inline, empty, or a writer's placeholder
            continue
        if offset + size > len(data):
            raise ExportError(
                f"the converted file's buffer {i} lies outside it (offset {offset} + size {size} "
                f"> {len(data)} bytes): the file is truncated"
            )
        buffer.data = np.frombuffer(data, dtype=np.uint8, count=size, offset=offset).copy()
        buffer.offset = buffer.size = 0


def pack_model(model: Any) -> bytes:
    """`model` (a `schema.ModelT`) as .tflite bytes, weight buffers 16-byte aligned."""
    model.buffers = [_aligned(b) for b in model.buffers or []]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _aligned(buffer: Any) -> Any:
    if isinstance(buffer, _AlignedBufferT):
        return buffer
    out = _AlignedBufferT()
    out.data, out.offset, out.size = buffer.data, buffer.offset, buffer.size
    return out
