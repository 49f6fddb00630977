"""Reusable option groups and small helpers of the `edgekit` command (see main.py).

Parsing only: no TensorFlow, no measuring.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from edgekit.core.config import DataConfig, PruneConfig, TrainConfig
from edgekit.core.errors import EdgekitError

if TYPE_CHECKING:
    from rich.console import Console

# A click command function: the option groups below decorate it and return it.
_F = TypeVar("_F", bound=Callable[..., Any])

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


def _apply(options: Sequence[Callable[[_F], _F]], f: _F) -> _F:
    """Decorate `f` with `options`, the first option first in --help."""
    for opt in reversed(options):
        f = opt(f)
    return f


def data_options(f: _F) -> _F:
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
            type=int,
            help="Training samples held out for early stopping [default: 10% of them, at most "
            "5000].",
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
            "--class-names",
            help="The model's classes in its output order, comma-separated, e.g. "
            "Coat,Bag,...: the data's labels are renumbered to it [default: the data's order; "
            "image folders: sorted folder names].",
        ),
        click.option(
            "--labels-file",
            type=click.Path(dir_okay=False),
            help="As --class-names, from a text file with one class name per line.",
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


# Long but flat: one click decorator per option, no logic; export, train and sweep take them all.
def train_options(f: _F) -> _F:
    from edgekit.core.presets import PRESETS

    options = [
        click.option(
            "--preset",
            type=click.Choice(list(PRESETS)),
            help="The guidance's configurations: default (He, ELU, BN, l2, Nadam, 1cycle), "
            "self-normalizing (LeCun, SELU, no BN, alpha dropout, standardized inputs, "
            "1cycle), sparse (default + L1 + pruning), fast (ReLU, BN folded, L1 + pruning: "
            "edgekit's defaults). Printed when used; options given explicitly override it.",
        ),
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
            "--l2",
            default=0.0,
            show_default=True,
            type=float,
            help="L2 kernel regularization factor (0 turns it off).",
        ),
        click.option("--l1-l2", help="L1 and L2 factors together (l1_l2), e.g. 1e-5,1e-4."),
        click.option(
            "--dropout",
            type=float,
            help="Dropout rate after the top --dropout-layers hidden layers [default: 0 (mlp), "
            "0.3 (cnn)].",
        ),
        click.option(
            "--dropout-layers",
            default=TrainConfig.dropout_layers,
            show_default=True,
            type=int,
            help="Hidden Dense layers, from the top, followed by (alpha) dropout.",
        ),
        click.option(
            "--alpha-dropout",
            default=0.0,
            show_default=True,
            type=float,
            help="AlphaDropout rate (keeps SELU's self-normalization; --activation selu only).",
        ),
        click.option(
            "--max-norm",
            type=float,
            help="Max-norm constraint on the hidden kernels' columns, e.g. 1.",
        ),
        click.option(
            "--init",
            type=click.Choice(["he", "lecun"]),
            default="he",
            show_default=True,
            help="Hidden kernel initialization (lecun for selu).",
        ),
        click.option(
            "--activation",
            type=click.Choice(["relu", "leaky_relu", "elu", "selu"]),
            default="relu",
            show_default=True,
            help="Activation after each batch norm (elu stays float in int8 files: edgekit "
            "says so; selu is built to quantize well).",
        ),
        click.option(
            "--batch-norm/--no-batch-norm",
            default=True,
            show_default=True,
            help="BatchNormalization after each hidden layer (folded at export).",
        ),
        click.option(
            "--standardize/--no-standardize",
            default=False,
            show_default=True,
            help="Standardize the inputs (mean 0, std 1 of the training set) inside the model.",
        ),
        click.option(
            "--optimizer",
            type=click.Choice(["adam", "nadam", "momentum", "rmsprop"]),
            default="adam",
            show_default=True,
            help="momentum: SGD with Nesterov momentum 0.9.",
        ),
        click.option(
            "--lr-schedule",
            type=click.Choice(["cosine", "constant", "1cycle"]),
            default="cosine",
            show_default=True,
            help="cosine: decay to 2%; 1cycle: up over 30% of the steps to --learning-rate, "
            "then down.",
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
        click.option(
            "--augment",
            metavar="SPEC",
            help="Augment every training batch (also while pruning, clustering and QAT), e.g. "
            "flip,translate:0.1,rotate:0.05,zoom:0.1; kinds: flip[:horizontal|vertical|both], "
            "translate, rotate, zoom, contrast, noise, each [:VALUE]. Seeded by --seed; never "
            "in the exported files [default: none].",
        ),
        click.option(
            "--distributed",
            is_flag=True,
            help="Train and prune on several machines (MultiWorkerMirroredStrategy): run the "
            "same command on each, with TF_CONFIG naming the workers and this one's task; the "
            "chief (worker 0) writes the files.",
        ),
    ]
    return _apply(options, f)


# Long but flat: one click decorator per option (the budget and its remedies), no logic.
def quantize_options(f: _F) -> _F:
    """`edgekit export`: the accuracy budget and the remedies for an int8 file that loses."""
    from edgekit.core.config import DEFAULT_MAX_ACCURACY_DROP

    options = [
        click.option(
            "--max-accuracy-drop",
            type=float,
            help="Points of test accuracy a file may lose against the float Keras model; a file "
            f"that loses more is reported, not written [default: {DEFAULT_MAX_ACCURACY_DROP:g}]. "
            "Given, edgekit also tries cheaper files (int4, dynamic, int8, int8 with float "
            "layers, QAT, int16x8, float16) until one fits, and marks the smallest recommended.",
        ),
        click.option(
            "--float-layers",
            help="Also write an int8 file with these layers kept float: NAME,NAME or auto:K "
            "(the K worst of `edgekit quantize-report`).",
        ),
        click.option(
            "--int4-layers",
            help="int4_int8 files: regex of the layers with int4 weights (default: the largest).",
        ),
        click.option(
            "--min-agreement",
            type=float,
            help="Also require this top-1 agreement with the Keras model (e.g. 0.98); "
            "default: reported only.",
        ),
        click.option(
            "--qat",
            is_flag=True,
            help="Also write an int8 file made by quantization-aware training (pruning-"
            "preserving on a pruned model; BN folded first).",
        ),
        click.option(
            "--qat-epochs",
            type=int,
            default=2,
            show_default=True,
            help="Fine-tuning epochs of --qat.",
        ),
        click.option(
            "--clusters",
            type=int,
            help="Cluster each kernel's weights to N values (sparsity-preserving when pruned), "
            "after pruning and before export: smaller gzipped files.",
        ),
        click.option(
            "--mc-samples",
            help="MC dropout: also write float32 and int8 files returning the mean, std and "
            "entropy of N dropout passes in one invoke; a list (1,5,10,30) writes one per N. "
            "Needs a model with Dropout (--dropout RATE).",
        ),
        click.option(
            "--mc-masks",
            type=click.Choice(["fixed", "random"]),
            default="fixed",
            show_default=True,
            help="fixed: N seeded masks stored in the file (same outputs every run); "
            "random: drawn in the graph at every invoke.",
        ),
        click.option(
            "--cluster-epochs",
            type=int,
            default=2,
            show_default=True,
            help="Fine-tuning epochs of --clusters.",
        ),
    ]
    return _apply(options, f)


# Long but flat: one click decorator per option, no logic; export and sweep take them all.
def export_options(f: _F) -> _F:
    """`edgekit export`: output, pruning, precisions, the accuracy budget and its remedies."""
    options = [
        click.option(
            "-o",
            "--output",
            default="artifacts",
            show_default=True,
            type=click.Path(),
            help="Folder for the .tflite files, the folded .keras model and manifest.json.",
        ),
        click.option(
            "--wait",
            is_flag=True,
            help="If another edgekit run is writing into the output folder, wait for it to "
            "finish (default: stop at once, naming its pid).",
        ),
        click.option(
            "--prune/--no-prune",
            default=None,
            help="Prune with TF-MOT (default: on when training, off for a given MODEL).",
        ),
        click.option(
            "--sparsity",
            default=PruneConfig.target_sparsity,
            show_default=True,
            type=float,
            help="Target fraction of zero weights in every kernel, in [0, 1).",
        ),
        click.option(
            "--sparsity-structure",
            type=click.Choice(["unstructured", "1x4", "2:4"]),
            default="unstructured",
            show_default=True,
            help="Where pruning puts the zeros: any weight; 1x4 blocks (Dense; float32 files "
            "get a sparse kernel, see --sparse-encoding); 2:4 (Dense, Conv2D with input "
            "channels a multiple of 4; sparsity 0.5). Layers it cannot shape are pruned "
            "unstructured and named.",
        ),
        click.option(
            "--prune-epochs",
            type=int,
            help="Fine-tuning epochs while pruning [default: 8 (mlp), 6 (cnn)].",
        ),
        click.option(
            "--min-weights",
            default=PruneConfig.min_weights,
            show_default=True,
            type=int,
            help="Kernels with fewer weights stay dense (pruning them saves little, costs "
            "accuracy).",
        ),
        click.option(
            "--sparse-encoding",
            help="Also write these precisions sparse-encoded (NAME_sparse_float32.tflite), "
            "each only if its p50 at 1 thread beats its dense twin's (export."
            "sparse_min_speedup, 1.1x) in the same run: float32 only (float16, dynamic, int8 "
            "are refused: wrong answers or no load) [default: float32 with "
            "--sparsity-structure 1x4, else none; 'none' for none].",
        ),
        click.option(
            "--precision",
            "precisions",
            help="Comma-separated: float32, float16, int8 (full integer), dynamic, int16x8 "
            "(int16 activations; no fast kernels), int4, int4_weight_only, int4_int8 (int4 by "
            "ai-edge-quantizer) [default: float32,float16,int8]. Exit status 1 if one is left out.",
        ),
        click.option(
            "--calibration-samples",
            type=int,
            help="Training samples used to calibrate int8 [default: all, at most 500].",
        ),
        click.option(
            "--verify-samples",
            type=int,
            help="Test samples each file is checked on (default: all).",
        ),
        click.option("--name", help="File name stem (default: <data>_<arch>_sp<NN>)."),
        click.option(
            "--unsafe",
            is_flag=True,
            help="Load MODEL with Keras safe mode off (runs Lambda code: trusted files only).",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress on stderr."),
    ]
    return _apply(options, quantize_options(f))


def explicit_options() -> set[str]:
    """Names of the parameters given on the command line (or by environment) in this command."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return set()
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)
    return {name for name in ctx.params if ctx.get_parameter_source(name) in given}


def l1_l2(value: str) -> tuple[float, float]:
    """'1e-5,1e-4' -> (1e-05, 0.0001)."""
    try:
        l1, l2 = (float(v) for v in value.split(","))
    except ValueError:
        raise EdgekitError(
            f"--l1-l2 must be two factors L1,L2, e.g. 1e-5,1e-4, got {value!r}"
        ) from None
    return l1, l2


def mc_samples(value: str | None) -> tuple[int, ...]:
    """'1,5,10' -> (1, 5, 10)."""
    if not value:
        return ()
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise EdgekitError(
            f"--mc-samples must be whole numbers like 10 or 1,5,10,30, got {value!r}"
        ) from None


def console() -> Console:
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


def sweep_options(f: _F) -> _F:
    """`edgekit sweep`: the grid and where its points run."""
    options = [
        click.option(
            "--grid",
            "grid",
            multiple=True,
            metavar="KEY=V1,V2|FILE",
            help="Values of one option to sweep, e.g. sparsity=0.5,0.8 or precision=int8,"
            "float16+int8 (+ joins the parts of one value); or a .toml/.json file of KEY = "
            "[values]. Repeat it: every combination is a point.",
        ),
        click.option(
            "-j",
            "--jobs",
            type=int,
            default=1,
            show_default=True,
            help="Points run at once (worker processes; the CPUs of a local Ray).",
        ),
        click.option(
            "--ray",
            "ray_address",
            is_flag=False,
            flag_value="local",
            default=None,
            metavar="[ADDRESS]",
            help="Run the points as Ray tasks: alone, on a local Ray started for the run; with "
            "an ADDRESS (auto, HOST:PORT, ray://HEAD:10001), on that cluster. pip install "
            "'edgekit[ray]'.",
        ),
        click.option(
            "--threads-per-point",
            type=int,
            default=1,
            show_default=True,
            help="TensorFlow threads of each point (pinned: engines cannot change the numbers).",
        ),
        click.option(
            "--bench/--no-bench",
            default=True,
            show_default=True,
            help="Measure p50 latency of every file (1 thread) after the points.",
        ),
    ]
    return _apply(options, f)
