"""MC dropout in one .tflite: N dropout passes batched inside the graph, mean and spread out.

`build_mc_model` turns a tf_keras classifier with Dropout layers into a model whose outputs are
`mc_mean` (mean class probabilities of N dropout passes), `mc_std` (their per-class standard
deviation, ddof 0) and `mc_entropy` (predictive entropy of the mean, nats). The N passes are
one batch: the activations are tiled N times (in a Sequential model just before its first
Dropout, so the layers before it run once; in a functional model at the input) and each Dropout
multiplies copy k by mask k. Fixed masks (the default) are drawn once with `seed` and stored as
constants, scaled by 1/(1 - rate) as Keras scales kept units: every run and every fresh
interpreter gives the same numbers, and the masks (0 or 1/(1 - rate)) are exact in int8.
"random" masks are drawn in
the graph (RANDOM_UNIFORM builtins): new masks every invoke, the same sequence in every fresh
interpreter (the seed is fixed at conversion). `convert_mc` writes float32 or int8 files (int8:
int8 input and layers, float statistics and outputs), outputs in the order mc_mean, mc_std,
mc_entropy (the converter sorts them by name: `outputs.order_outputs` puts them back), so an app
that reads output 0 gets the mean class probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.core.config import Precision
from edgekit.core.data.arrays import Samples
from edgekit.core.errors import ExportError, first_line
from edgekit.core.recipes import recipe_for
from edgekit.device.mc import ENTROPY_EPS
from edgekit.device.modelfile import parse_model_bytes
from edgekit.device.opcheck import compute_layers
from edgekit.device.outputs import MC_ENTROPY, MC_MEAN, MC_OUTPUTS, MC_STD
from edgekit.workstation._keras import keras, tf
from edgekit.workstation.export.converter import convert
from edgekit.workstation.export.layer_debug import _converting, _debugger
from edgekit.workstation.export.outputs import probabilities_first

MC_MASKS = ("fixed", "random")
MC_PRECISIONS = ("float32", "int8")
# Alpha dropout's constants (tf_keras AlphaDropout): dropped units take alpha_p, then a*x + b.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _is_dropout(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, (keras.layers.Dropout, keras.layers.AlphaDropout))


class TileSamples(keras.layers.Layer):
    """(B, ...) -> (N*B, ...): N stacked copies of the batch, copy k in rows k*B .. k*B+B-1."""

    def __init__(self, samples: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.samples = int(samples)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.tile(x, [self.samples] + [1] * (len(x.shape) - 1))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "samples": self.samples}


class FixedMaskDropout(keras.layers.Layer):
    """Dropout pass k of N on copy k of the batch: x * scale[k] (+ shift[k] for alpha dropout).

    `scale` and `shift` are constants of shape (N, features): plain dropout has scale = mask /
    (1 - rate) and no shift; alpha dropout has scale = a * mask, shift = a * alpha_p * (1 - mask)
    + b. The activations are viewed as (N, B, features) so one broadcast MUL covers any batch.
    """

    def __init__(self, scale: np.ndarray, shift: np.ndarray | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = np.asarray(scale, np.float32)
        self.shift = None if shift is None else np.asarray(shift, np.float32)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        samples, features = self.scale.shape
        shape = [int(d) for d in x.shape[1:]]
        y = tf.reshape(x, [samples, -1, features]) * tf.constant(self.scale[:, None, :])
        if self.shift is not None:
            y = y + tf.constant(self.shift[:, None, :])
        return tf.reshape(y, [-1, *shape])


class RandomDropout(keras.layers.Layer):
    """Dropout that is always on, masks drawn in the graph (op seed `seed`) at every invoke.

    Viewed as (N, B, features) like FixedMaskDropout: on a plain (N*B, features) tensor the
    converter replaces TILE -> MUL -> SELECT_V2 by a broadcast that holds for batch 1 only.
    """

    def __init__(
        self, samples: int, rate: float, seed: int, alpha: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.samples, self.rate, self.seed = int(samples), float(rate), int(seed)
        self.alpha = bool(alpha)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        shape = [int(d) for d in x.shape[1:]]
        y = tf.reshape(x, [self.samples, -1, int(np.prod(shape))])
        keep = tf.random.uniform(tf.shape(y), seed=self.seed) >= self.rate
        if self.alpha:
            a, b, alpha_p = _alpha_affine(self.rate)
            y = tf.where(keep, y * a + b, a * alpha_p + b)
        else:
            y = tf.where(keep, y * (1.0 / (1.0 - self.rate)), 0.0)
        return tf.reshape(y, [-1, *shape])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "samples": self.samples,
            "rate": self.rate,
            "seed": self.seed,
            "alpha": self.alpha,
        }


class SampleStats(keras.layers.Layer):
    """(N*B, C) probabilities of N stacked passes -> (B, C) mean, (B, C) std or (B,) entropy."""

    def __init__(self, samples: int, stat: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.samples, self.stat = int(samples), stat

    def call(self, probs: tf.Tensor) -> tf.Tensor:
        p = tf.reshape(probs, [self.samples, -1, int(probs.shape[-1])])
        mean = tf.reduce_mean(p, axis=0)
        if self.stat == "std":
            return tf.sqrt(tf.reduce_mean(tf.square(p - mean), axis=0))
        if self.stat == "entropy":
            # MUL by -1 rather than NEG, which has no int8 kernel (if the stats were quantized).
            return tf.reduce_sum(mean * tf.math.log(mean + ENTROPY_EPS), axis=-1) * -1.0
        return mean

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "samples": self.samples, "stat": self.stat}


def _alpha_affine(rate: float) -> tuple[float, float, float]:
    alpha_p = -_SELU_ALPHA * _SELU_SCALE
    a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5
    return a, -a * alpha_p * rate, alpha_p


def _noise_shape(layer: keras.layers.Layer, features: tuple[int, ...]) -> tuple[int, ...]:
    """The per-sample shape of `layer`'s masks: `features`, or 1 where noise is shared
    (noise_shape, SpatialDropout's whole feature maps)."""
    ns = layer._get_noise_shape(tf.zeros((1, *features)))  # eager: concrete values
    if ns is None:
        return features
    dims = tuple(int(d) for d in list(ns)[1:])
    return tuple(1 if d == 1 else f for d, f in zip(dims, features, strict=True))


def _fixed_mask_layer(
    layer: keras.layers.Layer, features: tuple[int, ...], samples: int, seed: int, k: int
) -> FixedMaskDropout:
    """The k-th Dropout of the model as N fixed masks drawn with (seed, k)."""
    rate = float(layer.rate)
    noise = (samples, *_noise_shape(layer, features))
    keep = np.random.default_rng([seed, k]).random(noise) >= rate
    keep = np.broadcast_to(keep, (samples, *features)).reshape(samples, -1).astype(np.float32)
    name = f"mc_{layer.name}"
    if isinstance(layer, keras.layers.AlphaDropout):
        a, b, alpha_p = _alpha_affine(rate)
        return FixedMaskDropout(a * keep, a * alpha_p * (1 - keep) + b, name=name)
    return FixedMaskDropout(keep / (1.0 - rate), name=name)


def _mc_layer(
    layer: keras.layers.Layer,
    features: tuple[Any, ...],
    samples: int,
    masks: str,
    seed: int,
    k: int,
) -> keras.layers.Layer:
    """The MC replacement of Dropout number k, whose input has the per-sample shape `features`."""
    if any(d is None for d in features):
        raise ExportError(
            f"--mc-samples needs Dropout inputs of a fixed shape, {layer.name} has "
            f"{(None, *features)}: give the model a fixed input shape"
        )
    if masks == "random":
        if _noise_shape(layer, features) != features:
            raise ExportError(
                f"--mc-masks random draws a mask per unit, but {layer.name} shares its noise "
                "(noise_shape or SpatialDropout): use --mc-masks fixed"
            )
        alpha = isinstance(layer, keras.layers.AlphaDropout)
        return RandomDropout(samples, layer.rate, seed + k, alpha, name=f"mc_{layer.name}")
    return _fixed_mask_layer(layer, tuple(int(d) for d in features), samples, seed, k)


def check_mc_args(model: Any, samples: int, masks: str) -> None:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ExportError(f"--mc-samples must be >= 1, got {samples!r}")
    if masks not in MC_MASKS:
        raise ExportError(f"--mc-masks must be one of {', '.join(MC_MASKS)}, got {masks!r}")
    if not isinstance(model, keras.Model):
        raise ExportError(
            f"--mc-samples needs a tf_keras model, got {type(model).__name__}: load it with "
            "edgekit.workstation.export.load_keras_model"
        )
    top = [layer for layer in model.layers if _is_dropout(layer)]
    if not top:
        nested = [m.name for m in model.submodules if _is_dropout(m)]
        where = f"its Dropout layers {nested} are inside nested models" if nested else "it has none"
        raise ExportError(
            f"--mc-samples needs a model with Dropout layers: {model.name} has none at its top "
            f"level ({where}); train with dropout (--dropout RATE) or add keras.layers.Dropout"
        )
    last = model.layers[-1]
    softmax = getattr(last, "activation", None) is keras.activations.softmax or isinstance(
        last, keras.layers.Softmax
    )
    if not softmax or len(model.outputs) != 1:
        raise ExportError(
            f"--mc-samples averages class probabilities: {model.name} must have one output "
            f"from a softmax, its last layer {last.name} is not one; end it with "
            "Dense(classes, activation='softmax')"
        )


# Long for its docstring (Args/Returns/Raises): the body rebuilds Sequential or functional models.
def build_mc_model(
    model: keras.Model, samples: int, masks: str = "fixed", seed: int = 42
) -> keras.Model:
    """A model returning `mc_mean`, `mc_std` and `mc_entropy` of `samples` dropout passes.

    Args:
        model: a tf_keras Sequential or functional classifier with Dropout (or AlphaDropout)
            layers ending in softmax. Its layers (and weights) are shared, not copied.
        samples: N, the number of dropout passes (>= 1).
        masks: "fixed" (N masks per Dropout drawn with `seed`, stored as constants) or
            "random" (drawn in the graph at every invoke).
        seed: the seed of the masks (Dropout k uses the NumPy generator seeded [seed, k]).

    Returns:
        A tf_keras model taking the model's input (any batch, batch 1 as exported) with three
        named outputs: mc_mean (B, C), mc_std (B, C), mc_entropy (B,).

    Raises:
        ExportError: samples < 1, unknown masks, no Dropout layers, no softmax output, or
            Dropout inputs without a fixed shape.
    """
    check_mc_args(model, samples, masks)
    n = int(samples)
    try:
        shape = tuple(model.input_shape[1:])
    except AttributeError:
        raise ExportError(
            f"--mc-samples needs a built model, {model.name} has no input shape yet: build it "
            "with an Input layer (or call it on data) first"
        ) from None
    inp = keras.Input(shape=shape, name=(model.input_names or ["input"])[0])
    k = 0
    if isinstance(model, keras.Sequential):
        # Tile just before the first Dropout: the layers before it are the same for every pass.
        h, tiled = inp, False
        for layer in model.layers:
            if _is_dropout(layer):
                if not tiled:
                    h, tiled = TileSamples(n, name="mc_tile")(h), True
                h, k = _mc_layer(layer, tuple(h.shape[1:]), n, masks, seed, k)(h), k + 1
            else:
                h = layer(h)
        probs = h
    else:
        counter = iter(range(len(model.layers)))

        def swap(layer: keras.layers.Layer) -> keras.layers.Layer:
            if not _is_dropout(layer):
                return layer
            features = tuple(layer.get_input_shape_at(0)[1:])
            return _mc_layer(layer, features, n, masks, seed, next(counter))

        try:
            clone = keras.models.clone_model(model, clone_function=swap)
        except (ValueError, TypeError, NotImplementedError) as e:
            raise ExportError(
                f"--mc-samples cannot rebuild {model.name} ({first_line(e)}): build the "
                "model as a Sequential or functional tf_keras model"
            ) from None
        probs = clone(TileSamples(n, name="mc_tile")(inp))
    stats = (("mean", MC_MEAN), ("std", MC_STD), ("entropy", MC_ENTROPY))
    outputs = [SampleStats(n, stat, name=name)(probs) for stat, name in stats]
    return keras.Model(inp, outputs, name=f"{model.name}_mc{n}_{masks}")


def _stats_nodes(calibrated_model: bytes) -> list[str]:
    """The statistics' nodes (their output tensors) of the calibrated model: what stays float."""
    parsed = parse_model_bytes(calibrated_model, "calibrated model")
    outputs = {t.name for t in parsed.outputs}
    layers = [f"/{name}/" for name in MC_OUTPUTS]
    return [
        t.name
        for t in parsed.tensors
        if not t.constant and (t.name in outputs or any(part in t.name for part in layers))
    ]


def _convert_int8(
    model_mc: keras.Model, calibration_x: Samples | None, samples: int, seed: int
) -> bytes:
    """int8 input, int8 layers and dropout, float statistics and outputs (see convert_mc)."""
    from tensorflow.lite.python.util import modify_model_io_type

    if calibration_x is None or len(calibration_x) == 0:
        raise ExportError(
            "int8 MC-dropout export needs a calibration set, got none: pass training data "
            "(--data) so a representative sample can be drawn"
        )
    options = tf.lite.experimental.QuantizationDebugOptions(fully_quantize=False)
    with _converting("quantize the MC-dropout model"):
        debugger = _debugger(model_mc, calibration_x, samples, 1, seed, options)
        nodes = _stats_nodes(debugger.calibrated_model)
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=nodes, fully_quantize=False
        )
        data = bytes(debugger.get_nondebug_quantized_model())
        # Float I/O -> int8 input: drops the QUANTIZE in front, like the int8 recipe's files.
        return bytes(modify_model_io_type(data, tf.int8, tf.float32))


def convert_mc(
    model_mc: keras.Model,
    precision: str = "float32",
    calibration_x: Samples | None = None,
    calibration_samples: int = 500,
    calibration_seed: int = 42,
) -> bytes:
    """Convert a `build_mc_model` model to .tflite bytes in float32 or int8.

    int8 (calibrated on `calibration_samples` samples of `calibration_x` drawn with
    `calibration_seed`, as the int8 recipe does): int8 input, every layer and dropout mask in
    int8, and the statistics (MEAN, SQUARED_DIFFERENCE, SQRT, LOG, SUM on N x classes values)
    in float after one DEQUANTIZE of the softmax, so the three outputs are float32. In full
    int8 they would be clipped to the ranges seen in calibration: the entropy saturated below
    ln(classes) and the mean below 1. Every FULLY_CONNECTED / CONV_2D is checked to be int8.

    Raises:
        ExportError: another precision, not an MC model, no calibration data for int8, the
            converter failed, or a compute layer stayed float in an int8 file.
    """
    if precision not in MC_PRECISIONS:
        raise ExportError(
            f"MC-dropout files are written in {' or '.join(MC_PRECISIONS)}, got {precision!r}"
        )
    names = set(getattr(model_mc, "output_names", None) or ())
    if names != set(MC_OUTPUTS):
        raise ExportError(
            f"convert_mc takes a model from build_mc_model (outputs {', '.join(MC_OUTPUTS)}), "
            f"got outputs {sorted(names)}"
        )
    if precision == "float32":
        return probabilities_first(convert(model_mc, recipe_for(Precision.FLOAT32)))
    data = _convert_int8(model_mc, calibration_x, calibration_samples, calibration_seed)
    data = probabilities_first(data)  # mc_mean, mc_std, mc_entropy: output 0 the probabilities
    floats = [
        c.describe()
        for c in compute_layers(data)
        if (c.activation_dtype, c.weight_dtype) != ("int8", "int8")
    ]
    if floats:
        raise ExportError(
            f"the int8 MC-dropout file keeps {len(floats)} compute layer(s) in float "
            f"({floats[0]}): use float32, or check the model with edgekit quantize-report"
        )
    return data
