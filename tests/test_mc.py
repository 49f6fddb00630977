"""MC dropout in one .tflite (edgekit.workstation.export.mc, edgekit.device.mc) and the uncertainty
metrics
of bench (edgekit.device.bench.uncertainty), on a tiny real MLP with Dropout and real
Fashion-MNIST."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from edgekit.core.errors import EdgekitError
from edgekit.device.bench.uncertainty import (
    CoverageRow,
    compare_uncertainty,
    expected_calibration_error,
    negative_log_likelihood,
    risk_coverage,
    uncertainty_metrics,
)
from edgekit.device.mc import (
    MC_OUTPUTS,
    mc_output_indices,
    predict_mc,
    predictive_entropy,
)
from edgekit.device.modelfile import parse_model_bytes
from edgekit.device.opcheck import compute_layers
from edgekit.device.runtime import (
    evaluate,
    input_details,
    load_interpreter,
    output_details,
    predict,
)

SAMPLES = 10  # N, dropout passes per file
RATE = 0.3


@pytest.fixture(scope="module")
def mc(small_data: Any) -> dict[str, Any]:
    """A 256-128 MLP with Dropout after each hidden layer, 2 epochs; its deterministic int8
    file and MC files (N=10): fixed masks in float32 and int8, random masks in float32."""
    from edgekit.core.recipes import recipe_for
    from edgekit.workstation._keras import keras, set_determinism
    from edgekit.workstation.export.converter import convert
    from edgekit.workstation.export.mc import build_mc_model, convert_mc

    set_determinism(7)
    layers: list[Any] = [keras.layers.Input((28, 28), name="image"), keras.layers.Flatten()]
    for i, units in enumerate((256, 128), start=1):
        layers += [
            keras.layers.Dense(units, activation="relu", name=f"dense{i}"),
            keras.layers.Dropout(RATE, name=f"dropout{i}"),
        ]
    layers.append(keras.layers.Dense(10, activation="softmax", name="output"))
    model = keras.Sequential(layers, name="mlp")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.asarray(small_data.x_train)
    model.fit(x, small_data.y_train, epochs=2, batch_size=32, verbose=0)
    fixed = build_mc_model(model, SAMPLES)
    random = build_mc_model(model, SAMPLES, masks="random")
    return {
        "model": model,
        "fixed": fixed,
        "det_int8": convert(model, recipe_for("int8"), x, 200, 42),
        "float32": convert_mc(fixed, "float32"),
        "int8": convert_mc(fixed, "int8", x, 200, 42),
        "random": convert_mc(random, "float32"),
    }


@pytest.fixture(scope="module")
def test_set(small_data: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(small_data.x_test), small_data.y_test


def _numpy_mc(model: Any, fixed: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """N dropout passes by hand: the Keras weights and the MC model's stored masks."""
    (w1, b1), (w2, b2), (w3, b3) = (
        model.get_layer(n).get_weights() for n in ("dense1", "dense2", "output")
    )
    s1 = fixed.get_layer("mc_dropout1").scale
    s2 = fixed.get_layer("mc_dropout2").scale
    h1 = np.maximum(x.reshape(len(x), -1) @ w1 + b1, 0)
    probs = []
    for k in range(SAMPLES):
        h2 = np.maximum((h1 * s1[k]) @ w2 + b2, 0) * s2[k]
        z = h2 @ w3 + b3
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    p = np.stack(probs)
    mean = p.mean(axis=0)
    return mean, p.std(axis=0), predictive_entropy(mean)


def test_mc_model_is_n_masked_passes_scaled_like_keras(mc: dict[str, Any], test_set: Any) -> None:
    x = test_set[0][:32]
    fixed = mc["fixed"]
    scale = fixed.get_layer("mc_dropout1").scale
    assert scale.shape == (SAMPLES, 256)
    assert set(np.unique(scale)) == {0.0, np.float32(1 / (1 - RATE))}
    assert abs((scale > 0).mean() - (1 - RATE)) < 0.03  # keep rate
    assert len({row.tobytes() for row in scale}) == SAMPLES  # N different masks
    got = fixed.predict(x, verbose=0)
    for g, want in zip(got, _numpy_mc(mc["model"], fixed, x), strict=True):
        np.testing.assert_allclose(g, want, atol=2e-5)
    # Sequential: the layers before the first Dropout run once, then the batch is tiled.
    assert fixed.get_layer("mc_tile").input.name.startswith("dense1")


def test_functional_model_tiles_at_the_input_with_the_same_masks(
    mc: dict[str, Any], test_set: Any
) -> None:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.export.mc import build_mc_model

    inp = keras.Input((28, 28))
    h = inp
    for layer in mc["model"].layers:
        h = layer(h)
    functional = build_mc_model(keras.Model(inp, h, name="functional"), SAMPLES)
    x = test_set[0][:16]
    for a, b in zip(
        functional.predict(x, verbose=0), mc["fixed"].predict(x, verbose=0), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_fixed_mask_file_runs_and_repeats_exactly(
    mc: dict[str, Any], test_set: Any, precision: str
) -> None:
    x = test_set[0][:200]
    interpreter = load_interpreter(mc[precision])
    first, again = predict_mc(interpreter, x), predict_mc(interpreter, x)
    fresh = [predict_mc(load_interpreter(mc[precision]), x) for _ in range(2)]
    one_by_one = predict_mc(interpreter, x[:20], batch_size=1)
    for other in (again, *fresh):
        for name in ("mean", "std", "entropy"):
            assert np.array_equal(getattr(first, name), getattr(other, name)), name
    np.testing.assert_array_equal(one_by_one.mean, first.mean[:20])  # any batch, same numbers
    assert first.mean.shape == first.std.shape == (200, 10) and first.entropy.shape == (200,)


def test_outputs_are_found_by_name_not_position(mc: dict[str, Any], test_set: Any) -> None:
    interpreter = load_interpreter(mc["int8"])
    indices = mc_output_indices(interpreter)
    assert indices is not None and set(indices) == set(MC_OUTPUTS)
    by_index = {i: n for n, i in indices.items()}
    order = [by_index[o.index] for o in output_details(interpreter)]
    # The converter sorts the outputs by name; convert_mc puts them back: output 0 is the mean.
    assert order == list(MC_OUTPUTS)
    assert not any(n in o.name for o in output_details(interpreter) for n in MC_OUTPUTS)
    # A live SignatureRunner holds the interpreter: resizing it then fails. Let it go at once.
    assert set(interpreter.get_signature_runner()(image=np.zeros((1, 28, 28), np.int8))) == set(
        MC_OUTPUTS
    )
    x = test_set[0][:50]
    got = predict_mc(interpreter, x)
    np.testing.assert_allclose(got.mean.sum(axis=1), 1.0, atol=0.03)
    # runtime.predict (and so evaluate and bench) returns the mean of an MC file, by name.
    np.testing.assert_array_equal(predict(interpreter, x), got.mean)
    assert mc_output_indices(load_interpreter(mc["det_int8"])) is None  # a plain file: no MC


def test_mc_accuracy_std_and_entropy(mc: dict[str, Any], test_set: Any) -> None:
    x, y = test_set
    det = evaluate(mc["det_int8"], x, y).accuracy
    for precision in ("float32", "int8"):
        got = predict_mc(mc[precision], x)
        acc = float((got.predictions == y).mean())
        assert acc >= det - 0.01, (precision, acc, det)
        assert (got.std >= 0).all() and (got.std > 0).any()
        assert got.std.max() < 0.5  # probabilities in [0, 1] spread at most 0.5
        np.testing.assert_allclose(got.entropy, predictive_entropy(got.mean), atol=1e-5)
        assert evaluate(mc[precision], x, y).accuracy == acc  # evaluate reads mc_mean too


def test_int8_mc_file_computes_in_int8(mc: dict[str, Any]) -> None:
    layers = compute_layers(mc["int8"])
    assert [c.op for c in layers] == ["FULLY_CONNECTED"] * 3
    assert {(c.activation_dtype, c.weight_dtype) for c in layers} == {("int8", "int8")}
    # int8 input; the statistics run in float after one DEQUANTIZE, so the outputs are float32
    # and neither clipped nor saturated at the ranges calibration saw.
    interpreter = load_interpreter(mc["int8"])
    assert input_details(interpreter)[0].dtype == "int8"
    assert {o.dtype for o in output_details(interpreter)} == {"float32"}
    ops = parse_model_bytes(mc["int8"]).operators
    assert ops["DEQUANTIZE"] == 1 and "QUANTIZE" not in ops


def test_random_masks_change_per_invoke_and_replay_in_a_fresh_interpreter(
    mc: dict[str, Any], test_set: Any
) -> None:
    assert parse_model_bytes(mc["random"]).operators["RANDOM_UNIFORM"] == 2
    x = test_set[0][:8]
    runs = []
    for _ in range(2):
        interpreter = load_interpreter(mc["random"])
        runs.append([predict_mc(interpreter, x).mean for _ in range(2)])
    assert not np.array_equal(runs[0][0], runs[0][1])  # new masks every invoke
    np.testing.assert_array_equal(runs[0][0], runs[1][0])  # the same sequence when fresh
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def _raises(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(EdgekitError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_mc_requests_get_one_line_errors(mc: dict[str, Any], test_set: Any) -> None:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.export.mc import build_mc_model, convert_mc

    model = mc["model"]
    assert _raises(build_mc_model, model, 0) == "--mc-samples must be >= 1, got 0"
    assert "got -3" in _raises(build_mc_model, model, -3)
    assert "'sometimes'" in _raises(build_mc_model, model, 5, masks="sometimes")
    plain = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="softmax")], name="plain"
    )
    assert _raises(build_mc_model, plain, 10).startswith(
        "--mc-samples needs a model with Dropout layers: plain has none"
    )
    logits = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(3),
        ],
        name="logits",
    )
    assert "softmax" in _raises(build_mc_model, logits, 10)
    assert "float16" in _raises(convert_mc, mc["fixed"], "float16")
    assert "build_mc_model" in _raises(convert_mc, model, "float32")
    assert "calibration" in _raises(convert_mc, mc["fixed"], "int8", None)
    assert "--mc-samples N" in _raises(predict_mc, mc["det_int8"], test_set[0][:2])
    assert "shape" in _raises(predict_mc, mc["float32"], np.zeros((2, 27, 28), np.float32))


def test_alpha_and_spatial_dropout_follow_keras_training_math() -> None:
    """Fixed masks reproduce what Keras computes in training for those masks."""
    from edgekit.workstation._keras import keras
    from edgekit.workstation.export.mc import build_mc_model

    inp = keras.Input((6,))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.AlphaDropout(0.4)(inp))
    model = keras.Model(inp, out, name="alpha")
    mc_model = build_mc_model(model, 4, seed=3)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    # Reference: tf_keras AlphaDropout's training formula with the same keep masks.
    keep = np.random.default_rng([3, 0]).random((4, 6)) >= 0.4
    alpha_p = -1.6732632423543772 * 1.0507009873554805
    a = ((1 - 0.4) * (1 + 0.4 * alpha_p**2)) ** -0.5
    b = -a * alpha_p * 0.4
    w, bias = model.layers[-1].get_weights()
    probs = []
    for k in range(4):
        z = (a * np.where(keep[k], x, alpha_p) + b) @ w + bias
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(mc_model.predict(x, verbose=0)[0], np.mean(probs, 0), atol=1e-5)
    spatial = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.SpatialDropout2D(0.5),
            keras.layers.Flatten(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    scale = build_mc_model(spatial, 3).get_layer(f"mc_{spatial.layers[0].name}").scale
    per_channel = scale.reshape(3, 16, 3)
    assert (per_channel == per_channel[:, :1, :]).all()  # one mask value per feature map
    assert "--mc-masks fixed" in _raises(build_mc_model, spatial, 3, masks="random")


# Uncertainty metrics on small known arrays.
PROBS = np.array([[0.9, 0.1], [0.62, 0.38], [0.3, 0.7], [0.15, 0.85]])
LABELS = np.array([0, 1, 1, 1])  # correct, wrong, correct, correct


def test_ece_on_known_values() -> None:
    # 15 bins: each confidence (.9, .62, .7, .85) alone in its bin -> mean |correct - conf|.
    assert expected_calibration_error(PROBS, LABELS) == pytest.approx((0.1 + 0.62 + 0.3 + 0.15) / 4)
    # One bin: |accuracy - mean confidence|.
    assert expected_calibration_error(PROBS, LABELS, bins=1) == pytest.approx(abs(0.75 - 0.7675))
    # Two bins: (.62, .7, .85, .9) all in (0.5, 1].
    assert expected_calibration_error(PROBS, LABELS, bins=2) == pytest.approx(0.0175)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, np.array([0, 1])) == 0.0


def test_nll_on_known_values() -> None:
    want = -(math.log(0.9) + math.log(0.38) + math.log(0.7) + math.log(0.85)) / 4
    assert negative_log_likelihood(PROBS, LABELS) == pytest.approx(want)
    zero = np.array([[1.0, 0.0]])  # an int8 output can be exactly 0 for the true class
    assert negative_log_likelihood(zero, np.array([1])) == pytest.approx(-math.log(1e-7))


def test_risk_coverage_on_known_values() -> None:
    rows = risk_coverage(PROBS, LABELS)
    assert rows == (
        CoverageRow(0.5, 2, 1.0),
        CoverageRow(0.8, 3, 1.0),
        CoverageRow(0.9, 4, 0.75),
        CoverageRow(1.0, 4, 0.75),
    )
    # Max probability and entropy rank these two differently: b has the higher top probability,
    # a the lower entropy (ln 2 = 0.69 < 1.00).
    a, b = [0.5, 0.5, 0.0], [0.55, 0.225, 0.225]
    probs, labels = np.array([a, b]), np.array([1, 0])  # a is wrong (argmax 0), b is right
    assert risk_coverage(probs, labels, (0.5,))[0].accuracy == 1.0
    assert risk_coverage(probs, labels, (0.5,), certainty="entropy")[0].accuracy == 0.0


def test_uncertainty_metrics_and_comparison() -> None:
    m = uncertainty_metrics(PROBS, LABELS)
    assert (m.samples, m.accuracy, m.certainty) == (4, 0.75, "max_prob")
    d = m.to_dict()
    assert d["ece_bins"] == 15 and [r["samples"] for r in d["risk_coverage"]] == [2, 3, 4, 4]
    sharper = np.array([[0.99, 0.01], [0.9, 0.1], [0.05, 0.95], [0.02, 0.98]])
    c = compare_uncertainty(PROBS, sharper, LABELS)
    assert c.mc.accuracy == c.deterministic.accuracy == 0.75
    # NLL punishes the sharper file's confident miss (p = .1 for the truth): 0.40 vs 0.60 nats.
    assert c.nll_lower and c.mc.nll == pytest.approx(0.3981, abs=1e-4)
    # ECE does not: 15 bins of one sample each cost PROBS 0.2925; the sharper one's miss shares
    # no bin, its three hits are near 1: |1 - .9733| * 3/4 + |0 - .9| / 4 = 0.245.
    assert not c.ece_lower and c.deterministic.ece == pytest.approx(0.245)
    assert c.to_dict()["nll_delta"] == pytest.approx(c.mc.nll - c.deterministic.nll)


def test_bad_metric_inputs_get_one_line_errors() -> None:
    assert "bins" in _raises(expected_calibration_error, PROBS, LABELS, bins=0)
    assert "coverages" in _raises(risk_coverage, PROBS, LABELS, (0.0, 0.5))
    assert "coverages" in _raises(risk_coverage, PROBS, LABELS, (1.5,))
    assert "certainty" in _raises(risk_coverage, PROBS, LABELS, certainty="margin")
    assert "0..1" in _raises(uncertainty_metrics, PROBS, np.array([0, 1, 2, 1]))
    assert "one class index per sample" in _raises(uncertainty_metrics, PROBS, LABELS[:3])
    assert "(samples, classes)" in _raises(uncertainty_metrics, PROBS[0], LABELS[:1])
    assert "finite" in _raises(uncertainty_metrics, PROBS * np.nan, LABELS)
    assert "differ" in _raises(compare_uncertainty, PROBS, PROBS[:3], LABELS)
    assert "min_prob" in _raises(negative_log_likelihood, PROBS, LABELS, min_prob=0.0)
