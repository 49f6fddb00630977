"""Shared fixtures: small slices of the real Fashion-MNIST and one real tiny pipeline run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgekit.core.config import DataConfig, ExportConfig, PipelineConfig, PruneConfig, TrainConfig

# Small enough for seconds, big enough that int8 agrees with Keras on >= 98% of test samples.
SMALL_DATA = DataConfig(train_samples=3000, test_samples=1000, validation_size=500, seed=7)
SMALL_TRAIN = TrainConfig(hidden_units=(64, 32), epochs=3, batch_size=64, seed=7)
SMALL_PRUNE = PruneConfig(target_sparsity=0.75, epochs=2, batch_size=64, seed=7)


def run_edgekit(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python -m edgekit.cli.main ARGS` in a subprocess, wide enough that tables never wrap."""
    return subprocess.run(
        [sys.executable, "-m", "edgekit.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def small_pipeline_config(output_dir: Path, **overrides: Any) -> PipelineConfig:
    kw: dict[str, Any] = {
        "data": SMALL_DATA,
        "train": SMALL_TRAIN,
        "prune": SMALL_PRUNE,
        "export": ExportConfig(calibration_samples=100),
        "output_dir": str(output_dir),
    }
    kw.update(overrides)
    return PipelineConfig(**kw)


@pytest.fixture(scope="session")
def small_data() -> Any:
    from edgekit.core.data import load_dataset

    return load_dataset(SMALL_DATA)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One real run of the whole pipeline (train -> prune -> fold -> export) on a small slice.

    Returns the PipelineResult; its files are in `result.export.output_dir`. Treat as read-only:
    copy the folder before changing anything in it.
    """
    from edgekit.workstation.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("artifacts")
    return run_pipeline(small_pipeline_config(out), progress=lambda msg: None)


@pytest.fixture(scope="session")
def artifacts_dir(pipeline_run: Any) -> Path:
    """Folder holding the float32, float16 and int8 files and manifest.json of pipeline_run."""
    return Path(pipeline_run.export.output_dir)


def write_image_folder(root: Path, x: Any, y: Any, labels: Any, per_class: int) -> Path:
    """Fashion-MNIST images as PNG files, one subfolder per class (names with spaces kept)."""
    from PIL import Image

    counts: dict[int, int] = {}
    for image, label in zip(x, y, strict=True):
        label = int(label)
        if counts.get(label, 0) >= per_class:
            continue
        folder = root / str(labels[label]).replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{counts.get(label, 0):04d}.png")
        counts[label] = counts.get(label, 0) + 1
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 real Fashion-MNIST training images as PNGs in DIR/train/<class>/ and 1,000 test
    images in DIR/test/<class>/ (uint8 grayscale, 28x28)."""
    from edgekit.core.data import FASHION_MNIST_LABELS, load_fashion_mnist_arrays

    raw, _ = load_fashion_mnist_arrays()
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root / "train", raw["x_train"], raw["y_train"], FASHION_MNIST_LABELS, 300)
    write_image_folder(root / "test", raw["x_test"], raw["y_test"], FASHION_MNIST_LABELS, 100)
    return root
