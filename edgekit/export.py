"""TFLite conversion (float32, float16, int8, dynamic range), verification and manifest."""

from __future__ import annotations

import os
import platform
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import __version__
from edgekit._keras import keras, tf, versions
from edgekit.config import ExportConfig, Precision
from edgekit.data import Dataset
from edgekit.errors import EdgekitError, ExportError, ModelFileError, VerificationError
from edgekit.io import (
    check_file_stem,
    deferred_signals,
    ensure_writable_dir,
    quiet_native_stderr,
    remove_stale_temporaries,
    write_bytes_atomic,
    write_json_atomic,
)
from edgekit.manifest import MANIFEST_FORMAT, MANIFEST_NAME, read_manifest
from edgekit.runtime import evaluate, get_runtime, load_interpreter
from edgekit.tflite_file import parse_model_bytes, sha256_bytes

# Calibration samples are drawn with this seed offset so they differ from shuffling draws.
_CALIBRATION_SEED_OFFSET = 1


def _representative_dataset(x: np.ndarray, n: int, seed: int) -> Any:
    if len(x) == 0:
        raise ExportError(
            "int8 calibration needs training samples, got 0: pass data with a training set"
        )
    rng = np.random.default_rng(seed + _CALIBRATION_SEED_OFFSET)
    idx = np.sort(rng.choice(len(x), size=min(n, len(x)), replace=False))

    def gen() -> Iterator[list[np.ndarray]]:
        for i in idx:  # one sample at a time: the batch-1 shape the file is used with
            yield [x[i : i + 1].astype(np.float32)]

    return gen


def convert(
    model: keras.Model,
    precision: Precision,
    calibration_x: np.ndarray | None = None,
    calibration_samples: int = 500,
    seed: int = 42,
) -> bytes:
    """Convert a tf_keras model to .tflite bytes at the given precision.

    int8 is full integer: int8 input and output, calibrated on `calibration_samples` samples
    of `calibration_x`. Dynamic range keeps float input/output and int8 weights.
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision is Precision.FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision is Precision.DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision is Precision.INT8:
        if calibration_x is None or len(calibration_x) == 0:
            raise ExportError(
                "int8 export needs a calibration set, got none: pass training data "
                "(--data) so a representative sample can be drawn"
            )
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative_dataset(
            calibration_x, calibration_samples, seed
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        # The converter prints MLIR notices and warnings of its own: keep them off the console.
        with quiet_native_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bytes(converter.convert())
    except Exception as e:  # the converter raises ConverterError, ValueError, RuntimeError...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"the TFLite converter failed for {precision.value} ({first}): the model may use "
            "layers without a TFLite builtin op; try another precision or simplify the model"
        ) from None


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
    record: dict[str, Any]


@dataclass
class ExportResult:
    output_dir: Path
    files: list[ExportedFile]
    manifest: dict[str, Any]
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
                "bytes": f.record["bytes"],
                "gzip_bytes": f.record["gzip_bytes"],
                "weight_sparsity": f.record["weight_sparsity"],
                "accuracy": f.record["accuracy"]["accuracy"],
                "agreement": f.record["accuracy"]["top1_agreement_with_keras"],
            }
            for f in self.files
        ]


def verify_tflite(
    data: bytes,
    precision: Precision,
    x: np.ndarray,
    y: np.ndarray,
    keras_outputs: np.ndarray,
    min_agreement: float,
) -> dict[str, Any]:
    """Load the file in the runtime, run it on real samples, compare top-1 with Keras.

    Raises:
        VerificationError: naming the check that failed (load, run, agreement).
    """
    rt = get_runtime("auto")
    try:
        with quiet_native_stderr():  # "Created TensorFlow Lite XNNPACK delegate" notices
            interpreter = load_interpreter(data, runtime=rt, num_threads=os.cpu_count() or 1)
    except ModelFileError as e:
        raise VerificationError(f"{precision.value} file failed the load check: {e}") from None
    try:
        ev = evaluate(interpreter, x, y)
    except (ValueError, RuntimeError) as e:
        raise VerificationError(f"{precision.value} file failed the run check: {e}") from None
    if not np.isfinite(ev.outputs).all():
        raise VerificationError(
            f"{precision.value} file failed the run check: outputs hold NaN or infinity"
        )
    keras_top1 = keras_outputs.argmax(axis=-1)
    agreement = float((ev.predictions == keras_top1).mean())
    if agreement < min_agreement:
        raise VerificationError(
            f"{precision.value} file failed the agreement check: top-1 agrees with the Keras "
            f"model on {agreement:.2%} of {len(y)} test samples, needs >= {min_agreement:.0%}"
        )
    return {
        "accuracy": ev.accuracy,
        "samples": ev.samples,
        "top1_agreement_with_keras": agreement,
        "max_abs_diff_vs_keras": float(np.abs(ev.outputs - keras_outputs).max()),
        "runtime": f"{rt.name} {rt.version}",
    }


def environment_versions() -> dict[str, str]:
    rt = get_runtime("auto")
    return {
        "edgekit": __version__,
        **versions(),
        "runtime": f"{rt.name} {rt.version}",
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


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
    """Convert `model` at each precision, verify every file, then write files and manifest.

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
    labels = list(data.labels)
    seed = int((run_config or {}).get("data", {}).get("seed", 42))

    n_train = len(data.x_train)
    if Precision.INT8 in config.precisions and 0 < n_train < config.calibration_samples:
        say(
            f"  int8 calibration uses all {n_train} training samples, fewer than the "
            f"{config.calibration_samples} asked for"
        )

    exported: list[ExportedFile] = []
    for precision in config.precisions:
        say(f"converting {precision.value}")
        blob = convert(model, precision, data.x_train, config.calibration_samples, seed)
        min_agree = (
            config.min_agreement_int8
            if precision in (Precision.INT8, Precision.DYNAMIC)
            else config.min_agreement_float
        )
        say(f"verifying {precision.value} on {len(y_eval)} test samples")
        checks = verify_tflite(blob, precision, x_eval, y_eval, keras_outputs, min_agree)
        info = parse_model_bytes(blob, file_name(stem, precision))
        record: dict[str, Any] = {
            "file": file_name(stem, precision),
            "precision": precision.value,
            "sha256": info.sha256,
            "bytes": info.bytes,
            "gzip_bytes": info.gzip_bytes,
            "inputs": [_tensor_record(t) for t in info.inputs],
            "outputs": [_tensor_record(t) for t in info.outputs],
            "weight_sparsity": round(info.weight_sparsity, 6),
            "operators": info.operators,
            "accuracy": checks,
        }
        exported.append(ExportedFile(record["file"], precision, blob, record))

    manifest = {
        "format": MANIFEST_FORMAT,
        "edgekit_version": __version__,
        "versions": environment_versions(),
        "dataset": {
            "name": data.name,
            "source": data.source,
            "input_shape": list(data.input_shape),
            "test_samples": len(y_eval),
        },
        "labels": labels,
        "keras_accuracy": keras_acc,
        "config": run_config or {"export": _export_config_dict(config)},
        "files": [f.record for f in exported],
    }
    # Ctrl-C or SIGTERM during the commit takes effect once it is complete, so an interrupted
    # run leaves the previous run or this one, never a mix of files without a manifest.
    with deferred_signals():
        _write_run(out, exported, manifest, model if keras_model_name else None, keras_model_name)
    return ExportResult(out, exported, manifest, keras_acc)


def _export_config_dict(config: ExportConfig) -> dict[str, Any]:
    from edgekit.config import to_dict

    return dict(to_dict(config))


def _tensor_record(t: Any) -> dict[str, Any]:
    quant: dict[str, Any] = {}
    if t.scale:
        quant = {
            "scale": t.scale[0] if len(t.scale) == 1 else list(t.scale),
            "zero_point": t.zero_point[0] if len(t.zero_point) == 1 else list(t.zero_point),
        }
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "quantization": quant}


def _write_run(
    out: Path,
    files: list[ExportedFile],
    manifest: dict[str, Any],
    model: keras.Model | None = None,
    keras_model_name: str | None = None,
) -> None:
    """Replace the previous run as a whole: old manifest out, files in, new manifest last."""
    keras_blob = None
    if model is not None and keras_model_name:
        from edgekit.model_io import keras_model_bytes

        keras_blob = keras_model_bytes(model)  # before anything on disk changes
        manifest["keras_model"] = {
            "file": keras_model_name,
            "sha256": sha256_bytes(keras_blob),
            "bytes": len(keras_blob),
        }
    try:
        remove_stale_temporaries(out)
        old_files: set[str] = set()
        manifest_path = out / MANIFEST_NAME
        if manifest_path.exists():
            try:
                old_files = {str(f["file"]) for f in read_manifest(out)["files"]}
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
        write_json_atomic(manifest_path, manifest)
    except OSError as e:
        raise ExportError(
            f"cannot write the exported files into {out} ({e.strerror or e}): free disk space "
            "or choose another output folder with -o, then run again"
        ) from None
