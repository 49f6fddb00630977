"""Files correct in any app: output 0 is the class probabilities (read by index, as apps do),
and every file carries TFLite Model Metadata (name, labels.txt, normalization, output names)
that `edgekit inspect`, verify and bench read back. Real conversions, LiteRT, Fashion-MNIST."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli.main import main
from edgekit.core.data import FASHION_MNIST_LABELS
from edgekit.device.metadata import LABELS_FILE, associated_files, read_metadata
from edgekit.device.outputs import MC_OUTPUTS
from edgekit.device.tflite_schema import schema

MC_SAMPLES = 10
PRECISIONS = ("float32", "float16", "int8", "dynamic")
FILES = (*PRECISIONS, f"mc{MC_SAMPLES}_float32", f"mc{MC_SAMPLES}_int8")


@pytest.fixture(scope="module")
def export(small_data: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One export of a tiny MLP with Dropout: float32, float16, int8, dynamic range and the
    two MC-dropout files (N=10; allowed 5 points below the float model), each written by
    edgekit as an app receives it."""
    from edgekit.core.config import ExportConfig
    from edgekit.workstation._keras import keras, set_determinism
    from edgekit.workstation.export import export_tflite

    set_determinism(7)
    model = keras.Sequential(
        [
            keras.layers.Input((28, 28), name="image"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="mlp",
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(np.asarray(small_data.x_train), small_data.y_train, epochs=3, verbose=0)
    config = ExportConfig(
        precisions=PRECISIONS,
        mc_samples=(MC_SAMPLES,),
        calibration_samples=100,
        max_accuracy_drop=5.0,
    )
    out = tmp_path_factory.mktemp("any_app")
    return export_tflite(model, small_data, config, out, "mlp")


def _path(export: Any, tag: str) -> Path:
    return Path(export.output_dir) / f"mlp_{tag}.tflite"


def _record(export: Any, tag: str) -> Any:
    return next(f.record for f in export.files if f.file == f"mlp_{tag}.tflite")


def plain_loop_output_0(path: Path, x: np.ndarray) -> np.ndarray:
    """What an app does: one sample per invoke, input 0 in, output 0 out, by index; int8
    tensors (de)quantized with their own scale and zero point."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    rows = []
    for sample in x:
        value = sample[None].astype(np.float32)
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            value = np.clip(np.round(value / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], value)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            y = (y - zero) * scale
        rows.append(y.reshape(-1))
    return np.stack(rows)


@pytest.mark.parametrize("tag", FILES)
def test_output_0_read_by_index_is_the_class_probabilities(
    export: Any, small_data: Any, tag: str
) -> None:
    x, y = np.asarray(small_data.x_test), small_data.y_test
    probs = plain_loop_output_0(_path(export, tag), x)
    assert probs.shape == (len(x), 10)
    step = 1 / 256 if "int8" in tag else 1e-5  # an int8 softmax output moves in 1/256 steps
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=10 * step)
    assert probs.min() >= -step and probs.max() <= 1 + step
    # The accuracy export measured (its own batched evaluation, which finds mc_mean by name).
    record = _record(export, tag)
    assert float((probs.argmax(1) == y).mean()) == pytest.approx(
        record.accuracy.accuracy, abs=2 / len(y)
    )
    assert record.accuracy.accuracy > 0.7  # far above chance: these are the probabilities


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_mc_outputs_are_mean_std_entropy_by_index_and_by_signature(
    export: Any, small_data: Any, precision: str
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    path = _path(export, f"mc{MC_SAMPLES}_{precision}")
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()
    by_name = runner.get_output_details()
    assert [d["index"] for d in interpreter.get_output_details()] == [
        by_name[n]["index"] for n in MC_OUTPUTS
    ]
    x = small_data.x_test[:20]
    inp = runner.get_input_details()["image"]
    if inp["dtype"] == np.int8:
        scale, zero = inp["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    signature = runner(image=x)
    np.testing.assert_array_equal(
        plain_loop_output_0(path, small_data.x_test[:20]), signature["mc_mean"]
    )
    # The manifest records the outputs in the file's order.
    assert [t.name for t in _record(export, f"mc{MC_SAMPLES}_{precision}").outputs] == [
        d["name"] for d in interpreter.get_output_details()
    ]


@pytest.mark.parametrize("tag", FILES)
def test_every_file_carries_its_labels_normalization_and_output_names(
    export: Any, tag: str
) -> None:
    path = _path(export, tag)
    data = path.read_bytes()
    meta = read_metadata(data, str(path))
    assert meta is not None
    assert meta.name == f"mlp {tag}" and "fashion_mnist" in meta.description
    assert meta.labels == FASHION_MNIST_LABELS
    assert associated_files(data)[LABELS_FILE].decode().splitlines() == list(FASHION_MNIST_LABELS)
    (image,) = meta.inputs
    assert (image.name, image.content) == ("image", "image (GRAYSCALE)")
    assert (image.mean, image.std, image.value_range) == ((0.0,), (255.0,), (0.0, 255.0))
    assert meta.preprocessing() == {"raw_dtype": "uint8", "scale": 1 / 255, "offset": 0.0}
    names = list(MC_OUTPUTS) if tag.startswith("mc") else ["probabilities"]
    assert list(meta.output_names) == names
    assert meta.outputs[0].files == (LABELS_FILE,)
    assert meta.min_parser_version == "1.0.0"
    # The manifest describes the final bytes, metadata and zipped labels included.
    record = _record(export, tag)
    assert record.sha256 == hashlib.sha256(data).hexdigest() and record.bytes == len(data)


@pytest.mark.parametrize("tag", ["float32", f"mc{MC_SAMPLES}_int8"])
def test_weight_buffers_stay_16_byte_aligned(export: Any, tag: str) -> None:
    data = _path(export, tag).read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    starts = []
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength():
            starts.append(buf._tab.Vector(buf._tab.Offset(4)))
    assert len(starts) >= 3 and all(s % 16 == 0 for s in starts)


def inspect_cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["inspect", *args], terminal_width=200)


def test_inspect_shows_the_metadata(export: Any) -> None:
    path = _path(export, f"mc{MC_SAMPLES}_int8")
    res = inspect_cli(str(path), "--json")
    assert res.exit_code == 0, res.output
    meta = json.loads(res.stdout)["metadata"]
    assert meta["labels"] == list(FASHION_MNIST_LABELS)
    assert [t["name"] for t in meta["outputs"]] == list(MC_OUTPUTS)
    assert meta["inputs"][0]["value_range"] == [0.0, 255.0]
    res = inspect_cli(str(path))
    assert res.exit_code == 0, res.output
    assert "TFLite metadata: mlp mc10_int8" in res.stdout
    assert "(x - 0) / 255" in res.stdout and "0..255" in res.stdout
    assert "labels (10, output 0's classes in order): T-shirt/top, Trouser," in res.stdout
    rows = [line for line in res.stdout.splitlines() if "│ output" in line]
    assert [r.split("│")[3].strip() for r in rows[-3:]] == list(MC_OUTPUTS)


def _damage_metadata(data: bytes) -> bytes:
    """The metadata buffer's root offset pointed far past the end of the file."""
    at = data.find(b"M001")
    assert at > 4
    return data[: at - 4] + b"\xff\xff\xff\x7f" + data[at:]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_damage_metadata, "its TFLite metadata (TFLITE_METADATA) is damaged"),
        (lambda d: d[:-40], "its metadata names labels.txt, which is not zipped into the file"),
    ],
)
def test_damaged_metadata_is_a_one_line_error_in_inspect(
    export: Any, tmp_path: Path, damage: Any, message: str
) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(damage(_path(export, "int8").read_bytes()))
    res = inspect_cli(str(bad))
    assert res.exit_code == 1
    assert res.stderr.startswith(f"Error: {bad}: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_verify_checks_the_files_labels_against_the_manifest(export: Any, tmp_path: Path) -> None:
    from edgekit.device.verify import verify_dir

    folder = tmp_path / "copy"
    shutil.copytree(export.output_dir, folder)
    assert verify_dir(folder, run=False).ok
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["labels"] = list(reversed(manifest["labels"]))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = verify_dir(folder, run=False)
    assert {f.status for f in result.files} == {"mismatch"}
    assert "labels in the file (T-shirt/top, Trouser," in result.files[0].problems[0]
    (folder / "mlp_int8.tflite").write_bytes(
        _damage_metadata((folder / "mlp_int8.tflite").read_bytes())
    )
    bad = next(f for f in verify_dir(folder, run=False).files if f.file == "mlp_int8.tflite")
    assert bad.status == "damaged"


def test_bench_takes_the_class_order_from_the_file_without_a_manifest(
    export: Any, image_folder: Path, tmp_path: Path
) -> None:
    from edgekit.device.bench import BenchConfig
    from edgekit.device.bench.testdata import load_bench_data
    from edgekit.device.runtime import evaluate

    alone = tmp_path / "mlp_int8.tflite"
    shutil.copy(_path(export, "int8"), alone)
    config = BenchConfig(data=str(image_folder))
    x_m, y_m, info_m = load_bench_data(config, [_path(export, "int8")])
    x_f, y_f, info_f = load_bench_data(config, [alone])
    assert info_m["class_order"].startswith("the manifest's labels")
    assert info_f["class_order"].startswith("the file's TFLite metadata's labels")
    np.testing.assert_array_equal(x_m, x_f)
    np.testing.assert_array_equal(y_m, y_f)
    # Folders sort alphabetically ('Ankle boot' first): the file's labels put them in the
    # model's order, and the file scores as it does on Fashion-MNIST.
    assert info_f["class_names"] != list(FASHION_MNIST_LABELS)
    assert evaluate(alone, x_f, y_f).accuracy > 0.7


def test_labels_file_keeps_any_class_name_and_refuses_a_line_break() -> None:
    from edgekit.core.errors import ExportError
    from edgekit.device.metadata import parse_labels
    from edgekit.workstation.export.metadata import labels_text

    names = ("T-shirt/top", " padded ", "café", "form\x0cfeed", "line\u2028separator")
    assert parse_labels(labels_text(names)) == names
    with pytest.raises(ExportError, match=r"class name 'a\\nb' cannot be a line of labels.txt"):
        labels_text(("ok", "a\nb"))
