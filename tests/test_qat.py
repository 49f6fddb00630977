"""Quantization-aware training with the real TF-MOT, converter and LiteRT on Fashion-MNIST."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from conftest import SMALL_PRUNE, SMALL_TRAIN

from edgekit.core.config import QatConfig
from edgekit.core.errors import EdgekitError

pytestmark = pytest.mark.slow

QAT = QatConfig(epochs=2, batch_size=64, seed=7)


@pytest.fixture(scope="module")
def trained(small_data: Any) -> Any:
    """The MLP 64-32 with batch norm after each Dense (Dense -> BN -> ReLU), trained."""
    from edgekit.workstation.train import build_model, train_model

    model = build_model(SMALL_TRAIN, small_data.input_shape, small_data.num_classes)
    train_model(model, small_data, SMALL_TRAIN, progress=lambda msg: None)
    return model


@pytest.fixture(scope="module")
def pruned(trained: Any, small_data: Any) -> Any:
    """`trained` pruned to 0.75 (dense1, dense2; the 320-weight output kernel stays dense)."""
    from edgekit.workstation.train import prune_model

    return prune_model(trained, small_data, SMALL_PRUNE, progress=lambda msg: None).model


@pytest.fixture(scope="module")
def qat_pruned(pruned: Any, small_data: Any) -> Any:
    from edgekit.workstation.train.qat import quantize_aware_train

    return quantize_aware_train(pruned, small_data, QAT, progress=lambda msg: None)


def _int8(model: Any, data: Any) -> bytes:
    from edgekit.core.recipes import recipe_for
    from edgekit.workstation.export.converter import convert

    return convert(model, recipe_for("int8"), data.x_train, calibration_samples=300)


def test_qat_of_pruned_bn_mlp_gives_sparse_int8_file_as_accurate(
    qat_pruned: Any, pruned: Any, small_data: Any
) -> None:
    from edgekit.device.modelfile import parse_model_bytes
    from edgekit.device.runtime import evaluate
    from edgekit.workstation.train import keras_accuracy

    assert qat_pruned.folded_batchnorms == ["bn1", "bn2"]
    assert qat_pruned.fused_activations == ["act1", "act2"]
    assert qat_pruned.unquantized == {}  # every kernel fake-quantized while training
    assert qat_pruned.epochs_run == 2
    blob = _int8(qat_pruned.model, small_data)
    info = parse_model_bytes(blob)
    # BN folded first: three int8 FULLY_CONNECTED, no float op left in the file.
    assert info.operators.get("FULLY_CONNECTED") == 3
    assert "DEQUANTIZE" not in info.operators and "QUANTIZE" not in info.operators
    kernels = {w.shape: w for w in info.weights}
    assert set(kernels) == {(64, 784), (32, 64), (10, 32)}
    assert {w.dtype for w in info.weights} == {"int8"}
    for shape in ((64, 784), (32, 64)):
        assert abs(kernels[shape].zeros / kernels[shape].elements - 0.75) <= 0.01, shape
    assert abs(info.weight_sparsity - 0.75) <= 0.01
    # The result's sparsity is what the file stores.
    assert qat_pruned.kernel_sparsity["dense1"] == pytest.approx(kernels[(64, 784)].sparsity)
    pruned_acc = keras_accuracy(pruned, small_data.x_test, small_data.y_test)
    file_acc = evaluate(blob, small_data.x_test, small_data.y_test).accuracy
    assert file_acc >= pruned_acc - 0.01, (file_acc, pruned_acc)


def test_qat_leaves_the_input_model_alone(qat_pruned: Any, pruned: Any) -> None:
    from edgekit.workstation.train import kernel_sparsity

    names = [layer.name for layer in pruned.layers]
    assert "bn1" in names and "act1" in names
    assert kernel_sparsity(pruned)["dense1"] == pytest.approx(0.75, abs=0.01)


def test_sparse_model_gets_prune_preserve_and_dense_model_default(
    qat_pruned: Any, trained: Any, small_data: Any
) -> None:
    from edgekit.workstation.train.qat import quantize_aware_train

    assert qat_pruned.scheme == "prune_preserve"
    one = dataclasses.replace(QAT, epochs=1)
    dense = quantize_aware_train(trained, small_data, one, progress=lambda msg: None)
    assert dense.scheme == "default"
    assert max(dense.kernel_sparsity.values()) < 0.05


def test_default_scheme_loses_pruned_zeros(pruned: Any, small_data: Any) -> None:
    """Why edgekit picks prune_preserve: TF-MOT's plain scheme lets the zeros drift."""
    from edgekit.workstation._keras import tfmot
    from edgekit.workstation.optimize import fold_batchnorm, fuse_relu
    from edgekit.workstation.train.batches import shuffled_batches
    from edgekit.workstation.train.model import compile_model
    from edgekit.workstation.train.qat import quantized_kernel_sparsity

    ready = fuse_relu(fold_batchnorm(pruned).model).model
    plain = tfmot.quantization.keras.quantize_model(ready)
    compile_model(plain, QAT.learning_rate)
    plain.fit(shuffled_batches(small_data.x_train, small_data.y_train, 64, 7), epochs=1, verbose=0)
    assert quantized_kernel_sparsity(plain)["dense1"] < 0.7


def test_relu_layers_are_fused_so_tfmot_quantizes_their_kernels(trained: Any) -> None:
    """TF-MOT gives a Dense followed by a ReLU layer no weight quantizer (NoOpQuantizeConfig)."""
    from edgekit.workstation._keras import tfmot
    from edgekit.workstation.optimize import fold_batchnorm, fuse_relu

    folded = fold_batchnorm(trained).model
    configs = {
        layer.layer.name: type(layer.quantize_config).__name__
        for layer in tfmot.quantization.keras.quantize_model(folded).layers
        if hasattr(layer, "quantize_config")
    }
    assert configs["dense1"] == "NoOpQuantizeConfig"  # the trap, as TF-MOT 0.8.1 has it
    fused = fuse_relu(folded)
    assert [(f.relu, f.layer, f.activation) for f in fused.fused] == [
        ("act1", "dense1", "relu"),
        ("act2", "dense2", "relu"),
    ]
    x = np.random.default_rng(0).random((16, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(fused.model.predict(x, verbose=0), folded.predict(x, verbose=0))
    configs = {
        layer.layer.name: type(layer.quantize_config).__name__
        for layer in tfmot.quantization.keras.quantize_model(fused.model).layers
        if hasattr(layer, "quantize_config")
    }
    assert configs["dense1"] == configs["dense2"] == "Default8BitQuantizeConfig"


def test_fuse_relu_rewires_functional_models_and_keeps_other_relus() -> None:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.optimize import fuse_relu

    layers = keras.layers
    inp = keras.Input((6,))
    a = layers.Dense(5, name="a")(inp)
    a_relu = layers.Activation("relu", name="a_relu")(a)
    b = layers.Dense(5, name="b")(a_relu)
    capped = layers.ReLU(max_value=3.0, name="capped")(b)  # no fused form: kept
    c = layers.Dense(5, name="c")(inp)
    c_relu = layers.ReLU(name="c_relu")(c)
    both = layers.Add(name="add")([capped, c_relu, c])  # c also feeds add: c_relu is kept
    model = keras.Model(inp, both)
    fused = fuse_relu(model)
    assert [(f.relu, f.layer) for f in fused.fused] == [("a_relu", "a")]
    names = [layer.name for layer in fused.model.layers]
    assert "a_relu" not in names and "capped" in names and "c_relu" in names
    assert fused.model.get_layer("a").get_config()["activation"] == "relu"
    x = np.random.default_rng(1).normal(size=(8, 6)).astype(np.float32)
    np.testing.assert_allclose(fused.model.predict(x, verbose=0), model.predict(x, verbose=0))


def test_layers_qat_cannot_quantize_are_reported_and_the_file_converts(small_data: Any) -> None:
    from edgekit.device.modelfile import parse_model_bytes
    from edgekit.workstation._keras import keras
    from edgekit.workstation.train.qat import quantize_aware_train

    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            layers.Rescaling(2.0, offset=-1.0, name="rescale"),
            layers.Flatten(name="flatten"),
            layers.Dense(32, name="dense"),
            layers.ReLU(max_value=3.0, name="capped"),
            layers.Dropout(0.2, name="dropout"),
            layers.Dense(10, activation="softmax", name="output"),
        ]
    )
    result = quantize_aware_train(
        model, small_data, dataclasses.replace(QAT, epochs=1), progress=lambda msg: None
    )
    assert set(result.unquantized) == {"rescale", "dense"}
    assert "no quantize config for Rescaling" in result.unquantized["rescale"]
    assert "no weight quantizer" in result.unquantized["dense"]
    info = parse_model_bytes(_int8(result.model, small_data))
    assert {w.dtype for w in info.weights} == {"int8"}


def test_qat_without_training_data_says_so(trained: Any, small_data: Any) -> None:
    from edgekit.workstation.train.qat import quantize_aware_train

    empty = dataclasses.replace(
        small_data,
        x_train=np.zeros((0, 28, 28), np.float32),
        y_train=np.zeros((0,), np.int64),
    )
    expected = (
        "--qat needs training data: got no training samples; pass data with a training set "
        "(the model is fine-tuned on it)"
    )
    for data in (empty, None):
        with pytest.raises(EdgekitError) as err:
            quantize_aware_train(trained, data, QAT)
        assert str(err.value) == expected


def test_nested_model_is_refused(small_data: Any) -> None:
    from edgekit.core.errors import ModelError
    from edgekit.workstation._keras import keras
    from edgekit.workstation.train.qat import quantize_aware_train

    inner = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(8)], name="inner")
    model = keras.Sequential([keras.Input((28, 28)), inner, keras.layers.Dense(10)])
    with pytest.raises(ModelError, match="^the model nests another model"):
        quantize_aware_train(model, small_data, QAT)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "qat epochs must be > 0, got 0: pass a positive number"),
        ({"batch_size": 0}, "batch_size must be > 0, got 0: pass a positive number"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0, got 0.0: pass a positive number"),
    ],
)
def test_qat_config_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(EdgekitError) as err:
        QatConfig(**kwargs)
    assert str(err.value) == message
