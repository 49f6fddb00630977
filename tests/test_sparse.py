"""Structured pruning and sparse-encoded files: real TF-MOT, converter, LiteRT and bench.

The speed gate is tested with thresholds that make its verdict certain (100x: refused, 0.01x:
passed), never by asserting a wall time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_edgekit

from edgekit.core.build import build_config
from edgekit.core.config import ExportConfig, Precision, PruneConfig, TrainConfig
from edgekit.core.errors import EdgekitError

TINY_TRAIN = TrainConfig(hidden_units=(64,), epochs=1, batch_size=64, batch_norm=False, seed=7)


@pytest.fixture(scope="module")
def pruned_1x4(small_data: Any) -> Any:
    """The small MLP pruned to 80% in 1x4 blocks (TFLite terms) by TF-MOT (from its initial
    weights: where the zeros go is the claim, not accuracy)."""
    from edgekit.workstation.train import build_model, prune_model

    model = build_model(TINY_TRAIN, small_data.input_shape, small_data.num_classes)
    config = PruneConfig(target_sparsity=0.8, epochs=2, batch_size=64, seed=7, structure="1x4")
    return prune_model(model, small_data, config)


@pytest.fixture(scope="module")
def blocky_model(small_data: Any) -> Any:
    """The small MLP, untrained, with 80% of its TFLite 1x4 weight blocks zero (no pruning
    run: the files' checks compare with this very model, whatever its accuracy)."""
    from edgekit.workstation.train import build_model

    model = build_model(TINY_TRAIN, small_data.input_shape, small_data.num_classes)
    rng = np.random.default_rng(0)
    weights = []
    for w in model.get_weights():
        if w.ndim == 2:  # Keras (in, out): a TFLite 1x4 block is 4 consecutive inputs
            keep = rng.random((w.shape[0] // 4, 1, w.shape[1])) >= 0.8
            w = w * np.broadcast_to(keep, (w.shape[0] // 4, 4, w.shape[1])).reshape(w.shape)
        weights.append(w)
    model.set_weights(weights)
    return model


@pytest.fixture(scope="module")
def exported(blocky_model: Any, small_data: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """float32 and sparse_float32 of the 1x4 model, the gate set so that it surely passes."""
    from edgekit.workstation.export import export_tflite

    config = ExportConfig(
        precisions=(Precision.FLOAT32,),
        sparse_encoding=(Precision.FLOAT32,),
        sparse_min_speedup=0.01,
        max_accuracy_drop=5,
    )
    out = tmp_path_factory.mktemp("sparse")
    return export_tflite(blocky_model, small_data, config, out, "tiny")


def test_1x4_pruning_zeros_whole_blocks_of_four_inputs(pruned_1x4: Any) -> None:
    for layer in pruned_1x4.model.layers:
        if not hasattr(layer, "kernel"):
            continue
        kernel = layer.kernel.numpy()  # Keras (in, out): a TFLite 1x4 block is 4 inputs
        blocks = kernel.reshape(kernel.shape[0] // 4, 4, kernel.shape[1])
        zero_blocks = (blocks == 0).all(axis=1)
        assert int((kernel == 0).sum()) == 4 * int(zero_blocks.sum())
        assert abs(zero_blocks.mean() - 0.8) < 0.02
    assert pruned_1x4.unstructured == {}


def test_2x4_pruning_leaves_a_one_channel_conv_unstructured_and_says_so(small_data: Any) -> None:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.train import prune_model
    from edgekit.workstation.train.model import compile_model

    model = keras.Sequential(
        [
            keras.layers.Reshape((28, 28, 1), input_shape=(28, 28)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1"),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv8"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax", name="head"),
        ]
    )
    compile_model(model, 1e-3)
    config = PruneConfig(0.5, epochs=2, batch_size=64, min_weights=0, seed=7, structure="2:4")
    result = prune_model(model, small_data, config)
    assert list(result.unstructured) == ["conv1"]
    assert "input channels a multiple of 4 (Conv2D has 1)" in result.unstructured["conv1"]
    for name in ("conv8", "head"):
        kernel = result.model.get_layer(name).kernel.numpy()
        # 2:4 along the input dimension: >= 2 zeros in every group of 4 inputs of an output.
        groups = np.moveaxis(kernel, -2, -1).reshape(-1, 4)
        assert ((groups == 0).sum(axis=1) >= 2).all(), name


def test_2x4_with_another_sparsity_is_refused() -> None:
    with pytest.raises(EdgekitError, match=r"^2:4 sparsity is 0.5 .* pass --sparsity 0.5"):
        build_config({"sparsity_structure": "2:4", "sparsity": 0.8})
    assert build_config({"sparsity_structure": "2:4"}).prune.target_sparsity == 0.5


def test_1x4_pruning_asks_for_the_sparse_float32_file_by_default() -> None:
    assert build_config({"sparsity_structure": "1x4"}).export.sparse_encoding == (
        Precision.FLOAT32,
    )
    assert build_config({}).export.sparse_encoding == ()
    none = build_config({"sparsity_structure": "1x4", "sparse_encoding": ()})
    assert none.export.sparse_encoding == ()


@pytest.mark.parametrize("precision", ["float16", "dynamic", "int8"])
def test_sparse_encoding_trap_precisions_are_refused_before_conversion(precision: str) -> None:
    with pytest.raises(EdgekitError, match=rf"^--sparse-encoding {precision} refused: .*float32"):
        ExportConfig(sparse_encoding=(precision,))


def test_cli_refuses_sparse_float16_in_one_line(tmp_path: Path) -> None:
    proc = run_edgekit("export", "-o", str(tmp_path), "--sparse-encoding", "float16")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "sparse-encoding float16 refused" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_sparse_float16_trap_is_refused_by_the_kernel_check(
    blocky_model: Any, small_data: Any
) -> None:
    """A float16 sparse file built anyway (past the config's refusal) loads, and answers
    wrong: the kernel check refuses it before the accuracy budget is even consulted."""
    from edgekit.core.io.clock import Clock
    from edgekit.core.recipes import recipe_for, sparse_recipe_for
    from edgekit.workstation.export.converter import convert
    from edgekit.workstation.export.tflite import check_variants, reference_for
    from edgekit.workstation.export.variants import Variant

    model = blocky_model
    config = ExportConfig(precisions=(Precision.FLOAT32,), max_accuracy_drop=100)
    trap = Variant(
        "sparse_float16",
        Precision.FLOAT16,
        "converter",
        lambda: convert(model, sparse_recipe_for(Precision.FLOAT16)),
    )
    dense = Variant(
        "float32", Precision.FLOAT32, "converter", lambda: convert(model, recipe_for("float32"))
    )
    ref = reference_for(model, small_data, config)
    exported, rejected = check_variants(
        [dense, trap], [], "tiny", ref, config, lambda _m: None, Clock()
    )
    assert [f.file for f in exported] == ["tiny_float32.tflite"]
    (why,) = [r.reason for r in rejected if r.tag == "sparse_float16"]
    assert why.startswith("sparse weights without a sparse kernel: DEQUANTIZE ")
    assert "sparse-encoded float16 tensor" in why


def test_sparse_file_not_faster_than_its_dense_twin_is_not_written(
    blocky_model: Any, small_data: Any, tmp_path: Path
) -> None:
    from edgekit.workstation.export import export_tflite

    config = ExportConfig(
        precisions=(Precision.FLOAT32,),
        sparse_encoding=(Precision.FLOAT32,),
        sparse_min_speedup=100,  # no sparse kernel is 100x faster: refused for certain
        max_accuracy_drop=5,
    )
    result = export_tflite(blocky_model, small_data, config, tmp_path, "tiny")
    assert sorted(p.name for p in tmp_path.glob("*.tflite")) == ["tiny_float32.tflite"]
    (left_out,) = result.requested_left_out
    assert left_out.file == "tiny_sparse_float32.tflite"
    assert left_out.reason.startswith("not faster than float32: ")
    assert "needs >= 100x, export.sparse_min_speedup" in left_out.reason
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (listed,) = manifest["selection"]["rejected"]
    assert listed["speedup_vs_dense"] == left_out.speedup_vs_dense > 0


def test_sparse_file_is_named_checked_and_records_its_speedup(exported: Any) -> None:
    files = {f.file: f for f in exported.files}
    assert sorted(files) == ["tiny_float32.tflite", "tiny_sparse_float32.tflite"]
    sparse, dense = files["tiny_sparse_float32.tflite"], files["tiny_float32.tflite"]
    assert sparse.precision is Precision.FLOAT32
    # Lossless: the same answers as the dense file, in a quarter of its bytes or less.
    assert sparse.record.accuracy.accuracy == dense.record.accuracy.accuracy
    assert sparse.record.accuracy.top1_agreement_with_keras == 1.0
    assert sparse.record.bytes < dense.record.bytes / 3
    assert abs(sparse.record.weight_sparsity - dense.record.weight_sparsity) < 0.01
    speed = sparse.record.variant["sparse"]
    assert speed["dense_twin"] == "float32" and speed["threads"] == 1
    assert speed["speedup_vs_dense"] == pytest.approx(speed["dense_p50_us"] / speed["p50_us"], 1e-2)
    assert speed["kernel"]["ran"] is True and speed["kernel"]["blocks"] == ["1x4"]
    assert "sparse" not in dense.record.variant


def test_bench_says_the_sparse_kernel_ran_and_compares_with_the_dense_twin(
    exported: Any,
) -> None:
    from edgekit.device.bench import BenchConfig, run_bench

    config = BenchConfig(min_runs=20, min_time_s=0.05, rounds=2, data=None)
    result = run_bench([exported.output_dir], config)
    rows = {r.file: r for r in result.rows}
    sparse, dense = rows["tiny_sparse_float32.tflite"], rows["tiny_float32.tflite"]
    assert dense.sparse is None and dense.reference == dense.file
    assert sparse.model == dense.model == "tiny"
    assert sparse.reference == "tiny_float32.tflite" and sparse.speedup_vs_float32 is not None
    assert sparse.sparse is not None and sparse.sparse["ran"] is True
    assert "sparse kernel: 3 of 3 FULLY_CONNECTED" not in sparse.verdict  # 2 layers here
    assert "sparse kernel: 2 of 2 FULLY_CONNECTED with 1x4-block weights" in sparse.verdict
    assert "export measured" in sparse.verdict


def test_bench_without_xnnpack_still_runs_the_sparse_kernel(exported: Any) -> None:
    from edgekit.device.bench import BenchConfig, run_bench

    config = BenchConfig(min_runs=5, min_time_s=0.0, rounds=1, data=None, xnnpack=False)
    path = Path(exported.output_dir) / "tiny_sparse_float32.tflite"
    (row,) = run_bench([path], config).rows
    assert row.sparse is not None and row.sparse["ran"] is True


def test_densified_sparse_file_says_it_runs_at_dense_speed(small_data: Any) -> None:
    """Unstructured zeros are sparse-encoded behind DENSIFY ops: no sparse kernel runs."""
    from edgekit.core.recipes import sparse_recipe_for
    from edgekit.device.opcheck import sparse_path, sparse_problems
    from edgekit.device.runtime import load_interpreter, undelegated_ops
    from edgekit.workstation.export.converter import convert
    from edgekit.workstation.train import build_model

    model = build_model(TINY_TRAIN, small_data.input_shape, small_data.num_classes)
    rng = np.random.default_rng(0)
    model.set_weights([w * (rng.random(w.shape) > 0.8) for w in model.get_weights()])
    blob = convert(model, sparse_recipe_for(Precision.FLOAT32))
    report = sparse_path(blob, undelegated_ops(load_interpreter(blob)))
    assert sparse_problems(blob) == []
    assert report is not None and report["ran"] is False and report["densify_ops"] == 2
    assert "densified at load" in report["summary"]
