"""Magnitude pruning with TF-MOT: schedule from the real number of batches, fine-tune, strip."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.core.config import PruneConfig, SparsityStructure
from edgekit.core.data import Dataset
from edgekit.core.errors import EdgekitError, ModelError, first_line
from edgekit.core.io.console import Progress
from edgekit.workstation._keras import keras, set_determinism, tfmot
from edgekit.workstation.train.batches import training_batches, validation_batches
from edgekit.workstation.train.model import ProgressLogger, check_data_fits, compile_model

# Tolerance between the sparsity asked for and the one every pruned kernel must end at.
SPARSITY_TOLERANCE = 0.01
# The kernel variables of Dense/Conv (kernel), DepthwiseConv2D (depthwise_kernel) and
# SeparableConv2D (depthwise_kernel and pointwise_kernel); a layer's sparsity counts them all.
_KERNEL_ATTRS = ("kernel", "depthwise_kernel", "pointwise_kernel")


@dataclass(frozen=True)
class PruningSchedulePlan:
    """The PolynomialDecay parameters actually used, derived from the number of batches."""

    steps_per_epoch: int
    total_steps: int
    begin_step: int
    end_step: int
    frequency: int
    initial_sparsity: float
    final_sparsity: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def plan_schedule(num_samples: int, config: PruneConfig) -> PruningSchedulePlan:
    """Choose begin/end/frequency so pruning fires at end_step, inside the steps trained.

    TF-MOT prunes only when `(step - begin_step) % frequency == 0` and `step <= end_step`, so
    end_step - begin_step must be a multiple of the frequency and lie before the last step.
    """
    if num_samples < 1:
        raise EdgekitError("pruning needs training data: got 0 samples")
    steps_per_epoch = math.ceil(num_samples / config.batch_size)
    total = steps_per_epoch * config.max_epochs
    # Leave room after end_step for fine-tuning at the final sparsity.
    ramp = max(1, int(total * config.ramp_fraction) - 1)
    frequency = min(config.frequency, max(1, ramp // 4))
    end = (ramp // frequency) * frequency
    if end < frequency or end >= total:
        raise EdgekitError(
            f"{config.max_epochs} pruning epoch(s) of {steps_per_epoch} batches are too few to "
            "reach the target sparsity: raise --prune-epochs or use more data"
        )
    return PruningSchedulePlan(
        steps_per_epoch, total, 0, end, frequency, config.initial_sparsity, config.target_sparsity
    )


def kernel_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of exactly-zero weights in every kernel (Dense, Conv2D, DepthwiseConv2D...)."""
    out: dict[str, float] = {}
    for layer in _all_layers(model):
        kernels = [np.asarray(w.numpy()) for w in _kernels(layer)]
        if kernels:
            size = sum(k.size for k in kernels)
            out[layer.name] = sum(int((k == 0).sum()) for k in kernels) / size if size else 0.0
    return out


def _kernels(layer: keras.layers.Layer) -> list[Any]:
    """The layer's kernel variables (none for a layer without kernels, or not yet built)."""
    return [
        w
        for a in _KERNEL_ATTRS
        if (w := getattr(layer, a, None)) is not None and hasattr(w, "numpy")
    ]


def _kernel_size(layer: keras.layers.Layer) -> int | None:
    kernels = _kernels(layer)
    return sum(int(np.prod(w.shape)) for w in kernels) if kernels else None


def _prune_every_kernel(layer: keras.layers.Layer) -> None:
    """Make TF-MOT prune all of a depthwise layer's kernels.

    TF-MOT 0.8.1's registry lists DepthwiseConv2D with no prunable weight and SeparableConv2D
    with its pointwise kernel only: wrapped as they are, their depthwise kernels stay exactly
    dense whatever the schedule (a MobileNetV2 ended at 0.000 in every depthwise layer). A
    layer's own `get_prunable_weights` comes before the registry (PruneLowMagnitude), so the
    layer object gets one naming every kernel; `_forget_prunable_weights` removes it after
    `strip_pruning`. Magnitude pruning works on a kernel of any shape (block size 1x1).
    """
    if getattr(layer, "depthwise_kernel", None) is not None:
        layer.get_prunable_weights = lambda: _kernels(layer)


def _forget_prunable_weights(model: keras.Model) -> None:
    for layer in _all_layers(model):
        if "get_prunable_weights" in vars(layer):
            del layer.get_prunable_weights


def _all_layers(model: keras.Model) -> list[Any]:
    out = []
    for layer in model.layers:
        out += _all_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return out


@dataclass(frozen=True)
class PruneResult:
    model: keras.Model  # stripped: plain Keras layers, zeros in the kernels
    schedule: PruningSchedulePlan
    kernel_sparsity: dict[str, float]  # every kernel, pruned or not
    skipped: dict[str, str]  # kernels left dense -> why
    history: dict[str, list[float]]
    # Kernels pruned without the structure asked for (1x4, 2:4) -> why (they are unstructured).
    unstructured: dict[str, str] = field(default_factory=dict)

    @property
    def pruned_sparsity(self) -> dict[str, float]:
        """Sparsity of the kernels that were pruned (each within tolerance of the target)."""
        return {k: v for k, v in self.kernel_sparsity.items() if k not in self.skipped}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule.to_dict(),
            "kernel_sparsity": self.kernel_sparsity,
            "skipped": self.skipped,
            "unstructured": self.unstructured,
        }


def prune_model(
    model: keras.Model,
    data: Dataset,
    config: PruneConfig,
    progress: Progress | None = None,
    augment: Sequence[str] = (),
) -> PruneResult:
    """Prune every kernel of >= config.min_weights weights to the target while fine-tuning
    (on batches augmented by `augment`, TrainConfig.augment's items).

    Raises:
        ModelError: TF-MOT cannot wrap a layer of the model.
        EdgekitError: a kernel ended more than SPARSITY_TOLERANCE from the target.
    """
    check_data_fits(model, data)
    set_determinism(config.seed)
    plan = plan_schedule(len(data.x_train), config)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=plan.initial_sparsity,
        final_sparsity=plan.final_sparsity,
        begin_step=plan.begin_step,
        end_step=plan.end_step,
        frequency=plan.frequency,
    )
    # TF-MOT wraps the model's own layer objects, so fine-tuning would change the caller's
    # model too: prune a copy.
    original = model
    model = keras.models.clone_model(original)
    model.set_weights(original.get_weights())
    wrapped, skipped, unstructured = _wrap_for_pruning(model, config, schedule)
    # The wrapper drops the optimizer: compile again.
    compile_model(wrapped, config.learning_rate, decay_steps=plan.total_steps)
    hist = wrapped.fit(
        training_batches(
            wrapped, data.x_train, data.y_train, config.batch_size, config.seed, augment
        ),
        validation_data=validation_batches(data.x_val, data.y_val),
        epochs=config.max_epochs,
        verbose=0,
        callbacks=[
            tfmot.sparsity.keras.UpdatePruningStep(),
            ProgressLogger("prune", config.max_epochs, progress),
        ],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    _forget_prunable_weights(stripped)
    compile_model(stripped, config.learning_rate)
    sparsity = kernel_sparsity(stripped)
    pruned = {k: v for k, v in sparsity.items() if k not in skipped}
    target = config.target_sparsity
    off = {k: v for k, v in pruned.items() if abs(v - target) > SPARSITY_TOLERANCE}
    if off:
        detail = ", ".join(f"{k}={v:.3f}" for k, v in off.items())
        raise EdgekitError(
            f"pruning did not reach {config.target_sparsity:.2f} sparsity ({detail}): "
            "raise --prune-epochs"
        )
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return PruneResult(stripped, plan, sparsity, skipped, history, unstructured)


def structure_args(
    layer: keras.layers.Layer, structure: SparsityStructure
) -> tuple[dict[str, Any], str]:
    """`prune_low_magnitude`'s keywords putting `layer`'s zeros in `structure`, and why not
    ("" when it can).

    TF-MOT takes `block_size` on 2-D kernels only (Dense) and `sparsity_m_by_n` on Dense and
    on Conv2D with input channels a multiple of 4; it would leave any other layer dense without
    a word (a 1-channel conv), so such a layer is pruned unstructured and said so. Keras Dense
    kernels are (in, out), TFLite's (out, in): Keras block (4, 1) is TFLite's 1x4.

    Example:
        >>> from edgekit.workstation._keras import keras
        >>> dense = keras.layers.Dense(8)
        >>> dense.build((None, 16))
        >>> structure_args(dense, SparsityStructure.BLOCK_1X4)
        ({'block_size': (4, 1)}, '')
        >>> conv = keras.layers.Conv2D(8, 3)
        >>> conv.build((None, 28, 28, 1))
        >>> structure_args(conv, SparsityStructure.M_BY_N_2_4)[1]
        '2:4 needs input channels a multiple of 4 (Conv2D has 1): pruned unstructured'
    """
    if structure is SparsityStructure.UNSTRUCTURED:
        return {}, ""
    kind = type(layer).__name__
    if structure is SparsityStructure.BLOCK_1X4:
        if kind == "Dense":
            return {"block_size": (4, 1)}, ""
        return {}, f"1x4 blocks are for Dense kernels only ({kind}): pruned unstructured"
    if kind == "Dense":
        return {"sparsity_m_by_n": (2, 4)}, ""
    if kind == "Conv2D":
        channels = int(layer.kernel.shape[-2])
        if channels % 4 == 0:
            return {"sparsity_m_by_n": (2, 4)}, ""
        return {}, (
            f"2:4 needs input channels a multiple of 4 (Conv2D has {channels}): pruned unstructured"
        )
    return {}, f"2:4 is for Dense and Conv2D kernels only ({kind}): pruned unstructured"


def _wrap_for_pruning(
    model: keras.Model, config: PruneConfig, schedule: tfmot.sparsity.keras.PruningSchedule
) -> tuple[keras.Model, dict[str, str], dict[str, str]]:
    """A copy of `model` with every kernel of >= config.min_weights weights wrapped for
    pruning, the kernels left dense -> why, and those pruned without config.structure -> why.

    Raises:
        ModelError: the model nests a model, TF-MOT cannot wrap a layer, or no kernel is large
            enough to prune.
    """
    skipped: dict[str, str] = {}
    unstructured: dict[str, str] = {}

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        size = _kernel_size(layer)
        if size is None:
            return layer
        if size < config.min_weights:
            skipped[layer.name] = (
                f"{size} kernel weights < min_weights={config.min_weights}: left dense "
                "(pruning it saves little and costs accuracy)"
            )
            return layer
        _prune_every_kernel(layer)
        args, why = structure_args(layer, config.structure)
        if why:
            unstructured[layer.name] = why
        try:
            return tfmot.sparsity.keras.prune_low_magnitude(
                layer, pruning_schedule=schedule, **args
            )
        except ValueError as e:
            first = first_line(e)
            raise ModelError(
                f"TF-MOT cannot prune layer {layer.name!r} ({first}): prune only models built "
                "from built-in tf_keras layers, or export with --no-prune"
            ) from None

    if any(isinstance(layer, keras.Model) for layer in model.layers):
        raise ModelError(
            "the model nests another model, which TF-MOT cannot prune layer by layer: "
            "flatten it into one Sequential/Functional model, or export with --no-prune"
        )
    wrapped = keras.models.clone_model(model, clone_function=wrap)
    if not any(_kernel_size(lyr) is not None and lyr.name not in skipped for lyr in model.layers):
        raise ModelError(
            f"no layer of the model has >= {config.min_weights} kernel weights to prune: "
            "lower --min-weights or export with --no-prune"
        )
    return wrapped, skipped, unstructured
