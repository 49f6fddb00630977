"""Sample counts that fit the data: validation split and int8 calibration unless given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_edgekit

from edgekit.core.config import DataConfig, PipelineConfig
from edgekit.core.data import load_dataset
from edgekit.core.data.sizes import (
    default_calibration_samples,
    default_validation_size,
    resolve_sample_counts,
)
from edgekit.core.errors import DataError


@pytest.mark.parametrize(
    ("available", "validation"), [(60000, 5000), (50001, 5000), (3000, 300), (2400, 240), (4, 1)]
)
def test_the_validation_split_is_a_tenth_at_most_5000(available: int, validation: int) -> None:
    assert default_validation_size(available) == validation


def test_calibration_takes_all_training_samples_up_to_500() -> None:
    assert [default_calibration_samples(n) for n in (55000, 500, 216, 1)] == [500, 500, 216, 1]


def test_fashion_mnist_keeps_its_5000_validation_images_and_500_calibration() -> None:
    data = load_dataset(DataConfig())
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (55000, 5000, 10000)
    config, line = resolve_sample_counts(PipelineConfig(), 55000, 5000, 10000)
    assert (config.data.validation_size, config.export.calibration_samples) == (5000, 500)
    assert config.export.verify_samples is None  # all of the test set, as before
    assert line == (
        "sample counts: validation 5000 of 60000 training samples (10%, at most 5000), int8 "
        "calibration 500 (all, at most 500), verification on all 10000 test samples"
    )


def test_a_3000_image_folder_gets_a_300_image_validation_split(image_folder: Path) -> None:
    data = load_dataset(DataConfig(source=str(image_folder)))
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (2700, 300, 1000)


def test_an_explicit_validation_size_that_cannot_fit_is_still_an_error(
    image_folder: Path,
) -> None:
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(source=str(image_folder), validation_size=5000))
    assert str(e.value) == (
        f"{image_folder}: 3000 training samples cannot hold a validation split of 5000: "
        "lower --validation-size or supply more data"
    )


def test_a_3000_image_folder_exports_with_no_validation_option(
    image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ("export", "--data", str(image_folder), "--epochs", "1", "--no-prune", "-o", str(out))
    res = run_edgekit(*args, "--precision", "float32,int8")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (
        "  sample counts: validation 300 of 3000 training samples (10%, at most 5000), int8 "
        "calibration 500 (all, at most 500), verification on all 1000 test samples"
    ) in res.stderr.splitlines()
    manifest = json.loads((out / "manifest.json").read_text())
    config = manifest["config"]
    assert config["data"]["validation_size"] == 300
    assert config["export"]["calibration_samples"] == 500
