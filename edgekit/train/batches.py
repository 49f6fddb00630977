"""Training batches drawn from the data a batch at a time, in a seeded order.

Keras' `fit` on a whole NumPy array makes TensorFlow copy all of it; a `Sequence` hands it one
batch at a time, read from `Dataset.x_train` (a `ScaledSamples`: uint8 in memory or on disk).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgekit._keras import keras


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
