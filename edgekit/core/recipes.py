"""The registry of export recipes: one entry per precision edgekit can write.

A recipe names the converter settings (by name, so this module needs no TensorFlow), the
input/output types of the file and the engine that makes it: the TFLite converter (from the
Keras model) or Google's ai-edge-quantizer (from the float32 file). A new precision is one new
entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.core.config import Precision
from edgekit.core.errors import EdgekitError

_KNOWN_OPS = (
    "TFLITE_BUILTINS",
    "TFLITE_BUILTINS_INT8",
    "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",
)
_KNOWN_TYPES = ("float32", "float16", "int8", "int16")
_AEQ_MODES = ("dynamic", "weight_only", "mixed")
ENGINES = {
    "converter": "TFLite converter",
    "ai-edge-quantizer": "ai-edge-quantizer (Google's LiteRT quantizer, from the float32 file)",
}


@dataclass(frozen=True)
class ExportRecipe:
    """How one precision is converted and checked.

    Args:
        precision: the file's precision (its name suffix).
        optimize: set `converter.optimizations = [Optimize.DEFAULT]`.
        supported_types: `converter.target_spec.supported_types` (e.g. float16).
        supported_ops: `converter.target_spec.supported_ops`; empty = the converter's default.
        input_type / output_type: the file's input and output dtypes.
        calibrated: needs a representative dataset (full-integer quantization).
        engine: "converter" (tf.lite.TFLiteConverter on the Keras model) or
            "ai-edge-quantizer" (Google's quantizer on the float32 .tflite, no TensorFlow).
        aeq_mode: the ai-edge-quantizer recipe: "dynamic", "weight_only" or "mixed".
        sparse_encoding: also `Optimize.EXPERIMENTAL_SPARSITY`: zero weights are left out of
            the file (1x4 blocks: a sparse kernel; other patterns: a DENSIFY op at load).
    """

    precision: Precision
    optimize: bool = False
    supported_types: tuple[str, ...] = ()
    supported_ops: tuple[str, ...] = ()
    input_type: str = "float32"
    output_type: str = "float32"
    calibrated: bool = False
    engine: str = "converter"
    aeq_mode: str = ""
    sparse_encoding: bool = False

    def __post_init__(self) -> None:
        unknown = [
            t
            for t in (*self.supported_types, self.input_type, self.output_type)
            if t not in _KNOWN_TYPES
        ]
        unknown += [op for op in self.supported_ops if op not in _KNOWN_OPS]
        if unknown:
            raise EdgekitError(f"recipe {self.precision.value}: unknown setting(s) {unknown}")
        if self.engine not in ENGINES:
            raise EdgekitError(f"recipe {self.precision.value}: unknown engine {self.engine!r}")
        if (self.engine == "ai-edge-quantizer") != (self.aeq_mode in _AEQ_MODES):
            raise EdgekitError(f"recipe {self.precision.value}: aeq_mode goes with its engine")
        if self.sparse_encoding and self.engine != "converter":
            raise EdgekitError(f"recipe {self.precision.value}: only the converter sparse-encodes")


RECIPES: dict[Precision, ExportRecipe] = {
    r.precision: r
    for r in (
        ExportRecipe(Precision.FLOAT32),
        # float16 weights, dequantized at load: half the size.
        ExportRecipe(
            Precision.FLOAT16,
            optimize=True,
            supported_types=("float16",),
        ),
        # Full integer: int8 input and output, calibrated on training data.
        ExportRecipe(
            Precision.INT8,
            optimize=True,
            supported_ops=("TFLITE_BUILTINS_INT8",),
            input_type="int8",
            output_type="int8",
            calibrated=True,
        ),
        # int16 activations, int8 weights, float input and output: closer to float than int8,
        # but the kernels are reference ones (no XNNPACK): tens of times slower than int8.
        ExportRecipe(
            Precision.INT16X8,
            optimize=True,
            supported_ops=("EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",),
            calibrated=True,
        ),
        # Dynamic range: int8 weights, float activations, float input and output.
        ExportRecipe(Precision.DYNAMIC, optimize=True),
        # int4 weights (half the int8 file), activations quantized on the fly; float I/O.
        ExportRecipe(Precision.INT4, engine="ai-edge-quantizer", aeq_mode="dynamic"),
        # int4 weights widened to float32 at load: float compute, the smallest download.
        ExportRecipe(
            Precision.INT4_WEIGHT_ONLY, engine="ai-edge-quantizer", aeq_mode="weight_only"
        ),
        # Mixed: the layers matching --int4-layers (default: the largest) int4, the rest int8.
        ExportRecipe(Precision.INT4_INT8, engine="ai-edge-quantizer", aeq_mode="mixed"),
    )
}


def sparse_recipe_for(precision: Precision | str) -> ExportRecipe:
    """The recipe of a precision with sparse encoding (the caller refuses the precisions of
    edgekit.core.config.SPARSE_ENCODING_REFUSED before converting; tests build the others)."""
    import dataclasses

    return dataclasses.replace(recipe_for(precision), sparse_encoding=True)


def recipe_for(precision: Precision | str) -> ExportRecipe:
    """The registered recipe of a precision."""
    from edgekit.core.config import parse_precision

    p = parse_precision(precision)
    if p not in RECIPES:
        raise EdgekitError(
            f"no export recipe for {p.value}: expected one of {', '.join(r.value for r in RECIPES)}"
        )
    return RECIPES[p]
