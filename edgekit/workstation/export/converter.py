"""TFLite conversion of a tf_keras model by recipe (see `edgekit.core.recipes`)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgekit.core.data.arrays import Samples
from edgekit.core.errors import ExportError, first_line
from edgekit.core.io.process import quiet_native_stderr
from edgekit.core.recipes import ExportRecipe
from edgekit.workstation._keras import keras, tf
from edgekit.workstation.export.calibration import calibration_indices


def representative_dataset(x: Samples, n: int, seed: int) -> Any:
    """A generator of `n` training samples drawn with `seed`, one at a time (batch 1)."""
    idx = calibration_indices(len(x), n, seed)

    def gen() -> Iterator[list[np.ndarray]]:
        for i in idx:  # one sample at a time: the batch-1 shape the file is used with
            yield [x[i : i + 1].astype(np.float32)]

    return gen


def _dtype(name: str) -> Any:
    return {"float32": tf.float32, "float16": tf.float16, "int8": tf.int8, "int16": tf.int16}[name]


def convert(
    model: keras.Model,
    recipe: ExportRecipe,
    calibration_x: Samples | None = None,
    calibration_samples: int = 500,
    calibration_seed: int = 42,
) -> bytes:
    """Convert a tf_keras model to .tflite bytes with the settings of `recipe`.

    A calibrated recipe (full integer) draws `calibration_samples` samples of `calibration_x`
    with `calibration_seed`.

    Raises:
        ExportError: no calibration data for a calibrated recipe, or the converter failed.
    """
    name = recipe.precision.value
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = [tf.lite.Optimize.DEFAULT] if recipe.optimize else []
    if recipe.sparse_encoding:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if optimizations:
        converter.optimizations = optimizations
    if recipe.supported_types:
        converter.target_spec.supported_types = [_dtype(t) for t in recipe.supported_types]
    if recipe.supported_ops:
        converter.target_spec.supported_ops = [
            getattr(tf.lite.OpsSet, op) for op in recipe.supported_ops
        ]
    if recipe.calibrated:
        if calibration_x is None or len(calibration_x) == 0:
            raise ExportError(
                f"{name} export needs a calibration set, got none: pass training data "
                "(--data) so a representative sample can be drawn"
            )
        converter.representative_dataset = representative_dataset(
            calibration_x, calibration_samples, calibration_seed
        )
    if recipe.input_type != "float32":
        converter.inference_input_type = _dtype(recipe.input_type)
    if recipe.output_type != "float32":
        converter.inference_output_type = _dtype(recipe.output_type)
    try:
        # The converter prints MLIR notices and warnings of its own: keep them off the console.
        with quiet_native_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bytes(converter.convert())
    except Exception as e:  # the converter raises ConverterError, ValueError, RuntimeError...
        first = first_line(e)
        raise ExportError(
            f"the TFLite converter failed for {name} ({first}): the model may use "
            "layers without a TFLite builtin op; try another precision or simplify the model"
        ) from None
