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
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and {"file", "sha256", "bytes"} <= f.keys() for f in files
    ):
        raise ManifestError(f"{path}: 'files' must be a list of records with file, sha256, bytes")
    return manifest


def check_file_against_record(folder: Path, record: dict[str, Any]) -> list[str]:
    """Problems (empty if none) between one manifest record and the file on disk."""
    name = str(record["file"])
    if Path(name).name != name:
        return [f"{name}: manifest names a file outside its folder"]
    path = folder / name
    if not path.is_file():
        return [f"{name}: listed in the manifest but missing"]
    data = path.read_bytes()
    problems = []
    if len(data) != int(record["bytes"]):
        problems.append(f"{name}: {len(data)} bytes, manifest says {record['bytes']}")
    if sha256_bytes(data) != record["sha256"]:
        problems.append(f"{name}: sha256 differs from the manifest (file changed or damaged)")
    return problems
