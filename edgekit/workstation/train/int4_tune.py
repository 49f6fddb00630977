"""int4-aware fine-tuning: kernels trained on the exact grid ai-edge-quantizer's int4 uses.

ai-edge-quantizer's int4 recipe (`dynamic_wi4_afp32`, AEQ 0.10) quantizes each kernel
symmetrically per output channel: scale = max|w| / 7, code = round(w / scale) in [-8, 7]
(`uniform_quantize_tensor.tensor_zp_scale_from_min_max`, no narrow range below 8 bits). A
kernel whose every output channel already holds multiples of its own max/7 converts with no
rounding at all: the int4 file then computes what the Keras model computes (up to the on-the-fly
quantization of activations).

`int4_tune` fine-tunes a copy of the model with each Dense/Conv2D kernel projected onto that
grid in the forward pass (straight-through gradients to a float shadow kernel), zeros held at
zero by a mask, optionally pruning further (magnitude, per kernel, ramped over the first epochs)
and distilling from the model it starts from; at the end every kernel is set to its projection.
Keras kernels are (..., in, out): the output channel is the last axis, as TFLite's axis 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.core.data import Dataset
from edgekit.core.errors import EdgekitError
from edgekit.core.io.console import Progress
from edgekit.workstation._keras import keras, set_determinism, tf
from edgekit.workstation.train.batches import training_batches, validation_batches
from edgekit.workstation.train.model import ProgressLogger, check_data_fits, compile_model
from edgekit.workstation.train.qat import require_training_data

__all__ = [
    "INT4_MAX_CODE",
    "Int4TuneConfig",
    "Int4TuneResult",
    "int4_grid",
    "int4_tune",
    "off_grid_kernels",
]

# Largest int4 code of a symmetric scale max|w| / INT4_MAX_CODE (AEQ's qmax for 4 signed bits).
INT4_MAX_CODE = 7
# A kernel value this close (relative to its channel's scale) to a grid point is on the grid.
GRID_TOLERANCE = 1e-4
# The layers whose kernels are projected (kernel's last axis = output channel).
_TUNED_LAYERS = (keras.layers.Dense, keras.layers.Conv2D)


@dataclass(frozen=True)
class Int4TuneConfig:
    """Settings of int4-aware fine-tuning (measured on the default MLP: see docs/quantization.md).

    Args:
        target_sparsity: zeros each kernel ends with (never fewer than it starts with);
            None: keep the model's zeros, prune nothing more.
        epochs: fine-tuning epochs.
        learning_rate: peak rate of the cosine-decayed Adam.
        distillation: weight of the KL divergence to the starting model's outputs in the loss
            (the rest is cross-entropy on the labels); 0: labels only.
        ramp_epochs: epochs over which the extra zeros are reached (pruned at each epoch's start).
        batch_size: training batch size.
        seed: seeds the batches.
    """

    target_sparsity: float | None = None
    epochs: int = 10
    learning_rate: float = 1e-3
    distillation: float = 0.7
    ramp_epochs: int = 4
    batch_size: int = 128
    seed: int = 42

    def __post_init__(self) -> None:
        if self.target_sparsity is not None and not 0.0 <= self.target_sparsity < 1.0:
            raise EdgekitError(
                f"int4 tuning sparsity must be in [0, 1), got {self.target_sparsity}: e.g. 0.85"
            )
        if self.epochs < 1 or self.ramp_epochs < 1 or self.batch_size < 1:
            raise EdgekitError(
                f"int4 tuning needs epochs, ramp_epochs and batch_size >= 1, got {self.epochs}, "
                f"{self.ramp_epochs}, {self.batch_size}"
            )
        if not 0.0 <= self.distillation <= 1.0:
            raise EdgekitError(
                f"int4 tuning distillation must be in [0, 1], got {self.distillation}: e.g. 0.7"
            )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Int4TuneResult:
    """The tuned model (plain tf_keras layers, every tuned kernel on the int4 grid) and what was
    done: the settings, zeros per kernel before and after, the tuned layers."""

    model: keras.Model
    config: Int4TuneConfig
    sparsity_before: dict[str, float]
    sparsity_after: dict[str, float]
    layers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.config.to_dict(),
            "tuned_layers": list(self.layers),
            "kernel_sparsity_before": self.sparsity_before,
            "kernel_sparsity_after": self.sparsity_after,
        }


def int4_grid(kernel: np.ndarray) -> np.ndarray:
    """`kernel` projected onto its int4 grid: per output channel (last axis) the multiples of
    max|w| / 7, rounded to nearest; zeros stay zero.

    Example:
        >>> int4_grid(np.array([[0.7], [0.31], [0.0], [-0.04]], np.float32)).ravel().tolist()
        [0.699999988079071, 0.30000001192092896, 0.0, -0.0]
    """
    return np.asarray(_project(tf.constant(kernel, tf.float32)).numpy())


def off_grid_kernels(model: keras.Model) -> dict[str, float]:
    """Tuned-layer kernels NOT on their int4 grid -> largest distance (in scales); {} if all are."""
    out = {}
    for layer, kernel in _kernels(model):
        w = np.asarray(kernel.numpy(), np.float32)
        scale = _scales(w)
        dist = float(np.max(np.abs(w - int4_grid(w)) / scale)) if w.size else 0.0
        if dist > GRID_TOLERANCE:
            out[layer.name] = dist
    return out


def _scales(w: np.ndarray) -> np.ndarray:
    axes = tuple(range(w.ndim - 1))
    return np.maximum(np.max(np.abs(w), axis=axes, keepdims=True) / INT4_MAX_CODE, 1e-12)


def _project(w: Any) -> Any:
    axes = list(range(len(w.shape) - 1))
    scale = tf.maximum(tf.reduce_max(tf.abs(w), axis=axes, keepdims=True) / INT4_MAX_CODE, 1e-12)
    return tf.clip_by_value(tf.round(w / scale), -INT4_MAX_CODE - 1.0, INT4_MAX_CODE) * scale


def _kernels(model: keras.Model) -> list[tuple[Any, Any]]:
    return [(lyr, lyr.kernel) for lyr in model.layers if isinstance(lyr, _TUNED_LAYERS)]


def _magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """1 for the weights kept: zeros stay zero, then the smallest go until `sparsity`."""
    mask = (w != 0).astype(np.float32)
    drop = int(round(sparsity * w.size)) - int(w.size - mask.sum())
    if drop > 0:
        order = np.argsort(np.where(mask > 0, np.abs(w), -1.0), axis=None, kind="stable")
        zeros = int(w.size - mask.sum())
        flat = mask.reshape(-1)
        flat[order[zeros : zeros + drop]] = 0.0
    return mask


class _GridTrainer(keras.Model):
    """Trains `inner` with its kernels on the int4 grid in the forward pass (straight-through):
    the float shadow kernels take the gradients; masked weights stay zero."""

    def __init__(self, inner: keras.Model, masks: list[Any], teacher: Any, kd: float) -> None:
        super().__init__()
        self.inner, self.masks, self.teacher, self.kd = inner, masks, teacher, kd
        self.kernels = [k for _, k in _kernels(inner)]

    def call(self, x: Any, training: bool = False) -> Any:
        return self.inner(x, training=training)

    def train_step(self, batch: Any) -> dict[str, Any]:
        x, y = batch[:2]
        shadows = [tf.identity(k) for k in self.kernels]
        for k, m in zip(self.kernels, self.masks, strict=True):
            k.assign(_project(k * m))
        with tf.GradientTape() as tape:
            pred = self.inner(x, training=True)
            loss = self.compiled_loss(y, pred, regularization_losses=self.inner.losses)
            if self.kd > 0:
                t = tf.stop_gradient(self.teacher(x, training=False))
                kl = tf.reduce_sum(t * (tf.math.log(t + 1e-8) - tf.math.log(pred + 1e-8)), -1)
                loss = (1.0 - self.kd) * loss + self.kd * tf.reduce_mean(kl)
        variables = self.inner.trainable_variables
        grads = tape.gradient(loss, variables)
        for k, shadow in zip(self.kernels, shadows, strict=True):
            k.assign(shadow)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        for k, m in zip(self.kernels, self.masks, strict=True):
            k.assign(k * m)
        self.compiled_metrics.update_state(y, pred)
        return {m.name: m.result() for m in self.metrics}


class _Ramp(keras.callbacks.Callback):
    """At each epoch's start, prunes every kernel to its share of the way to the target."""

    def __init__(self, kernels: list[Any], masks: list[Any], start: list[float], config: Any):
        super().__init__()
        self.kernels, self.masks, self.start, self.config = kernels, masks, start, config

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        target = self.config.target_sparsity
        if target is None:
            return
        share = min(1.0, (epoch + 1) / self.config.ramp_epochs)
        for k, m, s0 in zip(self.kernels, self.masks, self.start, strict=True):
            w = k.numpy() * m.numpy()
            mask = _magnitude_mask(w, s0 + max(0.0, target - s0) * share)
            m.assign(mask)
            k.assign(w * mask)


def _sparsity(model: keras.Model) -> dict[str, float]:
    return {
        lyr.name: round(float((k.numpy() == 0).mean()), 6) if k.shape.num_elements() else 0.0
        for lyr, k in _kernels(model)
    }


def int4_tune(
    model: keras.Model,
    data: Dataset,
    config: Int4TuneConfig,
    progress: Progress | None = None,
    augment: Sequence[str] = (),
) -> Int4TuneResult:
    """Fine-tune a copy of `model` with its Dense/Conv2D kernels on ai-edge-quantizer's int4
    grid (zeros kept, pruned further to `config.target_sparsity` when given), distilling
    from `model`. The input model is not modified.

    Raises:
        EdgekitError: no training data, no Dense/Conv2D kernel, or a kernel ended off the grid.
        DataError: the data does not fit the model.
    """
    data = require_training_data(data, "int4 tuning")
    check_data_fits(model, data)
    set_determinism(config.seed)
    tuned = keras.models.clone_model(model)
    tuned.set_weights(model.get_weights())
    kernels = _kernels(tuned)
    if not kernels:
        raise EdgekitError("int4 tuning needs Dense or Conv2D layers: the model has none")
    before = _sparsity(tuned)
    masks = [tf.Variable((k.numpy() != 0).astype(np.float32), trainable=False) for _, k in kernels]
    trainer = _GridTrainer(tuned, masks, model, config.distillation)
    steps = -(-len(data.x_train) // config.batch_size) * config.epochs
    compile_model(trainer, config.learning_rate, decay_steps=steps)
    ramp = _Ramp([k for _, k in kernels], masks, list(before.values()), config)
    batches = training_batches(
        tuned, data.x_train, data.y_train, config.batch_size, config.seed, augment
    )
    trainer.fit(
        batches,
        validation_data=validation_batches(data.x_val, data.y_val),
        epochs=config.epochs,
        verbose=0,
        callbacks=[ramp, ProgressLogger("int4 tuning", config.epochs, progress)],
    )
    for (_, k), m in zip(kernels, masks, strict=True):
        k.assign(_project(k * m))
    off = off_grid_kernels(tuned)
    if off:
        raise EdgekitError(f"int4 tuning left kernels off the int4 grid: {off}")
    compile_model(tuned, config.learning_rate)
    return Int4TuneResult(tuned, config, before, _sparsity(tuned), [lyr.name for lyr, _ in kernels])
