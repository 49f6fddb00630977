"""The whole pipeline: data -> train (L1) -> prune (TF-MOT) -> fold BN -> export -> manifest."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.core.config import DataConfig, PipelineConfig, to_dict
from edgekit.core.data import Dataset, load_dataset
from edgekit.core.errors import EdgekitError
from edgekit.core.io.console import Progress, stderr_progress
from edgekit.core.io.files import check_file_stem, ensure_writable_dir
from edgekit.core.io.lock import lock_output_dir
from edgekit.core.model_path import check_model_path, model_input_shape, model_takes_raw_pixels
from edgekit.device.modelfile import sha256_bytes

if TYPE_CHECKING:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.export.tflite import ExportResult
    from edgekit.workstation.optimize.fold import FoldResult
    from edgekit.workstation.tf_config import WorkerRole

# Test samples a Keras 3 model and its tf_keras rebuild are compared on.
REBUILD_CHECK_SAMPLES = 1000


@dataclass
class PipelineResult:
    """What each stage produced, with its accuracy on the test set and its wall time."""

    dataset: Dataset
    export: ExportResult | None
    fold: FoldResult | None
    accuracy: dict[str, float] = field(default_factory=dict)
    kernel_sparsity: dict[str, float] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    # The Keras model after each stage ("trained" or "loaded", "pruned", "folded").
    models: dict[str, keras.Model] = field(default_factory=dict, repr=False)
    # A --distributed run: this process's WorkerRole. On a worker other than the chief the run
    # stops once the weights are final: `export` and `fold` are None, nothing was written.
    worker: WorkerRole | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset.summary(),
            "accuracy": self.accuracy,
            "kernel_sparsity": self.kernel_sparsity,
            "stage_seconds": self.stage_seconds,
            "fold": self.fold.to_dict() if self.fold is not None else None,
            "files": self.export.rows() if self.export is not None else [],
            **self.info,
        }


class _Timer:
    def __init__(self, into: dict[str, float], stage: str, say: Progress) -> None:
        self.into, self.stage, self.say = into, stage, say

    def __enter__(self) -> None:
        self.say(f"[{self.stage}]")
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.into[self.stage] = round(time.perf_counter() - self.t0, 3)


def data_config_for_model(
    data_config: DataConfig, model_path: str | os.PathLike[str], say: Progress
) -> DataConfig:
    """The data as a given model takes it: image folders decoded to its input size and
    channels, raw 0..255 pixels for a model that rescales them itself (a first Rescaling)."""
    if Path(data_config.source).is_dir() and data_config.input_shape is None:
        shape = model_input_shape(model_path)
        if shape is not None and len(shape) in (2, 3):
            size = data_config.image_size
            if size is not None and tuple(size) != tuple(shape[:2]):
                raise EdgekitError(
                    f"--image-size {size[0]}x{size[1]} differs from the model's input "
                    f"{shape[0]}x{shape[1]}: images are resized to the model's input; drop "
                    "--image-size"
                )
            data_config = dataclasses.replace(data_config, input_shape=shape)
    if data_config.pixel_scale is None and model_takes_raw_pixels(model_path):
        say(
            "  the model rescales raw pixels itself (a first Rescaling layer): uint8 "
            "images go in as 0..255"
        )
        data_config = dataclasses.replace(data_config, pixel_scale=1.0)
    return data_config


def run_pipeline(
    config: PipelineConfig | None = None,
    model_path: str | os.PathLike[str] | None = None,
    unsafe: bool = False,
    progress: Progress | None = None,
    wait_for_lock: bool = False,
) -> PipelineResult:
    """Run every stage and write the verified files plus manifest.json to config.output_dir.

    Without `model_path` the configured architecture is trained from scratch; with it, the
    user's tf_keras model is loaded (safe mode) and pruned only if `config.prune` is set.
    The output folder is locked for the whole run: another run into it fails at once (its
    holder's pid named) or, with `wait_for_lock`, waits for the holder to finish.
    With `config.train.distributed`, training and pruning run on every worker of TF_CONFIG's
    cluster; only the chief takes the folder and writes files (see
    edgekit.workstation.train.distributed).

    Examples:
        A tiny run (1,000 training images, 2 epochs, no pruning) into a new folder:

        >>> import pathlib, tempfile
        >>> from edgekit.core.config import DataConfig, ExportConfig, PipelineConfig, TrainConfig
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> config = PipelineConfig(
        ...     data=DataConfig(train_samples=1000, test_samples=200, validation_size=100),
        ...     train=TrainConfig(hidden_units=(16,), epochs=2, batch_size=32, learning_rate=0.01),
        ...     prune=None,
        ...     export=ExportConfig(name="tiny", calibration_samples=50, max_accuracy_drop=5),
        ...     output_dir=str(out),
        ... )
        >>> result = run_pipeline(config, progress=lambda message: None)
        >>> [row["file"] for row in result.export.rows()]
        ['tiny_float32.tflite', 'tiny_float16.tflite', 'tiny_int8.tflite']
        >>> sorted(p.name for p in out.iterdir())  # the files, the folded model, the manifest
        ['manifest.json', 'tiny_float16.tflite', 'tiny_float32.tflite', 'tiny_folded.keras', ...]
    """
    config = config or PipelineConfig()
    say = progress or stderr_progress()
    if model_path is not None:
        check_model_path(model_path)  # before seconds of TensorFlow import and data loading
        config = dataclasses.replace(
            config, data=data_config_for_model(config.data, model_path, say)
        )
    if model_path is None and config.export.mc_samples and not _has_dropout(config):
        raise EdgekitError(
            "--mc-samples needs a model with Dropout layers, and this mlp has none: add "
            "--dropout 0.2 (or --alpha-dropout with --activation selu)"
        )
    if config.export.name is not None:
        check_file_stem(config.export.name)  # outputs stay inside the output folder
    role = None
    if config.train.distributed:
        from edgekit.workstation.tf_config import read_tf_config

        role = read_tf_config()  # a one-line error before anything runs
        if not role.is_chief:  # writes nothing: no folder, no lock
            return _run_stages(config, model_path, unsafe, say, None, role)
    out = ensure_writable_dir(config.output_dir)  # fail before minutes of training
    with lock_output_dir(out, wait=wait_for_lock, on_wait=say):  # one run per folder
        return _run_stages(config, model_path, unsafe, say, out, role)


def _run_stages(
    config: PipelineConfig,
    model_path: str | os.PathLike[str] | None,
    unsafe: bool,
    say: Progress,
    out: Path | None,
    role: WorkerRole | None = None,
) -> PipelineResult:
    """The stages of run_pipeline, run while it holds the output folder (`out` None: a worker
    other than the chief, which stops once training and pruning are done)."""
    times: dict[str, float] = {}
    acc: dict[str, float] = {}

    with _Timer(times, "data", say):
        data = load_dataset(config.data)
        say(f"  {data.summary()}")
    with _Timer(times, "import tensorflow", say):
        from edgekit.workstation._keras import keras
        from edgekit.workstation.export import tflite as export_mod
        from edgekit.workstation.export.model_io import load_user_model
        from edgekit.workstation.labels import check_label_order
        from edgekit.workstation.optimize import fold_batchnorm, foldable_batchnorms
        from edgekit.workstation.optimize.fold import unfolded
        from edgekit.workstation.train import (
            build_model,
            check_data_fits,
            keras_accuracy,
            prune_model,
            train_model,
        )

    info: dict[str, Any] = {}
    workers = None
    if role is not None:  # before any other TensorFlow work (collective ops are set up once)
        from edgekit.workstation.train.distributed import start_workers

        with _Timer(times, "join workers", say):
            workers = start_workers(role, progress=say)
    if model_path is None:
        base_name = f"{data.name}_{config.train.arch.value}"
        with _Timer(times, "train", say):
            if workers is not None:
                trained = workers.train(config.train, data, progress=say)
            else:
                model = build_model(config.train, data.input_shape, data.num_classes)
                trained = train_model(model, data, config.train, progress=say)
            model = trained.model
            info["epochs_trained"] = trained.epochs_run
        models = {"trained": model}
        acc["float_keras"] = keras_accuracy(model, data.x_test, data.y_test)
        say(f"  float model: test accuracy {acc['float_keras']:.4f}")
    else:
        base_name = Path(model_path).stem
        with _Timer(times, "load model", say):
            user = load_user_model(model_path, unsafe=unsafe)
            check_data_fits(user.model, data)
            info["source_model"] = {
                "path": str(model_path),
                "sha256": sha256_bytes(Path(model_path).read_bytes()),
                "keras_version": user.keras_version,
            }
            if user.keras_version == 3:
                info["source_model"]["keras3"] = _check_keras3(user, data, config, say)
            model = user.model
            models = {"loaded": model}
        check_label_order(model, data, say)  # before any stage trains it or reports accuracy
        acc["float_keras"] = keras_accuracy(model, data.x_test, data.y_test)
        say(f"  loaded model: test accuracy {acc['float_keras']:.4f}")

    sparsity: dict[str, float] = {}
    target = None
    if config.prune is not None:
        with _Timer(times, "prune", say):
            if workers is not None:
                pruned = workers.prune(model, data, config.prune, progress=say)
            else:
                pruned = prune_model(model, data, config.prune, progress=say)
            model = pruned.model
            models["pruned"] = model
            sparsity = pruned.kernel_sparsity
            target = config.prune.target_sparsity
            info["pruning_schedule"] = pruned.schedule.to_dict()
            info["kernel_sparsity"] = sparsity
            info["pruning_skipped"] = pruned.skipped
            for name, why in pruned.skipped.items():
                say(f"  not pruned: {name}: {why}")
        acc["pruned_keras"] = keras_accuracy(model, data.x_test, data.y_test)
        per_kernel = ", ".join(f"{k} {v:.3f}" for k, v in sparsity.items())
        say(f"  pruned model: test accuracy {acc['pruned_keras']:.4f}; sparsity {per_kernel}")

    if workers is not None:
        info["distributed"] = workers.report(model, say)
    if out is None:  # a worker other than the chief: the weights are final, nothing to write
        return PipelineResult(data, None, None, acc, sparsity, times, info, models, role)
    if config.cluster is not None:
        if not isinstance(model, keras.Model):
            raise EdgekitError(
                "--clusters needs a tf_keras model (TF-MOT): this Keras 3 model "
                "has no faithful tf_keras rebuild; export it without --clusters"
            )
        from edgekit.workstation.train.cluster import cluster_weights

        with _Timer(times, "cluster", say):
            clustered = cluster_weights(model, data, config.cluster, progress=say)
            model = models["clustered"] = clustered.model
            info["clustering"] = {
                "clusters": clustered.clusters,
                "preserve_sparsity": clustered.preserve_sparsity,
                "unique_values": clustered.unique_values,
            }
        acc["clustered_keras"] = keras_accuracy(model, data.x_test, data.y_test)
        say(f"  clustered model: test accuracy {acc['clustered_keras']:.4f}")

    with _Timer(times, "fold batch norm", say):
        folded = fold_batchnorm(model) if isinstance(model, keras.Model) else unfolded(model)
        model = models["folded"] = folded.model
        left = foldable_batchnorms(model) if isinstance(model, keras.Model) else []
        if left:
            raise EdgekitError(f"batch norm folding left foldable layers behind: {left}")
        say(f"  folded {len(folded.folded)} batch norm layer(s), kept {len(folded.kept)}")
        info["batchnorm_folding"] = folded.to_dict()
        for kept in folded.kept:
            say(f"  kept {kept.batchnorm}: {kept.reason}")
    acc["folded_keras"] = keras_accuracy(model, data.x_test, data.y_test)

    stem = config.export.name or export_mod.default_stem(base_name, target)
    run_config = {**to_dict(config), "run": info}
    qat_model = _qat_factory(model, data, config, say, keras)
    with _Timer(times, "export", say):
        result = export_mod.export_tflite(
            model,
            data,
            config.export,
            out,
            stem,
            run_config=run_config,
            progress=say,
            keras_model_name=f"{stem}_folded.keras",
            qat_model=qat_model,
            qat_requested=config.qat is not None,
        )
    for f in result.files:
        if f.record.accuracy is not None:  # by tag: int8 and int8_qat are both int8 files
            acc[f"tflite_{f.record.variant.get('tag') or f.precision.value}"] = (
                f.record.accuracy.accuracy
            )
    return PipelineResult(data, result, folded, acc, sparsity, times, info, models, role)


def _has_dropout(config: PipelineConfig) -> bool:
    """Whether the network `config.train` builds has (alpha) dropout layers."""
    return config.train.alpha_dropout > 0 or config.train.dropout_rate > 0


def _qat_factory(
    model: Any, data: Dataset, config: PipelineConfig, say: Progress, keras: Any
) -> Any:
    """Makes the QAT model once, on first use; None when QAT cannot run (no training data,
    or a Keras 3 model without a tf_keras rebuild)."""
    if not isinstance(model, keras.Model) or len(data.x_train) == 0:
        return None
    from edgekit.core.config import QatConfig

    qat_config = config.qat or QatConfig(seed=config.train.seed)
    made: list[Any] = []

    def make() -> Any:
        if not made:
            from edgekit.workstation.train.qat import quantize_aware_train

            say(f"  quantization-aware training, {qat_config.epochs} epoch(s)")
            made.append(quantize_aware_train(model, data, qat_config, progress=say).model)
        return made[0]

    return make


def _check_keras3(
    user: Any, data: Dataset, config: PipelineConfig, say: Progress
) -> dict[str, Any]:
    """Check a Keras 3 model's tf_keras rebuild on real test samples. When there is none, or
    it differs, `user.model` becomes the Keras 3 model itself (exported as it is).

    Raises:
        ModelError: no faithful rebuild, and --prune asks for TF-MOT.
    """
    from edgekit.core.errors import ModelError
    from edgekit.workstation.export.keras3 import MAX_REBUILD_DIFFERENCE, max_abs_difference

    info: dict[str, Any] = {"rebuilt_in_tf_keras": False}
    why = user.rebuild_error
    if why is None:
        samples = data.x_test[:REBUILD_CHECK_SAMPLES]
        diff = max_abs_difference(user.original, user.model, samples)
        info |= {"max_abs_difference": diff, "samples": len(samples)}
        say(
            f"  Keras 3 model rebuilt in tf_keras: max abs difference {diff:.2e} on "
            f"{len(samples)} test samples"
        )
        if diff < MAX_REBUILD_DIFFERENCE:
            return info | {"rebuilt_in_tf_keras": True}
        why = (
            f"its tf_keras rebuild differs from it by {diff:.3g} on {len(samples)} test "
            f"samples (allowed: < {MAX_REBUILD_DIFFERENCE:g}), so TF-MOT (--prune) cannot work "
            "on it: export it without --prune (converted as it is)"
        )
    if config.prune is not None:
        raise ModelError(why if user.rebuild_error else f"the Keras 3 model: {why}")
    say(f"  Keras 3 model exported as it is (no pruning, no folding): {why}")
    user.model = user.original
    return info | {"reason": why}
