"""The `edgekit` command: end to end on a small slice, help, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import run_edgekit

from edgekit.cli.main import main

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
    "--seed",
    "7",
]


run = run_edgekit


def test_export_end_to_end_on_a_small_slice(tmp_path: Path) -> None:
    out = tmp_path / "art"
    proc = run("export", *SMALL, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    # Progress (stages, epochs) on stderr; the summary table on stdout.
    for stage in (
        "[data]",
        "[train]",
        "train epoch 3/3",
        "[prune]",
        "[fold batch norm]",
        "[export]",
        "verifying int8",
    ):
        assert stage in proc.stderr
    for precision in ("float32", "float16", "int8"):
        assert f"fashion_mnist_mlp_sp75_{precision}.tflite" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["precision"] for f in manifest["files"]] == ["float32", "float16", "int8"]
    assert "Traceback" not in proc.stderr
    # The time of every stage, on one line of the summary (wider than the terminal's 200).
    line = next(t for t in proc.stdout.splitlines() if t.startswith("seconds: "))
    steps = ["data", "import tensorflow", "train", "prune", "fold batch norm"]
    steps += [f"{s} {p}" for p in ("float32", "float16", "int8") for s in ("convert", "verify")]
    for step in [*steps, "save keras", "manifest"]:
        assert f" {step} " in line, step
    assert line.endswith(" s in all)")
    # The manifest records them all but its own write.
    assert list(manifest["stage_seconds"]) == [*steps, "save keras"]
    # A fresh process loads TensorFlow: that stage is measured, not 0.
    assert manifest["stage_seconds"]["import tensorflow"] > 0


def test_quiet_export_of_a_user_model_with_pruning(artifacts_dir: Path, tmp_path: Path) -> None:
    model = artifacts_dir / "fashion_mnist_mlp_sp75_folded.keras"
    out = tmp_path / "user"
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(model),
            "--prune",
            "--sparsity",
            "0.5",
            "--prune-epochs",
            "3",
            "--train-samples",
            "3000",
            "--test-samples",
            "1000",
            "--validation-size",
            "300",
            "--precision",
            "float32,int8",
            "-o",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["file"] for f in manifest["files"]] == [
        "fashion_mnist_mlp_sp75_folded_sp50_float32.tflite",
        "fashion_mnist_mlp_sp75_folded_sp50_int8.tflite",
    ]
    assert manifest["config"]["run"]["source_model"]["path"] == str(model)
    assert manifest["config"]["prune"]["target_sparsity"] == 0.5
    assert all(abs(f["weight_sparsity"] - 0.5) < 0.02 for f in manifest["files"])


def test_train_saves_a_loadable_model(tmp_path: Path) -> None:
    out = tmp_path / "m.keras"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--train-samples",
            "1000",
            "--test-samples",
            "100",
            "--validation-size",
            "200",
            "--hidden",
            "16",
            "--epochs",
            "1",
            "-o",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    from edgekit.workstation.export.model_io import load_keras_model

    assert load_keras_model(out).output_shape == (None, 10)


def test_help_lists_every_command_and_does_not_import_tensorflow() -> None:
    code = (
        "import sys; from edgekit.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "print('TF' if 'tensorflow' in sys.modules else 'NO-TF')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip().endswith("NO-TF"), proc.stdout + proc.stderr
    for command in ("export", "train", "bench", "inspect", "verify"):
        assert command in proc.stdout


@pytest.mark.parametrize(
    "command", ["export", "train", "bench", "inspect", "verify", "push", "devices"]
)
def test_every_command_has_help_and_is_in_the_cli_reference(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert len(result.output.splitlines()) > 5
    reference = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    assert f"## edgekit {command}\n" in reference


def _err(args: list[str]) -> tuple[int, str]:
    """Exit code and the last stderr line (progress lines may come before the error)."""
    result = CliRunner().invoke(main, args)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output
    return result.exit_code, lines[-1] if lines else ""


def test_sparsity_out_of_range(tmp_path: Path) -> None:
    code, out = _err(["export", "--sparsity", "1.0", "-o", str(tmp_path)])
    assert code == 1
    assert out == "Error: sparsity must be in [0, 1), got 1.0: e.g. 0.8 for 80% zeros"


def test_zero_epochs(tmp_path: Path) -> None:
    code, out = _err(["export", "--epochs", "0", "-o", str(tmp_path)])
    assert (code, out) == (1, "Error: epochs must be > 0, got 0: pass a positive number")


def test_unknown_precision(tmp_path: Path) -> None:
    code, out = _err(["export", "--precision", "float32,int3", "-o", str(tmp_path)])
    assert code == 1
    assert out == (
        "Error: unknown precision 'int3': expected one of float32, float16, int8, dynamic, "
        "int16x8, int4, int4_weight_only, int4_int8"
    )


def test_output_folder_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out = _err(["export", "-o", str(blocker / "sub")])
    assert code == 1 and "cannot create output folder" in out and "--output" in out


def test_missing_model_path(tmp_path: Path) -> None:
    code, out = _err(["export", str(tmp_path / "nope.keras"), "-o", str(tmp_path)])
    assert code == 1
    assert out.endswith("does not exist: pass the path of a .keras file")


def test_file_that_is_not_a_keras_model(tmp_path: Path) -> None:
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"not a zip at all")
    code, out = _err(["export", str(fake), "--test-samples", "10", "-o", str(tmp_path / "o")])
    assert code == 1 and "is not a Keras model edgekit can load" in out


def test_data_not_found(tmp_path: Path) -> None:
    code, out = _err(["export", "--data-dir", str(tmp_path / "none"), "-o", str(tmp_path)])
    assert code == 1 and out.startswith("Error: Fashion-MNIST not found: looked in")


def test_npz_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((5, 4)), y_train=np.zeros(5), x_test=np.zeros((2, 4)))
    code, out = _err(["export", "--data", str(path), "-o", str(tmp_path / "o")])
    assert code == 1 and "lacks key(s) y_test" in out


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--debug", "export", "--epochs", "0", "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert "Traceback" in result.output or "Traceback" in (result.stderr or "")
