"""Samples read a batch at a time: raw uint8 (in memory or on disk) as float32.

Holding a data set as float32 takes 4x its uint8 size, and handing a whole array to Keras'
`fit` or `predict` makes TensorFlow copy it once more. A `ScaledSamples` keeps the raw samples
(a memmap for a decoded image folder) and an index, and gives float32 batches on request: the
training, validation and test sets of a `Dataset` are all `ScaledSamples`. Training draws from
them through `edgekit.workstation.train.batches`; everything else reads `row_chunks`.
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
        self,
        raw: np.ndarray,
        index: np.ndarray,
        pixel_scale: float | None,
        what: str,
        checked: bool = False,
    ) -> None:
        if not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
            raise DataError(
                f"{what} has dtype {raw.dtype}: expected numeric images (uint8 or float)"
            )
        self.raw = raw
        self.index = np.asarray(index, np.int64)
        self.pixel_scale = pixel_scale
        self.what = what
        if raw.dtype != np.uint8 and not checked:
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
        if len(picked) < 2 or bool((picked[1:] >= picked[:-1]).all()):
            return self._scale(np.asarray(self.raw[picked]))  # in order already
        order = np.argsort(picked, kind="stable")  # sorted reads: sequential on disk
        rows = np.asarray(self.raw[picked[order]])
        out = np.empty_like(rows)
        out[order] = rows
        return self._scale(out)

    def subset(self, key: Any) -> ScaledSamples:
        """Rows `key` (a slice, indices or a mask) as a `ScaledSamples` over the same raw
        samples: nothing is read or scaled until it is indexed."""
        return ScaledSamples(self.raw, self.index[key], self.pixel_scale, self.what, True)

    def __iter__(self) -> Iterator[np.ndarray]:
        for chunk in row_chunks(self):
            yield from chunk

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


# Samples a stage reads rows of: a data set's samples (ScaledSamples, scaled on request) or
# any float array.
Samples: TypeAlias = ScaledSamples | np.ndarray

# The float32 bytes `row_chunks` hands out at a time, at most (but at least `multiple` rows).
CHUNK_BYTES = 32 * 2**20


def chunk_rows(x: Samples, multiple: int = 1, chunk_bytes: int | None = None) -> int:
    """Rows of `x` per chunk: a multiple of `multiple` (a batch size: the chunks split into
    the same batches as the whole) holding at most `chunk_bytes` (None: `CHUNK_BYTES`) of
    float32, or one multiple."""
    limit = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    row_bytes = 4 * max(1, int(np.prod(x.shape[1:], dtype=np.int64)))
    multiple = max(1, int(multiple))
    return multiple * max(1, limit // (row_bytes * multiple))


def row_chunks(x: Samples, multiple: int = 1, chunk_bytes: int | None = None) -> Iterator[Any]:
    """`x` in order, a chunk of `chunk_rows` rows at a time: float32 arrays for a
    `ScaledSamples` (scaled per chunk, never all at once), views for an array."""
    step = chunk_rows(x, multiple, chunk_bytes)
    for start in range(0, len(x), step):
        yield x[start : start + step]
