"""Training batches drawn from the data a batch at a time, in a seeded order.

Keras' `fit` on a whole NumPy array makes TensorFlow copy all of it; a `Sequence` hands it one
batch at a time, read from `Dataset.x_train` (a `ScaledSamples`: uint8 in memory or on disk).
A model built under `tf.distribute.MultiWorkerMirroredStrategy` gets a `tf.data.Dataset` of
batches of the same size instead (`global_batches`): see `training_batches`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgekit.workstation._keras import keras, tf


class ShuffledBatches(keras.utils.Sequence):
    """Batches of (x, y) in an order drawn with `seed`, drawn anew after every epoch."""

    def __init__(self, x: Any, y: np.ndarray, batch_size: int, seed: int) -> None:
        super().__init__()
        self.x, self.y, self.batch_size = x, np.asarray(y), int(batch_size)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(self.y))

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        return np.asarray(self.x[idx]), self.y[idx]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.y))


def global_batches(
    x: Any, y: np.ndarray, batch_size: int, seed: int, input_shape: tuple[int, ...]
) -> Any:
    """A `tf.data.Dataset` of global batches of (x, y) in an order drawn with `seed`, drawn anew
    every epoch, the same on every worker; auto-shard policy DATA.

    Under MultiWorkerMirroredStrategy, Keras splits each global batch of `batch_size` between
    the workers (rebatch, then DATA sharding: worker i keeps piece i of every batch), so a step
    and an epoch have the same size as on one process and the pruning schedule, counted in
    steps, stays right. FILE sharding has no files to split here, and OFF would make every
    worker train on every piece (twice the steps, each sample seen once per worker). Each
    worker reads every global batch from `x` and keeps its piece: the order must be identical
    on all of them, hence the seeded index shuffle rather than a per-worker one.
    """
    n = len(y)
    labels = np.asarray(y, np.int64)

    def read(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(x[rows], np.float32), labels[rows]

    def read_batch(rows: Any) -> tuple[Any, Any]:
        xb, yb = tf.numpy_function(read, [rows], (tf.float32, tf.int64), stateful=False)
        xb.set_shape((None, *input_shape))
        yb.set_shape((None,))
        return xb, yb

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(int(batch_size))
        .map(read_batch)
        .with_options(options)
    )


def training_batches(model: keras.Model, x: Any, y: np.ndarray, batch_size: int, seed: int) -> Any:
    """What `model.fit` trains on: `ShuffledBatches` on one process, `global_batches` when the
    model was built under a `tf.distribute.MultiWorkerMirroredStrategy` (its scope)."""
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return global_batches(x, y, batch_size, seed, tuple(model.input_shape[1:]))
    return ShuffledBatches(x, y, batch_size, seed)
