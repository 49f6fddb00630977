"""Export: convert by recipe, check every file on real data, then write the files and manifest."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import __version__
from edgekit._keras import keras, versions
from edgekit.bench.machine import cpu_model
from edgekit.config import ExportConfig, Precision
from edgekit.data import Dataset, data_fingerprint
from edgekit.device.manifest import (
    MANIFEST_NAME,
    ExportCheck,
    FileRecord,
    Manifest,
    TensorRecord,
    read_manifest,
)
from edgekit.device.modelfile import parse_model_bytes, sha256_bytes
from edgekit.device.runtime import evaluate, get_runtime, load_interpreter
from edgekit.errors import EdgekitError, ExportError, ModelFileError, VerificationError
from edgekit.export.converter import convert
from edgekit.export.recipes import ExportRecipe, recipe_for
from edgekit.files import (
    check_file_stem,
    deferred_signals,
    ensure_writable_dir,
    quiet_native_stderr,
    remove_stale_temporaries,
    write_bytes_atomic,
    write_json_atomic,
)


def file_name(stem: str, precision: Precision) -> str:
    return f"{stem}_{precision.value}.tflite"


def default_stem(name: str, sparsity: float | None) -> str:
    """Self-describing name: model or data+arch name and sparsity, e.g. fashion_mnist_mlp_sp80.

    `sparsity` is the pruning target edgekit applied; None (not pruned here) adds no suffix, so
    a user's model keeps its own name rather than claiming 0% sparsity.
    """
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return safe if sparsity is None else f"{safe}_sp{round(100 * sparsity):02d}"


@dataclass
class ExportedFile:
    """One verified .tflite: its bytes and everything the manifest says about it."""

    file: str
    precision: Precision
    data: bytes = field(repr=False)
    record: FileRecord


@dataclass
class ExportResult:
    output_dir: Path
    files: list[ExportedFile]
    manifest: Manifest
    keras_accuracy: float

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / MANIFEST_NAME

    def rows(self) -> list[dict[str, Any]]:
        """Summary rows: file, precision, size, gzipped size, sparsity, accuracy."""
        return [
            {
                "file": f.file,
                "precision": f.precision.value,
                "bytes": f.record.bytes,
                "gzip_bytes": f.record.gzip_bytes,
                "weight_sparsity": f.record.weight_sparsity,
                "accuracy": f.record.accuracy.accuracy if f.record.accuracy else None,
                "agreement": (
                    f.record.accuracy.top1_agreement_with_keras if f.record.accuracy else None
                ),
            }
            for f in self.files
        ]


def verify_tflite(
    data: bytes,
    recipe: ExportRecipe,
    x: np.ndarray,
    y: np.ndarray,
    keras_outputs: np.ndarray,
    min_agreement: float | None = None,
) -> ExportCheck:
    """Load the file in the runtime, run it on real samples, compare top-1 with Keras.

    Args:
        min_agreement: overrides the recipe's floor when given.

    Raises:
        VerificationError: naming the check that failed (load, run, agreement).
    """
    name = recipe.precision.value
    floor = recipe.min_agreement if min_agreement is None else min_agreement
    rt = get_runtime("auto")
    threads = os.cpu_count() or 1
    try:
        with quiet_native_stderr():  # "Created TensorFlow Lite XNNPACK delegate" notices
            interpreter = load_interpreter(data, runtime=rt, num_threads=threads)
    except ModelFileError as e:
        raise VerificationError(f"{name} file failed the load check: {e}") from None
    try:
        ev = evaluate(interpreter, x, y)
    except (ValueError, RuntimeError) as e:
        raise VerificationError(f"{name} file failed the run check: {e}") from None
    if not np.isfinite(ev.outputs).all():
        raise VerificationError(f"{name} file failed the run check: outputs hold NaN or infinity")
    keras_top1 = keras_outputs.argmax(axis=-1)
    agreement = float((ev.predictions == keras_top1).mean())
    if agreement < floor:
        raise VerificationError(
            f"{name} file failed the agreement check: top-1 agrees with the Keras "
            f"model on {agreement:.2%} of {len(y)} test samples, needs >= {floor:.0%}"
        )
    return ExportCheck(
        accuracy=ev.accuracy,
        samples=ev.samples,
        top1_agreement_with_keras=agreement,
        max_abs_diff_vs_keras=float(np.abs(ev.outputs - keras_outputs).max()),
        runtime=f"{rt.name} {rt.version}",
        min_agreement=floor,
        threads=threads,
        xnnpack=True,
    )


def environment_versions() -> dict[str, str]:
    rt = get_runtime("auto")
    return {
        "edgekit": __version__,
        **versions(),
        "runtime": f"{rt.name} {rt.version}",
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def export_machine() -> dict[str, str]:
    """The CPU the export-time accuracy was measured on (bench names it when figures differ)."""
    return {"cpu": cpu_model(), "arch": platform.machine(), "os": platform.system()}


def export_tflite(
    model: keras.Model,
    data: Dataset,
    config: ExportConfig,
    output_dir: str | os.PathLike[str],
    stem: str,
    run_config: dict[str, Any] | None = None,
    progress: Any = None,
    keras_model_name: str | None = None,
) -> ExportResult:
    """Convert `model` by each precision's recipe, verify every file, then write files + manifest.

    Nothing is written until every file passed its checks. With `keras_model_name` the model
    itself is saved too (.keras), and listed in the manifest. Files are written atomically and the
    manifest last; the previous manifest is removed first so it never describes new files.

    Raises:
        ExportError / VerificationError: conversion or a check failed (nothing written).
    """
    say = progress or (lambda msg: None)
    check_file_stem(stem)
    if keras_model_name:
        check_file_stem(keras_model_name, "Keras model file name")
    out = ensure_writable_dir(output_dir)
    x_eval, y_eval = data.x_test, data.y_test
    if config.verify_samples is not None:
        x_eval, y_eval = x_eval[: config.verify_samples], y_eval[: config.verify_samples]
    if len(y_eval) == 0:
        raise EdgekitError("no test samples to verify the exported files: pass data with x_test")
    keras_outputs = np.asarray(model.predict(x_eval, batch_size=512, verbose=0), dtype=np.float32)
    keras_acc = float((keras_outputs.argmax(-1) == y_eval).mean())
    recipes = [recipe_for(p) for p in config.precisions]
    calibration_seed = 42 if config.calibration_seed is None else config.calibration_seed

    n_train = len(data.x_train)
    if any(r.calibrated for r in recipes) and 0 < n_train < config.calibration_samples:
        say(
            f"  int8 calibration uses all {n_train} training samples, fewer than the "
            f"{config.calibration_samples} asked for"
        )

    exported: list[ExportedFile] = []
    for recipe in recipes:
        precision = recipe.precision
        say(f"converting {precision.value}")
        blob = convert(
            model, recipe, data.x_train, config.calibration_samples, calibration_seed
        )
        say(f"verifying {precision.value} on {len(y_eval)} test samples")
        checks = verify_tflite(blob, recipe, x_eval, y_eval, keras_outputs, config.min_agreement)
        info = parse_model_bytes(blob, file_name(stem, precision))
        record = FileRecord(
            file=file_name(stem, precision),
            precision=precision.value,
            sha256=info.sha256,
            bytes=info.bytes,
            gzip_bytes=info.gzip_bytes,
            inputs=tuple(TensorRecord.from_summary(t) for t in info.inputs),
            outputs=tuple(TensorRecord.from_summary(t) for t in info.outputs),
            weight_sparsity=round(info.weight_sparsity, 6),
            operators=info.operators,
            accuracy=checks,
        )
        exported.append(ExportedFile(record.file, precision, blob, record))

    manifest = Manifest(
        files=tuple(f.record for f in exported),
        labels=tuple(data.labels),
        input={"shape": list(data.input_shape), **data.preprocessing},
        dataset={
            "name": data.name,
            "source": data.source,
            "input_shape": list(data.input_shape),
            "test_samples": len(y_eval),
            "test_sha256": data_fingerprint(x_eval, y_eval),
        },
        keras_accuracy=keras_acc,
        config=run_config or {"export": _export_config_dict(config)},
        versions=environment_versions(),
        machine=export_machine(),
    )
    # Ctrl-C or SIGTERM during the commit takes effect once it is complete, so an interrupted
    # run leaves the previous run or this one, never a mix of files without a manifest.
    with deferred_signals():
        manifest = _write_run(
            out, exported, manifest, model if keras_model_name else None, keras_model_name
        )
    return ExportResult(out, exported, manifest, keras_acc)


def _export_config_dict(config: ExportConfig) -> dict[str, Any]:
    from edgekit.config import to_dict

    return dict(to_dict(config))


def _write_run(
    out: Path,
    files: list[ExportedFile],
    manifest: Manifest,
    model: keras.Model | None = None,
    keras_model_name: str | None = None,
) -> Manifest:
    """Replace the previous run as a whole: old manifest out, files in, new manifest last.

    Returns the manifest written (with the .keras model's record when one was saved).
    """
    keras_blob = None
    if model is not None and keras_model_name:
        from dataclasses import replace

        from edgekit.export.model_io import keras_model_bytes

        keras_blob = keras_model_bytes(model)  # before anything on disk changes
        manifest = replace(
            manifest,
            keras_model=FileRecord(keras_model_name, sha256_bytes(keras_blob), len(keras_blob)),
        )
    try:
        remove_stale_temporaries(out)
        old_files: set[str] = set()
        manifest_path = out / MANIFEST_NAME
        if manifest_path.exists():
            try:
                old_files = {f.file for f in read_manifest(out).files}
            except EdgekitError:
                old_files = set()
            manifest_path.unlink()
        for f in files:
            write_bytes_atomic(out / f.file, f.data)
        if keras_blob is not None and keras_model_name:
            write_bytes_atomic(out / keras_model_name, keras_blob)
        # .tflite files of the previous run that this one does not write would be listed
        # nowhere: removed. A previous .keras model stays: it may be the model being exported.
        for stale in old_files - {f.file for f in files}:
            if Path(stale).name == stale and stale.endswith(".tflite"):
                (out / stale).unlink(missing_ok=True)
        write_json_atomic(manifest_path, manifest.to_dict())
    except OSError as e:
        raise ExportError(
            f"cannot write the exported files into {out} ({e.strerror or e}): free disk space "
            "or choose another output folder with -o, then run again"
        ) from None
    return manifest
