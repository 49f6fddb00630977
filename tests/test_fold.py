"""Tests of workstation.optimize.fold: batch-norm folding on tiny models and real Fashion-MNIST."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekit.core.config import DataConfig
from edgekit.core.data import Dataset, load_dataset
from edgekit.core.errors import ModelError
from edgekit.workstation._keras import keras, tf
from edgekit.workstation.cpu_kernels import layout_runs_here
from edgekit.workstation.optimize.fold import (
    FoldedPair,
    FoldResult,
    fold_batchnorm,
    foldable_batchnorms,
)

L = keras.layers
TOLERANCE = 1e-4  # max abs difference of predictions allowed after folding


@pytest.fixture(scope="module")
def fashion() -> Dataset:
    """A small slice of real Fashion-MNIST: 500 train, 100 validation, 200 test images."""
    return load_dataset(DataConfig(train_samples=500, test_samples=200, validation_size=100))


@pytest.fixture(scope="module")
def images(fashion: Dataset) -> np.ndarray:
    """The 200 real test images, (200, 28, 28) float32 in [0, 1]."""
    return np.asarray(fashion.x_test)


def _randomize_batchnorms(model: Any, seed: int = 0) -> None:
    """Give every BN non-trivial gamma, beta, moving mean and moving variance."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _randomize_batchnorms(layer, seed + 1)
        if not isinstance(layer, L.BatchNormalization):
            continue
        values = {}
        for var in layer.weights:
            n = var.shape[0]
            name = var.name.split("/")[-1].split(":")[0]
            if name == "gamma":
                # both signs: a negative scale must flip the kernel, not just shrink it
                values[var.ref()] = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n)
            elif name == "beta":
                values[var.ref()] = rng.normal(0.0, 0.5, n)
            elif name == "moving_mean":
                values[var.ref()] = rng.normal(0.0, 0.3, n)
            else:  # moving_variance
                values[var.ref()] = rng.uniform(0.05, 2.0, n)
        layer.set_weights([values[v.ref()] for v in layer.weights])


def _predict(model: Any, x: np.ndarray) -> list[np.ndarray]:
    out = model(x, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, list | tuple) else [out])]


def _max_diff(a: Any, b: Any, x: np.ndarray) -> float:
    pa, pb = _predict(a, x), _predict(b, x)
    assert len(pa) == len(pb)
    return max(float(np.max(np.abs(p - q))) for p, q in zip(pa, pb, strict=True))


def _batchnorm_names(model: Any) -> list[str]:
    return [layer.name for layer in model.layers if isinstance(layer, L.BatchNormalization)]


def _check_all_folded(model: Any, result: FoldResult, x: np.ndarray) -> None:
    assert result.kept == ()
    assert _batchnorm_names(result.model) == []
    assert foldable_batchnorms(result.model) == []
    assert result.model.name == model.name
    assert type(result.model) is type(model)
    assert _max_diff(model, result.model, x) < TOLERANCE


# --------------------------------------------------------------------------- folding


@pytest.mark.slow
def test_fold_sequential_mlp_removes_batchnorms_and_keeps_predictions(
    fashion: Dataset, images: np.ndarray
) -> None:
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            L.Input((28, 28)),
            L.Flatten(name="flatten"),
            L.Dense(32, use_bias=False, name="d1"),
            L.BatchNormalization(name="bn1"),
            L.ReLU(name="act1"),
            L.Dense(16, use_bias=False, name="d2"),
            L.BatchNormalization(name="bn2"),
            L.ReLU(name="act2"),
            L.Dense(10, name="logits"),
        ],
        name="mlp",
    )
    # One short epoch of real training gives the BNs real moving statistics.
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(np.asarray(fashion.x_train), fashion.y_train, epochs=1, batch_size=50, verbose=0)
    assert foldable_batchnorms(model) == ["bn1", "bn2"]

    result = fold_batchnorm(model)

    assert result.folded == (FoldedPair("bn1", "d1"), FoldedPair("bn2", "d2"))
    names = [layer.name for layer in result.model.layers]
    assert names == ["flatten", "d1", "act1", "d2", "act2", "logits"]
    assert result.model.get_layer("d1").use_bias and result.model.get_layer("d2").use_bias
    _check_all_folded(model, result, images)


def test_fold_functional_conv_depthwise_and_dense(images: np.ndarray) -> None:
    keras.utils.set_random_seed(2)
    inputs = L.Input((28, 28, 1))
    x = L.Conv2D(4, 3, strides=2, use_bias=True, name="conv")(inputs)
    x = L.BatchNormalization(name="bn_conv")(x)
    x = L.ReLU()(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False, name="dw")(x)
    x = L.BatchNormalization(name="bn_dw")(x)
    x = L.ReLU()(x)
    x = L.Flatten()(x)
    x = L.Dense(12, name="dense")(x)
    x = L.BatchNormalization(name="bn_dense")(x)
    x = L.ReLU()(x)
    outputs = L.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name="cnn")
    _randomize_batchnorms(model)

    result = fold_batchnorm(model)

    assert result.folded == (
        FoldedPair("bn_conv", "conv"),
        FoldedPair("bn_dw", "dw"),
        FoldedPair("bn_dense", "dense"),
    )
    _check_all_folded(model, result, images[..., None])
    # DepthwiseConv2D: output channel c = in_channel * depth_multiplier + m.
    bn = model.get_layer("bn_dw")
    gamma, _, _, variance = (w.astype(np.float64) for w in bn.get_weights())
    scale = (gamma / np.sqrt(variance + bn.epsilon)).reshape(4, 2)
    expected = model.get_layer("dw").get_weights()[0] * scale
    np.testing.assert_allclose(result.model.get_layer("dw").get_weights()[0], expected, rtol=1e-6)


def _channels_first_model() -> Any:
    """Conv2D(channels_first) -> BN(axis=1), on (28, 28) images reshaped to (1, 28, 28)."""
    keras.utils.set_random_seed(3)
    inputs = L.Input((28, 28))
    x = L.Reshape((1, 28, 28))(inputs)
    x = L.Conv2D(3, 1, data_format="channels_first", name="conv")(x)
    x = L.BatchNormalization(axis=1, name="bn")(x)
    outputs = L.Dense(10)(L.Flatten()(L.ReLU()(x)))
    model = keras.Model(inputs, outputs, name="nchw")
    _randomize_batchnorms(model)
    return model


def _tflite_predict(model: Any, x: np.ndarray) -> np.ndarray:
    """Predictions of the model's float32 .tflite (the converter rewrites NCHW to NHWC)."""
    from edgekit.device.runtime import load_interpreter

    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = load_interpreter(blob)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(np.float32))
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(out["index"]))


def test_fold_channels_first_conv_with_batchnorm_on_axis_1(images: np.ndarray) -> None:
    """Folding never runs the model, so it works with any CPU kernels. Keras can evaluate
    channels_first only where oneDNN is on; elsewhere the folded model is checked through
    the converter, whose NHWC rewrite runs everywhere."""
    model = _channels_first_model()

    result = fold_batchnorm(model)

    assert result.folded == (FoldedPair("bn", "conv"),)
    if layout_runs_here(model) is None:
        _check_all_folded(model, result, images)
    else:  # TF_ENABLE_ONEDNN_OPTS=0, or a CPU without AVX-512
        assert result.kept == () and _batchnorm_names(result.model) == []
        assert foldable_batchnorms(result.model) == []
    diff = np.abs(_tflite_predict(model, images) - _tflite_predict(result.model, images))
    assert float(diff.max()) < TOLERANCE


def test_channels_first_model_without_onednn_gets_a_one_line_error(tmp_path: Path) -> None:
    """With TensorFlow's stock CPU kernels (oneDNN off), Keras cannot run NCHW Conv2D: the
    export refuses the model up front, in one line, and writes nothing."""
    path = tmp_path / "nchw.keras"
    _channels_first_model().save(path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit.cli.main",
            "export",
            str(path),
            "--test-samples",
            "50",
            "--precision",
            "float32",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: model 'nchw' has channels_first layers ('conv')"), last
    assert "NHWC" in last and "data_format='channels_last'" in last
    assert not list(out.glob("*.tflite")) and not (out / "manifest.json").exists()


def test_fold_dense_on_sequence_input(images: np.ndarray) -> None:
    """A Dense on (N, 28, 28) acts on the last axis, where the BN normalizes."""
    model = keras.Sequential(
        [
            L.Input((28, 28)),
            L.Dense(6, name="d"),
            L.BatchNormalization(name="bn"),
            L.Flatten(),
            L.Dense(10),
        ],
        name="seq3d",
    )
    _randomize_batchnorms(model)
    result = fold_batchnorm(model)
    assert result.folded == (FoldedPair("bn", "d"),)
    _check_all_folded(model, result, images)


@pytest.mark.parametrize(
    ("center", "scale"), [(False, True), (True, False), (False, False)], ids=str
)
def test_fold_batchnorm_without_center_or_scale(
    images: np.ndarray, center: bool, scale: bool
) -> None:
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            L.Input((28, 28)),
            L.Flatten(),
            L.Dense(16, name="d"),
            L.BatchNormalization(center=center, scale=scale, name="bn"),
            L.ReLU(),
            L.Dense(10),
        ],
        name="mlp",
    )
    _randomize_batchnorms(model)
    assert len(model.get_layer("bn").weights) == 2 + center + scale

    result = fold_batchnorm(model)

    assert result.folded == (FoldedPair("bn", "d"),)
    _check_all_folded(model, result, images)


def test_fold_consecutive_batchnorms_into_one_layer(images: np.ndarray) -> None:
    model = keras.Sequential(
        [
            L.Input((28, 28)),
            L.Flatten(),
            L.Dense(8, name="d"),
            L.BatchNormalization(name="bn1"),
            L.BatchNormalization(name="bn2"),
            L.Dense(10),
        ],
        name="twice",
    )
    _randomize_batchnorms(model)
    result = fold_batchnorm(model)
    assert result.folded == (FoldedPair("bn1", "d"), FoldedPair("bn2", "d"))
    _check_all_folded(model, result, images)


def test_fold_batchnorm_as_last_layer(images: np.ndarray) -> None:
    keras.utils.set_random_seed(5)
    sequential = keras.Sequential(
        [L.Input((28, 28)), L.Flatten(), L.Dense(10, name="logits"), L.BatchNormalization()],
        name="seq_last",
    )
    inputs = L.Input((28, 28))
    logits = L.Dense(10, name="logits")(L.Flatten()(inputs))
    outputs = [L.BatchNormalization(name="bn_out")(logits), L.Dense(3, name="aux")(inputs)]
    functional = keras.Model(inputs, outputs, name="fn_last")

    for model in (sequential, functional):
        _randomize_batchnorms(model)
        result = fold_batchnorm(model)
        assert [p.layer for p in result.folded] == ["logits"]
        assert result.model.output_names[0] == "logits"
        _check_all_folded(model, result, images)


def test_fold_batchnorm_before_leaky_relu(images: np.ndarray) -> None:
    model = keras.Sequential(
        [
            L.Input((28, 28)),
            L.Flatten(),
            L.Dense(16, use_bias=False, name="d"),
            L.BatchNormalization(name="bn"),
            L.LeakyReLU(0.2),
            L.Dense(10),
        ],
        name="leaky",
    )
    _randomize_batchnorms(model)
    result = fold_batchnorm(model)
    assert result.folded == (FoldedPair("bn", "d"),)
    assert any(isinstance(layer, L.LeakyReLU) for layer in result.model.layers)
    _check_all_folded(model, result, images)


@pytest.mark.parametrize("kind", ["Dense", "Conv2D", "DepthwiseConv2D"])
def test_fold_keeps_zero_weights_zero(images: np.ndarray, kind: str) -> None:
    keras.utils.set_random_seed(6)
    if kind == "Dense":
        model = keras.Sequential(
            [
                L.Input((28, 28)),
                L.Flatten(),
                L.Dense(32, use_bias=False, name="w"),
                L.BatchNormalization(name="bn"),
                L.Dense(10),
            ],
            name="sparse",
        )
        x = images
    else:
        layer = (
            L.Conv2D(6, 3, name="w")
            if kind == "Conv2D"
            else L.DepthwiseConv2D(3, depth_multiplier=2, name="w")
        )
        model = keras.Sequential(
            [
                L.Input((28, 28, 3)),
                layer,
                L.BatchNormalization(name="bn"),
                L.Flatten(),
                L.Dense(10),
            ],
            name="sparse",
        )
        x = np.repeat(images[..., None], 3, axis=-1)
    _randomize_batchnorms(model)
    rng = np.random.default_rng(7)
    weights = model.get_layer("w").get_weights()
    weights[0][rng.random(weights[0].shape) < 0.8] = 0.0
    model.get_layer("w").set_weights(weights)
    bn = model.get_layer("bn")
    bn_weights = bn.get_weights()
    bn_weights[0][0] = 0.0  # gamma = 0 in output channel 0 zeros that channel's weights
    bn.set_weights(bn_weights)
    zero_before = weights[0] == 0.0

    result = fold_batchnorm(model)

    kernel = result.model.get_layer("w").get_weights()[0]
    channel_0 = np.zeros_like(zero_before)
    if kind == "DepthwiseConv2D":
        channel_0[:, :, 0, 0] = True  # output channel 0 = input channel 0, multiplier 0
    else:
        channel_0[..., 0] = True
    np.testing.assert_array_equal(kernel == 0.0, zero_before | channel_0)
    assert 0.75 < zero_before.mean() < 0.85
    assert _max_diff(model, result.model, x) < TOLERANCE


# --------------------------------------------------------------------------- kept


def _after_relu_layer() -> Any:
    return keras.Sequential(
        [
            L.Input((28, 28)),
            L.Flatten(),
            L.Dense(16, name="d"),
            L.ReLU(name="re_lu_x"),
            L.BatchNormalization(name="bn"),
            L.Dense(10),
        ],
        name="after_relu",
    )


def _after_relu_dense() -> Any:
    return keras.Sequential(
        [
            L.Input((28, 28)),
            L.Flatten(),
            L.Dense(16, activation="relu", name="d"),
            L.BatchNormalization(name="bn"),
            L.Dense(10),
        ],
        name="after_relu_dense",
    )


def _shared_tensor() -> Any:
    inputs = L.Input((28, 28))
    h = L.Dense(16, name="d")(L.Flatten()(inputs))
    x = L.Add(name="add")([L.BatchNormalization(name="bn")(h), L.ReLU(name="act")(h)])
    return keras.Model(inputs, L.Dense(10)(x), name="shared_tensor")


def _first_layer_sequential() -> Any:
    return keras.Sequential(
        [L.Input((28, 28)), L.BatchNormalization(name="bn"), L.Flatten(), L.Dense(10)],
        name="first_seq",
    )


def _first_layer_functional() -> Any:
    inputs = L.Input((28, 28), name="pixels")
    x = L.BatchNormalization(name="bn")(inputs)
    return keras.Model(inputs, L.Dense(10)(L.Flatten()(x)), name="first_fn")


def _shared_layer() -> Any:
    inputs = L.Input((28, 28))
    h = L.Dense(16)(L.Flatten()(inputs))
    shared = L.Dense(16, name="d")
    x = L.BatchNormalization(name="bn")(shared(L.ReLU()(h)))
    return keras.Model(inputs, L.Dense(10)(L.Add()([shared(h), x])), name="shared_layer")


def _wrong_axis() -> Any:
    return keras.Sequential(
        [
            L.Input((28, 28, 1)),
            L.Conv2D(4, 3, name="d"),
            L.BatchNormalization(axis=1, name="bn"),
            L.Flatten(),
            L.Dense(10),
        ],
        name="wrong_axis",
    )


def _training_true() -> Any:
    inputs = L.Input((28, 28))
    h = L.Dense(16, name="d")(L.Flatten()(inputs))
    x = L.BatchNormalization(name="bn")(h, training=True)
    return keras.Model(inputs, L.Dense(10)(x), name="training_true")


KEPT_CASES: dict[str, tuple[Callable[[], Any], str]] = {
    "after_relu_layer": (
        _after_relu_layer,
        "input comes from ReLU 're_lu_x', not a Dense/Conv2D/DepthwiseConv2D with linear "
        "activation",
    ),
    "after_dense_with_relu": (
        _after_relu_dense,
        "input comes from Dense 'd' with activation 'relu', not a Dense/Conv2D/DepthwiseConv2D "
        "with linear activation",
    ),
    "shared_tensor": (
        _shared_tensor,
        "the output of Dense 'd' also feeds act; folding would change what those see",
    ),
    "first_layer_sequential": (_first_layer_sequential, "not a Dense/Conv2D/DepthwiseConv2D"),
    "first_layer_functional": (
        _first_layer_functional,
        "input comes from the model input 'pixels', not a Dense/Conv2D/DepthwiseConv2D",
    ),
    "shared_layer": (_shared_layer, "Dense 'd' is called 2 times in the model (shared layer)"),
    "wrong_axis": (_wrong_axis, "it normalizes axis [1], but the channel axis of Conv2D 'd'"),
    "training_true": (_training_true, "it is called with training=True"),
}


@pytest.mark.parametrize("case", list(KEPT_CASES))
def test_fold_keeps_batchnorm_it_cannot_fold(images: np.ndarray, case: str) -> None:
    build, reason = KEPT_CASES[case]
    keras.utils.set_random_seed(8)
    model = build()
    x = images[..., None] if case == "wrong_axis" else images
    _randomize_batchnorms(model)

    result = fold_batchnorm(model)

    assert result.folded == ()
    assert [k.batchnorm for k in result.kept] == ["bn"]
    assert reason in result.kept[0].reason
    assert _batchnorm_names(result.model) == ["bn"]
    assert foldable_batchnorms(model) == []
    assert _max_diff(model, result.model, x) < TOLERANCE


def test_fold_first_layer_reason_names_the_model_input() -> None:
    result = fold_batchnorm(_first_layer_sequential())
    assert result.kept[0].reason.startswith("input comes from the model input")


def test_fold_keeps_batchnorm_inside_nested_model(images: np.ndarray) -> None:
    inner = keras.Sequential(
        [L.Input((784,)), L.Dense(16, use_bias=False), L.BatchNormalization(name="bn_in")],
        name="inner",
    )
    inputs = L.Input((28, 28))
    x = L.Dense(8, name="d")(inner(L.Flatten()(inputs)))
    outputs = L.Dense(10)(L.BatchNormalization(name="bn_out")(x))
    model = keras.Model(inputs, outputs, name="outer")
    _randomize_batchnorms(model)

    result = fold_batchnorm(model)

    assert result.folded == (FoldedPair("bn_out", "d"),)
    assert [k.batchnorm for k in result.kept] == ["inner/bn_in"]
    assert "inside nested model 'inner'" in result.kept[0].reason
    assert _max_diff(model, result.model, images) < TOLERANCE


# --------------------------------------------------------------------------- contract


def test_fold_does_not_modify_input_model(images: np.ndarray) -> None:
    model = keras.Sequential(
        [
            L.Input((28, 28)),
            L.Flatten(),
            L.Dense(16, use_bias=False, name="d"),
            L.BatchNormalization(name="bn"),
            L.ReLU(),
            L.Dense(10),
        ],
        name="untouched",
    )
    _randomize_batchnorms(model)
    before = [w.copy() for w in model.get_weights()]
    config_before = json.dumps(model.get_config(), sort_keys=True, default=str)
    predictions_before = _predict(model, images)[0]

    result = fold_batchnorm(model)

    assert result.model is not model
    after = model.get_weights()
    assert len(after) == len(before)
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert json.dumps(model.get_config(), sort_keys=True, default=str) == config_before
    assert _batchnorm_names(model) == ["bn"]
    assert not model.get_layer("d").use_bias
    np.testing.assert_array_equal(_predict(model, images)[0], predictions_before)


def test_fold_result_to_dict_is_json_ready() -> None:
    model = keras.Sequential(
        [
            L.Input((4,)),
            L.Dense(3, name="d"),
            L.BatchNormalization(name="bn"),
            L.ReLU(name="act"),
            L.BatchNormalization(name="bn_kept"),
        ],
        name="tiny",
    )
    result = fold_batchnorm(model)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["model"] == "tiny"
    assert data["folded"] == [{"batchnorm": "bn", "layer": "d"}]
    assert data["kept"] == [
        {
            "batchnorm": "bn_kept",
            "reason": "input comes from ReLU 'act', not a Dense/Conv2D/DepthwiseConv2D "
            "with linear activation",
        }
    ]


@pytest.mark.parametrize("bad", [None, "model.keras", L.Dense(3)], ids=["None", "str", "layer"])
def test_fold_rejects_non_model(bad: Any) -> None:
    expected = (
        f"fold_batchnorm received {type(bad).__name__}, expected a tf_keras Model: pass a "
        "model built with `from edgekit.workstation._keras import keras` (Sequential or Functional)"
    )
    with pytest.raises(ModelError) as info:
        fold_batchnorm(bad)
    assert str(info.value) == expected
    with pytest.raises(ModelError, match=f"^foldable_batchnorms received {type(bad).__name__},"):
        foldable_batchnorms(bad)


def test_fold_rejects_unbuilt_model() -> None:
    model = keras.Sequential([L.Dense(3), L.BatchNormalization()], name="lazy")
    with pytest.raises(ModelError, match="model 'lazy' is not built, expected a model with"):
        fold_batchnorm(model)


def test_fold_rejects_subclassed_model() -> None:
    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="net")
            self.dense = L.Dense(3)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    model = Net()
    model(np.zeros((1, 4), np.float32))
    with pytest.raises(ModelError, match="subclassed Net, expected a Sequential or Functional"):
        fold_batchnorm(model)
