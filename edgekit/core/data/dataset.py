"""Datasets: Fashion-MNIST IDX files and user .npz files. Never imports TensorFlow."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from edgekit.core.config import DataConfig
from edgekit.core.data.arrays import Samples, ScaledSamples, row_chunks, scale_pixels
from edgekit.core.data.sizes import default_validation_size
from edgekit.core.errors import DataError

FASHION_MNIST_LABELS: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_FILES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
KERAS_CACHE_DIR = Path("~/.keras/datasets/fashion-mnist")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# The same origin Keras' fashion_mnist.load_data() downloads from.
DOWNLOAD_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class InputSpec(TypedDict, total=False):
    """How raw samples become a model's input (`x = raw * scale + offset`, reshaped to `shape`),
    as export fed them; a manifest's `input`, which `runtime.predict` takes as `preprocessing`."""

    raw_dtype: str  # "uint8" for pixels, else the float dtype the samples came in
    scale: float
    offset: float
    shape: list[int]  # the sample shape (the model's input without the batch)
    decode: str  # image folders: "Pillow"
    resize: str  # image folders: "bilinear" to the model's height and width
    class_names: str  # image folders: "sorted folder names"


@dataclass(frozen=True)
class Dataset:
    """Images as float32 (N, ...) scaled to [0, 1] for uint8 sources, labels as int64 (N,).

    `x_train`, `x_val` and `x_test` are `ScaledSamples`: the raw samples (uint8 pixels stay
    uint8, in memory or memory-mapped) and the rows of each set, giving float32 on request
    (index one, `row_chunks` it, or `np.asarray` it for all of it at once).
    """

    name: str
    source: str
    labels: tuple[str, ...]
    x_train: Samples  # float32 batches on request (or all of them)
    y_train: np.ndarray
    x_val: Samples
    y_val: np.ndarray
    x_test: Samples
    y_test: np.ndarray
    notes: tuple[str, ...] = ()  # e.g. image files skipped with --skip-bad-images
    # How raw samples become the model's input (see `preprocessing`); goes into the manifest.
    preprocessing: InputSpec = dataclasses.field(default_factory=lambda: InputSpec())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def summary(self) -> str:
        skipped = f"; {len(self.notes)} bad file(s) skipped" if self.notes else ""
        return (
            f"{self.name}: {len(self.x_train)} train, {len(self.x_val)} validation, "
            f"{len(self.x_test)} test, input {self.input_shape}, {self.num_classes} classes "
            f"(from {self.source}){skipped}"
        )


def fashion_mnist_search_path(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for the Fashion-MNIST files, in order."""
    if data_dir is not None:
        # An explicit folder is the user's word: look there only.
        return [Path(data_dir).expanduser()]
    out = []
    env = os.environ.get("EDGEKIT_DATA_DIR")
    if env:
        out.append(Path(env).expanduser())
    out += [KERAS_CACHE_DIR.expanduser(), DEBIAN_DIR]
    return out


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(
            f"cannot read IDX file {path}: {e}; re-download it or reinstall dataset-fashion-mnist"
        ) from None
    if len(raw) < 4:
        raise DataError(f"{path} is not an IDX file (only {len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
        raise DataError(
            f"{path} is not an unsigned-byte IDX file (header {raw[:4].hex()}, expected 0000 08 0N)"
        )
    if len(raw) < 4 + 4 * ndim:
        raise DataError(
            f"{path} is truncated: its header needs {4 + 4 * ndim} bytes, the file holds "
            f"{len(raw)}; re-download it"
        )
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(
            f"{path} is truncated: header promises {int(np.prod(dims))} values of shape {dims}, "
            f"file holds {body.size}; re-download it"
        )
    return body.reshape(dims)


def _find_fashion_mnist(folders: Sequence[Path]) -> Path | None:
    for folder in folders:
        if all((folder / f).is_file() for f in FASHION_MNIST_FILES.values()):
            return folder
    return None


def _download_fashion_mnist(folder: Path, timeout_s: float = 20.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for fname in FASHION_MNIST_FILES.values():
        target = folder / fname
        if target.is_file():
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{fname}.", suffix=".part")
        try:
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(DOWNLOAD_URL + fname, timeout=timeout_s) as resp,
            ):
                out.write(resp.read())
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def load_fashion_mnist_arrays(
    data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> tuple[dict[str, np.ndarray], str]:
    """Find and read the raw Fashion-MNIST arrays (uint8). Returns (arrays, folder used)."""
    folders = fashion_mnist_search_path(data_dir)
    found = _find_fashion_mnist(folders)
    download_error = ""
    if found is None and data_dir is None and download:
        try:
            _download_fashion_mnist(KERAS_CACHE_DIR.expanduser())
            found = _find_fashion_mnist([KERAS_CACHE_DIR.expanduser()])
        except OSError as e:
            download_error = f"; download failed ({getattr(e, 'reason', e)})"
    if found is None:
        looked = ", ".join(str(f) for f in folders)
        raise DataError(
            f"Fashion-MNIST not found: looked in {looked}{download_error}. "
            "Install it with `apt-get install dataset-fashion-mnist`, put the four "
            f"{'/'.join(sorted(FASHION_MNIST_FILES.values()))} files in a folder and pass "
            "--data-dir, or pass --data FILE.npz"
        )
    arrays = {key: read_idx(found / fname) for key, fname in FASHION_MNIST_FILES.items()}
    for split in ("train", "test"):
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(f"{found}: {split} images and labels differ in count; re-download them")
    return arrays, str(found)


def load_npz_arrays(
    path: str | os.PathLike[str], keys: Sequence[str] = NPZ_KEYS
) -> dict[str, np.ndarray]:
    """Read `keys` of a user's .npz (never unpickling objects), and `labels` if it has one.

    The optional key `labels` names the classes. bench needs only x_test and y_test.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist: pass the path of an existing .npz")
    if not zipfile.is_zipfile(path):
        # np.load takes anything else for a pickle (refused with allow_pickle=False, but
        # with a message about objects): say what the file is not instead.
        raise DataError(
            f"cannot read {path} as .npz (it is not a zip archive, which np.savez writes): "
            f"save the arrays {', '.join(keys)} with np.savez"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            found = set(npz.files)
            missing = [k for k in keys if k not in found]
            if missing:
                raise DataError(
                    f"{path} lacks key(s) {', '.join(missing)}: a data .npz needs "
                    f"{', '.join(keys)} (found: {', '.join(sorted(found)) or 'none'})"
                )
            wanted = [*keys, *(["labels"] if "labels" in found else [])]
            arrays = {k: npz[k] for k in wanted}
    except DataError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise DataError(
                f"{path} holds Python objects, which edgekit refuses to unpickle: "
                "save plain numeric arrays with np.savez"
            ) from None
        raise DataError(
            f"cannot read {path} as .npz ({_first_line(e)}): save it with np.savez"
        ) from None
    except Exception as e:  # OSError, EOFError, struct.error, zipfile.BadZipFile and friends
        raise DataError(
            f"cannot read {path} as .npz ({_first_line(e)}): save it with np.savez"
        ) from None
    for key, array in arrays.items():
        if array.ndim == 0:
            raise DataError(
                f"{path}: {key} is a single value (shape ()), expected an array with one entry "
                f"per {'class' if key == 'labels' else 'sample'}: save arrays, not scalars"
            )
    if "labels" in arrays and arrays["labels"].ndim != 1:
        raise DataError(
            f"{path}: labels has shape {arrays['labels'].shape}, expected one class name per "
            "class: save a 1-d array of names"
        )
    return arrays


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def to_float_images(x: np.ndarray, what: str, pixel_scale: float | None = None) -> np.ndarray:
    """Images as float32; uint8 pixels are scaled to [0, 1] (or multiplied by `pixel_scale`).
    Rejects NaN/inf and non-numbers."""
    if x.dtype == np.uint8:
        return scale_pixels(x, pixel_scale)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"{what} has dtype {x.dtype}: expected numeric images (uint8 or float)")
    out = x.astype(np.float32)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).sum())
        raise DataError(
            f"{what} holds {bad} NaN or infinite value(s), expected finite numbers: "
            "clean or impute them first"
        )
    return out


def check_labels(y: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    """Labels as int64 class indices in [0, num_classes)."""
    if y.dtype.kind not in "biuf":  # strings, dates, complex, raw bytes: no class indices
        raise DataError(f"{what} has dtype {y.dtype}: expected integer class indices")
    if y.ndim == 2 and y.shape[1] == num_classes and num_classes > 1:
        y = y.argmax(axis=1)  # one-hot
    if y.ndim != 1:
        raise DataError(f"{what} has shape {y.shape}: expected one integer class index per sample")
    if not np.issubdtype(y.dtype, np.integer):
        whole = np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all()
        if whole and (y == np.round(y)).all():
            y = y.astype(np.int64)
        else:
            raise DataError(f"{what} has dtype {y.dtype}: expected integer class indices")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(
            f"{what} holds labels outside [0, {num_classes}) (min {y.min()}, max {y.max()}): "
            f"labels must be class indices 0..{num_classes - 1}"
        )
    return y


def numbered_labels(*ys: np.ndarray) -> tuple[str, ...]:
    """Class names '0'..'K-1' for data without a `labels` array (K from the largest label)."""
    top = 1
    for y in ys:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:  # one-hot
            top = max(top, y.shape[1] - 1)
        elif y.size and y.dtype.kind in "iuf" and np.isfinite(y).all():
            top = max(top, int(y.max()))
    return tuple(str(i) for i in range(top + 1))


def load_dataset(config: DataConfig | None = None) -> Dataset:
    """Load the configured data set and split a validation set off the training set."""
    config = config or DataConfig()
    raw, where, name, labels, notes = _read_source(config)
    x_train = raw["x_train"]
    x_test = raw["x_test"]
    _check_shapes(raw, where)
    if not labels:
        labels = numbered_labels(raw["y_train"], raw["y_test"])
    num_classes = len(labels)
    y_train = check_labels(np.asarray(raw["y_train"]), num_classes, f"{where}: y_train")
    y_test = check_labels(np.asarray(raw["y_test"]), num_classes, f"{where}: y_test")
    if config.class_names is not None:  # renumbered to the model's output order
        from edgekit.core.data.classes import class_order

        renumber = class_order(config.class_names, labels, where)
        y_train, y_test, labels = renumber[y_train], renumber[y_test], config.class_names

    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(x_train))
    given = config.validation_size is not None
    pool = len(x_train) if config.train_samples is None else min(len(x_train), config.train_samples)
    n_val = config.validation_size
    if n_val is None:  # the data's default: 10% of the training samples, at most 5,000
        n_val = default_validation_size(pool)
    if config.train_samples is not None:
        order = order[: config.train_samples + n_val]
    for key, n in (("x_train", len(x_train)), ("x_test", len(x_test))):
        if n == 0:
            use = "training, validation and int8 calibration" if key == "x_train" else "testing"
            raise DataError(
                f"{where}: {key} is empty (0 samples), so there is nothing for {use}: "
                f"supply a non-empty {key} and {'y' + key[1:]}"
            )
    if len(order) <= n_val:
        raise DataError(
            f"{where}: {len(order)} training samples cannot hold a validation split of {n_val}: "
            + ("lower --validation-size or supply more data" if given else "supply more data")
        )
    val_idx, train_idx = order[:n_val], order[n_val:]
    test_idx = np.arange(len(x_test))
    if config.test_samples is not None:
        test_idx = test_idx[: config.test_samples]
    return Dataset(
        name=name,
        source=where,
        labels=labels,
        x_train=ScaledSamples(x_train, train_idx, config.pixel_scale, f"{where}: x_train"),
        y_train=y_train[train_idx],
        x_val=ScaledSamples(x_train, val_idx, config.pixel_scale, f"{where}: x_train"),
        y_val=y_train[val_idx],
        x_test=ScaledSamples(x_test, test_idx, config.pixel_scale, f"{where}: x_test"),
        y_test=y_test[test_idx],
        notes=notes,
        preprocessing=preprocessing(
            x_train.dtype, config, image_folder=Path(config.source).is_dir()
        ),
    )


def _read_source(
    config: DataConfig,
) -> tuple[dict[str, np.ndarray], str, str, tuple[str, ...], tuple[str, ...]]:
    """The raw arrays of the configured source, where they came from, the data set's name, its
    class names (empty: numbered later) and notes (image files skipped)."""
    if config.source in ("fashion_mnist", "fashion-mnist"):
        raw, where = load_fashion_mnist_arrays(config.data_dir, download=config.download)
        return raw, where, "fashion_mnist", FASHION_MNIST_LABELS, ()
    if Path(config.source).is_dir():
        from edgekit.core.data.images import load_image_arrays

        raw, labels, notes = load_image_arrays(config)
        return raw, str(config.source), Path(config.source).resolve().name, labels, notes
    raw = load_npz_arrays(config.source)
    labels = tuple(str(v) for v in raw["labels"]) if "labels" in raw else ()
    return raw, str(config.source), Path(config.source).stem, labels, ()


def _check_shapes(raw: dict[str, np.ndarray], where: str) -> None:
    """Train and test samples of one shape, and as many labels as samples in each split."""
    x_train, x_test = raw["x_train"], raw["x_test"]
    if x_train.ndim < 2 or x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{where}: x_train shape {x_train.shape} and x_test shape {x_test.shape} must be "
            "(N, ...) with the same sample shape"
        )
    for split, x in (("train", x_train), ("test", x_test)):
        n_y = len(raw[f"y_{split}"])
        if len(x) != n_y:
            raise DataError(f"{where}: x_{split} has {len(x)} samples but y_{split} has {n_y}")


def preprocessing(
    raw_dtype: npt.DTypeLike, config: DataConfig, image_folder: bool = False
) -> InputSpec:
    """How raw samples become the model's input: `x = raw * scale + offset` for uint8 pixels
    (else raw as float32), after decoding and resizing images of a folder (bilinear, to the
    model's height and width, grayscale or RGB for 1 or 3 channels)."""
    uint8 = np.dtype(raw_dtype) == np.uint8
    scale = (1.0 / 255.0 if config.pixel_scale is None else config.pixel_scale) if uint8 else 1.0
    out = InputSpec(
        raw_dtype="uint8" if uint8 else np.dtype(raw_dtype).name, scale=scale, offset=0.0
    )
    if image_folder:
        out |= InputSpec(decode="Pillow", resize="bilinear", class_names="sorted folder names")
    if config.class_names is not None:
        out["class_names"] = "given in the model's output order (--class-names)"
    return out


def data_fingerprint(x: Samples, y: np.ndarray) -> str:
    """sha256 of float32 samples and int64 labels: bench tells whether it used export's data.
    Read a chunk at a time (the digest of all the bytes, with no float32 copy of all of x)."""
    digest = hashlib.sha256()
    for chunk in row_chunks(x):
        digest.update(np.ascontiguousarray(chunk, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()


def load_test_set(
    source: str,
    data_dir: str | os.PathLike[str] | None = None,
    samples: int | None = None,
    image_config: DataConfig | None = None,
) -> tuple[ScaledSamples, np.ndarray, dict[str, Any]]:
    """The labeled test set as export sees it: float32 samples (uint8 scaled to [0, 1]) as a
    `ScaledSamples` (raw samples, scaled a batch at a time on request; `np.asarray` for all),
    int64 labels, the first `samples` of them in file order. Only the test files are read.

    Args:
        source: 'fashion_mnist', the path of a .npz holding x_test and y_test, or an image
            folder (its test split, decoded as `image_config` says: shape, split, seed).
        image_config: also the pixel scale of uint8 samples, for every source.

    Raises:
        DataError: the data cannot be found or read (the message says how to fix it).
    """
    class_names: list[str] = []
    if source in ("fashion_mnist", "fashion-mnist"):
        wanted = (FASHION_MNIST_FILES["x_test"], FASHION_MNIST_FILES["y_test"])
        folders = fashion_mnist_search_path(data_dir)
        found = next((f for f in folders if all((f / w).is_file() for w in wanted)), None)
        if found is None:
            raise DataError(
                f"the Fashion-MNIST test files ({', '.join(wanted)}) are not in "
                f"{', '.join(str(f) for f in folders)}: install them with `apt-get install "
                "dataset-fashion-mnist`, pass --data-dir, --data FILE.npz or --no-accuracy"
            )
        x_raw, y_raw = (read_idx(found / w) for w in wanted)
        name, where, classes = "fashion_mnist", str(found), len(FASHION_MNIST_LABELS)
    elif Path(source).is_dir():
        from edgekit.core.data.images import load_image_arrays

        cfg = image_config or DataConfig(source=source)
        raw, names, _ = load_image_arrays(dataclasses.replace(cfg, source=source), test_only=True)
        x_raw, y_raw = raw["x_test"], raw["y_test"]
        name, where, classes = Path(source).resolve().name, str(source), len(names)
        class_names = list(names)
    else:
        raw = load_npz_arrays(source, keys=("x_test", "y_test"))
        x_raw, y_raw = raw["x_test"], np.asarray(raw["y_test"])
        name, where = Path(source).stem, str(source)
        labels = raw["labels"] if "labels" in raw else numbered_labels(y_raw)
        classes = len(labels)
    if len(x_raw) != len(y_raw):
        raise DataError(f"{where}: x_test has {len(x_raw)} samples but y_test has {len(y_raw)}")
    n = len(y_raw) if samples is None else min(samples, len(y_raw))
    if n == 0:
        raise DataError(f"{where}: the test set is empty: pass data with x_test, y_test")
    scale = image_config.pixel_scale if image_config else None
    x = ScaledSamples(x_raw, np.arange(n), scale, "x_test")
    y = check_labels(np.asarray(y_raw[:n]), classes, f"{where}: y_test")
    info = {
        "name": name,
        "source": where,
        "samples": n,
        "classes": classes,
        **({"class_names": class_names} if class_names else {}),
        "sha256": data_fingerprint(x, y),
    }
    return x, y, info
