"""The `edgekit` command: parse options, call the library, print. No logic of its own.

TensorFlow is imported only inside the commands that train or convert (`export`, `train`), so
`edgekit --help`, `bench`, `inspect` and `verify` start without it.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from edgekit import __version__
from edgekit.errors import EdgekitError


class _Group(click.Group):
    """Turns library errors into one-line messages (exit 1); --debug shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except EdgekitError as e:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("interrupted: no partial output was left behind", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """edgekit: Keras classifier -> small, fast, verified TensorFlow Lite files for edge CPUs.

    \b
    edgekit export            train (L1) -> prune -> fold BN -> float32/float16/int8 .tflite
    edgekit bench             latency, accuracy and size of .tflite files on this CPU
    edgekit inspect FILE      operators, tensors, quantization and sparsity of one file
    edgekit verify DIR        check files against their manifest.json (run it on the device)
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# ---- training side: export, train (imports TensorFlow lazily) ------------------------------
def _data_options(f: Any) -> Any:
    options = [
        click.option(
            "--data",
            "data_source",
            default="fashion_mnist",
            show_default=True,
            help="'fashion_mnist' or a .npz with x_train, y_train, x_test, y_test (optional labels).",
        ),
        click.option(
            "--data-dir",
            type=click.Path(file_okay=False),
            help="Folder with the four Fashion-MNIST .gz files (else $EDGEKIT_DATA_DIR, the Keras "
            "cache, /usr/share/datasets/fashion-mnist, then a download).",
        ),
        click.option(
            "--validation-size",
            default=5000,
            show_default=True,
            type=int,
            help="Training samples held out for early stopping.",
        ),
        click.option("--train-samples", type=int, help="Use only N training samples (quick runs)."),
        click.option("--test-samples", type=int, help="Use only N test samples (quick runs)."),
        click.option(
            "--seed",
            default=42,
            show_default=True,
            type=int,
            help="Seed for shuffling, initialization and calibration.",
        ),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _train_options(f: Any) -> Any:
    options = [
        click.option(
            "--arch",
            type=click.Choice(["mlp", "cnn"]),
            default="mlp",
            show_default=True,
            help="mlp: Dense 300-100; cnn: 4 Conv2D + Dense (both with BN).",
        ),
        click.option(
            "--hidden",
            default="300,100",
            show_default=True,
            help="Hidden Dense sizes (mlp); the last one is the cnn's dense head.",
        ),
        click.option(
            "--l1",
            default=1e-5,
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
            default=20,
            show_default=True,
            type=int,
            help="Maximum training epochs (early stopping on validation accuracy).",
        ),
        click.option("--batch-size", default=128, show_default=True, type=int),
        click.option("--learning-rate", default=1e-3, show_default=True, type=float),
        click.option(
            "--patience",
            default=5,
            show_default=True,
            type=int,
            help="Early-stopping patience in epochs.",
        ),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _configs(kw: dict[str, Any]) -> tuple[Any, Any]:
    from edgekit.config import DataConfig, TrainConfig

    data = DataConfig(
        source=kw["data_source"],
        data_dir=kw["data_dir"],
        validation_size=kw["validation_size"],
        train_samples=kw["train_samples"],
        test_samples=kw["test_samples"],
        seed=kw["seed"],
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


def _print_export_summary(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgekit export -> {result.export.output_dir}")
    for col in ("file", "precision", "size", "gzipped", "sparsity", "accuracy", "agrees w/ Keras"):
        table.add_column(col, justify="left" if col in ("file", "precision") else "right")
    for row in result.export.rows():
        table.add_row(
            row["file"],
            row["precision"],
            _kb(row["bytes"]),
            _kb(row["gzip_bytes"]),
            f"{row['weight_sparsity']:.1%}",
            f"{row['accuracy']:.2%}",
            f"{row['agreement']:.2%}",
        )
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    acc = result.accuracy
    parts = [f"{k.replace('_keras', '')} Keras {v:.2%}" for k, v in acc.items() if "keras" in k]
    console.print("test accuracy: " + ", ".join(parts))
    total = sum(result.stage_seconds.values())
    console.print(f"manifest: {result.export.manifest_path}  ({total:.0f} s in all)")


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MB"


@main.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@_data_options
@_train_options
@click.option(
    "-o",
    "--output",
    default="artifacts",
    show_default=True,
    type=click.Path(),
    help="Folder for the .tflite files, the folded .keras model and manifest.json.",
)
@click.option(
    "--prune/--no-prune",
    default=None,
    help="Prune with TF-MOT (default: on when training, off for a given MODEL).",
)
@click.option(
    "--sparsity",
    default=0.8,
    show_default=True,
    type=float,
    help="Target fraction of zero weights in every kernel, in [0, 1).",
)
@click.option(
    "--prune-epochs",
    default=8,
    show_default=True,
    type=int,
    help="Fine-tuning epochs while pruning.",
)
@click.option(
    "--precision",
    "precisions",
    default="float32,float16,int8",
    show_default=True,
    help="Comma-separated: float32, float16, int8 (full integer), dynamic.",
)
@click.option(
    "--calibration-samples",
    default=500,
    show_default=True,
    type=int,
    help="Training samples used to calibrate int8.",
)
@click.option(
    "--verify-samples",
    type=int,
    help="Test samples each file is checked on (default: the whole test set).",
)
@click.option("--name", help="File name stem (default: <data>_<arch>_sp<NN>).")
@click.option(
    "--unsafe",
    is_flag=True,
    help="Load MODEL with Keras safe mode off (runs Lambda code: trusted files only).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def export(model: str | None, **kw: Any) -> None:
    """Train (or load MODEL), prune, fold batch norm, export verified .tflite files.

    \b
    With no MODEL: the whole pipeline on Fashion-MNIST into artifacts/.
    With MODEL (a tf_keras .keras/.h5 classifier): fold + export, pruning with --prune.
    Every file is loaded in LiteRT and checked on real test samples before it is written;
    a run replaces the previous run's files and manifest.json as a whole.
    """
    from edgekit.config import ExportConfig, PipelineConfig, PruneConfig
    from edgekit.pipeline import run_pipeline, stderr_progress

    data, train = _configs(kw)
    do_prune = kw["prune"] if kw["prune"] is not None else model is None
    prune = (
        PruneConfig(
            target_sparsity=kw["sparsity"],
            epochs=kw["prune_epochs"],
            batch_size=kw["batch_size"],
            seed=kw["seed"],
        )
        if do_prune
        else None
    )
    exp = ExportConfig(
        precisions=tuple(p.strip() for p in kw["precisions"].split(",") if p.strip()),
        calibration_samples=kw["calibration_samples"],
        verify_samples=kw["verify_samples"],
        name=kw["name"],
    )
    config = PipelineConfig(
        data=data, train=train, prune=prune, export=exp, output_dir=kw["output"]
    )
    result = run_pipeline(
        config, model_path=model, unsafe=kw["unsafe"], progress=stderr_progress(kw["quiet"])
    )
    _print_export_summary(result)


@main.command()
@_data_options
@_train_options
@click.option(
    "-o",
    "--output",
    default="artifacts/model.keras",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where to save the trained tf_keras model.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def train(**kw: Any) -> None:
    """Train the regularized network alone and save it as a .keras file."""
    from pathlib import Path

    from edgekit.data import load_dataset
    from edgekit.io import ensure_writable_dir

    data_cfg, train_cfg = _configs(kw)
    out = Path(kw["output"])
    if out.suffix != ".keras":
        raise EdgekitError(f"--output must end in .keras, got {out.name!r}")
    ensure_writable_dir(out.parent)
    data = load_dataset(data_cfg)
    from edgekit.model_io import save_keras_atomic
    from edgekit.train import build_model, keras_accuracy, train_model

    model = build_model(train_cfg, data.input_shape, data.num_classes)
    result = train_model(model, data, train_cfg, quiet=kw["quiet"])
    save_keras_atomic(result.model, out)
    acc = keras_accuracy(result.model, data.x_test, data.y_test)
    click.echo(
        f"saved {out}: {result.epochs_run} epochs, validation accuracy "
        f"{result.best_val_accuracy:.2%}, test accuracy {acc:.2%}"
    )


# ---- runtime side: bench, inspect, verify (never import TensorFlow) -------------------------
# (commands are added below this line)


if __name__ == "__main__":  # pragma: no cover
    main()
