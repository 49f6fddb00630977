"""Training samples read a batch at a time: raw uint8 (in memory or on disk) as float32.

The training set is the largest array edgekit handles. Holding it as float32 takes 4x its
uint8 size, and handing a whole array to Keras' `fit` makes TensorFlow copy it once more. A
`ScaledSamples` keeps the raw samples (a memmap for a decoded image folder) and an index, and
gives float32 batches on request; training and pruning draw from it through
`edgekit.workstation.train.batches`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeAlias

import numpy as np

from edgekit.core.errors import DataError

# Rows checked for NaN/inf at a time (float sources), so the check needs no full copy.
_CHECK_ROWS = 4096


def scale_pixels(x: np.ndarray, pixel_scale: float | None = None) -> np.ndarray:
    """Samples as the model's float32 input: uint8 divided by 255 (or times `pixel_scale`),
    other numbers as they are. The one rule export, training and the device share."""
    if x.dtype == np.uint8:
        if pixel_scale is None:
            return x.astype(np.float32) / np.float32(255.0)
        return x.astype(np.float32) * np.float32(pixel_scale)
    return x.astype(np.float32)


class ScaledSamples:
    """Rows `index` of `raw`, as float32: uint8 times `pixel_scale` (None: divided by 255),
    other numbers as they are. Indexing returns NumPy arrays; `np.asarray` gives them all."""

    def __init__(
        self, raw: np.ndarray, index: np.ndarray, pixel_scale: float | None, what: str
    ) -> None:
        if not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
            raise DataError(
                f"{what} has dtype {raw.dtype}: expected numeric images (uint8 or float)"
            )
        self.raw = raw
        self.index = np.asarray(index, np.int64)
        self.pixel_scale = pixel_scale
        if raw.dtype != np.uint8:
            for start in range(0, len(self.index), _CHECK_ROWS):
                rows = np.asarray(raw[np.sort(self.index[start : start + _CHECK_ROWS])])
                if not np.isfinite(rows).all():
                    bad = int((~np.isfinite(np.asarray(raw[self.index], np.float64))).sum())
                    raise DataError(
                        f"{what} holds {bad} NaN or infinite value(s), expected finite "
                        "numbers: clean or impute them first"
                    )

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.raw.shape[1:])

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return self.raw.ndim

    def __len__(self) -> int:
        return len(self.index)

    def _scale(self, rows: np.ndarray) -> np.ndarray:
        return scale_pixels(rows, self.pixel_scale)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            raise TypeError(
                "ScaledSamples takes one index (rows: an int, a slice, indices or a mask); "
                "index the array it returns for the rest, e.g. samples[:10][..., 0]"
            )
        picked = self.index[key]
        if np.ndim(picked) == 0:
            return self._scale(np.asarray(self.raw[int(picked)]))
        order = np.argsort(picked, kind="stable")  # sorted reads: sequential on disk
        rows = np.asarray(self.raw[picked[order]])
        out = np.empty_like(rows)
        out[order] = rows
        return self._scale(out)

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self), 1024):
            yield from self[start : start + 1024]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


# Samples a stage reads rows of: a data set's training samples (ScaledSamples, scaled on
# request) or any float array.
Samples: TypeAlias = ScaledSamples | np.ndarray
