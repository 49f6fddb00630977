"""Labels that match the model: a user's model whose outputs are in another order than the
data's classes is refused before anything trains or scores it, and exported at its true
accuracy once the order is given (`--class-names`, `--labels-file`).

The model is a tiny tf_keras MLP trained briefly on real Fashion-MNIST in its label order; the
data is the shared PNG image folder, whose class folders sort in another order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import run_edgekit

from edgekit.cli.main import main
from edgekit.core.config import DataConfig
from edgekit.core.data import FASHION_MNIST_LABELS, load_dataset
from edgekit.core.data.classes import parse_class_names, read_labels_file
from edgekit.core.errors import DataError
from edgekit.workstation.labels import check_label_order, compare_labels

# The model's output order, as folder names (write_image_folder turns '/' into '-').
MODEL_ORDER = [name.replace("/", "-") for name in FASHION_MNIST_LABELS]
DATA = ["--test-samples", "1000", "--validation-size", "300"]


@pytest.fixture(scope="module")
def fashion_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tf_keras MLP trained for 2 epochs on 3,000 Fashion-MNIST images (outputs in
    Fashion-MNIST's label order), saved as .keras."""
    from edgekit.workstation._keras import keras

    data = load_dataset(DataConfig(train_samples=3000, validation_size=100, test_samples=100))
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.layers.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="fashion_order",
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(np.asarray(data.x_train), data.y_train, epochs=2, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("labels") / "fashion_order.keras"
    model.save(path)
    return path


def _true_accuracy(model_path: Path, folder: Path) -> float:
    """The model's accuracy on the folder's test images, labels mapped by hand to its order."""
    from edgekit.workstation.export.model_io import load_keras_model

    data = load_dataset(DataConfig(source=str(folder), input_shape=(28, 28), validation_size=300))
    y = np.asarray([MODEL_ORDER.index(data.labels[k]) for k in data.y_test])
    model = load_keras_model(model_path)
    predicted = model.predict(np.asarray(data.x_test), verbose=0).argmax(axis=-1)
    return float((predicted == y).mean())


def test_sorted_folder_names_are_not_the_model_order() -> None:
    assert sorted(MODEL_ORDER) != MODEL_ORDER  # else the tests below would prove nothing


def test_permuted_class_folders_stop_the_export_before_anything_is_written(
    fashion_model: Path, image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    # --prune: a mismatch must stop the export before it fine-tunes on the wrong labels.
    proc = run_edgekit(
        "export",
        str(fashion_model),
        "--data",
        str(image_folder),
        "--prune",
        "--sparsity",
        "0.5",
        *DATA,
        "--precision",
        "float32",
        "-o",
        str(out),
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "Error: the data's labels do not match the model's outputs: its predictions on "
    ), last
    # Every mismatched folder with the output it is mostly predicted as (Bag is output 8).
    assert "folder 'Ankle boot' -> output 9 (" in last and "'Bag' -> output 8 (" in last
    assert "'Trouser' -> output 1 (" in last
    assert f"--class-names {','.join(MODEL_ORDER)!r} (or --labels-file FILE)" in last
    assert "[prune]" not in proc.stderr  # nothing was trained
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")]


def test_the_model_order_given_exports_at_the_true_accuracy(
    fashion_model: Path, image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = run_edgekit(
        "export",
        str(fashion_model),
        "--data",
        str(image_folder),
        "--class-names",
        ",".join(MODEL_ORDER),
        *DATA,
        "--precision",
        "float32",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["labels"] == MODEL_ORDER
    (record,) = manifest["files"]
    truth = _true_accuracy(fashion_model, image_folder)
    assert truth > 0.6  # the model works: its accuracy as labelled by folder is far lower
    assert manifest["keras_accuracy"] == pytest.approx(truth, abs=1e-9)
    assert record["accuracy"]["accuracy"] == pytest.approx(truth, abs=0.005)  # float32 file
    assert f"loaded model: test accuracy {truth:.4f}" in proc.stderr
    assert "warning" not in proc.stderr


def test_a_labels_file_names_the_classes_as_class_names_do(
    image_folder: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(MODEL_ORDER) + "\n\n")  # a trailing blank line is ignored
    assert read_labels_file(labels) == parse_class_names(",".join(MODEL_ORDER))
    result = CliRunner().invoke(
        main, ["export", "--class-names", "a,b", "--labels-file", str(labels), "-o", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: --class-names and --labels-file both name the classes: pass one"
    )


def test_wrong_class_names_are_refused_with_the_data_classes(image_folder: Path) -> None:
    names = [MODEL_ORDER[0], "Trousers", *MODEL_ORDER[2:]]
    with pytest.raises(DataError) as e:
        load_dataset(
            DataConfig(source=str(image_folder), class_names=tuple(names), validation_size=300)
        )
    assert str(e.value).startswith(
        f"{image_folder} has class(es) 'Trouser' that the class names given do not name: name "
        f"every class of {image_folder} once, in the model's output order (its classes: Ankle "
    )


def test_a_model_at_chance_gets_a_warning(image_folder: Path) -> None:
    """A model that answers 'T-shirt/top' to everything scores 10% on the balanced test set."""
    from edgekit.workstation._keras import keras

    model = keras.Sequential(
        [keras.layers.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.layers[-1].set_weights([np.zeros((784, 10), np.float32), np.eye(10, dtype=np.float32)[0]])
    data = load_dataset(
        DataConfig(
            source=str(image_folder),
            input_shape=(28, 28),
            class_names=tuple(MODEL_ORDER),
            validation_size=300,
        )
    )
    said: list[str] = []
    check = check_label_order(model, data, said.append)
    assert not check.permuted
    assert said == [
        "  warning: the model scores 10.0% on the 1000 test samples, near chance (10.0% for 10 "
        "classes): check that the data is what it was trained on, its class order "
        "(--class-names) and its pixel scale (--pixel-scale)"
    ]


@pytest.mark.parametrize(
    ("predicted", "labels", "permuted"),
    [
        ([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], False),  # the identity
        ([1, 1, 0, 0, 2, 2], [0, 0, 1, 1, 2, 2], True),  # two classes swapped
        ([1, 1, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], False),  # two classes onto one output
        ([1, 0, 0, 1, 2, 2], [0, 0, 1, 1, 2, 2], False),  # no class mostly one output
    ],
)
def test_a_permutation_needs_each_class_mostly_on_a_distinct_output(
    predicted: list[int], labels: list[int], permuted: Any
) -> None:
    check = compare_labels(np.asarray(predicted), np.asarray(labels), 3)
    assert check.permuted is permuted
