"""manifest.json: what each exported file is, so a device can check a copy. No TensorFlow."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgekit.errors import ManifestError
from edgekit.tflite_file import sha256_bytes

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "edgekit-manifest/1"


def read_manifest(folder_or_file: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and shape-check a manifest (a folder means its manifest.json)."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(
            f"{path} does not exist: run `edgekit export` to write the files and their manifest"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e}): re-export or re-copy it") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(
            f'{path} is not an edgekit manifest (expected "format": "{MANIFEST_FORMAT}")'
        )
    files = manifest.get("files")
    if not isinstance(files, list) or not all(_valid_record(f) for f in files):
        raise ManifestError(
            f"{path}: 'files' must be a list of records with a file name, a sha256 (64 hex "
            "digits) and a byte count: re-export or re-copy the manifest"
        )
    keras = manifest.get("keras_model")
    if keras is not None and not _valid_record(keras):
        raise ManifestError(
            f"{path}: 'keras_model' must be a record with a file name, a sha256 and a byte "
            "count: re-export or re-copy the manifest"
        )
    for record in files:
        for kind in ("inputs", "outputs"):
            tensors = record.get(kind)
            if tensors is not None and not (
                isinstance(tensors, list) and all(_valid_tensor(t) for t in tensors)
            ):
                raise ManifestError(
                    f"{path}: {record['file']}: '{kind}' must list tensors with an integer "
                    "shape, a dtype name and numeric quantization: re-export or re-copy it"
                )
    return manifest


def _valid_record(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("file"), str)
        and isinstance(record.get("sha256"), str)
        and len(record["sha256"]) == 64
        and all(c in "0123456789abcdef" for c in record["sha256"])
        and type(record.get("bytes")) is int
        and record["bytes"] >= 0
    )


def _valid_tensor(tensor: Any) -> bool:
    if not isinstance(tensor, dict):
        return False
    shape, dtype, q = tensor.get("shape"), tensor.get("dtype"), tensor.get("quantization")
    return (
        (shape is None or (isinstance(shape, list) and all(type(d) is int for d in shape)))
        and (dtype is None or isinstance(dtype, str))
        and (
            q is None
            or (
                isinstance(q, dict)
                and all(type(q.get(k)) in (int, float, type(None)) for k in ("scale", "zero_point"))
            )
        )
    )


def check_file_against_record(folder: Path, record: dict[str, Any]) -> list[str]:
    """Problems (empty if none) between one manifest record and the file on disk."""
    return [f"{record['file']}: {message}" for _, message in file_problems(folder, record)]


def file_problems(folder: Path, record: dict[str, Any]) -> list[tuple[str, str]]:
    """(status, message) pairs between a manifest record and the file on disk.

    status is "missing" (no such file in the folder, or a name outside it) or "mismatch".
    """
    name = str(record["file"])
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
    if len(data) != int(record["bytes"]):
        problems.append(("mismatch", f"{len(data)} bytes, manifest says {record['bytes']}"))
    if sha256_bytes(data) != record["sha256"]:
        problems.append(("mismatch", "sha256 differs from the manifest (file changed or damaged)"))
    return problems
