"""Reusable option groups and small helpers of the `edgekit` command (see cli.py).

Parsing only: no TensorFlow, no measuring.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from edgekit.config import DataConfig, TrainConfig
from edgekit.errors import EdgekitError

IMAGE_OPTIONS = [
    click.option(
        "--test-split",
        type=float,
        default=DataConfig.test_split,
        show_default=True,
        help="Image folders without train/ and test/: fraction of each class held out for "
        "testing (seeded, stratified).",
    ),
    click.option(
        "--skip-bad-images",
        is_flag=True,
        help="Image folders: go on without files that are not readable images, and count them.",
    ),
]


def image_size(value: str | None) -> tuple[int, int] | None:
    """'96x96' -> (96, 96)."""
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise EdgekitError(
            f"--image-size must be HEIGHTxWIDTH, e.g. 96x96, got {value!r}"
        ) from None
    if h < 1 or w < 1:
        raise EdgekitError(f"--image-size must be positive sizes, e.g. 96x96, got {value!r}")
    return h, w


def _apply(options: list[Any], f: Any) -> Any:
    """Decorate `f` with `options`, the first option first in --help."""
    for opt in reversed(options):
        f = opt(f)
    return f


def data_options(f: Any) -> Any:
    options = [
        click.option(
            "--data",
            "data_source",
            default="fashion_mnist",
            show_default=True,
            help="'fashion_mnist', a .npz with x_train, y_train, x_test, y_test (and optional "
            "labels), or a folder of images with one subfolder per class (train/ and test/ "
            "inside it for a fixed test set).",
        ),
        click.option(
            "--data-dir",
            type=click.Path(file_okay=False),
            help="Folder with the four Fashion-MNIST .gz files (else $EDGEKIT_DATA_DIR, the Keras "
            "cache, /usr/share/datasets/fashion-mnist, then a download).",
        ),
        click.option(
            "--validation-size",
            default=DataConfig.validation_size,
            show_default=True,
            type=int,
            help="Training samples held out for early stopping.",
        ),
        click.option("--train-samples", type=int, help="Use only N training samples (quick runs)."),
        click.option("--test-samples", type=int, help="Use only N test samples (quick runs)."),
        *IMAGE_OPTIONS,
        click.option(
            "--image-size",
            help="Image folders: resize images to HxW, e.g. 96x96 [default: the model's input "
            "size, else the first image's].",
        ),
        click.option(
            "--pixel-scale",
            type=float,
            help="Multiply uint8 pixels by this before the model [default: 1/255, or 1 when "
            "MODEL starts with Rescaling(1/255) and so takes raw pixels].",
        ),
        click.option(
            "--seed",
            default=DataConfig.seed,
            show_default=True,
            type=int,
            help="Seed for shuffling, initialization and calibration.",
        ),
    ]
    return _apply(options, f)


def train_options(f: Any) -> Any:
    options = [
        click.option(
            "--arch",
            type=click.Choice(["mlp", "cnn", "cnn_gap"]),
            default="mlp",
            show_default=True,
            help="mlp: Dense 300-100; cnn: 4 Conv2D + Dense; cnn_gap: 5 Conv2D + global "
            "average pooling, no dense head (all with BN).",
        ),
        click.option(
            "--hidden",
            default=",".join(str(u) for u in TrainConfig.hidden_units),
            show_default=True,
            help="Hidden Dense sizes (mlp); the last one is the cnn's dense head.",
        ),
        click.option(
            "--l1",
            default=TrainConfig.l1,
            show_default=True,
            type=float,
            help="L1 kernel regularization factor (0 turns it off).",
        ),
        click.option(
            "--activation",
            type=click.Choice(["relu", "leaky_relu"]),
            default="relu",
            show_default=True,
            help="Fast activation after each batch norm.",
        ),
        click.option(
            "--epochs",
            type=int,
            help="Maximum training epochs, early stopping on validation accuracy "
            "[default: 20 (mlp), 10 (cnn)].",
        ),
        click.option("--batch-size", default=TrainConfig.batch_size, show_default=True, type=int),
        click.option(
            "--learning-rate", default=TrainConfig.learning_rate, show_default=True, type=float
        ),
        click.option(
            "--patience",
            default=TrainConfig.patience,
            show_default=True,
            type=int,
            help="Early-stopping patience in epochs.",
        ),
    ]
    return _apply(options, f)


def configs_from_options(kw: dict[str, Any]) -> tuple[Any, Any]:
    data = DataConfig(
        source=kw["data_source"],
        data_dir=kw["data_dir"],
        validation_size=kw["validation_size"],
        train_samples=kw["train_samples"],
        test_samples=kw["test_samples"],
        seed=kw["seed"],
        image_size=image_size(kw["image_size"]),
        test_split=kw["test_split"],
        skip_bad_images=kw["skip_bad_images"],
        pixel_scale=kw["pixel_scale"],
    )
    try:
        hidden = tuple(int(h) for h in str(kw["hidden"]).split(",") if h.strip())
    except ValueError:
        raise EdgekitError(
            f"--hidden must be comma-separated sizes like 300,100, got {kw['hidden']!r}"
        ) from None
    train = TrainConfig(
        arch=kw["arch"],
        hidden_units=hidden,
        l1=kw["l1"],
        activation=kw["activation"],
        epochs=kw["epochs"],
        batch_size=kw["batch_size"],
        learning_rate=kw["learning_rate"],
        patience=kw["patience"],
        seed=kw["seed"],
    )
    return data, train



def progress_printer(quiet: bool) -> Any:
    """Progress lines on stderr, or nothing with --quiet."""
    if quiet:
        return None
    return lambda msg: click.echo(f"  {msg}", err=True)


def console() -> Any:
    from rich.console import Console

    # Wide enough for the bench table when stdout is a file or a pipe.
    return Console(width=None if sys.stdout.isatty() else 200)


def thread_counts(value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(t) for t in value.split(",") if t.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of counts, e.g. 1,2"
        ) from None
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"{value!r}: thread counts must be >= 1, e.g. 1,2")
    return counts


RUNTIME_OPTION = click.option(
    "--runtime",
    type=click.Choice(["auto", "litert", "tflite-runtime", "tf"]),
    default="auto",
    show_default=True,
    help="TFLite runtime: auto = ai-edge-litert, else tflite-runtime, else tf.lite.",
)


