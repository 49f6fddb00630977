"""Check a folder of .tflite files against its manifest.json, on the device after a copy.

For every file: size and sha256 against the manifest, inputs and outputs (shape, dtype,
quantization) against the manifest's record, its TFLite metadata (labels, input scale) against
the manifest's, then a load and one inference in a child process, so a file that crashes the
runtime is reported, not fatal. .tflite files the manifest does not list are flagged too.
Never imports TensorFlow.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.core.errors import ModelFileError, RuntimeMissingError
from edgekit.core.io.console import Progress
from edgekit.device.manifest import (
    MANIFEST_NAME,
    FileRecord,
    Manifest,
    TensorRecord,
    file_problems,
    read_manifest,
)
from edgekit.device.modelfile import ModelFile, TensorSummary, read_model_file
from edgekit.device.runtime import get_runtime
from edgekit.device.worker import ChildError, ChildProcess

DEFAULT_VERIFY_TIMEOUT_S = 120.0
# Order of severity: a file's status is the worst problem it has.
STATUSES = ("ok", "unlisted", "mismatch", "damaged", "failed", "missing")


@dataclass
class FileCheck:
    """The verdict on one file."""

    file: str
    status: str = "ok"
    problems: list[str] = field(default_factory=list)
    load_ms: float | None = None
    first_inference_us: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def add(self, status: str, problem: str) -> None:
        self.problems.append(problem)
        if STATUSES.index(status) > STATUSES.index(self.status):
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class VerifyResult:
    folder: str
    manifest: str
    runtime: str | None
    files: list[FileCheck]
    ran: bool = True  # .tflite files were loaded and run once

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "edgekit-verify/1",
            "folder": self.folder,
            "manifest": self.manifest,
            "runtime": self.runtime,
            "ran": self.ran,
            "ok": self.ok,
            "files": [f.to_dict() for f in self.files],
        }


def _same_scale(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def interface_problems(parsed: ModelFile, record: FileRecord) -> list[str]:
    """Differences between the file's inputs/outputs and those the manifest recorded."""
    problems = []
    for kind, actual, expected in (
        ("input", parsed.inputs, record.inputs),
        ("output", parsed.outputs, record.outputs),
    ):
        if expected is None:
            continue
        if len(expected) != len(actual):
            problems.append(f"{len(actual)} {kind}(s), manifest says {len(expected)}")
            continue
        for i, (want, have) in enumerate(zip(expected, actual, strict=True)):
            problems += _tensor_problems(f"{kind} {i}", want, have)
    return problems


def _tensor_problems(what: str, want: TensorRecord, have: TensorSummary) -> list[str]:
    out = []
    if want.shape and list(want.shape) != list(have.shape):
        out.append(f"{what} shape {list(have.shape)}, manifest says {list(want.shape)}")
    if want.dtype and want.dtype != have.dtype:
        out.append(f"{what} dtype {have.dtype}, manifest says {want.dtype}")
    if want.first_scale != 0.0:
        scale = have.scale[0] if have.scale else 0.0
        zp = have.zero_point[0] if have.zero_point else 0
        if not _same_scale(scale, want.first_scale) or zp != want.first_zero_point:
            out.append(
                f"{what} quantization (scale {scale:.6g}, zero point {zp}) differs from the "
                f"manifest's (scale {want.first_scale:.6g}, zero point {want.first_zero_point})"
            )
    return out


def metadata_problems(parsed: ModelFile, manifest: Manifest) -> list[str]:
    """Where the labels or input scale of the file's TFLite metadata differ from the
    manifest's (damaged metadata already failed the parse). A file without metadata (written
    before edgekit wrote it) has none."""
    meta = parsed.metadata
    if meta is None:
        return []
    out = []
    if manifest.labels and meta.labels != manifest.labels:
        out.append(
            f"labels in the file ({', '.join(meta.labels)}) differ from the manifest's "
            f"({', '.join(manifest.labels)})"
        )
    spec, want = meta.preprocessing(), manifest.input
    if spec and want.get("raw_dtype") == "uint8" and "scale" in want:
        scale, offset = float(want["scale"]), float(want.get("offset") or 0.0)
        if not (
            math.isclose(spec["scale"], scale, rel_tol=1e-6)
            and math.isclose(spec["offset"], offset, abs_tol=1e-6)
        ):
            out.append(
                f"input normalization in the file (scale {spec['scale']:.6g}, offset "
                f"{spec['offset']:g}) differs from the manifest's (scale {scale:.6g}, "
                f"offset {offset:g})"
            )
    return out


def _run_once(path: Path, runtime: str, timeout_s: float, check: FileCheck) -> str | None:
    """Load `path` and run one inference in a child process; returns the runtime used."""
    try:
        child = ChildProcess()
    except OSError as e:
        check.add("failed", f"cannot start a process to load it: {e}")
        return None
    try:
        ans = child.request(
            {"cmd": "load", "path": str(path.resolve()), "threads": 1, "runtime": runtime},
            timeout_s,
        )
    except ChildError as e:
        check.add("failed", f"does not load and run: {e}")
        return None
    finally:
        child.close()
    check.load_ms = ans["load_ns"] / 1e6
    check.first_inference_us = ans["first_inference_ns"] / 1e3
    if not ans.get("outputs_finite", True):
        check.add("failed", "one inference returned NaN or infinite outputs")
    rt = ans.get("runtime") or {}
    return f"{rt.get('name')} {rt.get('version')}"


def verify_dir(
    folder: str | os.PathLike[str],
    runtime: str = "auto",
    run: bool = True,
    timeout_s: float = DEFAULT_VERIFY_TIMEOUT_S,
    progress: Progress | None = None,
) -> VerifyResult:
    """Check every file of `folder`'s manifest, and flag .tflite files it does not list.

    Raises:
        ManifestError: the manifest is missing or malformed (nothing can be checked).
    """
    say = progress or (lambda _msg: None)
    root = Path(folder)
    manifest = read_manifest(root)
    if run:
        try:
            get_runtime(runtime)  # missing: one clear line, never a "damaged" file per row
        except RuntimeMissingError as e:
            raise RuntimeMissingError(
                f"{e}; or pass --no-run to check sizes and hashes only"
            ) from None
    checks: list[FileCheck] = []
    used_runtime: str | None = None
    listed: set[str] = set()
    for record in manifest.files:
        name = record.file
        listed.add(name)
        check = FileCheck(name)
        checks.append(check)
        say(f"checking {name}")
        for status, problem in file_problems(root, record):
            check.add(status, problem)
        if check.status == "missing":
            continue
        path = root / name
        try:
            parsed = read_model_file(path)
        except ModelFileError as e:
            check.add("damaged", str(e))
        else:
            for problem in interface_problems(parsed, record):
                check.add("mismatch", problem)
            for problem in metadata_problems(parsed, manifest):
                check.add("mismatch", problem)
        if run:
            used_runtime = _run_once(path, runtime, timeout_s, check) or used_runtime
    keras = manifest.keras_model
    # The Keras model is optional on a device: checked when it was copied, never required.
    if keras is not None and (root / Path(keras.file).name).is_file():
        check = FileCheck(keras.file)
        for status, problem in file_problems(root, keras):
            check.add(status, problem)
        checks.append(check)
    for path in sorted(root.glob("*.tflite")):
        if path.name not in listed:
            check = FileCheck(path.name)
            check.add("unlisted", f"not in {MANIFEST_NAME}: re-export, or remove the stray file")
            checks.append(check)
    return VerifyResult(str(root), str(root / MANIFEST_NAME), used_runtime, checks, run)
