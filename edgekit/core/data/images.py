"""Image folders as data: one subfolder per class of PNG/JPEG/BMP files, decoded with Pillow.

The layout of Keras' `image_dataset_from_directory`: `DIR/<class>/<image>`, class names from the
folder names (sorted). A test split comes from `DIR/train` + `DIR/test` when both exist, else a
seeded, stratified fraction of each class. Never imports TensorFlow, so `edgekit bench --data
DIR` works on a device.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.config import DataConfig
from edgekit.core.errors import DataError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class ImageFolder:
    """The files of an image folder, split into training and test sets.

    Args:
        root: the folder.
        classes: class names (sorted folder names); a label is an index into them.
        train / test: (file, label) pairs.
        split: how the test set was chosen, in words.
        skipped: files that are not images (with --skip-bad-images), as "path: why".
    """

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[Path, int], ...]
    test: tuple[tuple[Path, int], ...]
    split: str
    skipped: tuple[str, ...] = field(default=())


def _class_files(folder: Path, skip_bad: bool, skipped: list[str]) -> list[Path]:
    files = []
    for f in sorted(folder.iterdir()):
        if f.name.startswith("."):
            continue  # .DS_Store and friends
        if f.is_dir():
            raise DataError(
                f"{f} is a folder inside class folder {folder.name!r}: an image folder holds "
                "one level of class folders with image files in them"
            )
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            why = f"not an image file (expected {', '.join(IMAGE_SUFFIXES)})"
            if not skip_bad:
                raise DataError(
                    f"{f} is {why}: remove it, or pass --skip-bad-images to go on without it"
                )
            skipped.append(f"{f}: {why}")
            continue
        files.append(f)
    return files


def _classes_of(root: Path, skip_bad: bool, skipped: list[str]) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist: pass a folder of class folders")
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    stray = sorted(f.name for f in root.iterdir() if f.is_file() and not f.name.startswith("."))
    if stray and not skip_bad:
        raise DataError(
            f"{root / stray[0]} is a file where class folders are expected: an image folder "
            "holds one subfolder per class (or train/ and test/ with those); move it, or pass "
            "--skip-bad-images"
        )
    skipped += [f"{root / name}: not in a class folder" for name in stray]
    if not folders:
        raise DataError(
            f"image folder {root} holds no class folders: put each class's images in a "
            "subfolder named after the class"
        )
    classes = {d.name: _class_files(d, skip_bad, skipped) for d in folders}
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise DataError(
            f"class folder {root / empty[0]} holds no images: add PNG/JPEG/BMP images or "
            "remove the folder"
        )
    if len(classes) < 2:
        raise DataError(
            f"image folder {root} holds one class only ({next(iter(classes))!r}): a classifier "
            "needs at least two class folders"
        )
    return classes


def scan_image_folder(
    root: str | os.PathLike[str],
    test_split: float = DataConfig.test_split,
    seed: int = 42,
    skip_bad: bool = False,
) -> ImageFolder:
    """List an image folder's files and split them (see the module docstring).

    Raises:
        DataError: no class folders, one class only, an empty class, a file that is not an
            image (unless `skip_bad`), train/ and test/ with different classes.
    """
    root = Path(root)
    skipped: list[str] = []
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = _classes_of(root / "train", skip_bad, skipped)
        test = _classes_of(root / "test", skip_bad, skipped)
        if set(train) != set(test):
            diff = sorted(set(train) ^ set(test))
            raise DataError(
                f"{root}/train and {root}/test hold different classes ({', '.join(diff)} in one "
                "only): give both the same class folders"
            )
        classes = tuple(sorted(train))
        pairs = {
            "train": [(f, i) for i, c in enumerate(classes) for f in train[c]],
            "test": [(f, i) for i, c in enumerate(classes) for f in test[c]],
        }
        return ImageFolder(
            root,
            classes,
            tuple(pairs["train"]),
            tuple(pairs["test"]),
            "train/ and test/ folders",
            tuple(skipped),
        )
    by_class = _classes_of(root, skip_bad, skipped)
    classes = tuple(sorted(by_class))
    rng = np.random.default_rng(seed)
    train_pairs: list[tuple[Path, int]] = []
    test_pairs: list[tuple[Path, int]] = []
    for i, name in enumerate(classes):  # stratified: the same fraction of every class
        files = by_class[name]
        order = rng.permutation(len(files))
        # At least one test image, and at least one left to train on (a 1-image class: none).
        n_test = min(len(files) - 1, max(1, round(test_split * len(files))))
        test_pairs += [(files[j], i) for j in sorted(order[:n_test])]
        train_pairs += [(files[j], i) for j in sorted(order[n_test:])]
    split = f"{test_split:g} of each class (seed {seed})"
    return ImageFolder(root, classes, tuple(train_pairs), tuple(test_pairs), split, tuple(skipped))


def image_mode(path: Path) -> tuple[tuple[int, int], int]:
    """((height, width), channels) of one image: 1 for grayscale, else 3."""
    image = _open(path)
    with image:
        size = (image.height, image.width)
        channels = 1 if image.mode in ("1", "L", "I", "I;16", "F") else 3
    return size, channels


def _probe(pairs: Sequence[tuple[Path, int]], skip_bad: bool) -> tuple[tuple[int, int], int]:
    """Size and channels of the first image that opens (with `skip_bad`, past bad ones)."""
    for path, _ in pairs:
        try:
            return image_mode(path)
        except DataError as e:
            if not skip_bad:
                raise DataError(
                    f"{e}: replace or remove it, or pass --skip-bad-images to go on without it"
                ) from None
    raise DataError("no image of the folder can be read: check the files, or pass other data")


def _open(path: Path) -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "image folders need Pillow, which is not installed: pip install pillow "
            "(on Raspberry Pi OS 32-bit: apt-get install python3-pil)"
        ) from None
    try:
        return Image.open(path)
    except Exception as e:  # UnidentifiedImageError, OSError, ...
        raise DataError(f"{path} cannot be read as an image ({first_line(e)})") from None


# Decoded images beyond this many bytes go to a file on disk (a memmap), not to memory.
IN_MEMORY_BYTES = 512 * 2**20


def _uint8_array(shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 array in memory, or, when large, a memmap over an unlinked temporary file (the
    OS pages it in and out; the file disappears with the process)."""
    if int(np.prod(shape)) <= IN_MEMORY_BYTES:
        return np.empty(shape, np.uint8)
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="edgekit-images-", suffix=".u8") as f:
        f.truncate(int(np.prod(shape)))
        return np.memmap(f.name, np.uint8, "r+", shape=shape)  # mapped: survives the unlink


def read_images(
    pairs: Sequence[tuple[Path, int]],
    size: tuple[int, int],
    channels: int,
    skip_bad: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode, convert (grayscale or RGB) and resize images: uint8 (N, H, W, C), labels, and
    the files skipped as "path: why" (with `skip_bad`; else the first bad file is an error).

    Raises:
        DataError: an unreadable or truncated image (naming the file), unless `skip_bad`.
    """
    from PIL import Image

    height, width = size
    out = _uint8_array((len(pairs), height, width, channels))
    labels = np.empty(len(pairs), np.int64)
    skipped: list[str] = []
    n = 0
    for path, label in pairs:
        try:
            image = _open(path)
            with image:
                image.load()  # decodes: a truncated file raises here
                image = image.convert("L" if channels == 1 else "RGB")
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, np.uint8)
        except Exception as e:
            why = (
                str(e)
                if isinstance(e, DataError)
                else f"{path} cannot be decoded ({first_line(e)})"
            )
            if not skip_bad:
                raise DataError(
                    f"{why}: replace or remove it, or pass --skip-bad-images to go on without it"
                ) from None
            skipped.append(why)
            continue
        out[n] = pixels.reshape(height, width, channels)
        labels[n] = label
        n += 1
    return out[:n], labels[:n], skipped


def load_image_arrays(
    config: DataConfig, test_only: bool = False
) -> tuple[dict[str, np.ndarray], tuple[str, ...], tuple[str, ...]]:
    """An image folder as uint8 arrays {x_train, y_train, x_test, y_test}, the class names, and
    the files skipped (with `config.skip_bad_images`).

    Images are resized to `config.input_shape` (or `config.image_size`, or the first image's
    size) and converted to its channels (1: grayscale, 3: RGB; else the first image's). A
    (H, W) input shape gives (N, H, W) arrays, (H, W, C) gives (N, H, W, C).
    """
    folder = scan_image_folder(
        config.source, config.test_split, config.seed, config.skip_bad_images
    )
    shape = config.input_shape
    if shape:
        size, channels = tuple(shape[:2]), (shape[2] if len(shape) == 3 else 1)
    else:  # no model to follow: the first readable image's size and colour
        first_size, channels = _probe([*folder.train, *folder.test], config.skip_bad_images)
        size = config.image_size or first_size
    if channels not in (1, 3):
        raise DataError(
            f"the model takes {channels} channels: image folders give 1 (grayscale) or 3 (RGB)"
        )
    skipped = list(folder.skipped)
    raw: dict[str, np.ndarray] = {}
    splits = (
        (("test", folder.test),) if test_only else (("train", folder.train), ("test", folder.test))
    )
    for split, pairs in splits:
        x, y, bad = read_images(
            pairs, (int(size[0]), int(size[1])), channels, config.skip_bad_images
        )
        skipped += bad
        if shape is not None and len(shape) == 2:
            x = x[..., 0]
        raw[f"x_{split}"], raw[f"y_{split}"] = x, y
    return raw, folder.classes, tuple(skipped)
