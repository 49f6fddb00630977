"""Training batches as a `tf.data` pipeline over the raw samples: seeded shuffle, scaling in the
graph, prefetch.

Keras' `fit` on a whole float array makes TensorFlow copy all of it, and holding the training
set as float32 takes 4x its uint8 size. Here the samples stay where they were read
(`Dataset.x_train` is a `ScaledSamples`: uint8 in memory, or a memmap for a decoded image
folder): a shuffled index is batched, each batch's raw rows are read, cast and scaled to
float32 inside the graph, and the next batch is prepared while the model trains on this one.
benchmarks/main_job.py compares the whole export with epochs of a plain `fit` on whole float
arrays.
A model built under `tf.distribute.MultiWorkerMirroredStrategy` gets global batches of the same
size, auto-shard policy DATA (`global_batches`): see `training_batches`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgekit.core.data.arrays import ScaledSamples
from edgekit.workstation._keras import keras, tf
from edgekit.workstation.train.augment import augment_batches


def _raw_source(x: Any) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """(raw rows, the index of the samples among them or None, the scale of uint8 rows:
    None = divide by 255) of a `ScaledSamples` or a plain array."""
    if isinstance(x, ScaledSamples):
        return x.raw, x.index, x.pixel_scale
    return np.asarray(x), None, None


def _scaled(xb: Any, raw_dtype: np.dtype[Any], pixel_scale: float | None) -> Any:
    """A batch of raw rows as the model's float32 input, in the graph: the rule of
    `edgekit.core.data.arrays.scale_pixels` (uint8 / 255, or uint8 * pixel_scale)."""
    xf = tf.cast(xb, tf.float32)
    if raw_dtype != np.uint8:
        return xf
    if pixel_scale is None:
        return xf / tf.constant(255.0, tf.float32)
    return xf * tf.constant(pixel_scale, tf.float32)


def _batch_reader(x: Any, y: np.ndarray) -> Any:
    """A function of a batch of sample numbers (int64, 0..n-1) -> (float32 x, int64 y).

    The raw rows of a batch are read where they are (an array in memory, or a memmap on disk:
    sorted reads), with no copy of the whole set, and scaled to float32 in the graph.
    """
    raw, index, pixel_scale = _raw_source(x)
    where = np.arange(len(raw)) if index is None else index
    labels = tf.constant(np.asarray(y, np.int64))
    shape = tuple(int(d) for d in raw.shape[1:])

    def read(batch: np.ndarray) -> np.ndarray:
        rows = where[batch]
        order = np.argsort(rows, kind="stable")  # sorted reads: sequential on disk
        out = np.empty((len(rows), *shape), raw.dtype)
        out[order] = raw[rows[order]]
        return out

    def read_batch(batch: Any) -> tuple[Any, Any]:
        xb = tf.numpy_function(read, [batch], tf.as_dtype(raw.dtype), stateful=False)
        xb.set_shape((None, *shape))
        return _scaled(xb, raw.dtype, pixel_scale), tf.gather(labels, batch)

    return read_batch


def shuffled_batches(
    x: Any, y: np.ndarray, batch_size: int, seed: int, augment: Sequence[str] = ()
) -> Any:
    """A `tf.data.Dataset` of (x, y) batches of `x` (a `ScaledSamples` or an array) in an
    order drawn with `seed`, drawn anew every epoch; x float32 as `scale_pixels` makes it,
    then augmented by `augment` (TrainConfig.augment items; edgekit.workstation.train.augment)."""
    n = len(y)
    batches = (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(int(batch_size))
        .map(_batch_reader(x, y))
    )
    sample_shape = _raw_source(x)[0].shape[1:]
    return augment_batches(batches, augment, sample_shape, seed).prefetch(tf.data.AUTOTUNE)


def in_order_batches(x: Any, y: np.ndarray | None, batch_size: int) -> Any:
    """A `tf.data.Dataset` of batches of `x` (a `ScaledSamples` or an array) in order, and of
    `y` unless None: what Keras makes of whole arrays for validation, `evaluate`, `predict`
    or `adapt`, with no copy of the whole set. Each batch is scaled by `scale_pixels` itself
    (NumPy), so it holds the numbers a whole float32 array would hold, bit for bit."""
    source: Any = x if isinstance(x, ScaledSamples) else np.asarray(x)
    shape = tuple(int(d) for d in x.shape[1:])
    n = len(x)
    labels: Any = None if y is None else tf.constant(np.asarray(y, np.int64))

    def read(start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(source[int(start) : int(stop)], np.float32)

    def read_batch(start: Any) -> Any:
        stop = tf.minimum(start + int(batch_size), n)
        xb = tf.numpy_function(read, [start, stop], tf.float32, stateful=False)
        xb.set_shape((None, *shape))
        return xb if labels is None else (xb, labels[start:stop])

    return tf.data.Dataset.range(0, n, int(batch_size)).map(read_batch).prefetch(tf.data.AUTOTUNE)


# Keras' validation batch for whole arrays (fit without validation_batch_size, on a Dataset).
VALIDATION_BATCH_SIZE = 32


def validation_batches(x: Any, y: np.ndarray) -> Any:
    """`fit`'s validation_data for the validation split `x`, `y`: batches of 32 in order, as
    Keras batches whole arrays (the same numbers, so the same val_accuracy), read a batch at a
    time; None when there are no validation samples."""
    if x is None or len(x) == 0:
        return None
    # Under MultiWorkerMirroredStrategy each worker evaluates its piece of every batch, as
    # Keras shards whole arrays (DATA: there are no files to shard); ignored on one process.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return in_order_batches(x, y, VALIDATION_BATCH_SIZE).with_options(options)


def global_batches(
    x: Any, y: np.ndarray, batch_size: int, seed: int, augment: Sequence[str] = ()
) -> Any:
    """`shuffled_batches` as global batches for MultiWorkerMirroredStrategy: the same order on
    every worker, auto-shard policy DATA.

    Under MultiWorkerMirroredStrategy, Keras splits each global batch of `batch_size` between
    the workers (rebatch, then DATA sharding: worker i keeps piece i of every batch), so a step
    and an epoch have the same size as on one process and the pruning schedule, counted in
    steps, stays right. FILE sharding has no files to split here, and OFF would make every
    worker train on every piece (twice the steps, each sample seen once per worker). Each
    worker reads every global batch and keeps its piece: the order must be identical on all
    of them, hence the seeded index shuffle rather than a per-worker one.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return shuffled_batches(x, y, batch_size, seed, augment).with_options(options)


def training_batches(
    model: keras.Model,
    x: Any,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    augment: Sequence[str] = (),
) -> Any:
    """What `model.fit` trains on: `shuffled_batches` on one process, `global_batches` when the
    model was built under a `tf.distribute.MultiWorkerMirroredStrategy` (its scope); both
    augmented by `augment` (every worker draws the same transformations: same seed)."""
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return global_batches(x, y, batch_size, seed, augment)
    return shuffled_batches(x, y, batch_size, seed, augment)
