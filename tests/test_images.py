"""Image folders as data: real PNG/JPEG/BMP files decoded with Pillow, bad files named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_image_folder

from edgekit.cli.main import main
from edgekit.core.config import DataConfig
from edgekit.core.data import FASHION_MNIST_LABELS, load_dataset, load_fashion_mnist_arrays
from edgekit.core.data.images import scan_image_folder


@pytest.fixture(scope="module")
def raw() -> dict[str, np.ndarray]:
    return load_fashion_mnist_arrays()[0]


@pytest.fixture()
def flat(raw: dict[str, np.ndarray], tmp_path: Path) -> Path:
    """10 class folders of 20 PNGs each, no train/test split."""
    return write_image_folder(
        tmp_path / "flat", raw["x_test"], raw["y_test"], FASHION_MNIST_LABELS, 20
    )


def test_train_and_test_folders_give_the_images_back_exactly(
    image_folder: Path, raw: dict[str, np.ndarray]
) -> None:
    data = load_dataset(DataConfig(source=str(image_folder), validation_size=300))
    names = sorted(name.replace("/", "-") for name in FASHION_MNIST_LABELS)
    assert data.labels == tuple(names)
    assert (len(data.x_train) + len(data.x_val), len(data.x_test)) == (3000, 1000)
    assert data.input_shape == (28, 28, 1)  # grayscale PNGs: one channel
    # The first test image of class "Ankle boot" is the first such image of the IDX file.
    boot = names.index("Ankle boot")
    first = data.x_test[data.y_test == boot][0, ..., 0]
    want = raw["x_test"][raw["y_test"] == 9][0].astype(np.float32) / 255
    assert np.array_equal(first, want)


def test_a_model_input_shape_sets_size_and_channels(image_folder: Path) -> None:
    data = load_dataset(
        DataConfig(source=str(image_folder), validation_size=300, input_shape=(32, 32, 3))
    )
    assert data.input_shape == (32, 32, 3)
    x_test = np.asarray(data.x_test)
    assert np.allclose(x_test[..., 0], x_test[..., 2])  # gray as RGB
    data = load_dataset(
        DataConfig(source=str(image_folder), validation_size=300, input_shape=(28, 28))
    )
    assert data.input_shape == (28, 28)


def test_a_flat_folder_is_split_per_class_with_the_seed(flat: Path) -> None:
    a = scan_image_folder(flat, test_split=0.25, seed=1)
    b = scan_image_folder(flat, test_split=0.25, seed=1)
    c = scan_image_folder(flat, test_split=0.25, seed=2)
    assert a == b and a.test != c.test
    per_class = np.bincount([label for _, label in a.test])
    assert per_class.tolist() == [5] * 10  # stratified: 25% of each class's 20
    assert not {p for p, _ in a.test} & {p for p, _ in a.train}


def test_jpeg_and_bmp_files_are_read_and_resized(flat: Path) -> None:
    from PIL import Image

    cls = next(d for d in sorted(flat.iterdir()))
    img = Image.open(next(cls.glob("*.png"))).convert("RGB").resize((40, 40))
    img.save(cls / "extra.jpg")
    img.save(cls / "extra.bmp")
    data = load_dataset(DataConfig(source=str(flat), validation_size=10, input_shape=(28, 28)))
    assert data.input_shape == (28, 28)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 202


def export_error(folder: Path, *extra: str) -> str:
    res = CliRunner().invoke(
        main,
        [
            "export",
            "--data",
            str(folder),
            "--epochs",
            "1",
            "--validation-size",
            "10",
            "-q",
            *extra,
            "-o",
            str(folder.parent / "out"),
        ],
    )
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_a_file_that_is_not_an_image_is_named(flat: Path) -> None:
    notes = next(flat.iterdir()) / "notes.txt"
    notes.write_text("not an image")
    assert export_error(flat) == (
        f"Error: {notes} is not an image file (expected .png, .jpg, .jpeg, .bmp): remove it, "
        "or pass --skip-bad-images to go on without it"
    )


def test_a_truncated_image_is_named(flat: Path) -> None:
    png = next(next(flat.iterdir()).glob("*.png"))
    png.write_bytes(png.read_bytes()[:60])
    msg = export_error(flat)
    assert msg.startswith(f"Error: {png} cannot be decoded (") or msg.startswith(
        f"Error: {png} cannot be read as an image ("
    ), msg
    assert msg.endswith("replace or remove it, or pass --skip-bad-images to go on without it")


def test_garbage_with_an_image_name_is_named(flat: Path) -> None:
    png = next(next(flat.iterdir()).glob("*.png"))
    png.write_bytes(b"\x00garbage" * 50)
    assert export_error(flat).startswith(f"Error: {png} cannot be read as an image (")


def test_an_empty_class_folder_is_named(flat: Path) -> None:
    (flat / "Zebra").mkdir()
    assert export_error(flat) == (
        f"Error: class folder {flat / 'Zebra'} holds no images: add PNG/JPEG/BMP images or "
        "remove the folder"
    )


def test_one_class_only_is_refused(flat: Path) -> None:
    for d in sorted(flat.iterdir())[1:]:
        shutil.rmtree(d)
    only = next(flat.iterdir()).name
    assert export_error(flat) == (
        f"Error: image folder {flat} holds one class only ({only!r}): a classifier needs at "
        "least two class folders"
    )


def test_a_folder_without_class_folders_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert export_error(tmp_path / "empty") == (
        f"Error: image folder {tmp_path / 'empty'} holds no class folders: put each class's "
        "images in a subfolder named after the class"
    )


def test_train_and_test_with_other_classes_are_refused(image_folder: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(image_folder, tmp_path / "copy"))
    shutil.rmtree(copy / "test" / "Bag")
    assert export_error(copy) == (
        f"Error: {copy}/train and {copy}/test hold different classes (Bag in one only): give "
        "both the same class folders"
    )


def test_bad_files_are_skipped_and_counted_on_request(flat: Path) -> None:
    cls = next(flat.iterdir())
    (cls / "notes.txt").write_text("x")
    png = next(cls.glob("*.png"))
    png.write_bytes(png.read_bytes()[:60])
    data = load_dataset(DataConfig(source=str(flat), validation_size=10, skip_bad_images=True))
    assert len(data.notes) == 2
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 199
    assert "2 bad file(s) skipped" in data.summary()


def test_bad_image_options_are_one_line(flat: Path) -> None:
    assert export_error(flat, "--image-size", "big") == (
        "Error: --image-size must be HEIGHTxWIDTH, e.g. 96x96, got 'big'"
    )
    assert export_error(flat, "--test-split", "1.5") == (
        "Error: test_split must be a fraction in (0, 1), got 1.5: e.g. 0.2"
    )


def test_bench_tests_on_the_image_folder_like_evaluate(
    artifacts_dir: Path, image_folder: Path, tmp_path: Path
) -> None:
    """bench --data DIR decodes the test images to the model's input and measures accuracy."""
    import json

    from edgekit.device.runtime import evaluate

    int8 = next(artifacts_dir.glob("*_int8.tflite"))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(
        main,
        [
            "bench",
            str(int8),
            "--data",
            str(image_folder),
            "--min-runs",
            "5",
            "--min-time",
            "0.01",
            "--rounds",
            "1",
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    row = json.loads(out.read_text())["rows"][0]
    data = load_dataset(
        DataConfig(source=str(image_folder), validation_size=300, input_shape=(28, 28))
    )
    assert row["accuracy_samples"] == 1000
    # Class folders sort alphabetically; bench maps them to the manifest's labels by name.
    assert json.loads(out.read_text())["data"]["class_order"].startswith("the manifest's labels")
    order = [
        FASHION_MNIST_LABELS.index(n.replace("T-shirt-top", "T-shirt/top")) for n in data.labels
    ]
    y = np.asarray(order)[data.y_test]
    assert row["accuracy"] == evaluate(int8, data.x_test, y).accuracy
    assert row["accuracy"] > 0.6  # far above chance: the classes line up


def test_a_large_folder_is_decoded_to_disk_and_trained_batch_by_batch(
    image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past IN_MEMORY_BYTES the decoded training images live in a memmap; training reads
    batches from it (edgekit.workstation.train.batches) and learns."""
    import edgekit.core.data.images as images
    from edgekit.core.config import TrainConfig
    from edgekit.workstation.train import build_model, keras_accuracy, train_model

    monkeypatch.setattr(images, "IN_MEMORY_BYTES", 1000)
    data = load_dataset(DataConfig(source=str(image_folder), validation_size=300))
    assert isinstance(data.x_train.raw, np.memmap)
    cfg = TrainConfig(hidden_units=(64,), epochs=2, batch_size=64, seed=3)
    model = train_model(build_model(cfg, data.input_shape, data.num_classes), data, cfg).model
    assert keras_accuracy(model, data.x_test, data.y_test) > 0.6


def test_a_class_with_one_image_trains_and_a_class_never_loses_all_its_training_images(
    flat: Path,
) -> None:
    cls = sorted(flat.iterdir())
    for png in sorted(cls[0].glob("*.png"))[1:]:
        png.unlink()  # one image left
    for png in sorted(cls[1].glob("*.png"))[2:]:
        png.unlink()  # two left
    folder = scan_image_folder(flat, test_split=0.9, seed=0)
    train = np.bincount([label for _, label in folder.train], minlength=10)
    test = np.bincount([label for _, label in folder.test], minlength=10)
    assert (train[0], test[0]) == (1, 0)
    assert (train[1], test[1]) == (1, 1)
    assert train.min() >= 1


def test_an_image_size_unlike_the_models_input_is_one_line(
    image_folder: Path, artifacts_dir: Path, tmp_path: Path
) -> None:
    model = next(artifacts_dir.glob("*.keras"))
    args = ["export", str(model), "--data", str(image_folder), "--image-size", "32x32", "-q"]
    res = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert res.stderr.strip() == (
        "Error: --image-size 32x32 differs from the model's input 28x28: images are resized "
        "to the model's input; drop --image-size"
    )


def test_bench_refuses_class_folders_the_model_does_not_have(
    artifacts_dir: Path, flat: Path
) -> None:
    (flat / "Bag").rename(flat / "Zebra")
    int8 = next(artifacts_dir.glob("*_int8.tflite"))
    args = ["bench", str(int8), "--data", str(flat), "--min-runs", "2", "--min-time", "0", "-q"]
    res = CliRunner().invoke(main, [*args, "--rounds", "1"])
    assert res.exit_code == 1
    assert res.stderr.strip().startswith(
        f"Error: class folder(s) 'Zebra' of {flat} are not among the model's classes ("
    )


def test_preprocess_refuses_what_does_not_fit_the_manifest(artifacts_dir: Path) -> None:
    from edgekit.core.errors import EdgekitError
    from edgekit.device.manifest import read_manifest
    from edgekit.device.runtime import preprocess

    spec = read_manifest(artifacts_dir).input
    with pytest.raises(EdgekitError, match="the manifest says uint8: pass the images as decoded"):
        preprocess(np.zeros((2, 28, 28), np.float32), spec)
    with pytest.raises(EdgekitError, match=r"do not fit the model's input \(28, 28\): resize"):
        preprocess(np.zeros((2, 32, 32), np.uint8), spec)
    with pytest.raises(EdgekitError, match="records no input preprocessing"):
        preprocess(np.zeros((2, 28, 28), np.uint8), {})
    assert preprocess(np.full((2, 784), 255, np.uint8), spec).shape == (2, 28, 28)
