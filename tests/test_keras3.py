"""Keras 3 models in: real Keras 3 files (.keras and .h5), rebuilt in tf_keras, pruned, exported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SMALL_DATA, run_edgekit

from edgekit.core.config import ExportConfig, PipelineConfig, PruneConfig
from edgekit.core.errors import ModelError

QUICK_DATA = [
    "--train-samples",
    "3000",
    "--test-samples",
    "1000",
    "--validation-size",
    "500",
    "--seed",
    "7",
    "--calibration-samples",
    "100",
]


@pytest.fixture(scope="module")
def k3() -> Any:
    from edgekit.workstation._keras import import_keras3

    return import_keras3()


def _train(model: Any, data: Any, epochs: int = 3) -> Any:
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.asarray(data.x_train), data.y_train, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def functional_cnn(k3: Any, small_data: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conv2D+BN, a DepthwiseConv2D block with a residual Add, Rescaling: a Keras 3 .keras."""
    k3.utils.set_random_seed(7)
    path = tmp_path_factory.mktemp("k3") / "cnn.keras"
    _train(_residual_cnn(k3, (28, 28)), small_data).save(path)
    return path


def _residual_cnn(k3: Any, input_shape: tuple[int, ...]) -> Any:
    """Rescaling, Conv2D+BN, a DepthwiseConv2D+BN block with a residual Add, Conv2D+BN."""
    inp = k3.Input(input_shape, name="image")
    h = k3.layers.Reshape((28, 28, 1))(inp) if len(input_shape) == 2 else inp
    h = k3.layers.Rescaling(2.0, offset=-1.0)(h)
    h = k3.layers.Conv2D(32, 3, padding="same", use_bias=False)(h)
    h = k3.layers.BatchNormalization(momentum=0.9)(h)
    h = k3.layers.ReLU()(h)
    b = k3.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
    b = k3.layers.BatchNormalization(momentum=0.9)(b)
    h = k3.layers.Add()([h, k3.layers.ReLU()(b)])
    h = k3.layers.MaxPooling2D()(h)
    h = k3.layers.Conv2D(32, 3, padding="same", use_bias=False)(h)
    h = k3.layers.BatchNormalization(momentum=0.9)(h)
    h = k3.layers.ReLU()(h)
    h = k3.layers.Flatten()(k3.layers.MaxPooling2D()(h))
    return k3.Model(inp, k3.layers.Dense(10, activation="softmax")(h))


@pytest.fixture(scope="module")
def sequential_mlp(k3: Any, small_data: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    k3.utils.set_random_seed(7)
    model = k3.Sequential(
        [
            k3.Input((28, 28)),
            k3.layers.Flatten(),
            k3.layers.Dense(128, use_bias=False),
            k3.layers.BatchNormalization(momentum=0.9),
            k3.layers.Activation("relu"),
            k3.layers.Dropout(0.1),
            k3.layers.Dense(64),
            k3.layers.LeakyReLU(negative_slope=0.1),
            k3.layers.Dense(10),
            k3.layers.Softmax(),
        ]
    )
    path = tmp_path_factory.mktemp("k3") / "mlp.keras"
    _train(model, small_data).save(path)
    return path


def _pipeline(model: Path, out: Path, prune: PruneConfig | None) -> Any:
    from edgekit.workstation.pipeline import run_pipeline

    config = PipelineConfig(
        data=SMALL_DATA,
        prune=prune,
        # The criteria are asserted by the tests (float32 >= 99%, int8 within 1 point
        # of the pruned float model); export's own floor is relaxed for these tiny models.
        export=ExportConfig(calibration_samples=500, min_agreement=0.95),
        output_dir=str(out),
    )
    return run_pipeline(config, model_path=model, progress=lambda _m: None)


def test_a_keras3_file_is_told_from_a_tf_keras_file(
    functional_cnn: Path, artifacts_dir: Path
) -> None:
    from edgekit.core.model_path import keras_major_version

    assert keras_major_version(functional_cnn) == 3
    assert keras_major_version(next(artifacts_dir.glob("*.keras"))) == 2


def test_the_tf_keras_rebuild_gives_the_same_outputs(functional_cnn: Path, small_data: Any) -> None:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.export.keras3 import max_abs_difference
    from edgekit.workstation.export.model_io import load_user_model

    user = load_user_model(functional_cnn)
    assert user.keras_version == 3 and user.rebuild_error is None
    assert isinstance(user.model, keras.Model)  # tf_keras, so TF-MOT can prune it
    assert max_abs_difference(user.original, user.model, small_data.x_test) < 1e-5
    kinds = [type(layer).__name__ for layer in user.model.layers]
    assert {"DepthwiseConv2D", "Add", "Rescaling", "BatchNormalization"} <= set(kinds)
    assert len(kinds) == len(user.original.layers)


@pytest.mark.heavy
def test_a_keras3_cnn_is_pruned_folded_and_exported(functional_cnn: Path, tmp_path: Path) -> None:
    result = _pipeline(
        functional_cnn, tmp_path, PruneConfig(target_sparsity=0.5, epochs=2, batch_size=64, seed=7)
    )
    source = result.info["source_model"]
    assert source["keras_version"] == 3 and source["keras3"]["rebuilt_in_tf_keras"]
    assert source["keras3"]["max_abs_difference"] < 1e-5
    assert len(result.fold.folded) == 3 and not result.fold.kept
    skipped = result.info["pruning_skipped"]  # kernels under min_weights stay dense
    pruned = {k: v for k, v in result.kernel_sparsity.items() if k not in skipped}
    assert len(pruned) >= 2 and all(abs(v - 0.5) <= 0.01 for v in pruned.values()), pruned
    rows = {r["precision"]: r for r in result.export.rows()}
    assert rows["float32"]["agreement"] >= 0.99
    assert rows["int8"]["accuracy"] >= result.accuracy["pruned_keras"] - 0.01


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_keras3_sequential_mlp_goes_through_the_cli(
    k3: Any, sequential_mlp: Path, tmp_path: Path, suffix: str
) -> None:
    model = sequential_mlp
    if suffix == ".h5":
        model = tmp_path / "mlp.h5"
        k3.saving.load_model(sequential_mlp).save(model)
    out = tmp_path / "out"
    proc = run_edgekit(
        "export",
        str(model),
        "--prune",
        "--sparsity",
        "0.6",
        "--prune-epochs",
        "2",
        *QUICK_DATA,
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "model: a Keras 3 file, rebuilt in tf_keras (max abs difference" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["run"]["source_model"]["keras_version"] == 3
    assert all(abs(f["weight_sparsity"] - 0.6) < 0.02 for f in manifest["files"])
    assert [f["precision"] for f in manifest["files"]] == ["float32", "float16", "int8"]
    files = {f["precision"]: f["accuracy"] for f in manifest["files"]}
    assert files["float32"]["top1_agreement_with_keras"] >= 0.99
    assert files["int8"]["accuracy"] >= files["float32"]["accuracy"] - 0.01  # pruned float


def test_a_nested_keras3_model_is_inlined_and_its_batch_norm_folded(
    k3: Any, small_data: Any, tmp_path: Path
) -> None:
    inner = k3.Sequential(
        [
            k3.Input((28, 28, 1)),
            k3.layers.Conv2D(8, 3, use_bias=False, name="conv"),
            k3.layers.BatchNormalization(momentum=0.9, name="bn"),
            k3.layers.ReLU(),
        ],
        name="block",
    )
    inp = k3.Input((28, 28))
    h = k3.layers.Reshape((28, 28, 1))(inp)
    h = k3.layers.Flatten()(inner(h))
    out = k3.layers.Dense(10, activation="softmax")(h)
    path = tmp_path / "nested.keras"
    _train(k3.Model(inp, out), small_data, epochs=1).save(path)
    result = _pipeline(path, tmp_path / "out", None)
    assert [(p.batchnorm, p.layer) for p in result.fold.folded] == [("block_bn", "block_conv")]
    assert result.info["source_model"]["keras3"]["max_abs_difference"] < 1e-5


def _with_layer_norm(k3: Any, small_data: Any, folder: Path) -> Path:
    model = k3.Sequential(
        [
            k3.Input((28, 28)),
            k3.layers.Flatten(),
            k3.layers.Dense(32),
            k3.layers.LayerNormalization(name="ln"),
            k3.layers.Dense(10, activation="softmax"),
        ]
    )
    path = folder / "ln.keras"
    _train(model, small_data, epochs=1).save(path)
    return path


def test_a_layer_without_tf_keras_twin_is_one_line_with_prune(
    k3: Any, small_data: Any, tmp_path: Path
) -> None:
    path = _with_layer_norm(k3, small_data, tmp_path)
    proc = run_edgekit("export", str(path), "--prune", *QUICK_DATA, "-q", "-o", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "Error: layer 'ln' (LayerNormalization) has no tf_keras twin edgekit can rebuild, so "
        "TF-MOT (--prune) cannot work on this Keras 3 model: export it without --prune "
        "(converted as it is), or use only " + ", ".join(_supported())
    )
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def _supported() -> tuple[str, ...]:
    from edgekit.workstation.export.keras3 import SUPPORTED_LAYERS

    return SUPPORTED_LAYERS


def test_without_prune_such_a_model_is_exported_as_it_is(
    k3: Any, small_data: Any, tmp_path: Path
) -> None:
    path = _with_layer_norm(k3, small_data, tmp_path)
    result = _pipeline(path, tmp_path / "out", None)
    k3info = result.info["source_model"]["keras3"]
    assert (
        k3info["rebuilt_in_tf_keras"] is False and "'ln' (LayerNormalization)" in k3info["reason"]
    )
    rows = {r["precision"]: r for r in result.export.rows()}
    assert rows["float32"]["agreement"] >= 0.99 and rows["int8"]["agreement"] >= 0.98


def test_a_keras3_lambda_layer_is_refused_in_safe_mode(k3: Any, tmp_path: Path) -> None:
    from edgekit.workstation.export.model_io import load_user_model

    model = k3.Sequential([k3.Input((4,)), k3.layers.Lambda(lambda t: t * 2), k3.layers.Dense(2)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelError, match=r"holds a Lambda layer.*pass --unsafe"):
        load_user_model(path)


def test_rebuilt_weights_are_the_keras3_weights(functional_cnn: Path) -> None:
    from edgekit.workstation.export.model_io import load_user_model

    user = load_user_model(functional_cnn)
    theirs = [w for layer in user.original.layers for w in layer.get_weights()]
    ours = [w for layer in user.model.layers for w in layer.get_weights()]
    assert len(theirs) == len(ours)
    assert all(np.array_equal(a, b) for a, b in zip(theirs, ours, strict=True))


@pytest.mark.heavy
def test_a_keras3_cnn_trained_on_an_image_folder_goes_through_export(
    k3: Any, image_folder: Path, tmp_path: Path
) -> None:
    """The issue's case: Keras 3 Functional (Conv2D+BN, a DepthwiseConv2D block, a residual
    Add, Rescaling) trained on PNGs, then `edgekit export model.keras --data DIR --prune`."""
    from edgekit.core.config import DataConfig
    from edgekit.core.data import load_dataset

    data = load_dataset(
        DataConfig(source=str(image_folder), validation_size=300, input_shape=(28, 28, 1))
    )
    k3.utils.set_random_seed(3)
    path = tmp_path / "cnn.keras"
    _train(_residual_cnn(k3, (28, 28, 1)), data).save(path)

    out_dir = tmp_path / "out"
    proc = run_edgekit(
        "export",
        str(path),
        "--data",
        str(image_folder),
        "--prune",
        "--sparsity",
        "0.5",
        "--prune-epochs",
        "2",
        "--validation-size",
        "300",
        "--calibration-samples",
        "100",
        "-o",
        str(out_dir),
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out_dir / "manifest.json").read_text())
    run = manifest["config"]["run"]
    assert run["source_model"]["keras3"]["max_abs_difference"] < 1e-5
    pruned = {k: v for k, v in run["kernel_sparsity"].items() if k not in run["pruning_skipped"]}
    assert len(pruned) >= 2 and all(abs(v - 0.5) <= 0.01 for v in pruned.values())
    files = {f["precision"]: f["accuracy"] for f in manifest["files"]}
    assert files["float32"]["top1_agreement_with_keras"] >= 0.99
    assert files["float32"]["samples"] == 1000  # the DIR/test images
    pruned_float = files["float32"]["accuracy"]
    assert files["int8"]["accuracy"] >= pruned_float - 0.01
    assert manifest["labels"][0] == "Ankle boot"  # the class folders' names travel


def test_a_model_that_rescales_raw_pixels_gets_them_and_the_manifest_says_so(
    k3: Any, small_data: Any, tmp_path: Path
) -> None:
    """Rescaling(1/255) first: uint8 pixels go in as 0..255, in export and in bench."""
    from edgekit.core.data import load_fashion_mnist_arrays
    from edgekit.device.bench import BenchConfig, run_bench
    from edgekit.device.manifest import read_manifest
    from edgekit.device.runtime import evaluate, preprocess

    model = k3.Sequential(
        [
            k3.Input((28, 28)),
            k3.layers.Rescaling(1 / 255),
            k3.layers.Flatten(),
            k3.layers.Dense(64, activation="relu"),
            k3.layers.Dense(10, activation="softmax"),
        ]
    )
    x255 = np.asarray(small_data.x_train) * 255
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x255, small_data.y_train, epochs=2, batch_size=64, verbose=0)
    path = tmp_path / "raw.keras"
    model.save(path)
    result = _pipeline(path, tmp_path / "out", None)
    assert np.asarray(result.dataset.x_test).max() > 1.0  # fed as 0..255
    manifest = read_manifest(tmp_path / "out")
    assert manifest.input["scale"] == 1.0 and manifest.input["raw_dtype"] == "uint8"
    assert manifest.input["shape"] == [28, 28]
    int8 = next((tmp_path / "out").glob("*_int8.tflite"))
    rec = manifest.record(int8.name)
    assert rec is not None and rec.accuracy is not None and rec.accuracy.accuracy > 0.6
    # A device feeds raw images through the manifest's recipe: the export-time accuracy.
    raw = load_fashion_mnist_arrays()[0]
    x = preprocess(raw["x_test"][:1000], manifest.input)
    assert evaluate(int8, x, raw["y_test"][:1000]).accuracy == rec.accuracy.accuracy
    from edgekit.device.runtime import load_interpreter, predict

    probs = predict(load_interpreter(int8), raw["x_test"][:1000], preprocessing=manifest.input)
    assert float((probs.argmax(1) == raw["y_test"][:1000]).mean()) == rec.accuracy.accuracy
    bench = run_bench([int8], BenchConfig(samples=1000, min_runs=2, min_time_s=0, rounds=1))
    assert bench.rows[0].accuracy == rec.accuracy.accuracy


def test_preprocess_repeats_export_bit_for_bit(artifacts_dir: Path, small_data: Any) -> None:
    from edgekit.core.data import load_fashion_mnist_arrays
    from edgekit.device.manifest import read_manifest
    from edgekit.device.runtime import preprocess

    spec = read_manifest(artifacts_dir).input
    assert spec == {"shape": [28, 28], "raw_dtype": "uint8", "scale": 1 / 255, "offset": 0.0}
    raw = load_fashion_mnist_arrays()[0]["x_test"][: len(small_data.x_test)]
    assert np.array_equal(preprocess(raw, spec), small_data.x_test)


def test_bench_times_a_keras3_file_as_the_keras_baseline(
    sequential_mlp: Path, artifacts_dir: Path
) -> None:
    from edgekit.device.bench import BenchConfig, run_bench

    int8 = next(artifacts_dir.glob("*_int8.tflite"))
    config = BenchConfig(data=None, min_runs=3, min_time_s=0, rounds=1, warmup_runs=1)
    result = run_bench([int8, sequential_mlp], config)
    (keras_row,) = [r for r in result.rows if r.kind == "keras"]
    assert keras_row.ok, keras_row.error
    assert keras_row.runtime is not None and keras_row.runtime.startswith("Keras 3 tensorflow")
    assert keras_row.latency is not None and keras_row.latency.runs >= 3


def _save(model: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}.keras"
    model.save(path)
    return path


def _randomize(model: Any) -> None:
    """Weights (and batch-norm statistics) away from their initial values."""
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights(
            [
                (
                    np.abs(w) + 0.5 if "variance" in v.path else w + rng.normal(0, 0.1, w.shape)
                ).astype(w.dtype)
                for w, v in zip(layer.get_weights(), layer.weights, strict=True)
            ]
        )


@pytest.mark.parametrize("case", ["separable_padding_pooling", "concat_elu_shared", "normalized"])
def test_more_layers_rebuild_to_the_same_outputs(
    k3: Any, small_data: Any, tmp_path: Path, case: str
) -> None:
    from edgekit.workstation.export.keras3 import max_abs_difference
    from edgekit.workstation.export.model_io import load_user_model

    inp = k3.Input((28, 28))
    x = k3.layers.Reshape((28, 28, 1))(inp)
    if case == "separable_padding_pooling":
        h = k3.layers.ZeroPadding2D(1)(x)
        h = k3.layers.SeparableConv2D(8, 3, use_bias=False)(h)
        h = k3.layers.BatchNormalization()(h)
        h = k3.layers.AveragePooling2D(2)(h)
        h = k3.layers.GlobalAveragePooling2D()(h)
    elif case == "concat_elu_shared":
        conv = k3.layers.Conv2D(4, 3, padding="same")  # one layer, called twice
        a, b = conv(x), conv(k3.layers.Rescaling(0.5)(x))
        h = k3.layers.Concatenate(axis=-1)([a, b])
        h = k3.layers.ELU()(h)
        h = k3.layers.Flatten()(k3.layers.MaxPooling2D(4)(h))
    else:
        norm = k3.layers.Normalization(axis=None)
        norm.adapt(np.asarray(small_data.x_val[:200]))  # adapted: mean/variance are weights
        h = k3.layers.Flatten()(norm(x))
        h = k3.layers.Dropout(0.3)(k3.layers.Dense(16, activation="relu")(h))
    model = k3.Model(inp, k3.layers.Dense(10, activation="softmax")(h))
    if case != "normalized":
        _randomize(model)
    user = load_user_model(_save(model, tmp_path, case))
    assert user.rebuild_error is None
    assert max_abs_difference(user.original, user.model, small_data.x_test[:200]) < 1e-5


def test_a_keras3_op_in_the_graph_is_named(k3: Any, small_data: Any, tmp_path: Path) -> None:
    """`maximum(x, y)` is an op edgekit cannot rebuild: exported as it is, one line with
    --prune."""
    inp = k3.Input((28, 28))
    h = k3.layers.Flatten()(inp)
    a, b = k3.layers.Dense(16)(h), k3.layers.Dense(16)(h)
    out = k3.layers.Dense(10, activation="softmax")(k3.ops.maximum(a, b))
    path = _save(_train(k3.Model(inp, out), small_data, epochs=1), tmp_path, "op")
    proc = run_edgekit("export", str(path), "--prune", *QUICK_DATA, "-q", "-o", str(tmp_path / "o"))
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: operation 'maximum' (Maximum) is a Keras 3 op in the graph")
    assert "it rebuilds +, -, * of two tensors and +, -, *, / of a tensor and a number" in line
    result = _pipeline(path, tmp_path / "out", None)
    assert result.info["source_model"]["keras3"]["rebuilt_in_tf_keras"] is False
    assert {r["precision"] for r in result.export.rows()} == {"float32", "float16", "int8"}


def test_hard_activations_and_arithmetic_rebuild_from_builtin_layers(
    k3: Any, tmp_path: Path
) -> None:
    """Keras 3's hard_sigmoid (relu6(x + 3) / 6, not tf_keras' 0.2 x + 0.5), hard_silu and
    hard_swish, as Activation layers and layer activations, and `x + 3.0`, `2.0 - x`,
    `x * y`, `x / 4` in the graph: rebuilt from built-in tf_keras layers, same outputs, and
    the saved tf_keras file loads back in safe mode."""
    from edgekit.workstation._keras import keras
    from edgekit.workstation.export.keras3 import max_abs_difference
    from edgekit.workstation.export.model_io import load_keras_model, load_user_model

    k3.utils.set_random_seed(2)
    inp = k3.Input((8,))
    a = k3.layers.Dense(8, activation="hard_sigmoid")(inp)
    b = k3.layers.Dense(8, activation="hard_swish")(inp)
    c = k3.layers.Activation("hard_silu")(k3.layers.Dense(8)(inp) + 3.0)
    d = k3.layers.Activation("hard_sigmoid")(2.0 - a * b) / 4
    out = k3.layers.Dense(3)(k3.layers.Concatenate()([a, b, c * d, d - c]))
    user = load_user_model(_save(k3.Model(inp, out), tmp_path, "hard"))
    assert user.rebuild_error is None
    kinds = {type(layer).__name__ for layer in user.model.layers}
    assert kinds == {"InputLayer", "Dense", "Rescaling", "ReLU", "Multiply", "Subtract"} | {
        "Concatenate"
    }
    # a * b, c * d, and one in each of the two hard_silu ((x / 6) * relu6(x + 3)).
    assert sum(type(layer).__name__ == "Multiply" for layer in user.model.layers) == 4
    # Inputs spread over -12..12: both hard activations' bends (-3, 3) are crossed.
    x = np.random.default_rng(0).normal(0.0, 4.0, (512, 8)).astype(np.float32)
    assert max_abs_difference(user.original, user.model, x) < 1e-5
    relu6 = [layer for layer in user.model.layers if isinstance(layer, keras.layers.ReLU)]
    assert len(relu6) == 4 and all(float(layer.max_value) == 6.0 for layer in relu6)
    path = tmp_path / "rebuilt.keras"
    user.model.save(path)
    again = load_keras_model(path)
    assert np.array_equal(again.predict(x, verbose=0), user.model.predict(x, verbose=0))


@pytest.mark.parametrize(
    ("case", "op"),
    [("number_over_x", "TrueDivide"), ("x_over_y", "TrueDivide"), ("x_over_0", "TrueDivide")],
)
def test_arithmetic_without_a_layer_form_is_refused(
    k3: Any, tmp_path: Path, case: str, op: str
) -> None:
    """`3 / x`, `x / y` and `x / 0` have no Rescaling/Add/Subtract/Multiply form: refused."""
    from edgekit.workstation.export.model_io import load_user_model

    inp = k3.Input((4,))
    a, b = k3.layers.Dense(4)(inp), k3.layers.Dense(4)(inp)
    h = {"number_over_x": 3.0 / a, "x_over_y": a / b, "x_over_0": a / 0.0}[case]
    user = load_user_model(_save(k3.Model(inp, k3.layers.Dense(2)(h)), tmp_path, case))
    assert user.rebuild_error is not None
    assert f"({op}) is a Keras 3 op in the graph that edgekit cannot rebuild" in user.rebuild_error


def test_an_activation_tf_keras_lacks_is_named_in_one_line(k3: Any, tmp_path: Path) -> None:
    from edgekit.workstation.export.model_io import load_user_model

    inp = k3.Input((8,))
    model = k3.Model(inp, k3.layers.Dense(3, activation="hard_tanh", name="clip")(inp))
    user = load_user_model(_save(model, tmp_path, "hard_tanh"))
    assert user.rebuild_error == (
        "layer 'clip' (Dense) uses the activation 'hard_tanh', which tf_keras does not have, so "
        "TF-MOT (--prune) cannot work on this Keras 3 model: export it without --prune "
        "(converted as it is), or use one tf_keras has (relu, relu6, elu, selu, silu, gelu, "
        "mish, tanh, sigmoid, softmax; hard_sigmoid and hard_silu are rebuilt from layers)"
    )


def test_a_model_with_two_inputs_is_one_line(k3: Any, tmp_path: Path) -> None:
    a, b = k3.Input((4,)), k3.Input((4,))
    model = k3.Model([a, b], k3.layers.Dense(2)(k3.layers.Concatenate()([a, b])))
    path = _save(model, tmp_path, "two")
    proc = run_edgekit("export", str(path), *QUICK_DATA, "-q", "-o", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"Error: {path} has 2 input(s) and 1 output(s): edgekit exports classifiers with one "
        "input and one output; export a single-input, single-output model"
    )
