"""Build and train the guidance's regularized network (tf_keras)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.core.config import Activation, Arch, Init, LrSchedule, Optimizer, TrainConfig
from edgekit.core.data import Dataset
from edgekit.core.data.arrays import Samples, row_chunks
from edgekit.core.errors import DataError, ModelError
from edgekit.core.io.console import Progress, stderr_progress
from edgekit.workstation._keras import keras, set_determinism, tf
from edgekit.workstation.train.activations import SELU
from edgekit.workstation.train.batches import (
    in_order_batches,
    training_batches,
    validation_batches,
)
from edgekit.workstation.train.schedules import learning_rate as learning_rate_schedule
from edgekit.workstation.train.schedules import make_optimizer

# CNN feature maps: two blocks of two 3x3 convolutions, then the dense head of hidden_units[-1].
CNN_FILTERS: tuple[int, ...] = (32, 64)
# cnn_gap: stages of 3x3 convolutions with 2x2 max pooling between them, then global average
# pooling straight into the softmax layer. Nearly every weight is in a conv kernel; the
# dense head of the cnn (3136 x 100) is gone. Filters per convolution, one tuple per stage.
GAP_STAGES: tuple[tuple[int, ...], ...] = ((32, 32), (64, 64), (128,))


_INITIALIZERS = {Init.HE: "he_normal", Init.LECUN: "lecun_normal"}
# Batches `train_model` runs per call into TensorFlow: the same updates in the same order (the
# weights come out bit for bit the same), with a sixteenth of the trips through Python.
# Pruning keeps 1: TF-MOT's UpdatePruningStep counts batches in a per-batch callback.
TRAIN_STEPS_PER_EXECUTION = 16


def kernel_regularizer(config: TrainConfig) -> Any:
    """l1, l2 or l1_l2 of the config's factors (None when both are 0)."""
    if config.l1 > 0 and config.l2 > 0:
        return keras.regularizers.l1_l2(l1=config.l1, l2=config.l2)
    if config.l1 > 0:
        return keras.regularizers.l1(config.l1)
    if config.l2 > 0:
        return keras.regularizers.l2(config.l2)
    return None


def _hidden_kwargs(config: TrainConfig, norm_axis: int | list[int]) -> dict[str, Any]:
    """Initializer, regularizer and max-norm constraint of every hidden kernel."""
    constraint = (
        keras.constraints.MaxNorm(config.max_norm, axis=norm_axis)
        if config.max_norm is not None
        else None
    )
    return {
        "kernel_initializer": _INITIALIZERS[config.init],
        "kernel_regularizer": kernel_regularizer(config),
        "kernel_constraint": constraint,
        "use_bias": not config.batch_norm,
    }


def regularized_dense(config: TrainConfig) -> Callable[..., Any]:
    """The guidance's reusable Dense: He (or LeCun) initialization, L1/L2 kernel regularization
    and an optional max-norm constraint.

    Dense layers followed by batch norm get no activation and no bias (BN's beta replaces it);
    the activation comes after BN, so BN can be folded into the Dense.
    """
    return functools.partial(keras.layers.Dense, **_hidden_kwargs(config, 0))


def _activation(config: TrainConfig, name: str) -> keras.layers.Layer:
    if config.activation is Activation.LEAKY_RELU:
        return keras.layers.LeakyReLU(alpha=config.leaky_alpha, name=name)
    if config.activation is Activation.ELU:
        return keras.layers.ELU(name=name)
    if config.activation is Activation.SELU:
        return SELU(name=name)
    return keras.layers.ReLU(name=name)


def _dropout(config: TrainConfig, name: str) -> keras.layers.Layer | None:
    if config.alpha_dropout > 0:
        return keras.layers.AlphaDropout(config.alpha_dropout, name=f"alpha_{name}")
    if config.dropout_rate > 0:
        return keras.layers.Dropout(config.dropout_rate, name=name)
    return None


# ~65 lines: the mlp and cnn layer lists side by side, in the order that names the layers.
def build_model(config: TrainConfig, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The default network for `config.arch`: `mlp` (hidden 300-100), `cnn` or `cnn_gap`.

    Every hidden block is Dense/Conv (linear) -> BatchNormalization (if `batch_norm`) ->
    activation; (alpha) dropout follows the top `dropout_layers` hidden Dense blocks; with
    `standardize`, a Normalization layer (adapted by `train_model`) comes first.
    """
    if num_classes < 2:
        raise DataError(f"a classifier needs >= 2 classes, got {num_classes}")
    set_determinism(config.seed)
    dense = regularized_dense(config)
    layers: list[keras.layers.Layer] = [keras.layers.Input(shape=input_shape, name="image")]
    if config.standardize:
        layers.append(keras.layers.Normalization(axis=None, name="standardize"))

    def block(layer: keras.layers.Layer, i: int) -> None:
        layers.append(layer)
        if config.batch_norm:
            layers.append(keras.layers.BatchNormalization(name=f"bn{i}"))
        layers.append(_activation(config, f"act{i}"))

    if config.arch is Arch.MLP:
        layers.append(keras.layers.Flatten(name="flatten"))
        first_dropout = len(config.hidden_units) - config.dropout_layers + 1
        for i, units in enumerate(config.hidden_units, start=1):
            block(dense(units, name=f"dense{i}"), i)
            drop = _dropout(config, f"dropout{i}") if i >= first_dropout else None
            if drop is not None:
                layers.append(drop)
    else:
        if len(input_shape) == 2:
            layers.append(keras.layers.Reshape((*input_shape, 1), name="add_channel"))
        elif len(input_shape) != 3:
            raise DataError(
                f"the {config.arch.value} architecture needs images shaped (H, W) or (H, W, C), "
                f"got {input_shape}: use --arch mlp for other data"
            )
        conv = functools.partial(
            keras.layers.Conv2D, kernel_size=3, padding="same", **_hidden_kwargs(config, [0, 1, 2])
        )
        gap = config.arch is Arch.CNN_GAP
        stages = GAP_STAGES if gap else tuple((f, f) for f in CNN_FILTERS)
        i = 0
        for s, filters in enumerate(stages, start=1):
            for f in filters:
                i += 1
                block(conv(f, name=f"conv{i}"), i)
            if not gap or s < len(stages):
                layers.append(keras.layers.MaxPooling2D(2, name=f"pool{i}"))
        if gap:
            layers.append(keras.layers.GlobalAveragePooling2D(name="gap"))
        else:
            layers.append(keras.layers.Flatten(name="flatten"))
            i += 1
            block(dense(config.hidden_units[-1], name=f"dense{i}"), i)
        drop = _dropout(config, "dropout")
        if drop is not None:
            layers.append(drop)
    layers.append(
        keras.layers.Dense(
            num_classes, activation="softmax", kernel_initializer="glorot_uniform", name="output"
        )
    )
    model = keras.Sequential(layers, name=f"edgekit_{config.arch.value}")
    compile_model(model, config.learning_rate, optimizer=config.optimizer)
    return model


def compile_model(
    model: keras.Model,
    learning_rate: float,
    decay_steps: int | None = None,
    optimizer: Optimizer | str = Optimizer.ADAM,
    lr_schedule: LrSchedule | str = LrSchedule.COSINE,
    steps_per_execution: int = 1,
) -> None:
    """Compile for sparse-label classification with `optimizer` (Adam by default).

    Given `decay_steps`, the rate follows `lr_schedule` over them: cosine decay to 2% (a small
    final rate settles the BN statistics and the weights), constant, or 1cycle.
    """
    rate = learning_rate_schedule(learning_rate, lr_schedule, decay_steps)
    model.compile(
        optimizer=make_optimizer(optimizer, rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )


class ProgressLogger(keras.callbacks.Callback):
    """One line per epoch (Keras' own progress bars are too chatty for logs)."""

    def __init__(self, stage: str, epochs: int, progress: Progress | None = None) -> None:
        super().__init__()
        self.stage, self.epochs = stage, epochs
        self.say = progress or stderr_progress()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        shown = ("loss", "accuracy", "val_accuracy")
        parts = [f"{k}={v:.4f}" for k, v in logs.items() if k in shown]
        self.say(f"  {self.stage} epoch {epoch + 1}/{self.epochs}: {' '.join(parts)}")


@dataclass(frozen=True)
class TrainResult:
    model: keras.Model
    epochs_run: int
    best_val_accuracy: float
    history: dict[str, list[float]]


def check_data_fits(model: keras.Model, data: Dataset) -> None:
    """Raise DataError when the data's sample shape or classes do not fit the model."""
    want = tuple(model.input_shape[1:])
    if tuple(data.input_shape) != want:
        raise DataError(
            f"data samples have shape {data.input_shape} but the model expects {want}: "
            "pass data shaped like the model's input"
        )
    n_out = int(model.output_shape[-1])
    top = max(int(data.y_train.max(initial=0)), int(data.y_test.max(initial=0)))
    if top >= n_out:
        raise DataError(
            f"data has label {top} but the model has {n_out} output classes: "
            f"labels must be 0..{n_out - 1}"
        )


def train_model(
    model: keras.Model, data: Dataset, config: TrainConfig, progress: Progress | None = None
) -> TrainResult:
    """Train with early stopping on the validation split, restoring the best weights."""
    check_data_fits(model, data)
    set_determinism(config.seed)
    epochs = config.max_epochs
    steps = -(-len(data.x_train) // config.batch_size) * epochs
    one_process = not isinstance(
        model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy
    )
    compile_model(
        model,
        config.learning_rate,
        decay_steps=steps,
        optimizer=config.optimizer,
        lr_schedule=config.lr_schedule,
        steps_per_execution=TRAIN_STEPS_PER_EXECUTION if one_process else 1,
    )
    if config.standardize:
        standardize_inputs(model, data.x_train)
    early = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", patience=config.patience, restore_best_weights=True
    )
    hist = model.fit(
        training_batches(
            model, data.x_train, data.y_train, config.batch_size, config.seed, config.augment
        ),
        validation_data=validation_batches(data.x_val, data.y_val),
        epochs=epochs,
        verbose=0,
        callbacks=[early, ProgressLogger("train", epochs, progress)],
    )
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    val = history.get("val_accuracy", [float("nan")])
    return TrainResult(model, len(val), float(np.nanmax(val)), history)


def fine_tune(
    model: keras.Model,
    data: Dataset,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    stage: str,
    progress: Progress | None = None,
    augment: Sequence[str] = (),
) -> Any:
    """Compile `model` with a cosine-decayed rate and fit it on `data` (seeded batches,
    augmented by `augment`, the validation split when there is one); the Keras History. QAT
    and clustering use it."""
    steps = -(-len(data.x_train) // batch_size) * epochs
    compile_model(model, learning_rate, decay_steps=steps)
    return model.fit(
        training_batches(model, data.x_train, data.y_train, batch_size, seed, augment),
        validation_data=validation_batches(data.x_val, data.y_val),
        epochs=epochs,
        verbose=0,
        callbacks=[ProgressLogger(stage, epochs, progress)],
    )


def standardize_inputs(model: keras.Model, x: Samples) -> None:
    """Adapt the model's 'standardize' Normalization layer to `x` (mean 0, variance 1 after).

    Raises:
        ModelError: the model has no Normalization layer named 'standardize'.
    """
    layer = next((lyr for lyr in model.layers if lyr.name == "standardize"), None)
    if not isinstance(layer, keras.layers.Normalization):
        raise ModelError(
            "the model has no Normalization layer named 'standardize' to adapt: build it with "
            "TrainConfig(standardize=True)"
        )
    # Batches of 4096 in order, as adapt batches a whole array: the same mean and variance.
    layer.adapt(in_order_batches(x, None, ADAPT_BATCH_SIZE))


# Rows per batch when a Normalization layer adapts to the training samples.
ADAPT_BATCH_SIZE = 4096


def keras_accuracy(model: keras.Model, x: Samples, y: np.ndarray, batch_size: int = 512) -> float:
    """Top-1 accuracy of a Keras model (inference mode, batched)."""
    preds = predict_classes(model, x, batch_size)
    return float((preds == y).mean()) if len(y) else float("nan")


def predict_classes(model: keras.Model, x: Samples, batch_size: int = 512) -> np.ndarray:
    return keras_outputs(model, x, batch_size).argmax(axis=-1)


def keras_outputs(model: keras.Model, x: Samples, batch_size: int = 512) -> np.ndarray:
    """The model's outputs on `x` (a `ScaledSamples` or an array; inference mode, batched),
    as float32. `x` is read a chunk of whole batches at a time (`row_chunks`), so no float32
    copy of all of it is made, and the batches are those of one `predict` on all of it."""
    outputs = [
        np.asarray(model.predict(chunk, batch_size=batch_size, verbose=0), dtype=np.float32)
        for chunk in row_chunks(x, batch_size)
    ]
    if outputs:
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]
    return np.asarray(model.predict(np.asarray(x), batch_size=batch_size, verbose=0), np.float32)
