"""The files an export may write, as variants: a precision, the engine that makes it, and how.

`plan_variants` turns an ExportConfig into the variants asked for (`--precision`,
`--float-layers`, `--qat`) and, with a budget search (`--max-accuracy-drop`), the ladder of
cheaper ones tried in order until one is within the budget: int4 weights after int4-aware
fine-tuning (a pruned model pruned SEARCH_EXTRA_SPARSITY further first, then at its own
sparsity), int4 weights, dynamic range, int8, int8 with the 1..3 worst layers in float, int8
QAT, int16x8, float16, float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgekit.core.config import DataConfig, ExportConfig, Precision
from edgekit.core.data.arrays import Samples
from edgekit.core.data.sizes import default_calibration_samples
from edgekit.core.errors import ExportError
from edgekit.core.recipes import ENGINES, recipe_for, sparse_recipe_for

# How many worst layers the budget search keeps float, one more per try.
SEARCH_FLOAT_LAYERS = (1, 2, 3)
_DEBUGGER = "TFLite converter + QuantizationDebugger (denylisted layers stay float)"
# The precisions of the MC-dropout files, for each --mc-samples N.
MC_PRECISIONS = (Precision.FLOAT32, Precision.INT8)
# The budget search's first try on a pruned model prunes this much further (0.80 -> 0.85) while
# it fine-tunes on the int4 grid; never past MAX_SEARCH_SPARSITY.
SEARCH_EXTRA_SPARSITY = 0.05
MAX_SEARCH_SPARSITY = 0.95
# A model with at least this fraction of zero kernel weights counts as pruned.
PRUNED_FRACTION = 0.05
# What every file's accuracy drop is measured against (int4-tuned files included).
BUDGET_REFERENCE = (
    "the float Keras model exported (the folded model saved as <stem>_folded.keras), not the "
    "int4-tuned model"
)
# The budget search's last tries, after int4, dynamic range, int8, float layers and QAT.
LADDER_TAIL = (Precision.INT16X8, Precision.FLOAT16, Precision.FLOAT32)


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
    # A sparse-encoded file: makes the bytes of its dense twin, which it must beat on speed
    # (edgekit.workstation.export.sparse) to be written.
    dense_twin: Callable[[], bytes] | None = field(default=None, repr=False)

    def info(self) -> dict[str, Any]:
        d: dict[str, Any] = {"tag": self.tag, "engine": self.engine, **self.extra}
        if self.description:
            d["description"] = self.description
        if self.float_layers:
            d["float_layers"] = list(self.float_layers)
        return d


class VariantPlanner:
    """Plans the variants of one export from one model, its calibration data and its config.

    One method per kind of variant; each returns a `Variant` whose `build` makes the bytes when
    the export asks for them. Results several variants share (the float32 file the
    ai-edge-quantizer starts from, the per-layer error report) are computed once.

    Args:
        model: the tf_keras (or Keras 3) model the files are made from.
        x_train: calibration samples (full-integer and mixed recipes).
        config: the export's settings; its `calibration_seed` seeds every draw (None: the
            default data seed, as in a PipelineConfig).
        qat_model: makes the quantization-aware-trained model on first use; None when QAT is
            not possible (no training data, or a model TF-MOT cannot train).
        int4_tuner: `int4_tuner(target_sparsity)` fine-tunes the model on the int4 grid
            (edgekit.workstation.train.int4_tune) and returns (model, record for the manifest);
            None when it cannot run (no training data, or not a tf_keras model).
    """

    def __init__(
        self,
        model: Any,
        x_train: Samples,
        config: ExportConfig,
        qat_model: Callable[[], Any] | None = None,
        int4_tuner: Callable[[float | None], tuple[Any, dict[str, Any]]] | None = None,
    ) -> None:
        self.model, self.x_train, self.config, self.qat_model = model, x_train, config, qat_model
        self.int4_tuner = int4_tuner
        seed = config.calibration_seed
        self.seed = DataConfig().seed if seed is None else seed
        self.samples = config.calibration_samples or default_calibration_samples(len(x_train))
        self._shared: dict[str, Any] = {}

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """`make()`, computed once per planner and shared by the variants that need it."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def float32_bytes(self) -> bytes:
        """The float32 file (no calibration), converted once."""
        from edgekit.workstation.export.converter import convert

        blob: bytes = self.shared(
            "float32", lambda: convert(self.model, recipe_for(Precision.FLOAT32))
        )
        return blob

    def layer_report(self) -> Any:
        """QuantizationDebugger's per-layer errors, computed once."""
        from edgekit.workstation.export.layer_debug import debug_layers

        return self.shared("layers", lambda: debug_layers(self.model, self.x_train, seed=self.seed))

    def precision(self, p: Precision, requested: bool) -> Variant:
        """The variant of a precision, planned by the engine its recipe names."""
        return ENGINE_PLANNERS[recipe_for(p).engine](self, p, requested)

    def converter(self, p: Precision, requested: bool) -> Variant:
        """A file the TFLite converter makes from the Keras model with the recipe of `p`."""
        from edgekit.workstation.export.converter import convert

        recipe = recipe_for(p)

        def build() -> bytes:
            return convert(self.model, recipe, self.x_train, self.samples, self.seed)

        # The float32 file is also what ai-edge-quantizer starts from: converted once.
        make = self.float32_bytes if p is Precision.FLOAT32 else build
        return Variant(p.value, p, ENGINES["converter"], make, requested)

    def quantizer(self, p: Precision, requested: bool) -> Variant:
        """A file ai-edge-quantizer makes from the float32 file (int4 weights, or mixed)."""
        from edgekit.workstation.export import aeq

        mode = recipe_for(p).aeq_mode
        engine = ENGINES["ai-edge-quantizer"]
        if mode != "mixed":
            return Variant(
                p.value, p, engine, lambda: aeq.quantize_int4(self.float32_bytes(), mode), requested
            )
        pattern = self.config.int4_layers

        def build() -> bytes:
            float32 = self.float32_bytes()
            layers = pattern or _largest_layer(float32)
            return aeq.quantize_mixed(float32, layers, self.x_train, self.samples, self.seed)

        what = pattern or "the largest layer"
        return Variant(
            p.value, p, engine, build, requested, f"int4 weights for {what}, int8 for the rest"
        )

    def int4_tuned(self, target_sparsity: float | None, requested: bool) -> Variant:
        """int4 weights (ai-edge-quantizer) of the model fine-tuned on the int4 grid, pruned to
        `target_sparsity` first when given (None: its own zeros). Its accuracy drop, like every
        file's, is measured against the float Keras model exported (BUDGET_REFERENCE)."""
        from edgekit.workstation.export import aeq
        from edgekit.workstation.export.converter import convert

        tuner = self.int4_tuner
        if tuner is None:
            raise ExportError(
                "int4 tuning needs a tf_keras model and training data: this model is a Keras 3 "
                "model without a faithful tf_keras rebuild, or the data has no training set"
            )
        tag = "int4_tuned"
        if target_sparsity is not None:
            tag += f"_sp{_percent(target_sparsity)}"
        record: dict[str, Any] = {"budget_reference": BUDGET_REFERENCE}

        def build() -> bytes:
            tuned, info = tuner(target_sparsity)
            record.update(info)
            float32 = convert(tuned, recipe_for(Precision.FLOAT32))
            return aeq.quantize_int4(float32, "dynamic")

        what = "its own zeros" if target_sparsity is None else f"pruned to {target_sparsity:.0%}"
        return Variant(
            tag,
            Precision.INT4,
            ENGINES["ai-edge-quantizer"] + " after int4-aware fine-tuning",
            build,
            requested,
            f"int4 weights after fine-tuning on the int4 grid ({what})",
            extra={"int4_tuning": record},
        )

    def float_layers(self, names: list[str], k: int | None, requested: bool) -> Variant:
        """int8 with the layers `names` (or, given `k`, the k worst layers) kept float."""
        from edgekit.workstation.export.layer_debug import (
            convert_int8_with_float_layers,
            worst_layer_nodes,
        )

        tag = f"int8_float{k}" if k else "int8_float"
        chosen: list[str] = list(names)  # filled in by build for auto:K (the Variant shares it)

        def make() -> bytes:
            if k:
                chosen[:] = worst_layer_nodes(self.layer_report(), k)
            return convert_int8_with_float_layers(
                self.model, chosen, self.x_train, self.samples, self.seed
            )

        def build() -> bytes:
            blob: bytes = self.shared(tag, make)
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

    def qat(self, requested: bool) -> Variant:
        """int8 converted from the quantization-aware-trained model."""
        from edgekit.workstation.export.converter import convert

        make_qat = self.qat_model
        if make_qat is None:
            raise ExportError(
                "--qat needs a tf_keras model TF-MOT can train and training data: this model "
                "is a Keras 3 model without a faithful tf_keras rebuild, or the data has no "
                "training set; drop --qat"
            )
        recipe = recipe_for(Precision.INT8)
        return Variant(
            "int8_qat",
            Precision.INT8,
            ENGINES["converter"] + " after quantization-aware training",
            lambda: convert(make_qat(), recipe, self.x_train, self.samples, self.seed),
            requested,
            "int8 from quantization-aware training",
        )

    def mc(self, n: int, p: Precision) -> Variant:
        """A file averaging `n` dropout passes in one invoke (mean, std, entropy outputs)."""
        from edgekit.workstation.export.mc import (
            MC_OUTPUTS,
            build_mc_model,
            check_mc_args,
            convert_mc,
        )

        masks = self.config.mc_masks

        def build() -> bytes:
            mc = build_mc_model(self.model, n, masks, self.seed)
            return convert_mc(mc, p.value, self.x_train, self.samples, self.seed)

        return Variant(
            f"mc{n}_{p.value}",
            p,
            ENGINES["converter"] + " (MC dropout)",
            build,
            True,
            f"mean, std and entropy of {n} dropout passes in one invoke",
            check=lambda: check_mc_args(self.model, n, masks),
            extra={
                "mc": {"samples": n, "masks": masks, "seed": self.seed, "outputs": list(MC_OUTPUTS)}
            },
        )

    def sparse(self, p: Precision) -> Variant:
        """`p` with sparse encoding (`sparse_{p}`): written only when faster than its dense
        twin, the `p` file (edgekit.workstation.export.sparse)."""
        from edgekit.workstation.export.converter import convert

        recipe = sparse_recipe_for(p)
        twin = self.precision(p, False).build

        def build() -> bytes:
            return convert(self.model, recipe, self.x_train, self.samples, self.seed)

        return Variant(
            f"sparse_{p.value}",
            p,
            ENGINES["converter"] + " with sparse encoding (Optimize.EXPERIMENTAL_SPARSITY)",
            build,
            True,
            f"{p.value} with zero weights left out of the file (sparse kernel where the "
            "runtime has one)",
            dense_twin=twin,
        )

    def requested(self, qat_requested: bool = False) -> list[Variant]:
        """The files asked for: `--precision`, sparse encoding, MC dropout, `--float-layers`,
        `--qat`."""
        config = self.config
        out = [self.precision(p, True) for p in config.precisions]
        out += [self.sparse(p) for p in config.sparse_encoding or ()]
        out += [self.mc(n, p) for n in config.mc_samples for p in MC_PRECISIONS]
        if config.float_layers:
            from edgekit.core.float_layers import parse_float_layers

            names, k = parse_float_layers(config.float_layers)
            out.append(self.float_layers(names, k, True))
        if qat_requested:
            out.append(self.qat(True))
        return out

    def ladder(self) -> list[Variant]:
        """The budget search's variants, cheapest first (empty without `config.search`)."""
        if not self.config.search:
            return []
        from edgekit.workstation.export.aeq import aeq_available

        out = []
        if aeq_available():
            out += self.int4_tuned_rungs()
            out.append(self.precision(Precision.INT4, False))
        out += [self.precision(p, False) for p in (Precision.DYNAMIC, Precision.INT8)]
        out += [self.float_layers([], k, False) for k in SEARCH_FLOAT_LAYERS]
        if self.qat_model is not None:
            out.append(self.qat(False))
        out += [self.precision(p, False) for p in LADDER_TAIL]
        return out

    def int4_tuned_rungs(self) -> list[Variant]:
        """The search's int4-tuned tries: a pruned model pruned SEARCH_EXTRA_SPARSITY further,
        then at its own zeros; none without a tuner."""
        if self.int4_tuner is None:
            return []
        sparsity = _kernel_zeros(self.model)
        out = []
        if sparsity >= PRUNED_FRACTION:
            target = round(min(sparsity + SEARCH_EXTRA_SPARSITY, MAX_SEARCH_SPARSITY), 2)
            if target > sparsity:
                out.append(self.int4_tuned(target, False))
        return [*out, self.int4_tuned(None, False)]


def _percent(fraction: float) -> str:
    return f"{round(100 * fraction):02d}"


def _kernel_zeros(model: Any) -> float:
    """Fraction of exact zeros over a model's kernels (weights of rank >= 2)."""
    import numpy as np

    total = zeros = 0
    for w in model.get_weights():
        if np.ndim(w) >= 2:
            total += int(np.size(w))
            zeros += int(np.count_nonzero(np.asarray(w) == 0))
    return zeros / total if total else 0.0


# The planner of each engine a recipe may name (core.recipes.ENGINES).
ENGINE_PLANNERS: dict[str, Callable[[VariantPlanner, Precision, bool], Variant]] = {
    "converter": VariantPlanner.converter,
    "ai-edge-quantizer": VariantPlanner.quantizer,
}


def plan_variants(
    model: Any,
    x_train: Samples,
    config: ExportConfig,
    qat_model: Callable[[], Any] | None = None,
    qat_requested: bool = False,
    int4_tuner: Callable[[float | None], tuple[Any, dict[str, Any]]] | None = None,
) -> tuple[list[Variant], list[Variant]]:
    """The variants asked for, and the budget-search ladder (empty without `config.search`).

    Args:
        model: the tf_keras (or Keras 3) model the files are made from.
        x_train: calibration samples (full-integer and mixed recipes).
        qat_model: makes the quantization-aware-trained model on first use; None when QAT is
            not possible (no training data, or a model TF-MOT cannot train).
        qat_requested: `--qat`: the QAT int8 file is asked for by name.
        int4_tuner: fine-tunes the model on the int4 grid (the search's int4-tuned tries);
            None when it cannot.

    Raises:
        ExportError: `--qat` asked for a model QAT cannot train.
    """
    planner = VariantPlanner(model, x_train, config, qat_model, int4_tuner)
    return planner.requested(qat_requested), planner.ladder()


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
