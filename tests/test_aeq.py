"""int4 and mixed int4/int8 files by Google's ai-edge-quantizer, from a real pruned MLP's float32
file: they load and run in LiteRT, stay accurate, and the TF-free reader sees int4 weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SMALL_PRUNE, SMALL_TRAIN
from test_no_tensorflow import SITECUSTOMIZE

from edgekit.core.errors import ExportError, ModelFileError
from edgekit.device.modelfile import parse_model_bytes
from edgekit.device.runtime import evaluate, input_details, load_interpreter, output_details
from edgekit.workstation.export.aeq import aeq_available, layer_names, quantize_int4, quantize_mixed
from edgekit.workstation.export.calibration import calibration_indices

needs_aeq = pytest.mark.skipif(not aeq_available(), reason="ai-edge-quantizer is not installed")
ROOT = Path(__file__).resolve().parents[1]
# The kernels of the MLP 784-64-32-10, as TFLite stores them (out, in).
DENSE1, DENSE2, OUTPUT = (64, 784), (32, 64), (10, 32)


@pytest.fixture(scope="module")
def files(small_data: Any) -> dict[str, bytes]:
    """float32 and int8 (edgekit's converter) files of a pruned MLP, and AEQ's int4 files."""
    from edgekit.core.recipes import recipe_for
    from edgekit.workstation.export.converter import convert
    from edgekit.workstation.train import build_model, prune_model, train_model

    model = build_model(SMALL_TRAIN, small_data.input_shape, small_data.num_classes)
    train_model(model, small_data, SMALL_TRAIN, progress=lambda msg: None)
    pruned = prune_model(model, small_data, SMALL_PRUNE, progress=lambda msg: None).model
    out = {
        "float32": convert(pruned, recipe_for("float32")),
        "int8": convert(pruned, recipe_for("int8"), small_data.x_train),
    }
    if aeq_available():
        out["dynamic"] = quantize_int4(out["float32"])
        out["weight_only"] = quantize_int4(out["float32"], mode="weight_only")
        out["mixed"] = quantize_mixed(out["float32"], "dense1", small_data.x_train)
    return out


def shapes_and_types(data: bytes) -> dict[tuple[int, ...], str]:
    return {w.shape: w.dtype for w in parse_model_bytes(data).weights}


@needs_aeq
@pytest.mark.parametrize("name", ["dynamic", "weight_only", "mixed"])
def test_file_loads_runs_and_stays_within_two_points_of_float(
    files: dict[str, bytes], small_data: Any, name: str
) -> None:
    interpreter = load_interpreter(files[name])  # XNNPACK on, as bench runs it
    (inp,), (out,) = input_details(interpreter), output_details(interpreter)
    assert inp.dtype == out.dtype == "float32"
    acc = evaluate(interpreter, small_data.x_test, small_data.y_test).accuracy
    float_acc = evaluate(files["float32"], small_data.x_test, small_data.y_test).accuracy
    assert len(small_data.y_test) == 1000
    assert acc >= float_acc - 0.02, (name, acc, float_acc)


@needs_aeq
@pytest.mark.parametrize("name", ["dynamic", "weight_only"])
def test_int4_file_is_under_0_6x_the_int8_file(files: dict[str, bytes], name: str) -> None:
    assert len(files[name]) < 0.6 * len(files["int8"]), (len(files[name]), len(files["int8"]))


@needs_aeq
@pytest.mark.parametrize("name", ["dynamic", "weight_only"])
def test_int4_weights_read_as_int4_with_the_pruning_zeros_kept(
    files: dict[str, bytes], name: str
) -> None:
    fp, q = parse_model_bytes(files["float32"]), parse_model_bytes(files[name])
    assert shapes_and_types(files[name]) == {DENSE1: "int4", DENSE2: "int4", OUTPUT: "int4"}
    float_zeros = {w.shape: w.zeros for w in fp.weights}
    for w in q.weights:  # every pruned zero stays a zero (symmetric int4: zero is 0)
        assert w.zeros >= float_zeros[w.shape], (w.shape, w.zeros, float_zeros[w.shape])
    assert float_zeros[DENSE1] / np.prod(DENSE1) == pytest.approx(0.75, abs=0.01)
    assert abs(q.weight_sparsity - fp.weight_sparsity) <= 0.01
    assert q.weight_elements == fp.weight_elements


def test_int4_reader_unpacks_as_the_quantizer_packs() -> None:
    """Low nibble first, sign-extended, odd counts padded (LiteRT's UnpackDenseInt4IntoInt8)."""
    pytest.importorskip("ai_edge_quantizer")
    from ai_edge_quantizer.transformations.transformation_utils import pack_data

    from edgekit.device.modelfile import _values

    values = np.array([1, -2, 0, 7, -8, 0, 0, 5, -1], dtype=np.int8)
    packed = pack_data(4, values.view(np.uint8)).tobytes()
    assert len(packed) == 5
    unpacked = _values(packed, "int4", np.dtype(np.int8), len(values), False)
    assert unpacked.tolist() == values.tolist()


@needs_aeq
def test_mixed_gives_int4_to_the_matched_layer_and_int8_to_the_others(
    files: dict[str, bytes],
) -> None:
    mixed = files["mixed"]
    assert shapes_and_types(mixed) == {DENSE1: "int4", DENSE2: "int8", OUTPUT: "int8"}
    ops = parse_model_bytes(mixed).operators
    # Full integer inside, float at the ends.
    assert ops["QUANTIZE"] == 1 and ops["DEQUANTIZE"] == 1
    assert len(files["dynamic"]) < len(mixed) < 0.7 * len(files["int8"])


@needs_aeq
def test_mixed_calibrates_on_the_int8_exports_draw(
    files: dict[str, bytes], small_data: Any
) -> None:
    from edgekit.workstation.export.converter import representative_dataset

    idx = calibration_indices(len(small_data.x_train), 100, 42)
    drawn = [b[0] for b in representative_dataset(small_data.x_train, 100, 42)()]
    assert np.array_equal(np.concatenate(drawn), small_data.x_train[idx])
    assert not np.array_equal(idx, calibration_indices(len(small_data.x_train), 100, 41))
    with pytest.raises(ExportError, match=r"^int8 calibration needs training samples, got 0"):
        calibration_indices(0, 100, 42)
    # Another draw gives other activation ranges, hence other bytes.
    other = quantize_mixed(files["float32"], "dense1", small_data.x_train, samples=100, seed=1)
    assert other != files["mixed"]


@needs_aeq
def test_quantizing_prints_nothing_and_leaves_no_file(
    files: dict[str, bytes],
    small_data: Any,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EDGEKIT_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    quantize_int4(files["float32"])
    quantize_mixed(files["float32"], "dense2", small_data.x_train, samples=50)
    assert capfd.readouterr() == ("", "")
    assert list(tmp_path.iterdir()) == []


@needs_aeq
def test_layer_names_are_the_scopes_patterns_are_searched_in(files: dict[str, bytes]) -> None:
    names = layer_names(files["float32"])
    assert len(names) == 3
    for name, layer in zip(names, ("dense1", "dense2", "output"), strict=True):
        assert f"/{layer}/MatMul" in name and name.endswith(";")


@needs_aeq
@pytest.mark.parametrize("pattern", ["conv", "flatten"])  # flatten: an op, but without weights
def test_pattern_matching_no_layer_names_the_layers(files: dict[str, bytes], pattern: str) -> None:
    listing = ", ".join(repr(n) for n in layer_names(files["float32"]))
    with pytest.raises(ExportError) as e:
        quantize_mixed(files["float32"], pattern, np.zeros((4, 28, 28), np.float32))
    assert str(e.value) == (
        f"int4 layer pattern {pattern!r} matches no layer with weights; the layers are "
        f"{listing}: pass a pattern that matches one of them"
    )


def test_bad_regular_expression_is_refused() -> None:
    with pytest.raises(ExportError) as e:
        quantize_mixed(b"", "dense[", np.zeros((4, 28, 28), np.float32))
    assert str(e.value) == (
        "int4 layer pattern 'dense[' is not a regular expression (unterminated character set "
        "at position 5): pass e.g. 'dense1' or 'dense[12]'"
    )


@needs_aeq
def test_calibration_data_missing_or_misshapen_is_refused(files: dict[str, bytes]) -> None:
    with pytest.raises(ExportError) as e:
        quantize_mixed(files["float32"], "dense1", np.zeros((0, 28, 28), np.float32))
    assert str(e.value) == (
        "mixed precision needs a calibration set, got none: pass training data so a "
        "representative sample can be drawn"
    )
    with pytest.raises(ExportError) as e:
        quantize_mixed(files["float32"], "dense1", np.zeros((4, 784), np.float32))
    assert str(e.value) == (
        "calibration samples have shape (784,) but the model expects (28, 28): pass data "
        "shaped like the model's input"
    )


@needs_aeq
def test_only_float32_files_are_taken(files: dict[str, bytes]) -> None:
    for quantize in (quantize_int4, lambda f: quantize_mixed(f, "dense1", np.zeros((4, 28, 28)))):
        with pytest.raises(ExportError) as e:
            quantize(files["int8"])
        assert str(e.value) == (
            "int4 quantizes a float32 file, got one with int8 weights: pass the float32 "
            "export's bytes"
        )
    with pytest.raises(ModelFileError, match="^the float model is not a TensorFlow Lite"):
        quantize_int4(b"not a model")


def test_unknown_int4_mode_is_refused() -> None:
    with pytest.raises(ExportError) as e:
        quantize_int4(b"", mode="int4")
    assert str(e.value) == "unknown int4 mode 'int4': expected one of dynamic, weight_only"


def test_missing_quantizer_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", None)  # import now fails
    assert aeq_available() is False
    with pytest.raises(ExportError) as e:
        quantize_int4(b"any")
    assert str(e.value) == (
        "int4 needs Google's ai-edge-quantizer, which cannot be imported (ModuleNotFoundError: "
        "import of ai_edge_quantizer halted; None in sys.modules): pip install 'edgekit[int4]'"
    )


@needs_aeq
def test_int4_and_mixed_run_where_tensorflow_cannot_be_imported(
    files: dict[str, bytes], tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "f32.tflite").write_bytes(files["float32"])
    code = (
        "import sys, numpy as np\n"
        "from edgekit.workstation.export.aeq import quantize_int4, quantize_mixed\n"
        "from edgekit.device.modelfile import parse_model_bytes\n"
        f"f = open({str(tmp_path / 'f32.tflite')!r}, 'rb').read()\n"
        "x = np.random.default_rng(0).random((20, 28, 28), dtype=np.float32)\n"
        "a, b = quantize_int4(f), quantize_mixed(f, 'dense1', x)\n"
        "print(sorted({w.dtype for w in parse_model_bytes(a).weights}),\n"
        "      sorted({w.dtype for w in parse_model_bytes(b).weights}),\n"
        "      sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")])
    env["EDGEKIT_TF_IMPORT_LOG"] = str(tmp_path / "attempts.log")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['int4'] ['int4', 'int8'] []"
    assert not (tmp_path / "attempts.log").exists()


@needs_aeq
def test_a_quantized_file_with_weights_after_its_flatbuffer_is_finished_whole() -> None:
    """ai-edge-quantizer keeps the weights of a file past 256 KB after the flatbuffer (buffer
    offset/size). Finishing the file (output order, metadata) writes a new flatbuffer: the
    weights must move into it, or the file does not load ("Constant buffer 1 specified an out
    of range offset", seen on MobileNetV2's int4)."""
    from edgekit.core.recipes import recipe_for
    from edgekit.device.tflite_schema import schema
    from edgekit.workstation._keras import keras
    from edgekit.workstation.export.converter import convert
    from edgekit.workstation.export.metadata import FileAbout, finish_tflite

    keras.utils.set_random_seed(0)
    wide = keras.Sequential(
        [
            keras.layers.Input((784,)),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    quantized = quantize_int4(convert(wide, recipe_for("float32")))
    raw = schema.Model.GetRootAs(quantized, 0)
    external = [raw.Buffers(i).Offset() for i in range(raw.BuffersLength())]
    assert any(o > 1 for o in external)  # the case: weights outside the flatbuffer

    about = FileAbout("wide", "fashion_mnist", tuple(str(i) for i in range(10)), (784,))
    finished = finish_tflite(quantized, about, "int4")
    back = schema.Model.GetRootAs(finished, 0)
    assert all(back.Buffers(i).Offset() <= 1 for i in range(back.BuffersLength()))
    x = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    outs = []
    for data in (quantized, finished):
        interp = load_interpreter(data, num_threads=1)
        interp.resize_tensor_input(input_details(interp)[0].index, x.shape)
        interp.allocate_tensors()
        interp.set_tensor(input_details(interp)[0].index, x)
        interp.invoke()
        outs.append(interp.get_tensor(output_details(interp)[0].index))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert {w.dtype for w in parse_model_bytes(finished).weights} >= {"int4"}
    # Cut short, the weights past the end are named, not read as garbage.
    with pytest.raises(ExportError, match=r"buffer \d+ lies outside it .*: the file is truncated"):
        finish_tflite(quantized[: max(external) + 8], about, "int4")
