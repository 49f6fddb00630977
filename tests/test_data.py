"""Data loading: real Fashion-MNIST IDX files, .npz files, validation split, bad input."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.core.config import DataConfig
from edgekit.core.data.dataset import (
    DEBIAN_DIR,
    FASHION_MNIST_FILES,
    FASHION_MNIST_LABELS,
    fashion_mnist_search_path,
    load_dataset,
    read_idx,
)
from edgekit.core.errors import DataError, EdgekitError


def test_fashion_mnist_real_files_have_published_shapes() -> None:
    data = load_dataset(DataConfig(validation_size=5000))
    assert data.x_train.shape == (55000, 28, 28)
    assert data.x_val.shape == (5000, 28, 28)
    assert data.x_test.shape == (10000, 28, 28)
    x_train = np.asarray(data.x_train)
    assert x_train.dtype == np.float32 and x_train.shape == (55000, 28, 28)
    assert x_train.min() >= 0.0 and x_train.max() == 1.0
    assert data.labels == FASHION_MNIST_LABELS
    # The test set is the published one, untouched by shuffling: 1000 images per class.
    assert np.bincount(data.y_test).tolist() == [1000] * 10


def test_validation_split_is_disjoint_from_training_and_seeded() -> None:
    a = load_dataset(DataConfig(train_samples=1000, test_samples=10, validation_size=200, seed=1))
    b = load_dataset(DataConfig(train_samples=1000, test_samples=10, validation_size=200, seed=1))
    c = load_dataset(DataConfig(train_samples=1000, test_samples=10, validation_size=200, seed=2))
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)
    train_rows = {r.tobytes() for r in a.x_train}
    assert not any(r.tobytes() in train_rows for r in a.x_val)
    assert len(a.x_train) == 1000 and len(a.x_val) == 200


def test_search_order_explicit_dir_then_env_then_keras_cache_then_debian(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EDGEKIT_DATA_DIR", str(tmp_path / "env"))
    path = fashion_mnist_search_path()
    assert path[0] == tmp_path / "env"
    assert path[1].parts[-3:] == (".keras", "datasets", "fashion-mnist")
    assert path[2] == DEBIAN_DIR
    assert fashion_mnist_search_path(tmp_path) == [tmp_path]


def test_env_dir_is_used_when_it_holds_the_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for fname in FASHION_MNIST_FILES.values():
        shutil.copy(DEBIAN_DIR / fname, tmp_path / fname)
    monkeypatch.setenv("EDGEKIT_DATA_DIR", str(tmp_path))
    data = load_dataset(DataConfig(train_samples=100, test_samples=10, validation_size=10))
    assert data.source == str(tmp_path)


def test_missing_data_error_lists_where_it_looked_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(data_dir=str(tmp_path / "nowhere")))
    msg = str(err.value)
    assert "Fashion-MNIST not found" in msg
    assert str(tmp_path / "nowhere") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data" in msg


def test_truncated_idx_file_is_refused(tmp_path: Path) -> None:
    raw = gzip.decompress((DEBIAN_DIR / FASHION_MNIST_FILES["y_test"]).read_bytes())
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="truncated"):
        read_idx(bad)


@pytest.mark.parametrize("keep", [0, 2, 5, 11])
def test_idx_file_cut_inside_its_header_is_refused(tmp_path: Path, keep: int) -> None:
    raw = gzip.decompress((DEBIAN_DIR / FASHION_MNIST_FILES["x_test"]).read_bytes())
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(raw[:keep]))  # the 3-d header is 16 bytes long
    with pytest.raises(DataError, match=r"(truncated|not an IDX file).*re-download|only \d"):
        read_idx(bad)


def test_npz_missing_key_is_not_reported_twice(tmp_path: Path) -> None:
    arrays = _arrays()
    del arrays["x_test"]
    path = _npz(tmp_path / "object_pickle.npz", **arrays)  # words the old check misread
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(source=str(path), validation_size=5))
    assert str(info.value) == (
        f"{path} lacks key(s) x_test: a data .npz needs x_train, y_train, x_test, y_test "
        "(found: x_train, y_test, y_train)"
    )


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _arrays(n: int = 60, classes: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n, 8, 8), dtype=np.uint8),
        "y_train": rng.integers(0, classes, n),
        "x_test": rng.integers(0, 256, (20, 8, 8), dtype=np.uint8),
        "y_test": rng.integers(0, classes, 20),
    }


def test_npz_with_labels_loads_scaled_and_named(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["labels"] = np.array(["cat", "dog", "owl"])
    data = load_dataset(
        DataConfig(source=str(_npz(tmp_path / "pets.npz", **arrays)), validation_size=10)
    )
    assert data.name == "pets" and data.labels == ("cat", "dog", "owl")
    assert data.x_train.shape == (50, 8, 8) and np.asarray(data.x_train).max() <= 1.0
    assert len(data.x_test) == 20


def test_npz_missing_key_names_it(tmp_path: Path) -> None:
    arrays = _arrays()
    del arrays["y_test"]
    with pytest.raises(DataError, match=r"lacks key\(s\) y_test"):
        load_dataset(DataConfig(source=str(_npz(tmp_path / "d.npz", **arrays)), validation_size=5))


def test_npz_holding_objects_is_refused_without_unpickling(tmp_path: Path) -> None:
    arrays: dict[str, np.ndarray] = dict(_arrays())
    arrays["x_train"] = np.array([object()] * 60, dtype=object)
    path = _npz(tmp_path / "obj.npz", **arrays)
    with pytest.raises(DataError, match="refuses to unpickle"):
        load_dataset(DataConfig(source=str(path), validation_size=5))


def test_nan_in_data_is_refused(tmp_path: Path) -> None:
    arrays = _arrays()
    x = arrays["x_test"].astype(np.float32)
    x[3, 2, 1] = np.nan
    arrays["x_test"] = x
    with pytest.raises(DataError, match="NaN or infinite"):
        load_dataset(DataConfig(source=str(_npz(tmp_path / "n.npz", **arrays)), validation_size=5))


def test_negative_labels_are_refused(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["y_train"][0] = -1
    arrays["labels"] = np.array(["a", "b", "c"])
    with pytest.raises(DataError, match="outside"):
        load_dataset(DataConfig(source=str(_npz(tmp_path / "l.npz", **arrays)), validation_size=5))


def test_non_positive_sample_counts_are_refused() -> None:
    with pytest.raises(EdgekitError, match="train_samples must be > 0"):
        DataConfig(train_samples=0)


def test_data_module_does_not_import_tensorflow() -> None:
    code = "import sys, edgekit.core.data; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_training_samples_are_read_a_batch_at_a_time_as_export_scales_them() -> None:
    """x_train keeps the raw uint8 samples and scales the rows asked for, exactly as a float
    copy would: batches in any order give the same values as the whole array."""
    from edgekit.core.data.arrays import ScaledSamples

    data = load_dataset(DataConfig(train_samples=2000, test_samples=10, validation_size=100))
    assert isinstance(data.x_train, ScaledSamples) and data.x_train.raw.dtype == np.uint8
    whole = np.asarray(data.x_train)
    idx = np.random.default_rng(0).permutation(len(whole))[:300]
    assert np.array_equal(data.x_train[idx], whole[idx])
    assert np.array_equal(data.x_train[5:9], whole[5:9])
    assert np.array_equal(data.x_train[7], whole[7])
