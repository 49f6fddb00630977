"""Every user mistake ends in one line on stderr, exit status 1 (2 for usage errors), no traceback.

Cases already covered elsewhere are not repeated here: test_cli.py (sparsity 1.0, zero epochs,
unknown precision, output under a file, missing model, garbage .keras, Fashion-MNIST not found,
.npz missing a key, --debug), test_inspect.py (empty, zip, truncated and missing .tflite) and
test_data.py (library-level data checks).
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from edgekit import __version__
from edgekit.cli.main import main

# Keeps the data step short; these runs all stop before any training.
QUICK = ["--train-samples", "1000", "--test-samples", "100", "--validation-size", "100", "-q"]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_error_line(res: Result, code: int = 1) -> str:
    """The single stderr line of a failed command, after checking status and no traceback."""
    assert res.exit_code == code, res.output
    assert isinstance(res.exception, SystemExit), res.exception  # not an uncaught exception
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("Error: ")
    return lines[0].removeprefix("Error: ")


def usage_error(res: Result) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    return res.stderr.strip().splitlines()[-1]


# ---- models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny tf_keras classifiers on 28x28 inputs: a plain one, and ones safe mode must refuse."""
    from edgekit.workstation._keras import keras

    folder = tmp_path_factory.mktemp("models")

    # Every layer named: unnamed ones would advance Keras' global name counters, which other
    # test files' expected layer names ("flatten", ...) depend on.
    def build(middle: Any = None) -> Any:
        inp = keras.Input((28, 28), name="errors_image")
        x = keras.layers.Flatten(name="errors_flatten")(inp)
        if middle is not None:
            x = middle(x)
        out = keras.layers.Dense(10, activation="softmax", name="errors_logits")(x)
        return keras.Model(inp, out, name="errors_model")

    class Doubler(keras.layers.Layer):  # not registered: only this test module knows it
        def call(self, x: Any) -> Any:
            return x * 2.0

    out = {"plain": folder / "plain.keras", "custom": folder / "custom.keras"}
    build().save(out["plain"])
    build(Doubler(name="errors_doubler")).save(out["custom"])
    for suffix in ("keras", "h5"):
        out[f"lambda_{suffix}"] = folder / f"lambda.{suffix}"
        with warnings.catch_warnings():  # "HDF5 ... is considered legacy"
            warnings.simplefilter("ignore")
            build(keras.layers.Lambda(lambda t: t * 2.0, name="errors_lambda")).save(
                out[f"lambda_{suffix}"]
            )
    return out


def test_model_path_that_is_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    line = usage_error(cli("export", str(tmp_path), "-o", str(tmp_path / "o")))
    assert line == f"Error: Invalid value for '[MODEL]': File '{tmp_path}' is a directory."


def test_unreadable_model_file_is_a_usage_error(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, who can read anything: make the permission check say no.
    import os

    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: Path(p) != models["plain"] and real_access(p, mode)
    )
    line = usage_error(cli("export", str(models["plain"]), *QUICK, "-o", str(tmp_path)))
    assert line == f"Error: Invalid value for '[MODEL]': File '{models['plain']}' is not readable."


def test_model_file_with_another_suffix(tmp_path: Path) -> None:
    weights = tmp_path / "weights.txt"
    weights.write_text("0.1 0.2")
    msg = one_error_line(cli("export", str(weights), *QUICK, "-o", str(tmp_path / "o")))
    assert msg == (
        f"{weights} is not a Keras model file (suffix .txt): "
        "pass a .keras or .h5 or .hdf5 file saved with tf_keras"
    )


def test_zip_that_is_not_a_keras_model(tmp_path: Path) -> None:
    fake = tmp_path / "photos.keras"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("photo.txt", "not a model")
    msg = one_error_line(cli("export", str(fake), *QUICK, "-o", str(tmp_path / "o")))
    assert msg.startswith(f"{fake} is not a Keras model edgekit can load (")
    assert msg.endswith("): save it with tf_keras `model.save('model.keras')`")


@pytest.mark.parametrize("suffix", ["keras", "h5"])
def test_lambda_layer_is_refused_in_safe_mode_and_names_unsafe(
    models: dict[str, Path], tmp_path: Path, suffix: str
) -> None:
    path = models[f"lambda_{suffix}"]
    msg = one_error_line(cli("export", str(path), *QUICK, "-o", str(tmp_path)))
    assert msg == (
        f"{path} holds a Lambda layer, whose Python code runs only with safe mode off: "
        "pass --unsafe if you trust the file, or replace the Lambda with a built-in layer"
    )
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("suffix", ["keras", "h5"])
def test_lambda_layer_loads_with_unsafe(models: dict[str, Path], suffix: str) -> None:
    from edgekit.workstation.export.model_io import load_keras_model

    model = load_keras_model(models[f"lambda_{suffix}"], unsafe=True)
    assert [type(layer).__name__ for layer in model.layers][2] == "Lambda"
    x = np.ones((1, 28, 28), np.float32)
    assert model.predict(x, verbose=0).shape == (1, 10)


def test_custom_layer_is_refused_and_named(models: dict[str, Path], tmp_path: Path) -> None:
    path = models["custom"]
    msg = one_error_line(cli("export", str(path), *QUICK, "-o", str(tmp_path)))
    assert re.fullmatch(
        re.escape(f"{path} uses a custom layer or object (Doubler from module ")
        + r"[\w.]+"
        + re.escape(
            ") that edgekit cannot load (it runs no code from outside tf_keras): rebuild the "
            "model from built-in tf_keras layers, or pass --unsafe if you trust the file and "
            "its module"
        ),
        msg,
    ), msg


def test_a_module_named_in_a_keras_file_is_never_imported(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tf_keras imports whatever module a config names, even in safe mode; edgekit must not.
    marker = tmp_path / "imported"
    (tmp_path / "edgekit_side_effect.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Doubler: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    crafted = tmp_path / "crafted.keras"
    with zipfile.ZipFile(models["plain"]) as src, zipfile.ZipFile(crafted, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "config.json":
                config = json.loads(data)
                layer = config["config"]["layers"][1]
                layer.update(module="edgekit_side_effect", class_name="Doubler")
                data = json.dumps(config).encode()
            dst.writestr(name, data)
    from edgekit.core.errors import ModelError
    from edgekit.workstation.export.model_io import load_keras_model

    with pytest.raises(ModelError, match=r"\(Doubler from module edgekit_side_effect\)"):
        load_keras_model(crafted)
    assert not marker.exists()


# ---- data --------------------------------------------------------------------------------


def npz(path: Path, **arrays: Any) -> Path:
    rng = np.random.default_rng(0)
    base = {
        "x_train": rng.random((60, 28, 28), dtype=np.float32),
        "y_train": np.arange(60) % 10,
        "x_test": rng.random((20, 28, 28), dtype=np.float32),
        "y_test": np.arange(20) % 10,
    }
    base.update(arrays)
    np.savez(path, **base)
    return path


def test_data_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.npz"
    msg = one_error_line(cli("export", "--data", str(missing), "-q", "-o", str(tmp_path / "o")))
    assert msg == f"data file {missing} does not exist: pass the path of an existing .npz"


def test_data_file_that_is_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    path.write_text("x,y\n1,2\n")
    msg = one_error_line(cli("export", "--data", str(path), "-q", "-o", str(tmp_path / "o")))
    assert msg == (
        f"cannot read {path} as .npz (it is not a zip archive, which np.savez writes): "
        "save the arrays x_train, y_train, x_test, y_test with np.savez"
    )


def test_npz_holding_objects_is_refused(tmp_path: Path) -> None:
    path = npz(tmp_path / "obj.npz", y_train=np.array([{"label": 1}] * 60, dtype=object))
    msg = one_error_line(cli("export", "--data", str(path), "-q", "-o", str(tmp_path / "o")))
    assert msg == (
        f"{path} holds Python objects, which edgekit refuses to unpickle: "
        "save plain numeric arrays with np.savez"
    )


@pytest.mark.parametrize(
    ("empty", "use"),
    [("x_train", "training, validation and int8 calibration"), ("x_test", "testing")],
)
def test_an_empty_training_or_test_set(
    models: dict[str, Path], tmp_path: Path, empty: str, use: str
) -> None:
    """An empty x_train leaves int8 nothing to calibrate on, even with no training to do."""
    label = "y" + empty[1:]
    path = npz(
        tmp_path / "empty.npz",
        **{empty: np.zeros((0, 28, 28), np.float32), label: np.zeros((0,), np.int64)},
    )
    res = cli(
        "export",
        str(models["plain"]),
        "--no-prune",
        "--data",
        str(path),
        "--validation-size",
        "10",
        "-q",
        "-o",
        str(tmp_path / "o"),
    )
    assert one_error_line(res) == (
        f"{path}: {empty} is empty (0 samples), so there is nothing for {use}: "
        f"supply a non-empty {empty} and {label}"
    )
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_data_shape_that_does_not_fit_the_model(models: dict[str, Path], tmp_path: Path) -> None:
    other = npz(
        tmp_path / "other.npz",
        x_train=np.zeros((60, 5), np.float32),
        x_test=np.zeros((20, 5), np.float32),
    )
    res = cli(
        "export",
        str(models["plain"]),
        "--data",
        str(other),
        "--validation-size",
        "10",
        "-q",
        "-o",
        str(tmp_path / "o"),
    )
    assert one_error_line(res) == (
        "data samples have shape (5,) but the model expects (28, 28): "
        "pass data shaped like the model's input"
    )


def test_labels_outside_the_models_classes(models: dict[str, Path], tmp_path: Path) -> None:
    twelve = npz(tmp_path / "twelve.npz", y_train=np.arange(60) % 12)
    res = cli(
        "export",
        str(models["plain"]),
        "--data",
        str(twelve),
        "--validation-size",
        "10",
        "-q",
        "-o",
        str(tmp_path / "o"),
    )
    assert one_error_line(res) == (
        "data has label 11 but the model has 10 output classes: labels must be 0..9"
    )


def test_negative_labels(tmp_path: Path) -> None:
    path = npz(tmp_path / "neg.npz", y_test=np.arange(20) % 10 - 1, labels=np.arange(10))
    msg = one_error_line(cli("export", "--data", str(path), "-q", "-o", str(tmp_path / "o")))
    assert msg == (
        f"{path}: y_test holds labels outside [0, 10) (min -1, max 8): "
        "labels must be class indices 0..9"
    )


@pytest.mark.parametrize(("value", "count"), [(np.nan, 1), (np.inf, 1), (-np.inf, 3)])
def test_nan_or_infinity_in_the_data(tmp_path: Path, value: float, count: int) -> None:
    x = np.random.default_rng(1).random((60, 28, 28), dtype=np.float32)
    x[[2, 5, 9][:count], 3, 4] = value
    path = npz(tmp_path / "bad.npz", x_train=x)
    res = cli(
        "export", "--data", str(path), "--validation-size", "59", "-q", "-o", str(tmp_path / "o")
    )
    assert one_error_line(res) == (
        f"{path}: x_train holds {count} NaN or infinite value(s), expected finite numbers: "
        "clean or impute them first"
    )


def test_validation_split_larger_than_the_data(tmp_path: Path) -> None:
    path = npz(tmp_path / "small.npz")
    res = cli(
        "export", "--data", str(path), "--validation-size", "60", "-q", "-o", str(tmp_path / "o")
    )
    assert one_error_line(res) == (
        f"{path}: 60 training samples cannot hold a validation split of 60: "
        "lower --validation-size or supply more data"
    )


# ---- numbers and choices -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sparsity", "-0.1"], "sparsity must be in [0, 1), got -0.1: e.g. 0.8 for 80% zeros"),
        (["--sparsity", "1.5"], "sparsity must be in [0, 1), got 1.5: e.g. 0.8 for 80% zeros"),
        (["--epochs", "-3"], "epochs must be > 0, got -3: pass a positive number"),
        (["--prune-epochs", "0"], "prune epochs must be > 0, got 0: pass a positive number"),
        (["--batch-size", "0"], "batch_size must be > 0, got 0: pass a positive number"),
        (
            ["--train-samples", "0"],
            "train_samples must be > 0, got 0: pass a positive count or omit it",
        ),
        (
            ["--test-samples", "-5"],
            "test_samples must be > 0, got -5: pass a positive count or omit it",
        ),
        (
            ["--validation-size", "0"],
            "validation_size must be >= 1, got 0: a validation split is needed for early stopping",
        ),
        (
            ["--calibration-samples", "0"],
            "calibration_samples must be >= 1, got 0: int8 needs a representative sample of "
            "training data (e.g. 500)",
        ),
        (
            ["--calibration-samples", "-100"],
            "calibration_samples must be >= 1, got -100: int8 needs a representative sample of "
            "training data (e.g. 500)",
        ),
        (["--verify-samples", "0"], "verify_samples must be >= 1, got 0: pass e.g. 1000"),
        (
            ["--precision", ""],
            "no precision given: pass at least one of float32, float16, int8, dynamic, int16x8, "
            "int4, int4_weight_only, int4_int8",
        ),
        (
            ["--precision", "float64"],
            "unknown precision 'float64': expected one of float32, float16, int8, dynamic, "
            "int16x8, int4, int4_weight_only, int4_int8",
        ),
        (["--hidden", "300,a"], "--hidden must be comma-separated sizes like 300,100, got '300,a'"),
        (["--hidden", "0"], "hidden_units must be positive sizes, got (0,): e.g. 300,100"),
    ],
)
def test_out_of_range_numbers_and_unknown_choices(
    tmp_path: Path, args: list[str], message: str
) -> None:
    assert one_error_line(cli("export", *args, "-o", str(tmp_path))) == message


def test_option_that_is_not_a_number_is_a_usage_error(tmp_path: Path) -> None:
    line = usage_error(cli("export", "--epochs", "ten", "-o", str(tmp_path)))
    assert line == "Error: Invalid value for '--epochs': 'ten' is not a valid integer."


def test_unknown_architecture_is_a_usage_error(tmp_path: Path) -> None:
    line = usage_error(cli("export", "--arch", "resnet", "-o", str(tmp_path)))
    assert line.startswith("Error: Invalid value for '--arch': 'resnet' is not one of")


def test_a_calibration_set_smaller_than_asked_for_is_said(
    pipeline_run: Any, tmp_path: Path
) -> None:
    from edgekit.core.config import ExportConfig
    from edgekit.workstation.export import export_tflite

    said: list[str] = []
    n = len(pipeline_run.dataset.x_train)
    config = ExportConfig(precisions=("int8",), calibration_samples=n + 1000)
    export_tflite(
        pipeline_run.models["folded"],
        pipeline_run.dataset,
        config,
        tmp_path,
        "cal",
        progress=said.append,
    )
    assert (
        f"  int8 calibration uses all {n} training samples, fewer than the {n + 1000} asked for"
        in said
    )


# ---- where outputs go --------------------------------------------------------------------


def test_output_folder_that_cannot_be_created() -> None:
    # Root may write anywhere but not create folders in /proc.
    msg = one_error_line(cli("export", "-o", "/proc/edgekit-out"))
    assert msg == (
        "cannot create output folder /proc/edgekit-out: No such file or directory; "
        "pass a writable --output"
    )


def test_train_output_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    msg = one_error_line(cli("train", "-o", str(blocker / "m.keras")))
    assert msg == f"cannot create output folder {blocker}: File exists; pass a writable --output"


def test_train_output_without_keras_suffix(tmp_path: Path) -> None:
    msg = one_error_line(cli("train", "-o", str(tmp_path / "m.h5")))
    assert msg == "--output must end in .keras, got 'm.h5'"


@pytest.mark.parametrize("name", ["../evil", "sub/evil", "/tmp/evil", ".hidden", ".."])
def test_name_cannot_escape_the_output_folder(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    msg = one_error_line(cli("export", "--name", name, "-o", str(out)))
    assert msg == (
        f"--name {name!r} is not a plain file name: expected letters, digits, '-', '_' or '.' "
        "(not first), at most 200 characters; pass e.g. my_model and choose the folder with "
        "--output"
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == []  # refused before writing anything


def test_export_library_refuses_a_stem_with_a_path(pipeline_run: Any, tmp_path: Path) -> None:
    from edgekit.core.config import ExportConfig
    from edgekit.core.errors import EdgekitError
    from edgekit.workstation.export import export_tflite

    model = pipeline_run.models["folded"]
    with pytest.raises(EdgekitError, match=r"^--name '\.\./up' is not a plain file name"):
        export_tflite(model, pipeline_run.dataset, ExportConfig(), tmp_path / "o", "../up")
    assert not (tmp_path / "up_float32.tflite").exists()


# ---- .tflite files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"hello, this is text\n" * 10, b"\x89PNG\r\n\x1a\n" + bytes(200), b"TFL3"],
    ids=["text", "png", "four-bytes"],
)
def test_inspect_of_a_file_that_is_not_a_flatbuffer(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    assert one_error_line(cli("inspect", str(path))) == (
        f"{path} is not a TensorFlow Lite flatbuffer (no 'TFL3' identifier at byte 4): "
        "pass a .tflite file written by `edgekit export` or the TFLite converter"
    )


def test_inspect_of_a_device_file_does_not_hang() -> None:
    # /dev/zero never ends: reading it whole would hang and fill the memory.
    assert one_error_line(cli("inspect", "/dev/zero")) == (
        "/dev/zero is not a regular file: pass the path of a .tflite file"
    )


def test_inspect_of_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    line = usage_error(cli("inspect", str(tmp_path)))
    assert line == f"Error: Invalid value for 'FILE': File '{tmp_path}' is a directory."


def test_bench_of_a_file_of_another_kind(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("x")
    msg = one_error_line(cli("bench", str(path), "--no-accuracy", "-q"))
    assert msg == f"{path} is not a .tflite or .keras file: pass model files or a folder"


# ---- manifests (`edgekit verify`, no model is run: --no-run) ------------------------------


@pytest.fixture
def copied(artifacts_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(artifacts_dir, out)
    return out


def float32_file(folder: Path) -> Path:
    return next(folder.glob("*_float32.tflite"))


def verify_error(folder: Path) -> tuple[str, str]:
    res = cli("verify", str(folder), "--no-run", "--json", "-q")
    msg = one_error_line(res)
    return msg, res.stdout


def test_verify_without_a_manifest(tmp_path: Path) -> None:
    msg, _ = verify_error(tmp_path)
    assert msg == (
        f"{tmp_path / 'manifest.json'} does not exist: "
        "run `edgekit export` to write the files and their manifest"
    )


def test_verify_with_a_manifest_that_is_not_json(copied: Path) -> None:
    (copied / "manifest.json").write_text('{"format": "edgekit-manifest/1", "files": [')
    msg, _ = verify_error(copied)
    assert msg.startswith(f"{copied / 'manifest.json'} is not valid JSON (")
    assert msg.endswith("): re-export or re-copy it")


def test_verify_with_a_manifest_of_another_format(copied: Path) -> None:
    (copied / "manifest.json").write_text(json.dumps({"format": "other/2", "files": []}))
    msg, _ = verify_error(copied)
    assert msg == (
        f"{copied / 'manifest.json'} is not an edgekit manifest "
        '(expected "format": "edgekit-manifest/2")'
    )


def test_verify_with_a_manifest_of_a_newer_format(copied: Path) -> None:
    path = copied / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format"] = "edgekit-manifest/3"
    path.write_text(json.dumps(manifest))
    msg, _ = verify_error(copied)
    assert msg == (
        f"{path} has format edgekit-manifest/3, newer than this edgekit {__version__} reads (up to "
        "edgekit-manifest/2): upgrade edgekit with `pip install -U edgekit`"
    )


def test_verify_reads_a_format_1_manifest(copied: Path) -> None:
    """Folders exported by edgekit 0.1.0 before format 2 still verify."""
    path = copied / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format"] = "edgekit-manifest/1"
    del manifest["machine"], manifest["dataset"]["test_sha256"]
    path.write_text(json.dumps(manifest))
    result = CliRunner().invoke(main, ["verify", str(copied), "--no-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bytes", None, "'bytes' must be a count >= 0, got null"),
        ("bytes", "abc", "'bytes' must be a count >= 0, got \"abc\""),
        ("sha256", "not-a-digest", "'sha256' must be 64 lowercase hex digits"),
        ("inputs", [{"shape": ["a"]}], "'inputs' must list tensors with an integer shape"),
        ("outputs", [{"quantization": {"scale": "x"}}], "'outputs' must list tensors with"),
    ],
)
def test_verify_with_badly_typed_manifest_fields(
    copied: Path, field: str, value: Any, message: str
) -> None:
    """A manifest edited by hand or damaged in transit: one line, never a traceback."""
    path = copied / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"][0][field] = value
    path.write_text(json.dumps(manifest))
    msg, _ = verify_error(copied)
    assert msg.startswith(f"{path}: "), msg
    assert message in msg
    assert msg.endswith("re-export or re-copy the manifest") or msg.endswith(
        "re-export or re-copy it"
    )


def test_verify_a_size_mismatch_of_a_file_named_missing(copied: Path) -> None:
    """Statuses come from the check, not from words in the message (a name can say 'missing')."""
    src = float32_file(copied)
    renamed = copied / "missing_model_float32.tflite"
    src.rename(renamed)
    path = copied / "manifest.json"
    manifest = json.loads(path.read_text())
    record = next(r for r in manifest["files"] if r["file"] == src.name)
    record["file"] = renamed.name
    record["bytes"] += 1
    path.write_text(json.dumps(manifest))
    msg, stdout = verify_error(copied)
    assert msg == f"1 file(s) failed verification: {renamed.name}"
    status, problems = _statuses(stdout)[renamed.name]
    assert status == "mismatch"
    assert problems[0] == f"{record['bytes'] - 1} bytes, manifest says {record['bytes']}"


def _statuses(stdout: str) -> dict[str, tuple[str, list[str]]]:
    return {f["file"]: (f["status"], f["problems"]) for f in json.loads(stdout)["files"]}


def test_verify_a_changed_byte_is_a_sha256_mismatch(copied: Path) -> None:
    path = float32_file(copied)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight: still loads, still runs
    path.write_bytes(bytes(data))
    msg, stdout = verify_error(copied)
    assert msg == f"1 file(s) failed verification: {path.name}"
    assert _statuses(stdout)[path.name] == (
        "mismatch",
        ["sha256 differs from the manifest (file changed or damaged)"],
    )


def test_verify_a_truncated_file(copied: Path) -> None:
    path = float32_file(copied)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 3])
    msg, stdout = verify_error(copied)
    assert msg == f"1 file(s) failed verification: {path.name}"
    status, problems = _statuses(stdout)[path.name]
    assert status == "damaged"
    assert problems[:2] == [
        f"{size // 3} bytes, manifest says {size}",
        "sha256 differs from the manifest (file changed or damaged)",
    ]
    assert problems[2].startswith(f"{path} is damaged: ")


def test_verify_a_missing_file(copied: Path) -> None:
    path = float32_file(copied)
    path.unlink()
    msg, stdout = verify_error(copied)
    assert msg == f"1 file(s) failed verification: {path.name}"
    assert _statuses(stdout)[path.name] == ("missing", ["listed in the manifest but missing"])


def test_verify_a_file_the_manifest_does_not_list(copied: Path) -> None:
    shutil.copy(float32_file(copied), copied / "extra.tflite")
    msg, stdout = verify_error(copied)
    assert msg == "1 file(s) failed verification: extra.tflite"
    assert _statuses(stdout)["extra.tflite"] == (
        "unlisted",
        ["not in manifest.json: re-export, or remove the stray file"],
    )


def test_verify_a_manifest_naming_a_file_outside_its_folder(copied: Path) -> None:
    manifest = json.loads((copied / "manifest.json").read_text())
    manifest["files"][0]["file"] = "../outside.tflite"
    (copied / "manifest.json").write_text(json.dumps(manifest))
    msg, stdout = verify_error(copied)
    assert msg.startswith("2 file(s) failed verification: ../outside.tflite, ")
    assert _statuses(stdout)["../outside.tflite"] == (
        "missing",
        ["manifest names a file outside its folder"],
    )
