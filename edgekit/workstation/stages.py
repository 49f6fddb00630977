"""The stages of `run_pipeline`, as a list: data -> TF import -> train or load -> prune ->
cluster -> fold -> export.

A `Stage` has a name (the key of its time in `PipelineResult.stage_seconds`), the values it
reads (`inputs`) and those it makes (`outputs`), and a function of those inputs. `run_stages`
hands each stage only the values it names, times it, and keeps what it makes: a stage takes a
model (or data) and the run's config and returns a new one; it never reaches back into an
earlier stage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.core.config import PipelineConfig, to_dict
from edgekit.core.data import Dataset, load_dataset
from edgekit.core.data.sizes import resolve_sample_counts
from edgekit.core.errors import EdgekitError
from edgekit.core.io.console import Progress
from edgekit.device.modelfile import sha256_bytes

# Test samples a Keras 3 model and its tf_keras rebuild are compared on.
REBUILD_CHECK_SAMPLES = 1000


@dataclass(frozen=True)
class RunEnv:
    """What every stage may read, fixed for the run: the config, where progress goes, the
    user's model file (None: train one), the output folder (None: a worker other than the
    chief, which writes nothing) and the --distributed role."""

    config: PipelineConfig
    say: Progress
    model_path: str | os.PathLike[str] | None = None
    unsafe: bool = False
    out: Path | None = None
    role: Any = None


@dataclass
class Made:
    """What a stage returns: its outputs by name, the test accuracies it measured, what the
    manifest's run record (`config.run`) keeps of it, and the wall times of its own steps
    (export: each conversion, each verification...), which replace its one time."""

    values: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    Args:
        name: the key of its wall time in `stage_seconds`, and the header it prints.
        run: `run(env, **inputs) -> Made`, whose values are exactly `outputs`.
        inputs: names of the values of earlier stages it reads.
        outputs: names of the values it makes.
        keeps_model_as: the key under which `PipelineResult.models` keeps the model it makes.
    """

    name: str
    run: Callable[..., Made]
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    keeps_model_as: str | None = None

    def __call__(self, env: RunEnv, values: dict[str, Any]) -> Made:
        made = self.run(env, **{k: values[k] for k in self.inputs})
        if set(made.values) != set(self.outputs):
            raise RuntimeError(
                f"stage {self.name!r} made {sorted(made.values)}, declared {list(self.outputs)}"
            )
        return made


@dataclass
class StagesRun:
    """The values, accuracies, run record, models and times the stages of a run made."""

    values: dict[str, Any]
    accuracy: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# Values every run starts with: the --distributed workers (None: one process).
INITIAL_VALUES: dict[str, Any] = {"workers": None}


def run_stages(stages: list[Stage], env: RunEnv) -> StagesRun:
    """Run `stages` in order, each timed. `run_info` (the run record so far) and
    `stage_seconds` (the times so far) are values any stage may read.

    A stage that reports the times of its own steps (`Made.seconds`) is recorded as those
    steps, plus, under its own name, the time it spent outside them.
    """
    run = StagesRun(values=dict(INITIAL_VALUES))
    for stage in stages:
        env.say(f"[{stage.name}]")
        run.values |= {"run_info": dict(run.info), "stage_seconds": dict(run.seconds)}
        t0 = time.perf_counter()
        made = stage(env, run.values)
        wall = time.perf_counter() - t0
        run.seconds |= made.seconds
        run.seconds[stage.name] = round(max(0.0, wall - sum(made.seconds.values())), 3)
        run.values |= made.values
        run.accuracy |= made.accuracy
        run.info |= made.info
        if stage.keeps_model_as is not None:
            run.models[stage.keeps_model_as] = made.values["model"]
    return run


def _data(env: RunEnv) -> Made:
    data = load_dataset(env.config.data)
    env.say(f"  {data.summary()}")
    env.say(f"  {_with_sample_counts(env.config, data)[1]}")
    return Made({"data": data})


def _with_sample_counts(config: PipelineConfig, data: Dataset) -> tuple[PipelineConfig, str]:
    """`config` with the sample counts it left to the data (validation, calibration) filled
    in, as the manifest records them, and the one line that says what was chosen."""
    return resolve_sample_counts(config, len(data.x_train), len(data.x_val), len(data.x_test))


def _import_tensorflow(env: RunEnv) -> Made:
    """Imports TensorFlow, tf_keras and TF-MOT (seconds), so the stages after it are timed
    without them."""
    from edgekit.workstation._keras import keras  # noqa: F401
    from edgekit.workstation.export import tflite  # noqa: F401
    from edgekit.workstation.export.model_io import load_user_model  # noqa: F401
    from edgekit.workstation.optimize import fold_batchnorm  # noqa: F401
    from edgekit.workstation.train import prune_model, train_model  # noqa: F401

    return Made()


def _join_workers(env: RunEnv) -> Made:
    """Before any other TensorFlow work: collective ops are set up once."""
    from edgekit.workstation.train.distributed import start_workers

    return Made({"workers": start_workers(env.role, progress=env.say)})


def _train(env: RunEnv, data: Dataset, workers: Any) -> Made:
    from edgekit.workstation.train import build_model, keras_accuracy, train_model

    config = env.config
    if workers is not None:
        trained = workers.train(config.train, data, progress=env.say)
    else:
        model = build_model(config.train, data.input_shape, data.num_classes)
        trained = train_model(model, data, config.train, progress=env.say)
    model = trained.model
    acc = keras_accuracy(model, data.x_test, data.y_test)
    env.say(f"  float model: test accuracy {acc:.4f}")
    base_name = f"{data.name}_{config.train.arch.value}"
    return Made(
        {"model": model, "base_name": base_name},
        {"float_keras": acc},
        {"epochs_trained": trained.epochs_run},
    )


def _load_model(env: RunEnv, data: Dataset) -> Made:
    from edgekit.workstation.export.model_io import load_user_model
    from edgekit.workstation.labels import check_label_order
    from edgekit.workstation.train import check_data_fits, keras_accuracy

    path = env.model_path
    assert path is not None  # the stage is planned only with a model file
    user = load_user_model(path, unsafe=env.unsafe)
    check_data_fits(user.model, data)
    source: dict[str, Any] = {
        "path": str(path),
        "sha256": sha256_bytes(Path(path).read_bytes()),
        "keras_version": user.keras_version,
    }
    if user.keras_version == 3:
        source["keras3"] = _check_keras3(user, data, env.config, env.say)
    model = _without_augmentation(user.model, env.say, source)
    check_label_order(model, data, env.say)  # before any stage trains it or reports accuracy
    acc = keras_accuracy(model, data.x_test, data.y_test)
    env.say(f"  loaded model: test accuracy {acc:.4f}")
    return Made(
        {"model": model, "base_name": Path(path).stem},
        {"float_keras": acc},
        {"source_model": source},
    )


def _without_augmentation(model: Any, say: Progress, source: dict[str, Any]) -> Any:
    """The user's model without its augmentation layers (RandomFlip, ...: the identity in
    inference), which pruning, folding and conversion have no use for; said in one line and
    recorded in the manifest's `source_model.augmentation_removed`."""
    from edgekit.workstation._keras import keras
    from edgekit.workstation.optimize.strip import strip_augmentation

    if not isinstance(model, keras.Model):  # a Keras 3 model exported as it is
        return model
    stripped = strip_augmentation(model)
    if stripped.removed:
        names = ", ".join(stripped.removed)
        say(f"  removed augmentation layer(s), inactive in inference: {names}")
        source["augmentation_removed"] = list(stripped.removed)
    if stripped.left:
        say(f"  augmentation layer(s) left inside nested models: {', '.join(stripped.left)}")
    return stripped.model


def _prune(env: RunEnv, model: Any, data: Dataset, workers: Any) -> Made:
    from edgekit.workstation.train import keras_accuracy, prune_model

    config = env.config.prune
    assert config is not None  # the stage is planned only with --prune
    if workers is not None:
        pruned = workers.prune(model, data, config, env.say, env.config.train.augment)
    else:
        pruned = prune_model(model, data, config, env.say, env.config.train.augment)
    sparsity = pruned.kernel_sparsity
    for name, why in pruned.skipped.items():
        env.say(f"  not pruned: {name}: {why}")
    for name, why in pruned.unstructured.items():
        env.say(f"  not {config.structure.value}: {name}: {why}")
    acc = keras_accuracy(pruned.model, data.x_test, data.y_test)
    per_kernel = ", ".join(f"{k} {v:.3f}" for k, v in sparsity.items())
    env.say(f"  pruned model: test accuracy {acc:.4f}; sparsity {per_kernel}")
    return Made(
        {"model": pruned.model, "kernel_sparsity": sparsity},
        {"pruned_keras": acc},
        {
            "pruning_schedule": pruned.schedule.to_dict(),
            "kernel_sparsity": sparsity,
            "pruning_skipped": pruned.skipped,
            "pruning_structure": config.structure.value,
            "pruning_unstructured": pruned.unstructured,
        },
    )


def _report_workers(env: RunEnv, model: Any, workers: Any) -> Made:
    return Made(info={"distributed": workers.report(model, env.say)})


def _cluster(env: RunEnv, model: Any, data: Dataset) -> Made:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.train import keras_accuracy
    from edgekit.workstation.train.cluster import cluster_weights

    config = env.config.cluster
    assert config is not None  # the stage is planned only with --clusters
    if not isinstance(model, keras.Model):
        raise EdgekitError(
            "--clusters needs a tf_keras model (TF-MOT): this Keras 3 model "
            "has no faithful tf_keras rebuild; export it without --clusters"
        )
    clustered = cluster_weights(model, data, config, env.say, env.config.train.augment)
    acc = keras_accuracy(clustered.model, data.x_test, data.y_test)
    env.say(f"  clustered model: test accuracy {acc:.4f}")
    info = {
        "clusters": clustered.clusters,
        "preserve_sparsity": clustered.preserve_sparsity,
        "unique_values": clustered.unique_values,
    }
    return Made({"model": clustered.model}, {"clustered_keras": acc}, {"clustering": info})


def _fold(env: RunEnv, model: Any, data: Dataset) -> Made:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.optimize import fold_batchnorm, foldable_batchnorms
    from edgekit.workstation.optimize.fold import unfolded
    from edgekit.workstation.train.model import keras_outputs

    tf_keras_model = isinstance(model, keras.Model)
    folded = fold_batchnorm(model) if tf_keras_model else unfolded(model)
    left = foldable_batchnorms(folded.model) if tf_keras_model else []
    if left:
        raise EdgekitError(f"batch norm folding left foldable layers behind: {left}")
    env.say(f"  folded {len(folded.folded)} batch norm layer(s), kept {len(folded.kept)}")
    for kept in folded.kept:
        env.say(f"  kept {kept.batchnorm}: {kept.reason}")
    # Its outputs on the test set: its accuracy here, and what export checks every file against.
    outputs = keras_outputs(folded.model, data.x_test)
    acc = float((outputs.argmax(-1) == data.y_test).mean()) if len(data.y_test) else float("nan")
    return Made(
        {"model": folded.model, "fold": folded, "keras_outputs": outputs},
        {"folded_keras": acc},
        {"batchnorm_folding": folded.to_dict()},
    )


def _export(
    env: RunEnv,
    model: Any,
    data: Dataset,
    keras_outputs: Any,
    base_name: str,
    run_info: dict[str, Any],
    stage_seconds: dict[str, float],
) -> Made:
    from edgekit.workstation.export.tflite import default_stem, export_tflite

    config = _with_sample_counts(env.config, data)[0]
    assert env.out is not None  # planned only for the process that writes
    target = config.prune.target_sparsity if config.prune is not None else None
    structure = config.prune.structure.value if config.prune is not None else None
    stem = config.export.name or default_stem(base_name, target, structure)
    result = export_tflite(
        model,
        data,
        config.export,
        env.out,
        stem,
        run_config={**to_dict(config), "run": run_info},
        progress=env.say,
        keras_model_name=f"{stem}_folded.keras",
        qat_model=qat_factory(model, data, config, env.say),
        qat_requested=config.qat is not None,
        int4_tuner=int4_tuner(model, data, config, env.say),
        keras_outputs=keras_outputs,
        stage_seconds=stage_seconds,
    )
    acc = {}
    for f in result.files:
        if f.record.accuracy is not None:  # by tag: int8 and int8_qat are both int8 files
            acc[f"tflite_{f.record.variant.get('tag') or f.precision.value}"] = (
                f.record.accuracy.accuracy
            )
    return Made({"export": result}, acc, seconds=result.seconds)


DATA = Stage("data", _data, (), ("data",))
IMPORT_TENSORFLOW = Stage("import tensorflow", _import_tensorflow)
JOIN_WORKERS = Stage("join workers", _join_workers, (), ("workers",))
TRAIN = Stage("train", _train, ("data", "workers"), ("model", "base_name"), "trained")
LOAD_MODEL = Stage("load model", _load_model, ("data",), ("model", "base_name"), "loaded")
PRUNE = Stage("prune", _prune, ("model", "data", "workers"), ("model", "kernel_sparsity"), "pruned")
REPORT_WORKERS = Stage("report workers", _report_workers, ("model", "workers"))
CLUSTER = Stage("cluster", _cluster, ("model", "data"), ("model",), "clustered")
FOLD = Stage(
    "fold batch norm", _fold, ("model", "data"), ("model", "fold", "keras_outputs"), "folded"
)
EXPORT = Stage(
    "export",
    _export,
    ("model", "data", "keras_outputs", "base_name", "run_info", "stage_seconds"),
    ("export",),
)


def pipeline_stages(
    config: PipelineConfig, trains: bool, distributed: bool, writes: bool
) -> list[Stage]:
    """The stages of a run, in order.

    Args:
        trains: no model file was given: train one (else load it).
        distributed: `--distributed`: train and prune on every worker of the cluster.
        writes: this process writes the files (False: a worker other than the chief, which
            stops once the weights are final).
    """
    stages = [DATA, IMPORT_TENSORFLOW]
    if distributed:
        stages.append(JOIN_WORKERS)
    stages.append(TRAIN if trains else LOAD_MODEL)
    if config.prune is not None:
        stages.append(PRUNE)
    if distributed:
        stages.append(REPORT_WORKERS)
    if not writes:
        return stages
    if config.cluster is not None:
        stages.append(CLUSTER)
    return [*stages, FOLD, EXPORT]


def int4_tuner(model: Any, data: Dataset, config: PipelineConfig, say: Progress) -> Any:
    """`tune(target_sparsity) -> (model, record)`: int4-aware fine-tuning of `model`
    (edgekit.workstation.train.int4_tune), each target tuned once; None when it cannot run
    (no training data, or a Keras 3 model without a tf_keras rebuild)."""
    from edgekit.workstation._keras import keras

    if not isinstance(model, keras.Model) or len(data.x_train) == 0:
        return None
    made: dict[float | None, tuple[Any, dict[str, Any]]] = {}

    def tune(target: float | None) -> tuple[Any, dict[str, Any]]:
        if target not in made:
            from edgekit.workstation.train import keras_accuracy
            from edgekit.workstation.train.int4_tune import Int4TuneConfig, int4_tune

            tune_config = Int4TuneConfig(target_sparsity=target, seed=config.train.seed)
            what = "" if target is None else f", pruning to {target:.0%}"
            say(f"  int4-aware fine-tuning, {tune_config.epochs} epoch(s){what}")
            result = int4_tune(model, data, tune_config, say, config.train.augment)
            acc = keras_accuracy(result.model, data.x_test, data.y_test)
            say(f"  int4-tuned model: test accuracy {acc:.4f}")
            made[target] = (result.model, {**result.to_dict(), "tuned_keras_accuracy": acc})
        return made[target]

    return tune


def qat_factory(model: Any, data: Dataset, config: PipelineConfig, say: Progress) -> Any:
    """Makes the QAT model once, on first use; None when QAT cannot run (no training data,
    or a Keras 3 model without a tf_keras rebuild)."""
    from edgekit.workstation._keras import keras

    if not isinstance(model, keras.Model) or len(data.x_train) == 0:
        return None
    from edgekit.core.config import QatConfig

    qat_config = config.qat or QatConfig(seed=config.train.seed)
    made: list[Any] = []

    def make() -> Any:
        if not made:
            from edgekit.workstation.train.qat import quantize_aware_train

            say(f"  quantization-aware training, {qat_config.epochs} epoch(s)")
            augment = config.train.augment
            made.append(quantize_aware_train(model, data, qat_config, say, augment).model)
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
