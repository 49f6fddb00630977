"""Same seed, data and versions: byte-identical files. A different seed: different files.

Three real `edgekit export` runs (train -> prune -> fold -> export) on a small slice, each in
its own process, run side by side: two with one seed, one with another.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SMALL = [
    "--train-samples",
    "3000",
    "--test-samples",
    "1000",
    "--validation-size",
    "500",
    "--hidden",
    "64,32",
    "--epochs",
    "3",
    "--prune-epochs",
    "2",
    "--batch-size",
    "64",
    "--sparsity",
    "0.75",
    "--calibration-samples",
    "100",
    "--quiet",
]


def _listed(manifest: dict[str, Any]) -> dict[str, str]:
    """file -> sha256 of every file the manifest lists (the .tflite files and the .keras)."""
    records = [*manifest["files"], manifest["keras_model"]]
    return {r["file"]: r["sha256"] for r in records}


@pytest.mark.heavy
def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    runs = {"first": 7, "second": 7, "other_seed": 8}
    procs = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgekit.cli.main",
                "export",
                *SMALL,
                "--seed",
                str(seed),
                "-o",
                str(tmp_path / name),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        for name, seed in runs.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err}"

    manifests = {n: json.loads((tmp_path / n / "manifest.json").read_text()) for n in runs}
    sha = {n: _listed(m) for n, m in manifests.items()}
    # The manifest tells the truth about the bytes on disk.
    for name, files in sha.items():
        for file, digest in files.items():
            assert hashlib.sha256((tmp_path / name / file).read_bytes()).hexdigest() == digest

    first, second, other = sha["first"], sha["second"], sha["other_seed"]
    assert len(first) == 4 and first == second
    # The manifests differ only in the output folder they were told to use, and in how long
    # each stage took (the same stages).
    for m in manifests.values():
        m["config"].pop("output_dir")
    times = [list(m.pop("stage_seconds")) for m in manifests.values()]
    assert times[0] == times[1] == times[2]
    assert manifests["first"] == manifests["second"]

    assert sorted(other) == sorted(first)  # same names: the seed is not in them
    assert all(other[f] != first[f] for f in first)
