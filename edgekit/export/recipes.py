"""The registry of export recipes: one entry per precision edgekit can write.

A recipe names the converter settings (by name, so this module needs no TensorFlow), the
input/output types of the file and the top-1 agreement with the Keras model a file must reach
before it is written. A new precision is one new entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.config import Precision
from edgekit.errors import EdgekitError

_KNOWN_OPS = ("TFLITE_BUILTINS", "TFLITE_BUILTINS_INT8",
              "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8")  # fmt: skip
_KNOWN_TYPES = ("float32", "float16", "int8", "int16")


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
        min_agreement: top-1 agreement with the Keras model required on the test samples.
    """

    precision: Precision
    optimize: bool = False
    supported_types: tuple[str, ...] = ()
    supported_ops: tuple[str, ...] = ()
    input_type: str = "float32"
    output_type: str = "float32"
    calibrated: bool = False
    min_agreement: float = 0.99

    def __post_init__(self) -> None:
        unknown = [t for t in (*self.supported_types, self.input_type, self.output_type)
                   if t not in _KNOWN_TYPES]  # fmt: skip
        unknown += [op for op in self.supported_ops if op not in _KNOWN_OPS]
        if unknown:
            raise EdgekitError(f"recipe {self.precision.value}: unknown setting(s) {unknown}")
        if not self.min_agreement >= 0.0:
            raise EdgekitError(f"recipe {self.precision.value}: min_agreement must be >= 0")


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
            min_agreement=0.98,
        ),
        # int16 activations, int8 weights, float input and output: closer to float than int8,
        # but the kernels are reference ones (no XNNPACK): tens of times slower than int8.
        ExportRecipe(
            Precision.INT16X8,
            optimize=True,
            supported_ops=("EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",),
            calibrated=True,
            min_agreement=0.98,
        ),
        # Dynamic range: int8 weights, float activations, float input and output.
        ExportRecipe(
            Precision.DYNAMIC,
            optimize=True,
            min_agreement=0.98,
        ),
    )
}


def recipe_for(precision: Precision | str) -> ExportRecipe:
    """The registered recipe of a precision."""
    from edgekit.config import parse_precision

    p = parse_precision(precision)
    if p not in RECIPES:
        raise EdgekitError(
            f"no export recipe for {p.value}: expected one of "
            f"{', '.join(r.value for r in RECIPES)}"
        )
    return RECIPES[p]
