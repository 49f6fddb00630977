"""`edgekit export --mc-samples` and bench's uncertainty report, end to end on a small slice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_edgekit

SLICE = (
    "--train-samples",
    "3000",
    "--test-samples",
    "1000",
    "--validation-size",
    "500",
    "--epochs",
    "3",
    "--prune-epochs",
    "2",
    "--seed",
    "7",
)


@pytest.mark.heavy
@pytest.mark.slow
def test_mc_export_writes_named_outputs_and_bench_reports_calibration(tmp_path: Path) -> None:
    from edgekit.core.config import DataConfig
    from edgekit.core.data import load_dataset
    from edgekit.device.mc import predict_mc
    from edgekit.device.outputs import MC_OUTPUTS

    out = tmp_path / "out"
    r = run_edgekit(
        "export",
        "-o",
        str(out),
        "--mc-samples",
        "10",
        "--dropout",
        "0.2",
        "--max-accuracy-drop",
        "3",
        "-q",
        *SLICE,
    )
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["file"]: f for f in manifest["files"]}
    for precision in ("float32", "int8"):
        rec = files[f"fashion_mnist_mlp_sp80_mc10_{precision}.tflite"]
        assert rec["variant"]["mc"] == {
            "samples": 10,
            "masks": "fixed",
            "seed": 7,
            "outputs": list(MC_OUTPUTS),
        }
    data = load_dataset(
        DataConfig(train_samples=3000, test_samples=1000, validation_size=500, seed=7)
    )
    path = out / "fashion_mnist_mlp_sp80_mc10_int8.tflite"
    a = predict_mc(str(path), data.x_test[:200])
    b = predict_mc(str(path), data.x_test[:200])  # a fresh interpreter: fixed masks
    assert np.array_equal(a.mean, b.mean) and np.array_equal(a.entropy, b.entropy)
    # int8 softmax steps: the mean sums to 1 within a few 1/256 steps
    assert a.mean.shape == (200, 10) and np.allclose(a.mean.sum(1), 1, atol=0.01)
    assert (a.std > 0).any()
    bench = run_edgekit(
        "bench",
        str(out),
        "--min-runs",
        "20",
        "--min-time",
        "0.05",
        "--rounds",
        "1",
        "--json",
        str(tmp_path / "b.json"),
        "--no-save",
        "-q",
        "--samples",
        "1000",
    )
    assert bench.returncode == 0, bench.stderr
    rows = {r["file"]: r for r in json.loads((tmp_path / "b.json").read_text())["rows"]}
    u = rows["fashion_mnist_mlp_sp80_mc10_int8.tflite"]["uncertainty"]
    assert u["deterministic_file"] == "fashion_mnist_mlp_sp80_int8.tflite"
    assert u["mc_samples"] == 10 and 0 <= u["mc"]["ece"] <= 1 and u["mc"]["nll"] > 0
    assert [c["coverage"] for c in u["mc"]["risk_coverage"]] == [0.5, 0.8, 0.9, 1.0]
    assert rows["fashion_mnist_mlp_sp80_int8.tflite"]["uncertainty"] is None
    assert "MC dropout, 10 passes (fashion_mnist_mlp_sp80_mc10_int8.tflite)" in (
        bench.stdout.replace("\n", " ")
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mc-samples", "0"], "--mc-samples must be >= 1, got 0: e.g. 10 or 1,5,10,30"),
        (
            ["--mc-samples", "ten"],
            "--mc-samples must be whole numbers like 10 or 1,5,10,30, got 'ten'",
        ),
        (
            ["--mc-samples", "10"],
            "--mc-samples needs a model with Dropout layers, and this mlp "
            "has none: add --dropout 0.2 (or --alpha-dropout with --activation selu)",
        ),
    ],
)
def test_bad_mc_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    r = run_edgekit("export", "-o", str(tmp_path / "o"), *args)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"Error: {message}"]
