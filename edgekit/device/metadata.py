"""TFLite Model Metadata in a .tflite file: its name, labels, input normalization, output names.

Every file edgekit writes carries it, in the form Android Studio's ML model binding, the TFLite
Task Library and MediaPipe read: a `ModelMetadata` flatbuffer (metadata_schema.fbs, identifier
"M001", carried in `edgekit.device.tflite_schema`) in the model's `metadata` vector under the
name `TFLITE_METADATA`, and its associated files (`labels.txt`, one class name a line, in the
order of the output's classes) in a zip archive appended to the flatbuffer. `read_metadata`
reads both back with numpy and flatbuffers only: no TensorFlow, no runtime. A damaged block
raises ModelFileError with one line. `edgekit.device.modelfile` reads it with every file
(`ModelFile.metadata`), so a file whose end was cut off (its labels gone) is a damaged file.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekit.core.errors import ModelFileError

TFLITE_IDENTIFIER = b"TFL3"  # a .tflite flatbuffer's file identifier, at byte 4

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
LABELS_FILE = "labels.txt"
# The oldest metadata parser that understands every field edgekit writes (all of schema 1.0.0).
MIN_PARSER_VERSION = "1.0.0"


def _schemas() -> tuple[Any, Any]:
    from edgekit.device.tflite_schema import metadata_schema, schema

    return schema, metadata_schema


def _names(enum_cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass(frozen=True)
class TensorMetadata:
    """What the metadata says of one input or output tensor."""

    name: str
    description: str = ""
    content: str = ""  # "image (GRAYSCALE)", "image (RGB)", "feature", or ""
    mean: tuple[float, ...] = ()  # normalization: model input = (value - mean) / std
    std: tuple[float, ...] = ()
    min: tuple[float, ...] = ()  # the tensor's value range (for an input: after normalization)
    max: tuple[float, ...] = ()
    files: tuple[str, ...] = ()  # associated files, e.g. labels.txt

    @property
    def value_range(self) -> tuple[float, float] | None:
        """The range of the values fed in before normalization (pixels: 0..255), from the
        normalized range and mean/std; None when the metadata does not give both."""
        if not (self.min and self.max and self.mean and self.std):
            return None
        lo = self.min[0] * self.std[0] + self.mean[0]
        hi = self.max[0] * self.std[0] + self.mean[0]
        return (round(lo, 6), round(hi, 6))


@dataclass(frozen=True)
class FileMetadata:
    """A file's TFLite Model Metadata and the class names of its labels file."""

    name: str
    description: str
    author: str
    min_parser_version: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
    labels: tuple[str, ...]  # labels.txt of output 0, in the order of its classes
    files: tuple[str, ...]  # names of the associated files zipped into the file

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def preprocessing(self) -> dict[str, Any] | None:
        """Input 0's normalization as edgekit's preprocessing spec (`x = raw * scale + offset`,
        a manifest's `input`), for uint8 pixels (0..255); None when the metadata has none."""
        if not self.inputs:
            return None
        t = self.inputs[0]
        if not t.mean or not t.std or len(set(t.mean)) != 1 or len(set(t.std)) != 1:
            return None
        mean, std = float(t.mean[0]), float(t.std[0])
        if std == 0.0 or not math.isfinite(mean) or not math.isfinite(std):
            return None
        if t.value_range != (0.0, 255.0):
            return None
        return {"raw_dtype": "uint8", "scale": 1.0 / std, "offset": -mean / std + 0.0}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for kind in ("inputs", "outputs"):
            for t, obj in zip(d[kind], getattr(self, kind), strict=True):
                t["value_range"] = list(obj.value_range) if obj.value_range else None
        return d


def metadata_buffer(data: bytes, label: str = "model") -> bytes | None:
    """The raw `TFLITE_METADATA` buffer of .tflite bytes, or None when the file has none.

    Raises:
        ModelFileError: the file or its metadata entry is damaged.
    """
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{label} is not a TensorFlow Lite flatbuffer: no metadata to read")
    schema, _ = _schemas()
    try:
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() != METADATA_NAME.encode():
                continue
            index = int(entry.Buffer())
            if not 0 <= index < model.BuffersLength():
                raise ValueError(f"it points at buffer {index} of {model.BuffersLength()}")
            buf = model.Buffers(index)
            return buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
    except Exception as e:
        raise _damaged(label, e) from None
    return None


def _shown(text: str, limit: int = 80) -> str:
    """`text` on one line, printable (a damaged file's strings can hold anything)."""
    escaped = text.encode("unicode_escape").decode("ascii")
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def _damaged(label: str, e: Exception) -> ModelFileError:
    why = _shown(str(e) or type(e).__name__, 200)
    return ModelFileError(
        f"{label}: its TFLite metadata ({METADATA_NAME}) is damaged ({why}); re-export or "
        "re-copy the file"
    )


def associated_files(data: bytes, label: str = "model") -> dict[str, bytes]:
    """The files zipped onto the end of .tflite bytes ({} when there is no archive).

    Raises:
        ModelFileError: the archive is there but damaged.
    """
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return {info.filename: z.read(info) for info in z.infolist()}
    except Exception as e:  # BadZipFile, a CRC error, a truncated member...
        raise ModelFileError(
            f"{label}: the files zipped onto its end are damaged ({_shown(str(e), 200)}); "
            "re-export or re-copy it"
        ) from None


def read_metadata(data: bytes, label: str = "model") -> FileMetadata | None:
    """A .tflite file's TFLite Model Metadata and labels, or None when it carries none.

    Raises:
        ModelFileError: the metadata, or a file it names, is damaged or missing (one line).
    """
    raw = metadata_buffer(data, label)
    if raw is None:
        return None
    _, md = _schemas()
    try:
        if len(raw) < 8 or raw[4:8] != METADATA_IDENTIFIER:
            raise ValueError("no 'M001' identifier")
        meta = md.ModelMetadataT.InitFromPackedBuf(bytearray(raw), 0)
        sub = (meta.subgraphMetadata or [None])[0]
        inputs = tuple(_tensor(t) for t in (sub.inputTensorMetadata or [])) if sub else ()
        outputs = tuple(_tensor(t) for t in (sub.outputTensorMetadata or [])) if sub else ()
        name, description = _text(meta.name), _text(meta.description)
        author, version = _text(meta.author), _text(meta.minParserVersion)
    except Exception as e:
        raise _damaged(label, e) from None
    zipped = associated_files(data, label)
    named = {f for t in (*inputs, *outputs) for f in t.files}
    missing = sorted(named - set(zipped))
    if missing:
        raise ModelFileError(
            f"{label}: its metadata names {', '.join(_shown(m) for m in missing)}, which is "
            "not zipped into the "
            "file (the end of the file was cut off?); re-export or re-copy it"
        )
    labels: tuple[str, ...] = ()
    if outputs and LABELS_FILE in outputs[0].files:
        labels = parse_labels(zipped[LABELS_FILE], label)
    return FileMetadata(
        name, description, author, version, inputs, outputs, labels, tuple(sorted(zipped))
    )


def read_file_metadata(path: str | os.PathLike[str]) -> FileMetadata | None:
    """`read_metadata` of a .tflite file on disk (None when it carries no metadata).

    Raises:
        ModelFileError: the file cannot be read, or its metadata is damaged.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ModelFileError(
            f"cannot read {p} ({e.strerror or e}): pass the path of a .tflite file"
        ) from None
    return read_metadata(data, str(p))


def parse_labels(raw: bytes, label: str = "model") -> tuple[str, ...]:
    """Class names of a labels file: UTF-8, one a line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelFileError(
            f"{label}: its {LABELS_FILE} is not UTF-8 text ({_shown(str(e), 200)})"
        ) from None
    lines = text.split("\n")  # "\n" alone: a class name may hold any other character
    if lines and lines[-1] == "":
        lines.pop()
    return tuple(line.removesuffix("\r") for line in lines)


def file_labels(data: bytes, label: str = "model") -> tuple[str, ...]:
    """The class names a file carries in its metadata, () when it carries none.

    Raises:
        ModelFileError: the metadata is damaged.
    """
    meta = read_metadata(data, label)
    return meta.labels if meta else ()


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else (value or "")


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in (values if values is not None else ()))


def _tensor(t: Any) -> TensorMetadata:
    _, md = _schemas()
    content = ""
    if t.content is not None:
        kind = t.content.contentPropertiesType
        if kind == md.ContentProperties.ImageProperties:
            space = _names(md.ColorSpaceType).get(t.content.contentProperties.colorSpace, "?")
            content = f"image ({space})"
        elif kind == md.ContentProperties.FeatureProperties:
            content = "feature"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    for unit in t.processUnits or []:
        if unit.optionsType == md.ProcessUnitOptions.NormalizationOptions:
            mean, std = _floats(unit.options.mean), _floats(unit.options.std)
    stats = t.stats
    return TensorMetadata(
        name=_text(t.name),
        description=_text(t.description),
        content=content,
        mean=mean,
        std=std,
        min=_floats(stats.min) if stats is not None else (),
        max=_floats(stats.max) if stats is not None else (),
        files=tuple(_text(f.name) for f in t.associatedFiles or []),
    )
