"""Memory that does not grow with the data: the validation and test sets stay raw (uint8, in
memory or memory-mapped) and every reader takes them a chunk at a time, so no float32 copy of
a whole set is made. benchmarks/memory.py --image-folders measures the whole export."""

from __future__ import annotations

import dataclasses
import hashlib
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgekit.core.data.arrays as arrays
from edgekit.core.config import DataConfig, ExportConfig, Precision, TrainConfig
from edgekit.core.data import data_fingerprint, load_dataset, load_test_set
from edgekit.core.data.arrays import ScaledSamples, row_chunks

RGB96 = (96, 96, 3)


def _traced_peak(fn: Any) -> tuple[Any, int]:
    """fn()'s result and the peak of the memory Python and NumPy allocated while it ran."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_image_folder_keeps_its_validation_and_test_sets_uint8(image_folder: Path) -> None:
    """Decoded 96x96x3, the folder's 4,000 images take 105 MB as uint8; float32 validation and
    test sets would add 144 MB more. Loading stays near the uint8 size."""
    config = DataConfig(source=str(image_folder), validation_size=300, input_shape=RGB96)
    data, peak = _traced_peak(lambda: load_dataset(config))
    for x in (data.x_train, data.x_val, data.x_test):
        assert isinstance(x, ScaledSamples) and x.raw.dtype == np.uint8
    assert data.x_val.raw is data.x_train.raw  # the validation rows are not copied out
    raw_bytes = data.x_train.raw.nbytes + data.x_test.raw.nbytes
    assert raw_bytes == 4000 * int(np.prod(RGB96))
    float_bytes = 4 * int(np.prod(RGB96)) * (len(data.x_val) + len(data.x_test))
    assert peak < raw_bytes + float_bytes // 4, (peak, raw_bytes, float_bytes)
    # Read on request, the samples are the float32 the model takes.
    first = data.x_test[:3]
    assert first.dtype == np.float32 and first.shape == (3, *RGB96)
    assert np.array_equal(first, data.x_test.raw[:3].astype(np.float32) / np.float32(255))


def test_a_large_folder_maps_all_three_sets_from_disk(
    image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past IN_MEMORY_BYTES every split lives in a memmap, and reads the same samples."""
    import edgekit.core.data.images as images

    config = DataConfig(source=str(image_folder), validation_size=300)
    in_memory = load_dataset(config)
    monkeypatch.setattr(images, "IN_MEMORY_BYTES", 1000)
    mapped = load_dataset(config)
    for name in ("x_train", "x_val", "x_test"):
        x = getattr(mapped, name)
        assert isinstance(x.raw, np.memmap) and x.raw.dtype == np.uint8, name
        assert np.array_equal(np.asarray(x), np.asarray(getattr(in_memory, name))), name


def test_the_fingerprint_and_the_bench_file_are_those_of_the_whole_array(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read in chunks of 64 KiB (50 chunks of 20 samples here), the digest and the .npy file
    for bench's workers are those of the whole float32 array."""
    from edgekit.device.bench.testdata import save_samples

    monkeypatch.setattr(arrays, "CHUNK_BYTES", 64 * 1024)
    x, y, info = load_test_set("fashion_mnist", samples=1000)
    assert isinstance(x, ScaledSamples) and x.raw.dtype == np.uint8
    assert [len(c) for c in row_chunks(x)] == [20] * 50
    whole = np.asarray(x)
    assert whole.dtype == np.float32 and whole.shape == (1000, 28, 28)
    digest = hashlib.sha256(whole.tobytes() + y.astype(np.int64).tobytes()).hexdigest()
    assert info["sha256"] == data_fingerprint(x, y) == digest
    save_samples(tmp_path / "x.npy", x)
    assert np.array_equal(np.load(tmp_path / "x.npy"), whole)
    assert np.load(tmp_path / "x.npy").dtype == np.float32


def _tiny_model(data: Any) -> Any:
    from edgekit.workstation.train import build_model

    model = build_model(TrainConfig(hidden_units=(16,), seed=5), data.input_shape, 10)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def fashion() -> Any:
    """Fashion-MNIST with its whole test set (10,000 samples, 31 MB as float32)."""
    return load_dataset(DataConfig(train_samples=500, validation_size=300))


def test_keras_outputs_in_chunks_are_those_of_one_predict(
    fashion: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekit.workstation.train.model import keras_outputs

    model = _tiny_model(fashion)
    whole = np.asarray(fashion.x_test[:3000])
    want = model.predict(whole, batch_size=512, verbose=0)
    monkeypatch.setattr(arrays, "CHUNK_BYTES", 2 * 512 * 28 * 28 * 4)  # two batches a chunk
    got = keras_outputs(model, fashion.x_test.subset(slice(0, 3000)), batch_size=512)
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_validation_batches_score_like_keras_on_whole_arrays(fashion: Any) -> None:
    """fit's validation data, read a batch at a time: the loss and accuracy Keras computes
    on the whole float32 arrays (batches of 32), bit for bit."""
    from edgekit.workstation.train.batches import validation_batches

    model = _tiny_model(fashion)
    whole = model.evaluate(np.asarray(fashion.x_val), fashion.y_val, verbose=0)
    batched = model.evaluate(validation_batches(fashion.x_val, fashion.y_val), verbose=0)
    assert batched == whole
    assert validation_batches(fashion.x_val.subset(slice(0, 0)), fashion.y_val[:0]) is None


@pytest.mark.heavy
def test_export_reads_the_test_set_a_chunk_at_a_time(
    fashion: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keras reference outputs, LiteRT verification and the manifest's fingerprint over all
    10,000 test samples allocate far less than one float32 copy of them (31 MB)."""
    from edgekit.workstation.export.tflite import export_tflite

    monkeypatch.setattr(arrays, "CHUNK_BYTES", 2 * 2**20)
    model = _tiny_model(fashion)
    config = ExportConfig(
        precisions=(Precision.FLOAT32,), max_accuracy_drop=100.0, calibration_samples=50
    )
    # A first export on 100 test samples: the imports and traces, not measured.
    few = dataclasses.replace(
        fashion, x_test=fashion.x_test.subset(slice(0, 100)), y_test=fashion.y_test[:100]
    )
    export_tflite(model, few, config, tmp_path / "warm", "tiny")
    result, peak = _traced_peak(
        lambda: export_tflite(model, fashion, config, tmp_path / "out", "tiny")
    )
    assert result.manifest.dataset["test_samples"] == 10000
    assert result.files[0].record.accuracy.samples == 10000
    float_bytes = 4 * 28 * 28 * len(fashion.x_test)
    assert peak < float_bytes // 2, (peak, float_bytes)
