"""Export: make each variant, check every file on real data, write those that pass + manifest."""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import __version__
from edgekit.core.config import ExportConfig, Precision
from edgekit.core.data import Dataset, data_fingerprint
from edgekit.core.data.arrays import Samples, ScaledSamples
from edgekit.core.data.sizes import default_calibration_samples
from edgekit.core.errors import EdgekitError, ExportError, ModelFileError, VerificationError
from edgekit.core.io.clock import Clock
from edgekit.core.io.console import Progress
from edgekit.core.io.files import (
    check_file_stem,
    ensure_writable_dir,
    write_bytes_atomic,
    write_json_atomic,
)
from edgekit.core.io.lock import lock_output_dir, remove_stale_temporaries
from edgekit.core.io.process import deferred_signals, quiet_native_stderr
from edgekit.device.bench.machine import cpu_model
from edgekit.device.manifest import (
    MANIFEST_NAME,
    ExportCheck,
    FileRecord,
    Manifest,
    TensorRecord,
    read_manifest,
)
from edgekit.device.modelfile import ModelFile, parse_model_bytes, sha256_bytes
from edgekit.device.runtime import evaluate, get_runtime, load_interpreter
from edgekit.workstation._keras import keras, versions
from edgekit.workstation.export.variants import Variant
from edgekit.workstation.train.model import keras_outputs as predicted_outputs


def file_name(stem: str, precision: Precision | str) -> str:
    tag = precision.value if isinstance(precision, Precision) else precision
    return f"{stem}_{tag}.tflite"


def default_stem(name: str, sparsity: float | None, structure: str | None = None) -> str:
    """Self-describing name: model or data+arch name and sparsity, e.g. fashion_mnist_mlp_sp80.

    `sparsity` is the pruning target edgekit applied; None (not pruned here) adds no suffix, so
    a user's model keeps its own name rather than claiming 0% sparsity. A structured pruning
    adds its structure: fashion_mnist_mlp_sp80_1x4, fashion_mnist_mlp_sp50_2in4.

    Example:
        >>> default_stem("fashion_mnist_mlp", 0.5, "2:4")
        'fashion_mnist_mlp_sp50_2in4'
    """
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    if sparsity is None:
        return safe
    shape = "" if structure in (None, "unstructured") else "_" + str(structure).replace(":", "in")
    return f"{safe}_sp{round(100 * sparsity):02d}{shape}"


@dataclass
class ExportedFile:
    """One verified .tflite: its bytes and everything the manifest says about it."""

    file: str
    precision: Precision
    data: bytes = field(repr=False)
    record: FileRecord


@dataclass(frozen=True)
class RejectedFile:
    """A variant measured and not written: why, and its numbers where it got that far."""

    file: str
    precision: str
    reason: str
    requested: bool
    tag: str = ""
    accuracy: float | None = None
    accuracy_drop_points: float | None = None
    agreement: float | None = None
    bytes: int | None = None
    gzip_bytes: int | None = None
    speedup_vs_dense: float | None = None  # a sparse file: its dense twin's p50 over its own

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class ExportResult:
    output_dir: Path
    files: list[ExportedFile]
    manifest: Manifest
    keras_accuracy: float
    rejected: list[RejectedFile] = field(default_factory=list)
    recommended: str | None = None
    # Wall time of each step of the export: each conversion, each verification, saving the
    # Keras model, writing the files and the manifest.
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / MANIFEST_NAME

    @property
    def requested_left_out(self) -> list[RejectedFile]:
        """Files asked for that were not written (the CLI exits 1 when it names them)."""
        return [r for r in self.rejected if r.requested]

    def rows(self) -> list[dict[str, Any]]:
        """Summary rows: file, precision, size, gzipped size, sparsity, accuracy, drop."""
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
                "accuracy_drop_points": f.record.variant.get("accuracy_drop_points"),
                "recommended": f.file == self.recommended,
            }
            for f in self.files
        ]


def verify_tflite(
    data: bytes,
    name: str,
    x: Samples,
    y: np.ndarray,
    keras_outputs: np.ndarray,
    min_agreement: float | None = None,
) -> ExportCheck:
    """Load the file in the runtime, run it on real samples, compare top-1 with Keras.

    Args:
        name: the file's variant, for messages (e.g. "int8").
        min_agreement: a top-1 agreement floor with the Keras model; None: reported only.

    Raises:
        VerificationError: naming the check that failed (load, run, agreement).
    """
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
    if min_agreement is not None and agreement < min_agreement:
        raise VerificationError(
            f"{name} file failed the agreement check: top-1 agrees with the Keras "
            f"model on {agreement:.2%} of {len(y)} test samples, needs >= {min_agreement:.0%}"
        )
    return ExportCheck(
        accuracy=ev.accuracy,
        samples=ev.samples,
        top1_agreement_with_keras=agreement,
        max_abs_diff_vs_keras=float(np.abs(ev.outputs - keras_outputs).max()),
        runtime=f"{rt.name} {rt.version}",
        min_agreement=min_agreement,
        threads=threads,
        xnnpack=True,
    )


# A file may hold a few more zeros than the model (int8 rounds tiny weights to 0), never fewer:
# this many fewer (as a fraction of all weights) means the zeros were lost.
SPARSITY_TOLERANCE = 0.01


def _gate(
    variant: Variant,
    blob: bytes,
    info: ModelFile,
    check: ExportCheck,
    keras_acc: float,
    config: ExportConfig,
    model_sparsity: float,
) -> str | None:
    """Why a verified file may not be written (precision, zeros, accuracy budget), or None."""
    from edgekit.device.opcheck import precision_problems

    wrong = precision_problems(blob, variant.precision.value, variant.float_layers)
    if wrong:
        more = f" and {len(wrong) - 1} more" if len(wrong) > 1 else ""
        return f"not the precision it claims: {wrong[0]}{more}"
    kept = _kernel_sparsity(blob, info)
    if model_sparsity >= 0.05 and kept < model_sparsity - SPARSITY_TOLERANCE:
        return (
            f"lost the zeros: weight sparsity {kept:.3f}, the model's "
            f"{model_sparsity:.3f} (tolerance {SPARSITY_TOLERANCE})"
        )
    drop = 100 * (keras_acc - check.accuracy)
    if drop > config.max_accuracy_drop + 1e-9:
        return (
            f"outside the accuracy budget: {100 * check.accuracy:.2f}% is {drop:.2f} points "
            f"below the float model's {100 * keras_acc:.2f}% (budget "
            f"{config.max_accuracy_drop:g}; --max-accuracy-drop)"
        )
    return None


def _kernel_sparsity(blob: bytes, info: ModelFile) -> float:
    """Zeros over the kernels of the compute layers (not other constants, such as the dropout
    masks an MC-dropout file stores)."""
    from edgekit.device.opcheck import compute_layers

    names = {c.weight_name for c in compute_layers(blob)}
    kernels = [w for w in info.weights if w.name in names] or info.weights
    total = sum(w.elements for w in kernels)
    return sum(w.zeros for w in kernels) / total if total else 0.0


@dataclass(frozen=True)
class Reference:
    """What every file is checked against: real test samples, the Keras model's outputs on
    them, its accuracy there and its fraction of zero kernel weights."""

    x: Samples = field(repr=False)
    y: np.ndarray = field(repr=False)
    keras_outputs: np.ndarray = field(repr=False)
    keras_accuracy: float
    model_sparsity: float


def reference_for(
    model: Any, data: Dataset, config: ExportConfig, keras_outputs: np.ndarray | None = None
) -> Reference:
    """The test samples files are verified on (`config.verify_samples` of them, None: all) and
    the Keras model's outputs there.

    Args:
        keras_outputs: the model's outputs on all of `data.x_test`, when already computed
            (None: predicted here).

    Raises:
        EdgekitError: the data has no test samples.
    """
    x_eval, y_eval = data.x_test, data.y_test
    if config.verify_samples is not None:
        x_eval, y_eval = _first(x_eval, config.verify_samples), y_eval[: config.verify_samples]
    if len(y_eval) == 0:
        raise EdgekitError("no test samples to verify the exported files: pass data with x_test")
    if keras_outputs is None or len(keras_outputs) != len(data.y_test):
        keras_outputs = predicted_outputs(model, x_eval, batch_size=512)
    keras_outputs = np.asarray(keras_outputs[: len(y_eval)], dtype=np.float32)
    keras_acc = float((keras_outputs.argmax(-1) == y_eval).mean())
    return Reference(x_eval, y_eval, keras_outputs, keras_acc, _model_sparsity(model))


def _first(x: Samples, n: int) -> Samples:
    """The first `n` samples of `x`, still unscaled when `x` is a `ScaledSamples`."""
    return x.subset(slice(0, n)) if isinstance(x, ScaledSamples) else x[:n]


def _measure(
    variant: Variant,
    stem: str,
    ref: Reference,
    config: ExportConfig,
    say: Progress,
    clock: Clock,
) -> ExportedFile | RejectedFile:
    """Build one variant and check it; the file's record, or why it is left out."""
    try:
        say(f"converting {variant.tag}")
        with clock.time(f"convert {variant.tag}"):
            blob = variant.build()
        say(f"verifying {variant.tag} on {len(ref.y)} test samples")
        with clock.time(f"verify {variant.tag}"):
            return _checked(variant, blob, stem, ref, config)
    except EdgekitError as e:
        name = file_name(stem, variant.tag)
        return RejectedFile(name, variant.precision.value, str(e), variant.requested, variant.tag)


def _checked(
    variant: Variant, blob: bytes, stem: str, ref: Reference, config: ExportConfig
) -> ExportedFile | RejectedFile:
    """Load and run the file on the reference samples, then pass it through the gates (and a
    sparse file through its speed gate).

    Raises:
        VerificationError: it reads sparse weights without a sparse kernel, does not load,
            run, or agree with the Keras model enough.
    """
    from edgekit.device.opcheck import sparse_problems

    name = file_name(stem, variant.tag)
    # Before it runs: a sparse tensor read by an op without a sparse kernel (float16 in 1x4
    # blocks) loads and answers wrong, or crashes the runtime.
    wrong = sparse_problems(blob)
    if wrong:
        more = f" and {len(wrong) - 1} more" if len(wrong) > 1 else ""
        raise VerificationError(f"sparse weights without a sparse kernel: {wrong[0]}{more}")
    check = verify_tflite(blob, variant.tag, ref.x, ref.y, ref.keras_outputs, config.min_agreement)
    info = parse_model_bytes(blob, name)
    keras_acc = ref.keras_accuracy
    drop = round(100 * (keras_acc - check.accuracy), 4)
    why = _gate(variant, blob, info, check, keras_acc, config, ref.model_sparsity)
    sparse: dict[str, Any] = {}
    if why is None and variant.dense_twin is not None:
        sparse, why = _speed_gate(variant, blob, config)
    if why is not None:
        return RejectedFile(
            name,
            variant.precision.value,
            why,
            variant.requested,
            variant.tag,
            check.accuracy,
            drop,
            check.top1_agreement_with_keras,
            info.bytes,
            info.gzip_bytes,
            sparse.get("speedup_vs_dense"),
        )
    if sparse:
        sparse["kernel"] = _sparse_kernel(blob)
    record = FileRecord(
        file=name,
        precision=variant.precision.value,
        sha256=info.sha256,
        bytes=info.bytes,
        gzip_bytes=info.gzip_bytes,
        inputs=tuple(TensorRecord.from_summary(t) for t in info.inputs),
        outputs=tuple(TensorRecord.from_summary(t) for t in info.outputs),
        weight_sparsity=round(info.weight_sparsity, 6),
        operators=info.operators,
        accuracy=check,
        variant={
            **variant.info(),
            "accuracy_drop_points": drop,
            **_float_ops(variant, blob),
            **({"sparse": sparse} if sparse else {}),
        },
    )
    return ExportedFile(name, variant.precision, blob, record)


def _speed_gate(
    variant: Variant, blob: bytes, config: ExportConfig
) -> tuple[dict[str, Any], str | None]:
    """A sparse file against its dense twin: the measurement for the manifest, and why it may
    not be written (not fast enough), or None.

    Raises:
        VerificationError: a file failed to load or run while timed.
    """
    from edgekit.workstation.export.sparse import speed_problem, time_against_dense

    assert variant.dense_twin is not None
    speed = time_against_dense(blob, variant.dense_twin())
    record = {
        "dense_twin": variant.precision.value,
        **speed.to_dict(),
        "min_speedup": config.sparse_min_speedup,
        "cpu": cpu_model(),
    }
    return record, speed_problem(speed, config.sparse_min_speedup, variant.precision.value)


def _sparse_kernel(blob: bytes) -> dict[str, Any] | None:
    """What the file's sparse encoding runs as in this runtime (edgekit.device.opcheck)."""
    from edgekit.device.opcheck import sparse_path
    from edgekit.device.runtime import undelegated_ops

    with quiet_native_stderr():
        interpreter = load_interpreter(blob, num_threads=1)
    return sparse_path(blob, undelegated_ops(interpreter))


def _float_ops(variant: Variant, blob: bytes) -> dict[str, list[str]]:
    """{'float_ops': [...]} for an int8 file keeping ops in float (an ELU), else {}."""
    from edgekit.device.opcheck import float_ops

    if variant.precision is not Precision.INT8 or variant.float_layers or "mc" in variant.extra:
        return {}  # asked for, or (MC dropout) statistics in float by design
    ops = float_ops(blob)
    return {"float_ops": ops} if ops else {}


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


# Long for its docstring (what every written file has passed); the body is one call a step.
def export_tflite(
    model: keras.Model,
    data: Dataset,
    config: ExportConfig,
    output_dir: str | os.PathLike[str],
    stem: str,
    run_config: dict[str, Any] | None = None,
    progress: Progress | None = None,
    keras_model_name: str | None = None,
    qat_model: Callable[[], keras.Model] | None = None,
    qat_requested: bool = False,
    keras_outputs: np.ndarray | None = None,
    stage_seconds: dict[str, float] | None = None,
    int4_tuner: Callable[[float | None], tuple[keras.Model, dict[str, Any]]] | None = None,
) -> ExportResult:
    """Make each variant, check every file on real data, then write those that pass + manifest.

    A file is written only if it loads and runs, its compute layers are of the precision its
    name claims, it kept the model's zeros, and its test accuracy is at most
    `config.max_accuracy_drop` points below the float Keras model's (and, when given, its top-1
    agreement reaches `config.min_agreement`). The others are reported (`ExportResult.rejected`,
    the manifest's `selection`). With `config.search` the cheaper variants are tried in order
    until one passes; the smallest file written is `recommended`. With `keras_model_name` the
    model itself is saved too (.keras). Files are written atomically and the manifest last; the
    previous manifest is removed first so it never describes new files.

    Args:
        qat_model: makes the quantization-aware-trained model on first use (QAT variants).
        qat_requested: write the QAT int8 file (`--qat`).
        keras_outputs: the model's outputs on all of `data.x_test`, when already computed.
        stage_seconds: wall times of the run's stages before this export; the manifest
            records them with this export's own (`ExportResult.seconds`), all but the write.
        int4_tuner: `int4_tuner(target_sparsity)` fine-tunes the model on the int4 grid: the
            budget search's int4-tuned tries (their drop measured against `model`, as all).

    Raises:
        ExportError: no file passed (nothing written), or a file cannot be written.

    Examples:
        Train a tiny tf_keras model, then write its float32 and int8 files:

        >>> import tempfile
        >>> from edgekit.core.config import DataConfig, ExportConfig, Precision, TrainConfig
        >>> from edgekit.core.data import load_dataset
        >>> from edgekit.workstation.train import build_model, train_model
        >>> small = DataConfig(train_samples=1000, test_samples=200, validation_size=100)
        >>> data = load_dataset(small)
        >>> train = TrainConfig(hidden_units=(16,), epochs=2, batch_size=32, learning_rate=0.01)
        >>> model = train_model(build_model(train, (28, 28), 10), data, train).model
        >>> config = ExportConfig(
        ...     precisions=(Precision.FLOAT32, Precision.INT8),
        ...     calibration_samples=50,
        ...     max_accuracy_drop=5,  # 200 test samples: 0.5 points each
        ... )
        >>> result = export_tflite(model, data, config, tempfile.mkdtemp(), "tiny")
        >>> [(row["file"], row["precision"]) for row in result.rows()]
        [('tiny_float32.tflite', 'float32'), ('tiny_int8.tflite', 'int8')]
        >>> result.rows()[0]["agreement"]  # float32 against the Keras model: top-1 agreement
        1.0
    """
    from edgekit.workstation.export.metadata import finish_variants
    from edgekit.workstation.export.variants import plan_variants

    say = progress or (lambda msg: None)
    check_file_stem(stem)
    if keras_model_name:
        check_file_stem(keras_model_name, "Keras model file name")
    out = ensure_writable_dir(output_dir)
    if config.calibration_samples is None:  # the data's default, recorded in the manifest
        n = default_calibration_samples(len(data.x_train))
        config = dataclasses.replace(config, calibration_samples=n)
    clock = Clock()
    with clock.time("keras outputs") if keras_outputs is None else nullcontext():
        ref = reference_for(model, data, config, keras_outputs)
    requested, ladder = plan_variants(
        model, data.x_train, config, qat_model, qat_requested, int4_tuner
    )
    finish_variants([*requested, *ladder], data, stem)  # output 0 first, metadata, labels.txt
    n_train = len(data.x_train)
    if config.calibration_samples is not None and 0 < n_train < config.calibration_samples:
        say(
            f"  int8 calibration uses all {n_train} training samples, fewer than the "
            f"{config.calibration_samples} asked for"
        )
    exported, rejected = check_variants(requested, ladder, stem, ref, config, say, clock)
    keras_blob = None
    if keras_model_name:
        with clock.time("save keras"):  # before anything on disk changes
            keras_blob = _keras_bytes(model)
    with clock.time("manifest"):
        manifest = run_manifest(exported, rejected, data, ref, config, run_config, bool(ladder))
        manifest = replace(manifest, stage_seconds={**(stage_seconds or {}), **clock.seconds})
        manifest = _commit(out, exported, manifest, keras_model_name, keras_blob)
    return ExportResult(
        out, exported, manifest, ref.keras_accuracy, rejected, manifest.recommended, clock.seconds
    )


def check_variants(
    requested: list[Variant],
    ladder: list[Variant],
    stem: str,
    ref: Reference,
    config: ExportConfig,
    say: Progress,
    clock: Clock | None = None,
) -> tuple[list[ExportedFile], list[RejectedFile]]:
    """Build and check every requested variant, then the ladder's until one passes.

    Returns the files that passed (in the order made) and those left out, with why. `clock`
    gets the wall time of each conversion and each verification.

    Raises:
        ExportError: no file passed.
    """
    for v in requested:
        if v.check is not None:
            v.check()  # a bad setting fails the export before anything is made
    measured: dict[str, ExportedFile | RejectedFile] = {}
    clock = clock or Clock()

    def measure(variant: Variant) -> ExportedFile | RejectedFile:
        m = _measure(variant, stem, ref, config, say, clock)
        if isinstance(m, RejectedFile):
            say(f"  {variant.tag} left out: {m.reason}")
        measured[variant.tag] = m
        return m

    for v in requested:
        measure(v)
    if ladder:
        say(f"searching for the smallest file within {config.max_accuracy_drop:g} points")
    for v in ladder:
        m = measured.get(v.tag) or measure(v)
        if isinstance(m, ExportedFile):
            break
    exported = [m for m in measured.values() if isinstance(m, ExportedFile)]
    rejected = [m for m in measured.values() if isinstance(m, RejectedFile)]
    if not exported:
        raise ExportError(_none_passed(rejected, config))
    return exported, rejected


def run_manifest(
    exported: list[ExportedFile],
    rejected: list[RejectedFile],
    data: Dataset,
    ref: Reference,
    config: ExportConfig,
    run_config: dict[str, Any] | None,
    searched: bool,
) -> Manifest:
    """The manifest of the files that passed: their records, the data and machine they were
    checked on, the versions, the run's config, and the selection (budget, recommended file,
    variants left out)."""
    recommended = min(exported, key=lambda f: (f.record.bytes, f.file)).file
    selection = {
        "max_accuracy_drop_points": config.max_accuracy_drop,
        "float_accuracy": ref.keras_accuracy,
        "searched": searched,
        "recommended": recommended,
        "rejected": [r.to_dict() for r in rejected],
    }
    return Manifest(
        files=tuple(f.record for f in exported),
        labels=tuple(data.labels),
        input={"shape": list(data.input_shape), **data.preprocessing},
        dataset={
            "name": data.name,
            "source": data.source,
            "input_shape": list(data.input_shape),
            "test_samples": len(ref.y),
            "test_sha256": data_fingerprint(ref.x, ref.y),
        },
        keras_accuracy=ref.keras_accuracy,
        config=run_config or {"export": _export_config_dict(config)},
        versions=environment_versions(),
        machine=export_machine(),
        selection=selection,
    )


def _model_sparsity(model: keras.Model) -> float:
    """Fraction of exact zeros over the model's kernels (rank >= 2 weights), as files count."""
    total = zeros = 0
    for w in model.get_weights():
        if np.ndim(w) >= 2:
            total += int(np.size(w))
            zeros += int(np.count_nonzero(np.asarray(w) == 0))
    return zeros / total if total else 0.0


def _none_passed(rejected: list[RejectedFile], config: ExportConfig) -> str:
    """One line: no file passed; the closest one and by how much it missed the budget."""
    drops = [r for r in rejected if r.accuracy_drop_points is not None]
    if drops:
        best = min(drops, key=lambda r: r.accuracy_drop_points or 0.0)
        over = (best.accuracy_drop_points or 0.0) - config.max_accuracy_drop
        return (
            f"no file passed its checks, nothing written: the closest, {best.file}, "
            f"{best.reason}"
            + (f" ({over:.2f} points over)" if over > 0 else "")
            + "; allow more with --max-accuracy-drop PP (given, it also tries int4, float "
            "layers and QAT), or retrain the model"
        )
    first = rejected[0]
    return f"no file passed its checks, nothing written: {first.file}: {first.reason}"


def _export_config_dict(config: ExportConfig) -> dict[str, Any]:
    from edgekit.core.config import to_dict

    return dict(to_dict(config))


def _keras_bytes(model: keras.Model) -> bytes:
    from edgekit.workstation.export.model_io import keras_model_bytes

    return keras_model_bytes(model)


def _commit(
    out: Path,
    files: list[ExportedFile],
    manifest: Manifest,
    keras_model_name: str | None,
    keras_blob: bytes | None,
) -> Manifest:
    """Write the run (`_write_run`) as one step; the manifest written.

    Ctrl-C or SIGTERM during the commit takes effect once it is complete, so an interrupted
    run leaves the previous run or this one, never a mix of files without a manifest. The
    folder's lock (already held when run_pipeline calls): no other run writes meanwhile.
    """
    if keras_model_name and keras_blob is not None:
        record = FileRecord(keras_model_name, sha256_bytes(keras_blob), len(keras_blob))
        manifest = replace(manifest, keras_model=record)
    with lock_output_dir(out), deferred_signals():
        _write_run(out, files, manifest, keras_blob)
    return manifest


def _write_run(
    out: Path, files: list[ExportedFile], manifest: Manifest, keras_blob: bytes | None = None
) -> None:
    """Replace the previous run as a whole: old manifest out, files in, new manifest last
    (with the .keras model, `manifest.keras_model`, when its bytes are given)."""
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
        if keras_blob is not None and manifest.keras_model is not None:
            write_bytes_atomic(out / manifest.keras_model.file, keras_blob)
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
