"""The accuracy budget: files that lose too much are reported and not written; the budget
search finds the smallest file within it. On a real self-normalizing MLP (SELU, LeCun normal,
784-300-100-10) whose plain int8 file loses many points (SELU's EXP in int8, see STACK.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_edgekit

from edgekit.core.config import DataConfig, ExportConfig
from edgekit.core.errors import ExportError

pytestmark = pytest.mark.slow

SELU_DATA = DataConfig(train_samples=12000, test_samples=2000, validation_size=1000, seed=3)
SELU_ARGS = (
    "--train-samples",
    "12000",
    "--test-samples",
    "2000",
    "--validation-size",
    "1000",
    "--seed",
    "3",
    "--calibration-samples",
    "300",
)


@pytest.fixture(scope="module")
def selu(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(model, data, path of its .keras file): 784-300-100-10 SELU trained 4 epochs."""
    from edgekit.core.data import load_dataset
    from edgekit.workstation._keras import keras, set_determinism

    set_determinism(3)
    data = load_dataset(SELU_DATA)
    init = keras.initializers.LecunNormal(seed=3)
    model = keras.Sequential(
        [
            keras.layers.Input(data.input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="selu", kernel_initializer=init),
            keras.layers.Dense(100, activation="selu", kernel_initializer=init),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Nadam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=4, batch_size=128, verbose=0)
    path = tmp_path_factory.mktemp("selu") / "selu.keras"
    model.save(path)
    return model, data, path


def test_file_outside_the_budget_is_reported_and_not_written(selu: Any, tmp_path: Path) -> None:
    from edgekit.device.manifest import read_manifest
    from edgekit.workstation.export import export_tflite

    model, data, _ = selu
    config = ExportConfig(precisions=("float32", "int8"), calibration_samples=300)
    result = export_tflite(model, data, config, tmp_path, "selu")
    assert [f.file for f in result.files] == ["selu_float32.tflite"]
    (int8,) = result.rejected
    assert int8.file == "selu_int8.tflite" and int8.requested
    # The premise: plain int8 of SELU loses >= 3 points here.
    assert int8.accuracy_drop_points is not None and int8.accuracy_drop_points >= 3
    assert "outside the accuracy budget" in int8.reason and "--max-accuracy-drop" in int8.reason
    assert not (tmp_path / "selu_int8.tflite").exists()
    manifest = read_manifest(tmp_path)
    assert [f.file for f in manifest.files] == ["selu_float32.tflite"]
    assert manifest.recommended == "selu_float32.tflite"
    (rej,) = manifest.selection["rejected"]
    assert rej["file"] == "selu_int8.tflite" and rej["bytes"] > 0
    assert rej["accuracy_drop_points"] == int8.accuracy_drop_points


def test_no_file_within_budget_says_by_how_much_and_writes_nothing(
    selu: Any, tmp_path: Path
) -> None:
    from edgekit.workstation.export import export_tflite

    model, data, _ = selu
    config = ExportConfig(precisions=("int8",), calibration_samples=300)
    with pytest.raises(
        ExportError,
        match=r"nothing written: the closest, selu_int8.tflite.*"
        r"points over",
    ):
        export_tflite(model, data, config, tmp_path / "out", "selu")
    assert not any((tmp_path / "out").iterdir())


def test_named_precision_left_out_exits_1_and_writes_the_others(selu: Any, tmp_path: Path) -> None:
    _, _, path = selu
    out = tmp_path / "out"
    r = run_edgekit(
        "export", str(path), "-o", str(out), "--precision", "float32,int8", "-q", *SELU_ARGS
    )
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: 1 file(s) asked for were not written: selu_int8.tflite:")
    assert "outside the accuracy budget" in last
    assert "selu_int8.tflite (not written)" in r.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["file"] for f in manifest["files"]] == ["selu_float32.tflite"]


@pytest.mark.heavy  # the search now fine-tunes on the int4 grid first (~25 s)
def test_budget_search_writes_a_recommended_file_smaller_than_float16(
    selu: Any, tmp_path: Path
) -> None:
    """Done-when of issue 9: --max-accuracy-drop 0.5 on the SELU MLP."""
    _, _, path = selu
    out = tmp_path / "out"
    r = run_edgekit(
        "export", str(path), "-o", str(out), "--max-accuracy-drop", "0.5", "-q", *SELU_ARGS
    )
    # Default precisions were not named: int8 left out is reported, not an error.
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["file"]: f for f in manifest["files"]}
    sel = manifest["selection"]
    assert sel["searched"] is True and sel["max_accuracy_drop_points"] == 0.5
    best = files[sel["recommended"]]
    float_acc = manifest["keras_accuracy"]
    assert float_acc - best["accuracy"]["accuracy"] <= 0.005 + 1e-9
    assert best["bytes"] < files["selu_float16.tflite"]["bytes"]
    assert "selu_int8.tflite" not in files
    assert f"recommended: {sel['recommended']}" in r.stdout
    # Every file listed is on disk with its hash; nothing else was written.
    on_disk = {p.name for p in out.glob("*.tflite")}
    assert on_disk == set(files)
    # bench names the recommended file in its verdict.
    b = run_edgekit(
        "bench",
        str(out),
        "--samples",
        "300",
        "--min-runs",
        "20",
        "--min-time",
        "0.05",
        "--rounds",
        "1",
        "--no-save",
        "-q",
    )
    assert b.returncode == 0, b.stderr
    assert f"Recommended by export: {sel['recommended']}, the smallest file within 0.5" in (
        b.stdout.replace("\n", " ")
    )


def test_quantize_report_names_the_selu_layers_first(selu: Any, tmp_path: Path) -> None:
    _, _, path = selu
    r = run_edgekit(
        "quantize-report",
        str(path),
        "--samples",
        "50",
        "-q",
        "--json",
        str(tmp_path / "q.json"),
        "--markdown",
        str(tmp_path / "q.md"),
        "--plot",
        str(tmp_path / "q.png"),
        *SELU_ARGS[:-2],
    )
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "q.json").read_text())
    worst = report["layers"][0]
    # SELU becomes EXP/MUL/SELECT ops in TFLite; they, not the Dense kernels, lose accuracy.
    assert worst["op"] != "FULLY_CONNECTED" and worst["rmse_scale"] > 3 * 0.29
    assert worst["layer"] in r.stdout.replace("\n", " ") or worst["name"][:20] in r.stdout
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "rmse" in (tmp_path / "q.md").read_text().lower()


def test_float_layers_auto_buys_back_the_accuracy(selu: Any, tmp_path: Path) -> None:
    _, _, path = selu
    out = tmp_path / "out"
    r = run_edgekit(
        "export",
        str(path),
        "-o",
        str(out),
        "--precision",
        "float32",
        "--float-layers",
        "auto:2",
        "-q",
        *SELU_ARGS,
    )
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["file"]: f for f in manifest["files"]}
    fb = files["selu_int8_float2.tflite"]
    assert fb["variant"]["float_layers"] and fb["variant"]["accuracy_drop_points"] <= 1.0
    # The kernels stay int8 (export checked every FULLY_CONNECTED from the file): far
    # smaller than float32.
    assert fb["bytes"] < 0.4 * files["selu_float32.tflite"]["bytes"]
    assert fb["inputs"][0]["dtype"] == "int8"


def test_unknown_float_layer_is_a_one_line_error_and_writes_nothing(
    selu: Any, tmp_path: Path
) -> None:
    _, _, path = selu
    out = tmp_path / "out"
    r = run_edgekit(
        "export",
        str(path),
        "-o",
        str(out),
        "--precision",
        "float32",
        "--float-layers",
        "hidden9",
        "-q",
        *SELU_ARGS,
    )
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: no layer named hidden9 in the model:")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--clusters", "1"],
            "clusters must be >= 2, got 1: weight clustering with one "
            "centroid makes every weight equal; pass e.g. 16",
        ),
        (
            ["--float-layers", "auto:0"],
            "--float-layers auto:0: K must be an integer >= 1, got "
            "'0'; e.g. auto:3 keeps the 3 worst layers float",
        ),
        (
            ["--max-accuracy-drop", "-1"],
            "max_accuracy_drop must be in [0, 100] points, got "
            "-1.0: e.g. 1 to allow a file one point below the float model",
        ),
        (
            ["--int4-layers", "("],
            "int4_layers '(' is not a regular expression (missing ), "
            "unterminated subpattern at position 0): pass e.g. 'dense1' or 'dense1|dense2'",
        ),
    ],
)
def test_bad_quantization_options_are_one_line_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    r = run_edgekit("export", "-o", str(tmp_path / "o"), *args)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"Error: {message}"]
