"""The files an export may write, as variants: a precision, the engine that makes it, and how.

`plan_variants` turns an ExportConfig into the variants asked for (`--precision`,
`--float-layers`, `--qat`) and, with a budget search (`--max-accuracy-drop`), the ladder of
cheaper ones tried in order until one is within the budget: int4 weights, dynamic range, int8,
int8 with the 1..3 worst layers in float, int8 QAT, int16x8, float16, float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgekit.core.config import ExportConfig, Precision
from edgekit.core.data.arrays import Samples
from edgekit.core.errors import ExportError
from edgekit.core.recipes import ENGINES, recipe_for

# How many worst layers the budget search keeps float, one more per try.
SEARCH_FLOAT_LAYERS = (1, 2, 3)
_DEBUGGER = "TFLite converter + QuantizationDebugger (denylisted layers stay float)"


@dataclass
class Variant:
    """One candidate file: `tag` names it (`{stem}_{tag}.tflite`), `build` makes its bytes."""

    tag: str
    precision: Precision
    engine: str
    build: Callable[[], bytes] = field(repr=False)
    requested: bool = True
    description: str = ""
    # Names of the layers kept float (filled in by `build` for auto:K).
    float_layers: list[str] = field(default_factory=list)
    # Run before any file is made: a bad setting (a layer name the model lacks) fails the
    # whole export with one line instead of leaving that file out.
    check: Callable[[], object] | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)  # more for the manifest (MC: N, outputs)

    def info(self) -> dict[str, Any]:
        d: dict[str, Any] = {"tag": self.tag, "engine": self.engine, **self.extra}
        if self.description:
            d["description"] = self.description
        if self.float_layers:
            d["float_layers"] = list(self.float_layers)
        return d


class _Memo:
    """Results computed once and shared by several variants (float32 bytes, layer report)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.values:
            self.values[key] = make()
        return self.values[key]


def plan_variants(
    model: Any,
    x_train: Samples,
    config: ExportConfig,
    qat_model: Callable[[], Any] | None = None,
    qat_requested: bool = False,
) -> tuple[list[Variant], list[Variant]]:
    """The variants asked for, and the budget-search ladder (empty without `config.search`).

    Args:
        model: the tf_keras (or Keras 3) model the files are made from.
        x_train: calibration samples (full-integer and mixed recipes).
        qat_model: makes the quantization-aware-trained model on first use; None when QAT is
            not possible (no training data, or a model TF-MOT cannot train).
        qat_requested: `--qat`: the QAT int8 file is asked for by name.
    """
    from edgekit.workstation.export.converter import convert

    memo = _Memo()
    seed = 42 if config.calibration_seed is None else config.calibration_seed
    samples = config.calibration_samples

    def converter_variant(p: Precision, requested: bool) -> Variant:
        recipe = recipe_for(p)

        def build() -> bytes:
            return convert(model, recipe, x_train, samples, seed)

        return Variant(p.value, p, ENGINES["converter"], build, requested)

    def float32_bytes() -> bytes:
        return memo.get("float32", lambda: convert(model, recipe_for(Precision.FLOAT32)))

    def aeq_variant(p: Precision, requested: bool) -> Variant:
        from edgekit.workstation.export import aeq

        mode = recipe_for(p).aeq_mode
        if mode == "mixed":

            def build() -> bytes:
                return aeq.quantize_mixed(
                    float32_bytes(),
                    config.int4_layers or _largest_layer(float32_bytes()),
                    x_train,
                    samples,
                    seed,
                )

            pattern = config.int4_layers or "the largest layer"
            return Variant(
                p.value,
                p,
                ENGINES["ai-edge-quantizer"],
                build,
                requested,
                f"int4 weights for {pattern}, int8 for the rest",
            )
        return Variant(
            p.value,
            p,
            ENGINES["ai-edge-quantizer"],
            lambda: aeq.quantize_int4(float32_bytes(), mode),
            requested,
        )

    def make(p: Precision, requested: bool) -> Variant:
        if recipe_for(p).engine == "ai-edge-quantizer":
            return aeq_variant(p, requested)
        return converter_variant(p, requested)

    def layer_report() -> Any:
        from edgekit.workstation.export.layer_debug import debug_layers

        return memo.get("layers", lambda: debug_layers(model, x_train, seed=seed))

    def fallback_variant(names: list[str], k: int | None, requested: bool) -> Variant:
        from edgekit.workstation.export.layer_debug import (
            convert_int8_with_float_layers,
            worst_layer_nodes,
        )

        tag = f"int8_float{k}" if k else "int8_float"
        chosen: list[str] = list(names)

        def build() -> bytes:
            def make() -> bytes:
                if k:
                    chosen[:] = worst_layer_nodes(layer_report(), k)
                return convert_int8_with_float_layers(model, chosen, x_train, samples, seed)

            blob: bytes = memo.get(tag, make)
            return blob

        what = f"the {k} worst layer(s)" if k else ", ".join(names)
        return Variant(
            tag,
            Precision.INT8,
            _DEBUGGER,
            build,
            requested,
            f"int8 with {what} kept float",
            chosen,
            check=None if k else build,
        )

    def qat_variant(requested: bool) -> Variant:
        assert qat_model is not None
        recipe = recipe_for(Precision.INT8)
        return Variant(
            "int8_qat",
            Precision.INT8,
            ENGINES["converter"] + " after quantization-aware training",
            lambda: convert(qat_model(), recipe, x_train, samples, seed),
            requested,
            "int8 from quantization-aware training",
        )

    def mc_variant(n: int, p: Precision) -> Variant:
        from edgekit.workstation.export.mc import (
            MC_OUTPUTS,
            build_mc_model,
            check_mc_args,
            convert_mc,
        )

        def build() -> bytes:
            mc = build_mc_model(model, n, config.mc_masks, seed)
            return convert_mc(mc, p.value, x_train, samples, seed)

        v = Variant(
            f"mc{n}_{p.value}",
            p,
            ENGINES["converter"] + " (MC dropout)",
            build,
            True,
            f"mean, std and entropy of {n} dropout passes in one invoke",
            check=lambda: check_mc_args(model, n, config.mc_masks),
        )
        v.extra = {
            "mc": {
                "samples": n,
                "masks": config.mc_masks,
                "seed": seed,
                "outputs": list(MC_OUTPUTS),
            }
        }
        return v

    requested = [make(p, True) for p in config.precisions]
    requested += [
        mc_variant(n, p) for n in config.mc_samples for p in (Precision.FLOAT32, Precision.INT8)
    ]
    if config.float_layers:
        from edgekit.core.float_layers import parse_float_layers

        names, k = parse_float_layers(config.float_layers)
        requested.append(fallback_variant(names, k, True))
    if qat_requested:
        if qat_model is None:
            raise ExportError(
                "--qat needs a tf_keras model TF-MOT can train and training data: this model "
                "is a Keras 3 model without a faithful tf_keras rebuild, or the data has no "
                "training set; drop --qat"
            )
        requested.append(qat_variant(True))
    ladder: list[Variant] = []
    if config.search:
        from edgekit.workstation.export.aeq import aeq_available

        if aeq_available():
            ladder.append(make(Precision.INT4, False))
        ladder += [make(Precision.DYNAMIC, False), make(Precision.INT8, False)]
        ladder += [fallback_variant([], k, False) for k in SEARCH_FLOAT_LAYERS]
        if qat_model is not None:
            ladder.append(qat_variant(False))
        ladder += [
            make(p, False) for p in (Precision.INT16X8, Precision.FLOAT16, Precision.FLOAT32)
        ]
    return requested, ladder


def _largest_layer(float_tflite: bytes) -> str:
    """A regex matching the compute layer with the most weights (the default int4 layer)."""
    import re

    from edgekit.device.modelfile import parse_model_bytes
    from edgekit.device.opcheck import compute_layers

    sizes = {w.name: w.elements for w in parse_model_bytes(float_tflite).weights}
    layers = compute_layers(float_tflite)
    if not layers:
        raise ExportError("int4_int8 needs a model with Dense or Conv layers: it has none")
    best = max(layers, key=lambda c: sizes.get(c.weight_name, 0))
    return re.escape(best.name.split(";")[0])
