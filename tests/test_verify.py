"""`edgekit verify`: a copied folder checked against its manifest.json, as on a device."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgekit.cli.main import main
from edgekit.device.verify import verify_dir
from edgekit.device.worker import TEST_FAULT_ENV


@pytest.fixture()
def copy(artifacts_dir: Path, tmp_path: Path) -> Path:
    """The exported folder as copied to a device (writable)."""
    return Path(shutil.copytree(artifacts_dir, tmp_path / "device"))


def verify_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, ["verify", *args], env=env)


def tflite_names(folder: Path) -> list[str]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return [r["file"] for r in manifest["files"]]


def by_file(res: Any) -> dict[str, dict[str, Any]]:
    return {f["file"]: f for f in json.loads(res.stdout)["files"]}


def test_an_intact_copy_passes(copy: Path) -> None:
    res = verify_cli(str(copy))
    assert res.exit_code == 0, res.output
    for name in tflite_names(copy):
        assert name in res.stdout
    assert "match the manifest (.tflite files loaded and run once)" in res.stdout
    result = verify_dir(copy)
    assert result.ok and result.runtime and result.runtime.startswith("litert")
    runs = [f for f in result.files if f.file.endswith(".tflite")]
    assert len(runs) == 3
    assert all(f.load_ms and f.first_inference_us for f in runs)


def test_every_kind_of_damage_is_reported_and_exits_1(copy: Path) -> None:
    f32, f16, i8 = tflite_names(copy)
    data = bytearray((copy / f32).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, other sha256
    (copy / f32).write_bytes(bytes(data))
    (copy / f16).unlink()
    (copy / "stray.tflite").write_bytes((copy / i8).read_bytes())
    res = verify_cli(str(copy), "--json")
    assert res.exit_code == 1
    files = by_file(res)
    assert files[f32]["status"] == "mismatch"
    assert files[f32]["problems"] == ["sha256 differs from the manifest (file changed or damaged)"]
    assert files[f16]["status"] == "missing"
    assert files[f16]["problems"] == ["listed in the manifest but missing"]
    assert files["stray.tflite"]["status"] == "unlisted"
    assert files[i8]["status"] == "ok"
    assert json.loads(res.stdout)["ok"] is False
    assert res.stderr.strip().endswith(
        f"Error: 3 file(s) failed verification: {f32}, {f16}, stray.tflite"
    )


def test_a_truncated_file(copy: Path) -> None:
    f32 = tflite_names(copy)[0]
    full = (copy / f32).read_bytes()
    (copy / f32).write_bytes(full[: len(full) // 2])
    files = by_file(verify_cli(str(copy), "--json"))
    problems = " | ".join(files[f32]["problems"])
    assert files[f32]["status"] == "failed"  # the worst: the runtime refuses it
    assert f"{len(full) // 2} bytes, manifest says {len(full)}" in problems
    assert "is damaged: its flatbuffer cannot be parsed" in problems
    assert "does not load and run" in problems


def test_a_file_that_crashes_the_runtime_is_reported_not_fatal(copy: Path) -> None:
    f32, f16, i8 = tflite_names(copy)
    res = verify_cli(str(copy), "--json", env={TEST_FAULT_ENV: f"crash:{f16}"})
    assert res.exit_code == 1
    files = by_file(res)
    assert files[f16]["status"] == "failed"
    assert "crashed with SIGSEGV" in files[f16]["problems"][0]
    assert files[f32]["status"] == files[i8]["status"] == "ok"


def test_inputs_and_outputs_are_checked_against_the_manifest(copy: Path) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    rec = next(r for r in manifest["files"] if r["precision"] == "int8")
    rec["inputs"][0]["dtype"] = "uint8"
    rec["outputs"][0]["shape"] = [1, 12]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    files = by_file(verify_cli(str(copy), "--json", "--no-run"))
    assert files[rec["file"]]["status"] == "mismatch"
    assert files[rec["file"]]["problems"] == [
        "input 0 dtype int8, manifest says uint8",
        "output 0 shape [1, 10], manifest says [1, 12]",
    ]


def test_no_run_loads_nothing(copy: Path) -> None:
    res = verify_cli(str(copy), "--json", "--no-run", env={TEST_FAULT_ENV: "crash:.tflite"})
    assert res.exit_code == 0, res.output
    assert all(f["load_ms"] is None for f in by_file(res).values())


def test_a_folder_without_manifest(tmp_path: Path) -> None:
    res = verify_cli(str(tmp_path))
    assert res.exit_code == 1
    assert res.stderr.strip() == (
        f"Error: {tmp_path / 'manifest.json'} does not exist: run `edgekit export` to write "
        "the files and their manifest"
    )
