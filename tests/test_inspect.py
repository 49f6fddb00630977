"""`edgekit inspect`: what a .tflite file holds, read in Python from its flatbuffer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgekit.cli.main import main
from edgekit.core.config import PruneConfig


def inspect_cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["inspect", *args])


def record(folder: Path, precision: str) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return next(r for r in manifest["files"] if r["precision"] == precision)


@pytest.mark.parametrize("precision", ["float32", "float16", "int8"])
def test_inspect_json_matches_what_export_recorded(artifacts_dir: Path, precision: str) -> None:
    rec = record(artifacts_dir, precision)
    res = inspect_cli(str(artifacts_dir / rec["file"]), "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert (info["bytes"], info["gzip_bytes"], info["sha256"]) == (
        rec["bytes"],
        rec["gzip_bytes"],
        rec["sha256"],
    )
    assert info["operators"] == rec["operators"]
    assert info["weight_sparsity"] == pytest.approx(rec["weight_sparsity"], abs=1e-6)
    tensors = info["inputs"] + info["outputs"]
    for got, want in zip(tensors, rec["inputs"] + rec["outputs"], strict=True):
        assert (got["shape"], got["dtype"]) == (want["shape"], want["dtype"])
        if want["quantization"].get("scale"):
            assert got["quantization"]["scale"] == [pytest.approx(want["quantization"]["scale"])]
            assert got["quantization"]["zero_point"] == [want["quantization"]["zero_point"]]
        else:
            assert got["quantization"] is None
    # Per-tensor sparsity of every kernel: pruning left kernels smaller than min_weights
    # (PruneConfig, 512) dense, and put its zeros in each of the others.
    assert len(info["weights"]) >= 3
    pruned = [w for w in info["weights"] if w["elements"] >= PruneConfig().min_weights]
    assert len(pruned) >= 2
    for w in info["weights"]:
        assert w["zeros"] / w["elements"] == pytest.approx(w["sparsity"])
    for w in pruned:
        assert w["sparsity"] > 0.5
        assert w["dtype"] == {"float32": "float32", "float16": "float16", "int8": "int8"}[precision]


def test_inspect_table_shows_quantization_and_operators(artifacts_dir: Path) -> None:
    rec = record(artifacts_dir, "int8")
    res = inspect_cli(str(artifacts_dir / rec["file"]))
    assert res.exit_code == 0, res.output
    q = rec["inputs"][0]["quantization"]
    assert f"zero point {q['zero_point']}" in res.stdout
    assert "FULLY_CONNECTED" in res.stdout and "int8" in res.stdout
    assert f"{rec['bytes']:,} bytes" in res.stdout
    assert "Zeros %" in res.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty (0 bytes): re-export or re-copy it"),
        (b"PK\x03\x04 a zip, not a model", "is not a TensorFlow Lite flatbuffer"),
        (None, "is damaged: its flatbuffer cannot be parsed"),
    ],
)
def test_a_damaged_file_is_a_one_line_error_not_a_crash(
    artifacts_dir: Path, tmp_path: Path, content: bytes | None, message: str
) -> None:
    if content is None:  # truncated: the header is fine, the buffers are gone
        content = (artifacts_dir / record(artifacts_dir, "float32")["file"]).read_bytes()[:20000]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content)
    res = inspect_cli(str(bad))
    assert res.exit_code == 1
    assert res.stderr.startswith(f"Error: {bad} ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_inspect_of_a_missing_file(tmp_path: Path) -> None:
    res = inspect_cli(str(tmp_path / "nope.tflite"))
    assert res.exit_code == 1
    assert "nope.tflite does not exist: pass the path of a .tflite file" in res.stderr
