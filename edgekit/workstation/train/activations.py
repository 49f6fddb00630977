"""Activations the guidance names, built so that they survive int8 conversion.

TFLite has no SELU op: Keras' `selu` becomes GREATER, MUL, EXP, SUB, MUL, SELECT_V2, and in int8
its EXP spans exp(max x), which costs 7-9 points of accuracy. `SELU` computes the same function
as `scale * where(x > 0, x, alpha * (exp(min(x, 0)) - 1))`: the EXP only sees (-inf, 0], so
its int8 output lies in (0, 1].

The textbook rewrite `scale * (relu(x) + alpha * (exp(min(x, 0)) - 1))` quantizes as well, but
the converter fuses the RELU into the Dense before it by duplicating that FULLY_CONNECTED (two
matrix products instead of one: float32 34 us vs 17 us on the 300-100 mlp); `where` is not fused.
"""

from __future__ import annotations

from typing import Any

from edgekit.workstation._keras import keras, tf

# The constants of Klambauer et al. (2017), as Keras' selu uses them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def selu(x: tf.Tensor) -> tf.Tensor:
    """SELU of `x`, equal to keras.activations.selu (within float32 rounding), int8-friendly."""
    x = tf.convert_to_tensor(x)
    negative = SELU_ALPHA * (tf.exp(tf.minimum(x, 0.0)) - 1.0)
    return SELU_SCALE * tf.where(x > 0.0, x, negative)


@keras.saving.register_keras_serializable(package="edgekit")
class SELU(keras.layers.Layer):
    """The scaled exponential linear unit as a layer, in the form that quantizes well.

    Registered as 'edgekit>SELU': edgekit's loaders (safe mode included) read it back once
    this module is imported, which `edgekit.workstation.export.model_io` does.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return selu(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape
