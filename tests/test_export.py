"""Export: each precision converted, loaded in LiteRT, verified on real data; manifest correct."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekit.core.config import ExportConfig, Precision
from edgekit.core.errors import EdgekitError, ExportError
from edgekit.device.manifest import MANIFEST_NAME, read_manifest
from edgekit.device.runtime import evaluate, input_details, load_interpreter, output_details
from edgekit.workstation.export import default_stem, export_tflite


def test_default_run_writes_three_self_describing_files(artifacts_dir: Path) -> None:
    names = sorted(p.name for p in artifacts_dir.glob("*.tflite"))
    assert names == [
        "fashion_mnist_mlp_sp75_float16.tflite",
        "fashion_mnist_mlp_sp75_float32.tflite",
        "fashion_mnist_mlp_sp75_int8.tflite",
    ]
    assert (artifacts_dir / "fashion_mnist_mlp_sp75_folded.keras").is_file()
    assert not list(artifacts_dir.glob(".edgekit-tmp-*"))


def test_sizes_shrink_with_precision(artifacts_dir: Path) -> None:
    size = {
        p: (artifacts_dir / f"fashion_mnist_mlp_sp75_{p}.tflite").stat().st_size
        for p in ("float32", "float16", "int8")
    }
    assert size["float16"] < 0.6 * size["float32"]
    assert size["int8"] < 0.35 * size["float32"]


def test_int8_file_has_int8_io_and_its_own_quantization(artifacts_dir: Path) -> None:
    interp = load_interpreter(artifacts_dir / "fashion_mnist_mlp_sp75_int8.tflite")
    (inp,), (out,) = input_details(interp), output_details(interp)
    assert inp.dtype == "int8" and out.dtype == "int8"
    assert inp.scale > 0 and out.scale > 0
    # Inputs are in [0, 1]: the calibrated range maps 0.0 to (or next to) int8's minimum.
    assert inp.zero_point <= -120


def test_every_file_reruns_to_the_accuracy_in_the_manifest(
    artifacts_dir: Path, pipeline_run: Any
) -> None:
    data = pipeline_run.dataset
    manifest = read_manifest(artifacts_dir)
    assert len(manifest.files) == 3
    for rec in manifest.files:
        assert rec.accuracy is not None
        ev = evaluate(artifacts_dir / rec.file, data.x_test, data.y_test)
        assert ev.accuracy == rec.accuracy.accuracy
        assert ev.samples == rec.accuracy.samples == len(data.y_test)
        # Agreement is reported (no floor by default); the gate is the accuracy budget.
        assert rec.accuracy.min_agreement is None
        assert rec.accuracy.top1_agreement_with_keras is not None
        assert rec.accuracy.top1_agreement_with_keras >= 0.98
        assert rec.variant["accuracy_drop_points"] <= 1.0
        # Far above chance (10%) even after a few epochs on 3000 images.
        assert ev.accuracy > 0.6


def test_manifest_describes_each_file_exactly(artifacts_dir: Path) -> None:
    import hashlib

    manifest = json.loads((artifacts_dir / MANIFEST_NAME).read_text())
    assert manifest["format"] == "edgekit-manifest/2"
    assert manifest["machine"]["arch"] and manifest["machine"]["cpu"]
    assert len(manifest["dataset"]["test_sha256"]) == 64
    assert manifest["labels"][0] == "T-shirt/top" and len(manifest["labels"]) == 10
    assert {
        "edgekit",
        "tensorflow",
        "tf_keras",
        "tensorflow_model_optimization",
        "runtime",
        "numpy",
        "python",
    } <= manifest["versions"].keys()
    assert manifest["config"]["prune"]["target_sparsity"] == 0.75
    for rec in manifest["files"]:
        blob = (artifacts_dir / rec["file"]).read_bytes()
        assert rec["sha256"] == hashlib.sha256(blob).hexdigest()
        assert rec["bytes"] == len(blob)
        assert rec["gzip_bytes"] == len(gzip.compress(blob, compresslevel=9, mtime=0))
        assert rec["precision"] in rec["file"]
        assert rec["inputs"][0]["shape"] == [1, 28, 28]
        assert rec["outputs"][0]["shape"] == [1, 10]
        assert "FULLY_CONNECTED" in rec["operators"]
        assert rec["weight_sparsity"] == pytest.approx(0.75, abs=0.02)
        dtype = rec["inputs"][0]["dtype"]
        if rec["precision"] == "int8":
            assert dtype == "int8" and rec["inputs"][0]["quantization"]["scale"] > 0
        else:
            assert dtype == "float32" and rec["inputs"][0]["quantization"] == {}
    keras_rec = manifest["keras_model"]
    blob = (artifacts_dir / keras_rec["file"]).read_bytes()
    assert keras_rec["sha256"] == hashlib.sha256(blob).hexdigest()


def test_float16_stores_half_precision_weights(artifacts_dir: Path) -> None:
    from edgekit.device.modelfile import read_model_file

    info = read_model_file(artifacts_dir / "fashion_mnist_mlp_sp75_float16.tflite")
    assert {w.dtype for w in info.weights} == {"float16"}
    assert "DEQUANTIZE" in info.operators


def test_pruned_zeros_survive_into_every_file(artifacts_dir: Path, pipeline_run: Any) -> None:
    from edgekit.device.modelfile import read_model_file

    for precision in ("float32", "float16", "int8"):
        info = read_model_file(artifacts_dir / f"fashion_mnist_mlp_sp75_{precision}.tflite")
        big = [w for w in info.weights if w.elements >= 1000]
        assert big and all(abs(w.sparsity - 0.75) <= 0.011 for w in big), precision


def test_dynamic_range_export_keeps_float_io(pipeline_run: Any, tmp_path: Path) -> None:
    from edgekit.workstation.export.model_io import load_keras_model

    src = Path(pipeline_run.export.output_dir)
    model = load_keras_model(src / "fashion_mnist_mlp_sp75_folded.keras")
    result = export_tflite(
        model, pipeline_run.dataset, ExportConfig(precisions=("dynamic",)), tmp_path, "dyn"
    )
    (f,) = result.files
    assert f.file == "dyn_dynamic.tflite" and f.precision is Precision.DYNAMIC
    assert f.record.inputs is not None and f.record.inputs[0].dtype == "float32"
    assert f.record.bytes < 0.35 * (src / "fashion_mnist_mlp_sp75_float32.tflite").stat().st_size


def test_failed_check_leaves_previous_output_untouched(pipeline_run: Any, tmp_path: Path) -> None:
    from edgekit.workstation.export.model_io import load_keras_model

    src = Path(pipeline_run.export.output_dir)
    out = tmp_path / "out"
    shutil.copytree(src, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    model = load_keras_model(src / "fashion_mnist_mlp_sp75_folded.keras")
    # int8 does not agree with Keras on every sample: an agreement floor of 100% must fail
    # and name itself, and as no file passed, nothing may be written.
    config = ExportConfig(precisions=("int8",), min_agreement=1.0)
    with pytest.raises(ExportError, match="int8 file failed the agreement check"):
        export_tflite(model, pipeline_run.dataset, config, out, "fashion_mnist_mlp_sp75")
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before


def test_rerun_replaces_previous_files_as_a_whole(pipeline_run: Any, tmp_path: Path) -> None:
    from edgekit.workstation.export.model_io import load_keras_model

    src = Path(pipeline_run.export.output_dir)
    out = tmp_path / "out"
    shutil.copytree(src, out)
    model = load_keras_model(src / "fashion_mnist_mlp_sp75_folded.keras")
    export_tflite(model, pipeline_run.dataset, ExportConfig(precisions=("float32",)), out, "new")
    manifest = read_manifest(out)
    assert [f.file for f in manifest.files] == ["new_float32.tflite"]
    # Files of the previous run are gone with its manifest; other files stay.
    assert sorted(p.name for p in out.glob("*.tflite")) == ["new_float32.tflite"]
    assert (out / "fashion_mnist_mlp_sp75_folded.keras").exists()


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(EdgekitError, match="unknown precision 'int3'"):
        ExportConfig(precisions=("float32", "int3"))


def test_too_small_calibration_set_is_refused() -> None:
    with pytest.raises(EdgekitError, match="calibration_samples must be >= 1"):
        ExportConfig(calibration_samples=0)


def test_default_stem_names_data_arch_and_sparsity() -> None:
    assert default_stem("fashion_mnist_cnn", 0.8) == "fashion_mnist_cnn_sp80"
    assert default_stem("my data", None) == "my_data"  # not pruned by edgekit: no claim
    assert default_stem("m", 0.0) == "m_sp00"


def test_int8_inputs_are_quantized_with_the_files_own_parameters(artifacts_dir: Path) -> None:
    from edgekit.device.runtime import quantize

    interp = load_interpreter(artifacts_dir / "fashion_mnist_mlp_sp75_int8.tflite")
    inp = input_details(interp)[0]
    x = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    q = quantize(x, inp)
    assert q.dtype == np.int8
    expected = np.clip(np.round(x / inp.scale + inp.zero_point), -128, 127)
    assert np.array_equal(q, expected.astype(np.int8))


def test_every_precision_has_one_recipe_whose_types_the_file_has(artifacts_dir: Path) -> None:
    """The registry is the one place a precision is defined: its I/O types are the file's."""
    from edgekit.core.recipes import RECIPES, recipe_for
    from edgekit.device.modelfile import read_model_file

    assert set(RECIPES) == set(Precision)
    for precision in ("float32", "float16", "int8"):
        recipe = recipe_for(precision)
        info = read_model_file(next(artifacts_dir.glob(f"*_{precision}.tflite")))
        assert info.inputs[0].dtype == recipe.input_type
        assert info.outputs[0].dtype == recipe.output_type
    assert recipe_for("int8").calibrated and not recipe_for("float16").calibrated


def test_calibration_seed_is_a_field_of_export_config(pipeline_run: Any, tmp_path: Path) -> None:
    """Same seed: the same int8 bytes; another seed draws other calibration samples."""
    from edgekit.workstation.export.model_io import load_keras_model

    src = Path(pipeline_run.export.output_dir)
    model = load_keras_model(src / "fashion_mnist_mlp_sp75_folded.keras")
    blobs = {}
    for seed, folder in ((42, "a"), (42, "b"), (7, "c")):
        cfg = ExportConfig(precisions=("int8",), calibration_samples=50, calibration_seed=seed)
        result = export_tflite(model, pipeline_run.dataset, cfg, tmp_path / folder, "m")
        blobs[folder] = result.files[0].data
    assert blobs["a"] == blobs["b"]
    assert blobs["a"] != blobs["c"]


def test_manifest_round_trips_through_its_dict(artifacts_dir: Path) -> None:
    from edgekit.device.manifest import Manifest

    manifest = read_manifest(artifacts_dir)
    again = Manifest.from_dict(manifest.to_dict())
    assert again == manifest
    assert json.loads((artifacts_dir / MANIFEST_NAME).read_text()) == manifest.to_dict()


def test_the_package_names_resolve_to_the_functions() -> None:
    """`from edgekit.workstation.export import convert` is the function, not a module."""
    import edgekit.workstation.export as export_pkg

    for name in export_pkg.__all__:
        assert callable(getattr(export_pkg, name)) or isinstance(getattr(export_pkg, name), dict)
    assert export_pkg.convert.__module__ == "edgekit.workstation.export.converter"


def test_int16x8_is_one_recipe_and_bench_says_it_has_no_fast_kernels(
    pipeline_run: Any, tmp_path: Path
) -> None:
    """int16 activations, int8 weights: checked on real data like every file, and bench says
    plainly that it runs on reference kernels."""
    from edgekit.device.bench import BenchConfig, run_bench
    from edgekit.device.modelfile import read_model_file
    from edgekit.workstation.export.model_io import load_keras_model

    src = Path(pipeline_run.export.output_dir)
    model = load_keras_model(src / "fashion_mnist_mlp_sp75_folded.keras")
    config = ExportConfig(precisions=("float32", "int16x8"), calibration_samples=100)
    result = export_tflite(model, pipeline_run.dataset, config, tmp_path, "m")
    (f32, i16) = result.files
    assert i16.file == "m_int16x8.tflite" and i16.record.accuracy is not None
    assert i16.record.accuracy.top1_agreement_with_keras >= 0.98
    info = read_model_file(tmp_path / i16.file)
    assert "int16" in {t.dtype for t in info.tensors}  # activations
    assert {w.dtype for w in info.weights} == {"int8"}  # weights
    bench = run_bench([tmp_path], BenchConfig(samples=200, min_runs=5, min_time_s=0, rounds=1))
    row = next(r for r in bench.rows if r.file == i16.file)
    assert row.precision == "int16x8" and row.ok
    assert any(
        v.startswith("m_int16x8.tflite (int16x8) runs on reference kernels") for v in bench.verdict
    )
