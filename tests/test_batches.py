"""Training batches from a tf.data pipeline over the raw samples: the same floats the rest of
edgekit computes, every sample once an epoch, a seeded order drawn anew each epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekit.core.data.arrays import ScaledSamples


def _samples(tmp_path: Path, on_disk: bool, pixel_scale: float | None) -> ScaledSamples:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(40, 5, 3), dtype=np.uint8)
    if on_disk:  # as a decoded image folder too large for memory is held
        mm = np.memmap(tmp_path / "raw.u8", np.uint8, "w+", shape=raw.shape)
        mm[:] = raw
        raw = mm
    index = rng.permutation(40)[:29]  # a training split: some rows, shuffled
    return ScaledSamples(raw, index, pixel_scale, "x_train")


def _epoch(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*((xb.numpy(), yb.numpy()) for xb, yb in ds), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("on_disk", [False, True], ids=["in_memory", "memmap"])
@pytest.mark.parametrize("pixel_scale", [None, 0.5])
def test_batches_hold_exactly_the_scaled_samples_of_their_labels(
    tmp_path: Path, on_disk: bool, pixel_scale: float | None
) -> None:
    from edgekit.workstation.train.batches import shuffled_batches

    x = _samples(tmp_path, on_disk, pixel_scale)
    y = np.arange(len(x))  # a label per sample: it names the sample each row should be
    xb, yb = _epoch(shuffled_batches(x, y, 8, seed=3))
    assert xb.dtype == np.float32
    assert sorted(yb.tolist()) == list(range(len(x)))  # every sample once
    assert np.array_equal(xb, x[yb])  # bit for bit what scale_pixels gives


def test_the_order_is_seeded_and_drawn_anew_every_epoch(tmp_path: Path) -> None:
    from edgekit.workstation.train.batches import shuffled_batches

    x = _samples(tmp_path, False, None)
    y = np.arange(len(x))
    ds = shuffled_batches(x, y, 8, seed=3)
    first, second = _epoch(ds)[1], _epoch(ds)[1]
    assert first.tolist() != second.tolist()
    again = shuffled_batches(x, y, 8, seed=3)
    assert [_epoch(again)[1].tolist() for _ in range(2)] == [first.tolist(), second.tolist()]
    assert _epoch(shuffled_batches(x, y, 8, seed=4))[1].tolist() != first.tolist()
    assert [len(b) for _, b in shuffled_batches(x, y, 8, seed=3)] == [8, 8, 8, 5]


def test_real_training_data_comes_through_unchanged(small_data: Any) -> None:
    from edgekit.workstation.train.batches import shuffled_batches

    n = 700
    x = ScaledSamples(small_data.x_train.raw, small_data.x_train.index[:n], None, "x_train")
    xb, yb = _epoch(shuffled_batches(x, np.arange(n), 128, seed=7))
    assert np.array_equal(xb, small_data.x_train[yb])
