"""The labeled test set bench measures accuracy on, read as export read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.config import DataConfig
from edgekit.core.data import data_fingerprint, load_test_set
from edgekit.core.data.arrays import ScaledSamples, row_chunks
from edgekit.core.errors import DataError, ManifestError, ModelFileError
from edgekit.device.bench.records import BenchConfig
from edgekit.device.manifest import Manifest, read_manifest
from edgekit.device.metadata import FileMetadata
from edgekit.device.modelfile import read_model_file


def load_bench_data(
    config: BenchConfig, files: list[Path]
) -> tuple[ScaledSamples, np.ndarray, dict[str, Any]]:
    """`config.data`'s test set for these files: float32 samples (a `ScaledSamples`: raw,
    scaled on request), int64 labels, and what it is (name, source, samples, classes,
    fingerprint; for image folders the class order).
    The class names and the input scale come from the manifest next to the first file, else
    from that file's own TFLite metadata.

    Raises:
        DataError: the data cannot be found or read (the message says how to fix it).
    """
    assert config.data is not None
    shape, manifest, meta = _first_model(files)
    x, y, info = load_test_set(
        config.data,
        config.data_dir,
        config.samples,
        _test_data_config(config, shape, manifest, meta),
    )
    if info.get("class_names"):
        if manifest is not None:
            y = _align_classes(y, info, manifest.labels)
        else:
            y = _align_classes(y, info, meta.labels if meta else (), "the file's TFLite metadata")
        info["sha256"] = data_fingerprint(x, y)
    return x, y, info


def _first_model(
    files: list[Path],
) -> tuple[tuple[int, ...] | None, Manifest | None, FileMetadata | None]:
    """The input shape of the first readable .tflite, the manifest next to it (if any), and
    the file's TFLite metadata (if any and no manifest)."""
    for f in files:
        if f.suffix != ".tflite":
            continue
        try:
            parsed = read_model_file(f)
            shape = tuple(parsed.inputs[0].shape[1:])
        except (ModelFileError, IndexError):
            continue
        try:
            return shape, read_manifest(f.parent), None
        except ManifestError:
            return shape, None, parsed.metadata
    return None, None, None


def _test_data_config(
    config: BenchConfig,
    shape: tuple[int, ...] | None,
    manifest: Manifest | None,
    meta: FileMetadata | None = None,
) -> DataConfig | None:
    """How to read the test data, as export did (from `manifest`, else the pixel scale from
    the file's metadata `meta`): the pixel scale, and for an image folder the model's input
    `shape` and export's test split, unless the config says otherwise."""
    if config.data is None:
        return None
    recorded = dict(manifest.config.get("data") or {}) if manifest else {}
    spec = manifest.input if manifest else ((meta.preprocessing() if meta else None) or {})
    scale = spec.get("scale") if spec.get("raw_dtype") == "uint8" else None
    pixel_scale = None if scale is None or abs(scale - 1 / 255) < 1e-12 else float(scale)
    if not Path(config.data).is_dir():
        return DataConfig(source=config.data, pixel_scale=pixel_scale)
    split = config.test_split if config.test_split is not None else recorded.get("test_split")
    seed = config.split_seed if config.split_seed is not None else recorded.get("seed")
    return DataConfig(
        source=config.data,
        input_shape=shape if shape and len(shape) in (2, 3) else None,
        test_split=float(split) if split is not None else DataConfig.test_split,
        seed=int(seed) if seed is not None else DataConfig.seed,
        skip_bad_images=config.skip_bad_images,
        pixel_scale=pixel_scale,
    )


def _align_classes(
    y: np.ndarray,
    data_info: dict[str, Any],
    labels: tuple[str, ...],
    source: str = "the manifest",
) -> np.ndarray:
    """Labels of an image folder (classes in folder-name order) in the order of the model's
    `labels` ('/' may be '-' in a folder name; the folder may hold a subset of the classes),
    which come from `source` (the manifest, or the file's metadata). How the classes were
    matched goes into `data_info`.

    Raises:
        DataError: a class folder names no class of the model.
    """
    folders = [str(c) for c in data_info["class_names"]]
    if not labels:
        data_info["class_order"] = (
            "folder names, sorted (no labels to match in a manifest or the file)"
        )
        return y
    index = {name.replace("/", "-"): i for i, name in enumerate(labels)}
    unknown = [f for f in folders if f.replace("/", "-") not in index]
    if unknown:
        raise DataError(
            f"class folder(s) {', '.join(repr(u) for u in unknown)} of {data_info['source']} "
            f"are not among the model's classes ({', '.join(labels)}, from {source}): name "
            "each folder after a class ('/' may be written '-')"
        )
    order = np.asarray([index[f.replace("/", "-")] for f in folders], np.int64)
    whose = "the manifest's" if source == "the manifest" else f"{source}'s"
    data_info["class_order"] = f"{whose} labels (class folders matched by name)"
    return order[y]


def save_samples(path: Path, x: ScaledSamples | np.ndarray) -> None:
    """`x` as a float32 .npy file for the model workers (which map it), written a chunk at a
    time: no float32 copy of the whole test set in memory."""
    if len(x) == 0:
        np.save(path, np.zeros(x.shape, np.float32))
        return
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=tuple(x.shape))
    start = 0
    for chunk in row_chunks(x):
        out[start : start + len(chunk)] = chunk
        start += len(chunk)
    out.flush()
    del out
