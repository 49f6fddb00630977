"""The whole pipeline: data -> train (L1) -> prune (TF-MOT) -> fold BN -> export -> manifest."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.core.config import DataConfig, PipelineConfig
from edgekit.core.data import Dataset
from edgekit.core.errors import EdgekitError
from edgekit.core.io.console import Progress, stderr_progress
from edgekit.core.io.files import check_file_stem, ensure_writable_dir
from edgekit.core.io.lock import lock_output_dir
from edgekit.core.model_path import check_model_path, model_input_shape, model_takes_raw_pixels
from edgekit.workstation.stages import RunEnv, pipeline_stages, run_stages

if TYPE_CHECKING:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.export.tflite import ExportResult
    from edgekit.workstation.optimize.fold import FoldResult
    from edgekit.workstation.tf_config import WorkerRole


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
    stages = pipeline_stages(
        config, trains=model_path is None, distributed=role is not None, writes=out is not None
    )
    env = RunEnv(config, say, model_path, unsafe, out, role)
    run = run_stages(stages, env)
    v = run.values
    return PipelineResult(
        dataset=v["data"],
        export=v.get("export"),
        fold=v.get("fold"),
        accuracy=run.accuracy,
        kernel_sparsity=v.get("kernel_sparsity", {}),
        stage_seconds=run.seconds,
        info=run.info,
        models=run.models,
        worker=role,
    )


def _has_dropout(config: PipelineConfig) -> bool:
    """Whether the network `config.train` builds has (alpha) dropout layers."""
    return config.train.alpha_dropout > 0 or config.train.dropout_rate > 0
