"""manifest.json as typed records: what each exported file is, so a device can check a copy.

`Manifest.from_dict` is the one place a manifest is validated; `to_dict` writes the JSON
form. Format `edgekit-manifest/2` adds the export machine and a fingerprint of the test data
to version 1, which is still read. No TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from edgekit import __version__
from edgekit.core.data.dataset import InputSpec
from edgekit.core.errors import ManifestError
from edgekit.device.modelfile import sha256_bytes

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_NAME = "edgekit-manifest"
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_FORMAT = f"{MANIFEST_FORMAT_NAME}/{MANIFEST_VERSION}"

_HEX = frozenset("0123456789abcdef")


class _Invalid(Exception):
    """A field that does not fit; turned into one ManifestError naming the manifest."""


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise _Invalid(what)


def _number(value: Any) -> bool:
    """A finite JSON number (bools are not numbers here)."""
    return type(value) in (int, float) and math.isfinite(value)


def _opt_number(value: Any) -> bool:
    return value is None or _number(value)


def _opt_fraction(value: Any) -> bool:
    return value is None or (_number(value) and 0.0 <= value <= 1.0)


def _count(value: object) -> bool:
    return type(value) is int and value >= 0


def _got(value: object) -> str:
    return f"got {json.dumps(value)[:40]}"


def _str_dict(value: Any, what: str) -> dict[str, Any]:
    _need(value is None or isinstance(value, dict), f"'{what}' must be an object")
    return dict(value or {})


@dataclass(frozen=True)
class TensorRecord:
    """An input or output tensor: name, shape, dtype and (for quantized ones) scale/zero point.

    `scale`/`zero_point` are numbers for per-tensor quantization, tuples for per-channel, and
    None for a float tensor.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | tuple[float, ...] | None = None
    zero_point: int | tuple[int, ...] | None = None

    @classmethod
    def from_summary(cls, t: Any) -> TensorRecord:
        """From a `modelfile.TensorSummary` (what the file itself holds)."""
        scale = zp = None
        if t.scale:
            scale = float(t.scale[0]) if len(t.scale) == 1 else tuple(float(s) for s in t.scale)
            zps = tuple(int(z) for z in t.zero_point) or (0,) * len(t.scale)
            zp = zps[0] if len(zps) == 1 else zps
        return cls(t.name, tuple(int(d) for d in t.shape), t.dtype, scale, zp)

    def to_dict(self) -> dict[str, Any]:
        quant: dict[str, Any] = {}
        if self.scale is not None:
            quant = {
                "scale": list(self.scale) if isinstance(self.scale, tuple) else self.scale,
                "zero_point": (
                    list(self.zero_point) if isinstance(self.zero_point, tuple) else self.zero_point
                ),
            }
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "quantization": quant,
        }

    # Long but flat: one type check per field, each its own one-line error.
    @classmethod
    def from_dict(cls, d: Any) -> TensorRecord:
        _need(isinstance(d, dict), f"a tensor must be an object, {_got(d)}")
        shape, dtype = d.get("shape"), d.get("dtype")
        _need(
            isinstance(shape, list) and all(_count(x) for x in shape),
            f"a tensor shape must be a list of sizes, {_got(shape)}",
        )
        _need(
            isinstance(dtype, str) and dtype != "", f"a tensor dtype must be a name, {_got(dtype)}"
        )
        q = d.get("quantization") or {}
        _need(isinstance(q, dict), f"a tensor's quantization must be an object, {_got(q)}")
        scale, zp = q.get("scale"), q.get("zero_point")
        scales = scale if isinstance(scale, list) else [scale] if scale is not None else []
        zps = zp if isinstance(zp, list) else [zp] if zp is not None else []
        _need(all(_number(v) and v >= 0 for v in scales), f"bad quantization scale, {_got(scale)}")
        _need(all(type(z) is int for z in zps), f"zero points must be integers, {_got(zp)}")
        if not any(scales):  # 0.0 or absent: not quantized
            return cls(str(d.get("name", "")), tuple(shape), dtype)
        _need(len(zps) in (1, len(scales)), f"one zero point per scale, {_got(zp)}")
        return cls(
            str(d.get("name", "")),
            tuple(shape),
            dtype,
            float(scales[0]) if len(scales) == 1 else tuple(float(v) for v in scales),
            zps[0] if len(zps) == 1 else tuple(zps),
        )

    @property
    def first_scale(self) -> float:
        return (self.scale[0] if isinstance(self.scale, tuple) else self.scale) or 0.0

    @property
    def first_zero_point(self) -> int:
        zp = self.zero_point
        return (zp[0] if isinstance(zp, tuple) and zp else zp if isinstance(zp, int) else 0) or 0


@dataclass(frozen=True)
class ExportCheck:
    """What export measured on a file before writing it (with the runtime and CPU it used)."""

    accuracy: float
    samples: int
    top1_agreement_with_keras: float | None = None
    max_abs_diff_vs_keras: float | None = None
    runtime: str | None = None
    min_agreement: float | None = None
    threads: int | None = None
    xnnpack: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, d: Any) -> ExportCheck:
        _need(isinstance(d, dict), f"'accuracy' must be an object, {_got(d)}")
        _need(
            _opt_fraction(d.get("accuracy")) and d.get("accuracy") is not None,
            f"'accuracy.accuracy' must be a fraction in [0, 1], {_got(d.get('accuracy'))}",
        )
        _need(
            _count(d.get("samples")),
            f"'accuracy.samples' must be a count, {_got(d.get('samples'))}",
        )
        for key in ("top1_agreement_with_keras", "min_agreement"):
            _need(
                _opt_fraction(d.get(key)), f"'accuracy.{key}' must be in [0, 1], {_got(d.get(key))}"
            )
        _need(
            _opt_number(d.get("max_abs_diff_vs_keras")),
            "'accuracy.max_abs_diff_vs_keras' must be a number",
        )
        _need(
            d.get("runtime") is None or isinstance(d["runtime"], str),
            f"'accuracy.runtime' must be a name, {_got(d.get('runtime'))}",
        )
        _need(
            d.get("threads") is None or (_count(d["threads"]) and d["threads"] > 0),
            f"'accuracy.threads' must be a count, {_got(d.get('threads'))}",
        )
        _need(
            d.get("xnnpack") in (None, True, False),
            f"'accuracy.xnnpack' must be true or false, {_got(d.get('xnnpack'))}",
        )
        return cls(
            float(d["accuracy"]),
            int(d["samples"]),
            d.get("top1_agreement_with_keras"),
            d.get("max_abs_diff_vs_keras"),
            d.get("runtime"),
            d.get("min_agreement"),
            d.get("threads"),
            d.get("xnnpack"),
        )


@dataclass(frozen=True)
class FileRecord:
    """One file of an export: its name, sha256 and size, and for .tflite files what it holds."""

    file: str
    sha256: str
    bytes: int
    precision: str | None = None
    gzip_bytes: int | None = None
    inputs: tuple[TensorRecord, ...] | None = None
    outputs: tuple[TensorRecord, ...] | None = None
    weight_sparsity: float | None = None
    operators: dict[str, int] = field(default_factory=dict)
    accuracy: ExportCheck | None = None
    # How the file was made: tag, engine, description, float layers, accuracy drop in points.
    variant: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"file": self.file}
        if self.precision is not None:
            d["precision"] = self.precision
        d |= {"sha256": self.sha256, "bytes": self.bytes}
        optional = {
            "gzip_bytes": self.gzip_bytes,
            "inputs": None if self.inputs is None else [t.to_dict() for t in self.inputs],
            "outputs": None if self.outputs is None else [t.to_dict() for t in self.outputs],
            "weight_sparsity": self.weight_sparsity,
            "operators": self.operators or None,
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "variant": self.variant or None,
        }
        return d | {k: v for k, v in optional.items() if v is not None}

    @classmethod
    def from_dict(cls, d: Any) -> FileRecord:
        _need(isinstance(d, dict), f"a file record must be an object, {_got(d)}")
        _need(
            isinstance(d.get("file"), str) and d["file"] != "",
            f"a record needs a 'file' name, {_got(d.get('file'))}",
        )
        name = d["file"]
        sha = d.get("sha256")
        _need(
            isinstance(sha, str) and len(sha) == 64 and set(sha) <= _HEX,
            f"{name}: 'sha256' must be 64 lowercase hex digits, {_got(sha)}",
        )
        _need(
            _count(d.get("bytes")), f"{name}: 'bytes' must be a count >= 0, {_got(d.get('bytes'))}"
        )
        _need(
            d.get("precision") is None or isinstance(d["precision"], str),
            f"{name}: 'precision' must be a name, {_got(d.get('precision'))}",
        )
        _need(
            d.get("gzip_bytes") is None or _count(d["gzip_bytes"]),
            f"{name}: 'gzip_bytes' must be a count >= 0, {_got(d.get('gzip_bytes'))}",
        )
        _need(
            _opt_fraction(d.get("weight_sparsity")),
            f"{name}: 'weight_sparsity' must be in [0, 1], {_got(d.get('weight_sparsity'))}",
        )
        tensors: dict[str, tuple[TensorRecord, ...] | None] = {}
        for kind in ("inputs", "outputs"):
            value = d.get(kind)
            _need(value is None or isinstance(value, list), f"{name}: '{kind}' must be a list")
            try:
                tensors[kind] = None if value is None else tuple(map(TensorRecord.from_dict, value))
            except _Invalid as e:
                raise _Invalid(
                    f"{name}: '{kind}' must list tensors with an integer shape, a dtype name and "
                    f"numeric quantization ({e})"
                ) from None
        ops = d.get("operators") or {}
        _need(
            isinstance(ops, dict) and all(_count(v) for v in ops.values()),
            f"{name}: 'operators' must map operator names to counts",
        )
        acc = d.get("accuracy")
        try:
            check = None if acc is None else ExportCheck.from_dict(acc)
        except _Invalid as e:
            raise _Invalid(f"{name}: {e}") from None
        return cls(
            file=name,
            sha256=sha,
            bytes=d["bytes"],
            precision=d.get("precision"),
            gzip_bytes=d.get("gzip_bytes"),
            inputs=tensors["inputs"],
            outputs=tensors["outputs"],
            weight_sparsity=d.get("weight_sparsity"),
            operators=dict(ops),
            accuracy=check,
            variant=_str_dict(d.get("variant"), f"{name}: variant"),
        )


@dataclass(frozen=True)
class Manifest:
    """An export: its files, the data and machine they were checked on, and the versions."""

    files: tuple[FileRecord, ...]
    labels: tuple[str, ...] = ()
    dataset: dict[str, Any] = field(default_factory=dict)
    keras_accuracy: float | None = None
    keras_model: FileRecord | None = None
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    # How raw samples become the files' input: shape, raw dtype, scale, offset (and for
    # image folders: decoding and resizing), so a device feeds them as the workstation did.
    input: InputSpec = field(default_factory=lambda: InputSpec())
    # The accuracy budget, the recommended file and the variants measured but not written.
    selection: dict[str, Any] = field(default_factory=dict)
    # Wall seconds of each stage of the run that wrote it (data, TF import, train, prune, fold,
    # each conversion and verification), in order; empty in manifests before them.
    stage_seconds: dict[str, float] = field(default_factory=dict)
    edgekit_version: str = __version__
    format_version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        dup = _duplicate([f.file for f in self.files])
        if dup is not None:
            raise ManifestError(f"a manifest lists {dup!r} twice: list each file once")

    def record(self, file_name: str) -> FileRecord | None:
        return next((f for f in self.files if f.file == file_name), None)

    @property
    def recommended(self) -> str | None:
        """The smallest file within the accuracy budget (None for manifests before it)."""
        name = self.selection.get("recommended")
        return name if isinstance(name, str) and self.record(name) is not None else None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": f"{MANIFEST_FORMAT_NAME}/{self.format_version}",
            "edgekit_version": self.edgekit_version,
            "versions": self.versions,
            "machine": self.machine,
            "dataset": self.dataset,
            "labels": list(self.labels),
            "input": self.input,
            "keras_accuracy": self.keras_accuracy,
            "config": self.config,
            "files": [f.to_dict() for f in self.files],
        }
        if self.keras_model is not None:
            d["keras_model"] = self.keras_model.to_dict()
        if self.selection:
            d["selection"] = self.selection
        if self.stage_seconds:
            d["stage_seconds"] = self.stage_seconds
        return d

    # One flat check per field of the manifest, in the order of the format: long, not deep.
    @classmethod
    def from_dict(cls, d: Any, source: str = "manifest") -> Manifest:
        """Validate and type a manifest's JSON form.

        Raises:
            ManifestError: not an edgekit manifest, a newer format, or a malformed field.
        """
        fmt = d.get("format") if isinstance(d, dict) else None
        name, _, version = str(fmt).partition("/")
        if name != MANIFEST_FORMAT_NAME or not (version.isascii() and version.isdigit()):
            raise ManifestError(
                f'{source} is not an edgekit manifest (expected "format": "{MANIFEST_FORMAT}")'
            )
        if int(version) < min(READABLE_VERSIONS):
            raise ManifestError(
                f"{source} has format {fmt}, which no edgekit wrote (the first is "
                f"{MANIFEST_FORMAT_NAME}/{min(READABLE_VERSIONS)}): re-export the files"
            )
        if int(version) not in READABLE_VERSIONS:
            raise ManifestError(
                f"{source} has format {fmt}, newer than this edgekit {__version__} reads "
                f"(up to {MANIFEST_FORMAT}): upgrade edgekit with `pip install -U edgekit`"
            )
        try:
            files = d.get("files")
            _need(isinstance(files, list), f"'files' must be a list of records, {_got(files)}")
            keras = d.get("keras_model")
            labels = d.get("labels") or []
            _need(
                isinstance(labels, list) and all(isinstance(v, str) for v in labels),
                f"'labels' must be a list of class names, {_got(labels)}",
            )
            _need(_opt_fraction(d.get("keras_accuracy")), "'keras_accuracy' must be in [0, 1]")
            # Names of another type are refused, with their record, by FileRecord.from_dict.
            dup = _duplicate(
                [f["file"] for f in files if isinstance(f, dict) and isinstance(f.get("file"), str)]
            )
            _need(dup is None, f"{dup!r} is listed twice in 'files'")
            return cls(
                files=tuple(FileRecord.from_dict(f) for f in files),
                labels=tuple(labels),
                dataset=_str_dict(d.get("dataset"), "dataset"),
                keras_accuracy=d.get("keras_accuracy"),
                keras_model=None if keras is None else FileRecord.from_dict(keras),
                config=_config(d.get("config")),
                versions=_str_dict(d.get("versions"), "versions"),
                machine=_str_dict(d.get("machine"), "machine"),
                input=_input_spec(d.get("input")),
                selection=_selection(d.get("selection")),
                stage_seconds=_stage_seconds(d.get("stage_seconds")),
                edgekit_version=str(d.get("edgekit_version", "unknown")),
                format_version=int(version),
            )
        except _Invalid as e:
            raise ManifestError(f"{source}: {e}: re-export or re-copy the manifest") from None


def _input_spec(value: Any) -> InputSpec:
    spec = _str_dict(value, "input")
    raw_dtype = spec.get("raw_dtype")
    _need(
        raw_dtype is None or isinstance(raw_dtype, str),
        f"'input.raw_dtype' must be a dtype name, {_got(raw_dtype)}",
    )
    for key in ("scale", "offset"):
        _need(_opt_number(spec.get(key)), f"'input.{key}' must be a number, {_got(spec.get(key))}")
    shape = spec.get("shape")
    _need(
        shape is None or (isinstance(shape, list) and all(_count(d) for d in shape)),
        f"'input.shape' must be a list of sizes, {_got(shape)}",
    )
    return cast(InputSpec, spec)  # checked above; keys of later versions pass through


def _stage_seconds(value: Any) -> dict[str, float]:
    times = _str_dict(value, "stage_seconds")
    bad = [v for v in times.values() if not (_number(v) and v >= 0)]
    _need(not bad, f"'stage_seconds' must map stage names to seconds >= 0, {_got(bad[:1])}")
    return times


def _config(value: Any) -> dict[str, Any]:
    """The run's settings; bench reads the data split of image folders from `config.data`."""
    config = _str_dict(value, "config")
    data = _str_dict(config.get("data"), "config.data")
    split, seed = data.get("test_split"), data.get("seed")
    _need(
        split is None or (_number(split) and 0.0 < split < 1.0),
        f"'config.data.test_split' must be a fraction in (0, 1), {_got(split)}",
    )
    _need(
        seed is None or _count(seed),
        f"'config.data.seed' must be an integer >= 0, {_got(seed)}",
    )
    return config


def _selection(value: Any) -> dict[str, Any]:
    """The accuracy budget and the recommended file (bench prints both)."""
    selection = _str_dict(value, "selection")
    budget = selection.get("max_accuracy_drop_points")
    _need(
        _opt_number(budget),
        f"'selection.max_accuracy_drop_points' must be a number, {_got(budget)}",
    )
    name = selection.get("recommended")
    _need(
        name is None or isinstance(name, str),
        f"'selection.recommended' must be a file name, {_got(name)}",
    )
    return selection


def _duplicate(names: list[str]) -> str | None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            return n
        seen.add(n)
    return None


def read_manifest(folder_or_file: str | os.PathLike[str]) -> Manifest:
    """Load and validate a manifest (a folder means its manifest.json).

    Raises:
        ManifestError: the file is missing, not JSON, or not a valid manifest.

    Examples:
        >>> folder = "artifacts"  # doctest: +SKIP
        >>> manifest = read_manifest(folder)
        >>> manifest.labels[:3]
        ('T-shirt/top', 'Trouser', 'Pullover')
        >>> [f.file for f in manifest.files if f.precision == "int8"]
        ['fashion_mnist_mlp_sp80_int8.tflite', 'fashion_mnist_mlp_sp80_mc10_int8.tflite']
        >>> manifest.input["shape"]  # what a raw sample looks like (scale and offset too)
        [28, 28]
    """
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"{path} does not exist: run `edgekit export` to write the files and their manifest"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} cannot be read ({e}): re-export or re-copy it") from None
    except ValueError:  # a NUL character in the path
        raise ManifestError(
            f"{str(path)!r} is not a valid path (it holds a NUL character): pass the folder of "
            "an export"
        ) from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise ManifestError(
            f"{path} is nested too deeply to be a manifest: re-export or re-copy it"
        ) from None
    except ValueError as e:  # JSONDecodeError, or an integer of more than 4300 digits
        what = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise ManifestError(f"{path} is not valid JSON ({what}): re-export or re-copy it") from None
    return Manifest.from_dict(data, str(path))


def file_problems(folder: Path, record: FileRecord) -> list[tuple[str, str]]:
    """(status, message) pairs between a manifest record and the file on disk.

    status is "missing" (no such file in the folder, or a name outside it) or "mismatch".
    """
    name = record.file
    if Path(name).name != name:
        return [("missing", "manifest names a file outside its folder")]
    path = folder / name
    if not path.is_file():
        return [("missing", "listed in the manifest but missing")]
    try:
        data = path.read_bytes()
    except OSError as e:
        return [("missing", f"cannot be read ({e.strerror or e})")]
    problems = []
    if len(data) != record.bytes:
        problems.append(("mismatch", f"{len(data)} bytes, manifest says {record.bytes}"))
    if sha256_bytes(data) != record.sha256:
        problems.append(("mismatch", "sha256 differs from the manifest (file changed or damaged)"))
    return problems
