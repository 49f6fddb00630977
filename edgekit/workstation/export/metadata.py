"""The last step of every converted file: output 0 first, TFLite Model Metadata, labels.txt.

`finish_tflite` puts the class probabilities at output 0 (`outputs.order_outputs`), writes TFLite
Model Metadata into the model's `metadata` vector under `TFLITE_METADATA` (name, description,
the input's normalization and pixel range, each output's name, the labels file on the class
outputs) and zips `labels.txt` onto the end of the flatbuffer, as tflite-support's writer does.
The file is then checked like any other (`export_tflite`): the manifest's size and sha256 are
those of these final bytes. `edgekit.device.metadata` reads it back.

tflite-support 0.4.4 (2023), the maintained writer, does not install beside TensorFlow 2.21 (it
pins protobuf<4, TensorFlow needs >= 6.31): the metadata schema is carried in
`edgekit.device.tflite_schema` instead. No TensorFlow here.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np

from edgekit import __version__
from edgekit.core.errors import ExportError, ModelFileError
from edgekit.device.metadata import (
    LABELS_FILE,
    METADATA_IDENTIFIER,
    METADATA_NAME,
    MIN_PARSER_VERSION,
    read_metadata,
)
from edgekit.device.outputs import MC_ENTROPY, MC_MEAN, MC_STD
from edgekit.device.tflite_schema import metadata_schema as md
from edgekit.device.tflite_schema import schema
from edgekit.workstation.export.flatbuffer import pack_model, unpack_model
from edgekit.workstation.export.outputs import order_outputs

# Fixed time stamp of the zipped labels file: the same model gives the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
PROBABILITIES = "probabilities"
_OUTPUT_TEXT = {
    PROBABILITIES: "class probabilities (softmax), one per label of labels.txt",
    MC_MEAN: "mean class probabilities over the dropout passes, one per label of labels.txt",
    MC_STD: "standard deviation of each class probability over the dropout passes",
    MC_ENTROPY: "predictive entropy of mc_mean, in nats (higher: less certain)",
}


@dataclass(frozen=True)
class FileAbout:
    """What every file of one export says about itself in its metadata.

    `mean`/`std`: the model's input is `(value - mean) / std`; `value_range`: the values fed in
    before that (uint8 pixels: 0..255), None for float data of no fixed range.
    """

    model_name: str
    dataset: str
    labels: tuple[str, ...]
    input_shape: tuple[int, ...]
    mean: float = 0.0
    std: float = 1.0
    value_range: tuple[float, float] | None = None

    @classmethod
    def from_data(cls, data: Any, stem: str) -> FileAbout:
        """From a `Dataset` (labels, input shape, preprocessing) and the files' stem."""
        spec = dict(data.preprocessing or {})
        scale, offset = float(spec.get("scale", 1.0)), float(spec.get("offset", 0.0))
        if scale == 0.0 or not math.isfinite(scale):
            raise ExportError(f"the data's input scale is {scale}: cannot describe the input")
        pixels = spec.get("raw_dtype") == "uint8"
        return cls(
            model_name=stem,
            dataset=str(data.name),
            labels=tuple(str(v) for v in data.labels),
            input_shape=tuple(int(d) for d in data.input_shape),
            mean=-offset / scale + 0.0,  # never -0.0
            std=1.0 / scale,
            value_range=(0.0, 255.0) if pixels else None,
        )


def finish_tflite(data: bytes, about: FileAbout, tag: str) -> bytes:
    """Converted .tflite bytes -> the file edgekit writes: output 0 the probabilities, TFLite
    Model Metadata, and labels.txt zipped onto the end.

    Args:
        tag: the file's variant (`int8`, `mc10_float32`, ...), named in the description.

    Raises:
        ExportError: the bytes are not a TFLite file, or a label cannot go into labels.txt.
    """
    model = unpack_model(data)
    names = order_outputs(model)
    sub = model.subgraphs[0]
    outputs = [_output_name(model, int(i), n) for i, n in zip(sub.outputs, names, strict=True)]
    shapes = [tuple(int(d) for d in sub.tensors[int(i)].shape) for i in sub.outputs]
    meta = metadata_for(about, tag, outputs, shapes, len(sub.inputs))
    set_metadata(model, meta)
    files = {LABELS_FILE: labels_text(about.labels)} if about.labels else {}
    finished = append_files(pack_model(model), files)
    try:  # read back as a device reads it
        back = read_metadata(finished, f"the {tag} file")
    except ModelFileError as e:
        raise ExportError(str(e)) from None
    if back is None or back.labels != about.labels or list(back.output_names) != outputs:
        raise ExportError(f"the {tag} file's metadata does not read back as it was written")
    return finished


def finish_variants(variants: Iterable[Any], data: Any, stem: str) -> None:
    """Make each variant's `build` return the finished file (`finish_tflite`)."""
    about = FileAbout.from_data(data, stem)
    labels_text(about.labels)  # a class name that cannot be a line fails the export at once
    for v in variants:
        v.build = _finishing(v.build, about, v.tag)


def _finishing(build: Any, about: FileAbout, tag: str) -> Any:
    def finished() -> bytes:
        return finish_tflite(build(), about, tag)

    return finished


def labels_text(labels: Sequence[str]) -> bytes:
    """labels.txt: one class name a line, UTF-8, in the order of the model's classes."""
    bad = [x for x in labels if "\n" in x or "\r" in x or not x.strip()]
    if bad:
        raise ExportError(
            f"class name {bad[0]!r} cannot be a line of {LABELS_FILE}: class names must be "
            "non-empty and hold no line break; rename the class"
        )
    return ("\n".join(labels) + "\n").encode("utf-8")


def _output_name(model: Any, tensor: int, name: str) -> str:
    """An MC output keeps its name; the one output of a classifier is `probabilities` when a
    SOFTMAX makes it."""
    if name in _OUTPUT_TEXT:
        return name
    sub = model.subgraphs[0]
    for op in sub.operators or []:
        if tensor in [int(t) for t in op.outputs]:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            if builtin == schema.BuiltinOperator.SOFTMAX:
                return PROBABILITIES
    return name


def metadata_for(
    about: FileAbout,
    tag: str,
    outputs: Sequence[str],
    output_shapes: Sequence[tuple[int, ...]],
    n_inputs: int = 1,
) -> Any:
    """The `ModelMetadataT` of one file (outputs in the file's order)."""
    classes = len(about.labels)
    meta = md.ModelMetadataT()
    meta.name = f"{about.model_name} {tag}"
    kind = f"{classes}-class classifier" if classes else "classifier"
    first = "the mean class probabilities (mc_mean)"
    meta.description = (
        f"{kind} for {about.dataset} ({tag}), written by edgekit {__version__}. Output 0 is "
        f"{first if MC_MEAN in outputs else 'the class probabilities'}; the class names are in "
        f"{LABELS_FILE}, in output order."
    )
    meta.author = "edgekit"
    meta.minParserVersion = MIN_PARSER_VERSION
    sub = md.SubGraphMetadataT()
    sub.name = about.model_name
    sub.inputTensorMetadata = [_input(about)] + [_plain(f"input_{i}") for i in range(1, n_inputs)]
    sub.outputTensorMetadata = [
        _output(name, shape, about) for name, shape in zip(outputs, output_shapes, strict=True)
    ]
    meta.subgraphMetadata = [sub]
    return meta


def _plain(name: str, description: str = "") -> Any:
    t = md.TensorMetadataT()
    t.name, t.description = name, description or None
    return t


def _input(about: FileAbout) -> Any:
    shape = about.input_shape
    image = len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3))
    what = "pixels" if about.value_range == (0.0, 255.0) else "values"
    span = (
        f"{what} {about.value_range[0]:g}..{about.value_range[1]:g}"
        if about.value_range
        else "float values"
    )
    t = _plain(
        "image" if image else "input",
        f"{span} of shape {list(shape)}, fed as (value - mean) / std with mean {about.mean:g} "
        f"and std {about.std:g} (quantized with the tensor's own scale and zero point when the "
        "input is int8)",
    )
    content = md.ContentT()
    if image:
        props = md.ImagePropertiesT()
        gray = len(shape) == 2 or shape[-1] == 1
        props.colorSpace = md.ColorSpaceType.GRAYSCALE if gray else md.ColorSpaceType.RGB
        content.contentPropertiesType = md.ContentProperties.ImageProperties
    else:
        props = md.FeaturePropertiesT()
        content.contentPropertiesType = md.ContentProperties.FeatureProperties
    content.contentProperties = props
    t.content = content
    norm = md.NormalizationOptionsT()
    norm.mean, norm.std = [float(about.mean)], [float(about.std)]
    unit = md.ProcessUnitT()
    unit.optionsType = md.ProcessUnitOptions.NormalizationOptions
    unit.options = norm
    t.processUnits = [unit]
    if about.value_range is not None:
        stats = md.StatsT()
        lo, hi = about.value_range
        stats.min = [(lo - about.mean) / about.std]
        stats.max = [(hi - about.mean) / about.std]
        t.stats = stats
    return t


def _output(name: str, shape: tuple[int, ...], about: FileAbout) -> Any:
    t = _plain(name, _OUTPUT_TEXT.get(name, "model output"))
    content = md.ContentT()
    content.contentPropertiesType = md.ContentProperties.FeatureProperties
    content.contentProperties = md.FeaturePropertiesT()
    t.content = content
    if name in (PROBABILITIES, MC_MEAN):
        stats = md.StatsT()
        stats.min, stats.max = [0.0], [1.0]
        t.stats = stats
    classes = len(about.labels)
    if classes and shape and shape[-1] == classes and name != MC_ENTROPY:
        f = md.AssociatedFileT()
        f.name = LABELS_FILE
        f.description = "class names, one a line, in the order of this output's classes"
        f.type = md.AssociatedFileType.TENSOR_AXIS_LABELS
        t.associatedFiles = [f]
    return t


def metadata_bytes(meta: Any) -> bytes:
    """A `ModelMetadataT` as a flatbuffer with the "M001" identifier."""
    builder = flatbuffers.Builder(1024)
    builder.Finish(meta.Pack(builder), file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


def set_metadata(model: Any, meta: Any) -> None:
    """Put `meta` into `model` (a `schema.ModelT`) under TFLITE_METADATA, replacing any."""
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata_bytes(meta), dtype=np.uint8)
    buffer.offset = buffer.size = 0
    model.buffers = list(model.buffers or [])
    model.metadata = list(model.metadata or [])
    for entry in model.metadata:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_NAME:
            model.buffers[entry.buffer] = buffer
            return
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers)
    model.buffers.append(buffer)
    model.metadata.append(entry)


def append_files(data: bytes, files: dict[str, bytes]) -> bytes:
    """The files zipped (stored, fixed date) onto the end of .tflite bytes."""
    if not files:
        return data
    if zipfile.is_zipfile(io.BytesIO(data)):  # appending would overwrite what looks like one
        raise ExportError(
            "the converted file ends in bytes that read as a zip archive: cannot append "
            f"{', '.join(files)}; export again (another --calibration-seed changes the bytes)"
        )
    out = io.BytesIO(data)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as z:
        for name, content in files.items():
            z.writestr(zipfile.ZipInfo(name, date_time=_ZIP_DATE), content)
    return out.getvalue()
