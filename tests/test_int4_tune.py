"""int4-aware fine-tuning: kernels on ai-edge-quantizer's int4 grid convert with no rounding,
zeros stay zero, the budget search tries the tuned files first and measures them against the
float model exported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekit.core.config import DataConfig, ExportConfig
from edgekit.workstation.export.aeq import aeq_available

needs_aeq = pytest.mark.skipif(not aeq_available(), reason="ai-edge-quantizer is not installed")
TINY = DataConfig(train_samples=1000, test_samples=300, validation_size=200, seed=5)


def _tiny_model(seed: int = 5, sparsity: float = 0.0) -> Any:
    """A 784-24-10 tf_keras MLP with random weights, `sparsity` of each kernel zeroed."""
    from edgekit.workstation._keras import keras

    model = keras.Sequential(
        [
            keras.layers.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(24, activation="relu", name="dense1"),
            keras.layers.Dense(10, activation="softmax", name="output"),
        ]
    )
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        w = rng.normal(0, 0.1, w.shape).astype(np.float32)
        if w.ndim == 2 and sparsity:
            w.reshape(-1)[rng.permutation(w.size)[: round(sparsity * w.size)]] = 0.0
        weights.append(w)
    model.set_weights(weights)
    return model


def test_int4_grid_is_per_output_channel_multiples_of_max_over_7() -> None:
    from edgekit.workstation.train.int4_tune import int4_grid

    w = np.array([[0.7, -0.02], [0.31, 0.01], [0.0, -0.14], [-0.04, 0.05]], np.float32)
    q = int4_grid(w)
    scales = np.abs(w).max(axis=0) / 7  # column 0: 0.1, column 1: 0.02
    codes = q / scales
    assert np.allclose(codes, np.round(codes), atol=1e-5)
    assert np.allclose(codes[:, 0], [7, 3, 0, 0], atol=1e-5)
    assert np.allclose(codes[:, 1], [-1, 0, -7, 2], atol=1e-5)  # 0.01/0.02 = 0.5 rounds to even
    assert q[2, 0] == 0.0  # a zero stays zero
    assert np.allclose(int4_grid(q), q)  # projecting twice changes nothing


@needs_aeq
@pytest.mark.parametrize("on_grid", [True, False])
def test_on_grid_kernels_convert_to_int4_without_rounding(on_grid: bool) -> None:
    """The premise of the tuning: AEQ's int4 keeps on-grid kernels exactly. Weight-only int4
    (weights widened back to float before a float kernel) then gives the Keras outputs;
    off-grid random kernels do not."""
    from edgekit.core.recipes import recipe_for
    from edgekit.device.runtime import input_details, load_interpreter, output_details
    from edgekit.workstation.export.aeq import quantize_int4
    from edgekit.workstation.export.converter import convert
    from edgekit.workstation.train.int4_tune import int4_grid, off_grid_kernels

    model = _tiny_model(sparsity=0.5)
    if on_grid:
        model.set_weights([int4_grid(w) if w.ndim == 2 else w for w in model.get_weights()])
    assert (off_grid_kernels(model) == {}) is on_grid
    x = np.random.default_rng(0).random((64, 28, 28), dtype=np.float32)
    keras_out = model.predict(x, verbose=0)
    blob = quantize_int4(convert(model, recipe_for("float32")), mode="weight_only")
    interpreter = load_interpreter(blob, num_threads=1)
    (inp,), (out,) = input_details(interpreter), output_details(interpreter)
    diffs = []
    for row in x:
        interpreter.set_tensor(inp.index, row[None])
        interpreter.invoke()
        diffs.append(np.abs(interpreter.get_tensor(out.index)[0] - keras_out[len(diffs)]).max())
    if on_grid:
        assert max(diffs) < 1e-5
    else:
        assert max(diffs) > 1e-3


@pytest.mark.slow
def test_tuning_keeps_zeros_reaches_target_and_ends_on_grid() -> None:
    from edgekit.core.data import load_dataset
    from edgekit.workstation.train.int4_tune import Int4TuneConfig, int4_tune, off_grid_kernels

    data = load_dataset(TINY)
    model = _tiny_model(sparsity=0.5)
    before = [w.copy() for w in model.get_weights()]
    config = Int4TuneConfig(target_sparsity=0.7, epochs=2, ramp_epochs=1, seed=5)
    result = int4_tune(model, data, config, progress=lambda m: None)
    for w, w0 in zip(model.get_weights(), before, strict=True):
        assert np.array_equal(w, w0)  # the input model is not modified
    assert off_grid_kernels(result.model) == {}
    kernels = [w for w in result.model.get_weights() if w.ndim == 2]
    for k, k0 in zip(kernels, [w for w in before if w.ndim == 2], strict=True):
        assert np.all(k[k0 == 0] == 0)  # zeros kept
        assert (k == 0).mean() >= 0.7 - 1e-3
    assert result.sparsity_after["dense1"] >= 0.7 - 1e-3
    assert result.sparsity_before["dense1"] == pytest.approx(0.5, abs=0.05)


def test_search_tries_tuned_int4_first_on_a_pruned_model() -> None:
    from edgekit.workstation.export.variants import VariantPlanner

    config = ExportConfig(search=True, max_accuracy_drop=0.3)
    x = np.zeros((4, 28, 28), np.float32)

    def tuner(target: float | None) -> Any:
        raise AssertionError("planning builds nothing")

    pruned = _tiny_model(sparsity=0.8)
    ladder = [v.tag for v in VariantPlanner(pruned, x, config, int4_tuner=tuner).ladder()]
    if aeq_available():
        assert ladder[:4] == ["int4_tuned_sp85", "int4_tuned", "int4", "dynamic"]
    dense = [v.tag for v in VariantPlanner(_tiny_model(), x, config, int4_tuner=tuner).ladder()]
    if aeq_available():
        assert dense[:2] == ["int4_tuned", "int4"]  # not pruned: no harder pruning
    untuned = [v.tag for v in VariantPlanner(pruned, x, config).ladder()]
    assert not any(t.startswith("int4_tuned") for t in untuned)


@needs_aeq
@pytest.mark.slow
def test_tuned_int4_file_is_checked_against_the_float_model_exported(tmp_path: Path) -> None:
    """An export with the search and a tuner: the tuned file passes the op check, its drop is
    against the exported model's accuracy, and the manifest records how it was made."""
    from edgekit.core.data import load_dataset
    from edgekit.device.manifest import read_manifest
    from edgekit.workstation.export import export_tflite
    from edgekit.workstation.train import keras_accuracy
    from edgekit.workstation.train.int4_tune import Int4TuneConfig, int4_tune

    data = load_dataset(TINY)
    model = _tiny_model(sparsity=0.8)
    calls: list[float | None] = []

    def tuner(target: float | None) -> Any:
        calls.append(target)
        config = Int4TuneConfig(target_sparsity=target, epochs=1, ramp_epochs=1, seed=5)
        result = int4_tune(model, data, config, progress=lambda m: None)
        acc = keras_accuracy(result.model, data.x_test, data.y_test)
        return result.model, {**result.to_dict(), "tuned_keras_accuracy": acc}

    # A random model: any trained file beats it, so the first rung passes a wide budget.
    config = ExportConfig(
        precisions=("float32",), search=True, max_accuracy_drop=50, calibration_samples=50
    )
    result = export_tflite(model, data, config, tmp_path, "tiny", int4_tuner=tuner)
    assert calls == [0.85]
    manifest = read_manifest(tmp_path)
    assert manifest.recommended == "tiny_int4_tuned_sp85.tflite"
    rec = next(f for f in manifest.files if f.file == manifest.recommended)
    assert rec.precision == "int4" and rec.weight_sparsity >= 0.85 - 1e-3
    tuning = rec.variant["int4_tuning"]
    assert "folded.keras" in tuning["budget_reference"]
    assert tuning["target_sparsity"] == 0.85 and tuning["kernel_sparsity_after"]["dense1"] >= 0.85
    assert rec.accuracy is not None
    drop = 100 * (result.keras_accuracy - rec.accuracy.accuracy)
    assert rec.variant["accuracy_drop_points"] == pytest.approx(drop, abs=1e-3)
    # The file computes what the tuned Keras model computes (only activations are rounded).
    assert abs(rec.accuracy.accuracy - tuning["tuned_keras_accuracy"]) <= 0.02
