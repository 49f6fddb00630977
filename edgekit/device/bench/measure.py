"""Latency, accuracy, size and memory of .tflite files on this CPU. Never imports TensorFlow.

Every (file, thread count) runs in its own child process (`edgekit.device.worker`), kept alive
for the whole run, so a file that crashes or hangs the runtime becomes an error row and the
others are still measured. Files are timed in interleaved rounds (A B C, B C A, C A B, ...) so
drift of a noisy machine does not favour one file.

What is timed: `interpreter.invoke()` alone, at batch 1, with the input set once before the
timed runs (`time.perf_counter_ns` around each call). Warm-up runs precede every round.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.errors import ManifestError, ModelFileError
from edgekit.core.io.console import Progress
from edgekit.device.bench.machine import machine_info
from edgekit.device.bench.records import (
    KNOWN_PRECISIONS,
    NOISY_SPREAD,
    BenchConfig,
    BenchResult,
    BenchRow,
    LatencyStats,
)
from edgekit.device.bench.testdata import load_bench_data, save_samples
from edgekit.device.bench.uncertainty import annotate_uncertainty
from edgekit.device.bench.verdict import overall_verdict, row_verdict
from edgekit.device.manifest import MANIFEST_NAME, FileRecord, Manifest, read_manifest
from edgekit.device.modelfile import ModelFile, read_model_file
from edgekit.device.runtime import get_runtime
from edgekit.device.worker import ChildError, ChildProcess

# ---- finding and naming the files ------------------------------------------------------------


def discover_models(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The .tflite files in `paths` (folders: their *.tflite, not recursive; files as given).

    A .keras file is accepted only when named explicitly (a Keras baseline row).

    Raises:
        ModelFileError: a path does not exist, has another suffix, or a folder holds no .tflite.
    """
    if not paths:
        raise ModelFileError("no model files given: pass .tflite files or a folder of them")
    found: dict[Path, None] = {}
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.glob("*.tflite") if f.is_file())
            if not files:
                raise ModelFileError(
                    f"{path} holds no .tflite file: run `edgekit export` first or pass files"
                )
            found.update(dict.fromkeys(files))
        elif path.is_file():
            if path.suffix not in (".tflite", ".keras"):
                raise ModelFileError(
                    f"{path} is not a .tflite or .keras file: pass model files or a folder"
                )
            found[path] = None
        else:
            raise ModelFileError(f"{path} does not exist: pass .tflite files or a folder of them")
    unique: dict[Path, Path] = {}
    for f in found:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


@dataclass(frozen=True)
class _Listed:
    """A file's record in the manifest next to it, with that manifest (machine, data, versions)."""

    manifest: Manifest
    record: FileRecord


def _manifest_records(
    folder: Path, cache: dict[Path, dict[str, _Listed]], problems: list[str] | None = None
) -> dict[str, _Listed]:
    """The records of `folder`'s manifest by file name; a manifest that cannot be read is
    noted in `problems` (bench still measures, without comparing with it)."""
    if folder not in cache:
        records: dict[str, _Listed] = {}
        if (folder / MANIFEST_NAME).is_file():
            try:
                manifest = read_manifest(folder)
                records = {r.file: _Listed(manifest, r) for r in manifest.files}
            except ManifestError as e:
                if problems is not None:
                    problems.append(f"{e} (accuracy not compared with it)")
        cache[folder] = records
    return cache[folder]


def split_name(
    path: Path, listed_precision: str | None, parsed: ModelFile | None, tag: str | None = None
) -> tuple[str, str]:
    """(model stem, precision) of a file: the manifest's precision, else the file name's
    `_<precision>` suffix, else what the file holds. `tag`: the manifest's variant tag, the
    file name's suffix (e.g. int8_qat for a QAT int8 file of the same model)."""
    stem = path.stem
    precision = listed_precision or ""
    if tag and listed_precision and stem.endswith(f"_{tag}"):
        return stem[: -len(tag) - 1], listed_precision
    # A sparse-encoded twin (NAME_sparse_float32) belongs to the model NAME.
    m = re.match(rf"^(.*?)(?:_sparse)?_({'|'.join(KNOWN_PRECISIONS)})$", stem)
    if m:
        stem = m.group(1)
        precision = precision or m.group(2)
    if path.suffix == ".keras":
        return stem, precision or "keras"
    if not precision and parsed is not None:
        in_dtype = parsed.inputs[0].dtype if parsed.inputs else "float32"
        weight_types = {w.dtype for w in parsed.weights}
        if in_dtype in ("int8", "uint8", "int16"):
            precision = in_dtype
        elif "float16" in weight_types:
            precision = "float16"
        elif weight_types & {"int8", "uint8"}:
            precision = "dynamic"
        else:
            precision = "float32"
    return stem, precision or "unknown"


# ---- measuring -----------------------------------------------------------------------------


class _Worker:
    """One child process for one row."""

    def __init__(self, row: BenchRow) -> None:
        self.row = row
        self.child: ChildProcess | None = None

    def fail(self, message: str) -> None:
        self.row.status = "error"
        self.row.error = message
        if self.child is not None:
            self.child.kill()


def _spread(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med > 0 else None


# Over 60 lines for its docstring (a doctest example); the body is 43 lines.
def run_bench(
    paths: Sequence[str | os.PathLike[str]],
    config: BenchConfig | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Measure every model file in `paths` (see discover_models) with `config`.

    Files that fail to parse, load or run become rows with status "error"; the others are
    measured in full. Raises only for bad arguments (no files, unreadable --data).

    Examples:
        Two files of an export folder, briefly, with accuracy on 200 test images:

        >>> from edgekit.device.bench import BenchConfig
        >>> folder = "artifacts"  # doctest: +SKIP
        >>> files = [f"{folder}/fashion_mnist_mlp_sp80_{p}.tflite" for p in ("float32", "int8")]
        >>> config = BenchConfig(min_runs=20, min_time_s=0.05, rounds=2, samples=200)
        >>> result = run_bench(files, config)
        >>> [(row.precision, row.status, row.accuracy_samples) for row in result.rows]
        [('float32', 'ok', 200), ('int8', 'ok', 200)]
        >>> all(row.latency.p50_us > 0 for row in result.rows)  # also p90_us, p99_us, mean_us
        True
        >>> result.rows[1].reference  # int8 is compared with the float32 file of its model
        'fashion_mnist_mlp_sp80_float32.tflite'
    """
    config = config or BenchConfig()
    say = progress or (lambda _msg: None)
    started = time.time()
    files = discover_models(paths)
    if any(f.suffix == ".tflite" for f in files):
        # A missing runtime is one clear error (not one "damaged" row per file).
        get_runtime(config.runtime)
    data_info: dict[str, Any] = {"name": None, "samples": 0}
    x_test = y_test = None
    if config.data is not None:
        say(f"loading test data ({config.data})")
        x_test, y_test, data_info = load_bench_data(config, files)

    rows, manifest_problems = _list_rows(files, config)
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        tmpdir = Path(tmp)
        sample_path = None
        if x_test is not None and y_test is not None:
            sample_path = tmpdir / "sample.npy"
            np.save(sample_path, np.asarray(x_test[:1], np.float32))
            save_samples(tmpdir / "x.npy", x_test)
            np.save(tmpdir / "y.npy", np.asarray(y_test))
        outputs = _measure_all(rows, config, sample_path, tmpdir, data_info, say)
        machine = machine_info()
        machine["xnnpack"] = config.xnnpack
        _compare(rows, outputs, machine, data_info)
        annotate_uncertainty(rows, outputs, y_test)

    runtimes = sorted({r.runtime for r in rows if r.runtime and r.kind == "tflite"})
    machine["runtime"] = ", ".join(runtimes) if runtimes else "unknown (no file loaded)"
    result = BenchResult(
        rows=rows,
        machine=machine,
        config=config,
        data=data_info,
        rounds=_rounds_summary(rows, config),
        verdict=[],
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        duration_s=time.time() - started,
    )
    result.verdict = overall_verdict(result)
    result.verdict += [f"WARNING: {p}." for p in manifest_problems]
    return result


def _list_rows(files: list[Path], config: BenchConfig) -> tuple[list[BenchRow], list[str]]:
    """A row per file and thread count in table order, and the manifests' problems."""
    manifests: dict[Path, dict[str, _Listed]] = {}
    manifest_problems: list[str] = []
    rows: list[BenchRow] = []
    for path in files:
        rows += _make_rows(path, config, manifests, manifest_problems)
    rows.sort(key=_row_order)
    names = [r.file for r in rows if r.threads == rows[0].threads]
    if len(names) != len(set(names)):  # same name in two folders: ids need the path
        for r in rows:
            r.id = r.path if len(config.threads) == 1 else f"{r.path}@{r.threads}t"
    return rows, manifest_problems


def _measure_all(
    rows: list[BenchRow],
    config: BenchConfig,
    sample_path: Path | None,
    tmpdir: Path,
    data_info: dict[str, Any],
    say: Progress,
) -> dict[str, np.ndarray]:
    """Load, time, weigh and evaluate every row, each in its own process; outputs by row id."""
    outputs: dict[str, np.ndarray] = {}
    # .tflite files first, then Keras baselines in a phase of their own: TensorFlow's
    # thread pools spin for a while after each call, and the .tflite files measured next
    # to them would share the machine with that work.
    for phase in (
        [r for r in rows if r.kind != "keras"],
        [r for r in rows if r.kind == "keras"],
    ):
        workers = [_Worker(r) for r in phase]
        try:
            _load_all(workers, config, sample_path, say)
            _run_rounds(workers, config, say)
            _read_memory(workers, config)
            outputs |= _evaluate_all(workers, config, tmpdir, data_info, say)
        finally:
            for w in workers:
                if w.child is not None:
                    w.child.close()
    return outputs


def _rounds_summary(rows: list[BenchRow], config: BenchConfig) -> dict[str, Any]:
    """How many rounds ran and how much the round medians varied (a noisy machine)."""
    spreads = [r.round_spread for r in rows if r.round_spread is not None]
    return {
        "count": config.rounds,
        "max_round_spread": max(spreads) if spreads else None,
        "median_round_spread": statistics.median(spreads) if spreads else None,
        "noisy": bool(spreads) and max(spreads) > NOISY_SPREAD,
    }


def _row_order(row: BenchRow) -> tuple[bool, str, int, int]:
    """Keras baselines first, then float32, float16, ... int8 per model; threads ascending."""
    rank = KNOWN_PRECISIONS.index(row.precision) if row.precision in KNOWN_PRECISIONS else 99
    return (row.kind != "keras", row.model, rank, row.threads)


def _make_rows(
    path: Path,
    config: BenchConfig,
    manifests: dict[Path, dict[str, _Listed]],
    problems: list[str] | None = None,
) -> list[BenchRow]:
    listed = _manifest_records(path.parent, manifests, problems).get(path.name)
    kind = "keras" if path.suffix == ".keras" else "tflite"
    parsed: ModelFile | None = None
    error: str | None = None
    size = gz = None
    sparsity = None
    if kind == "tflite":
        try:
            parsed = read_model_file(path)
            size, gz, sparsity = parsed.bytes, parsed.gzip_bytes, parsed.weight_sparsity
        except ModelFileError as e:
            error = str(e)
    if size is None:
        try:
            raw = path.read_bytes()
            size, gz = len(raw), len(gzip.compress(raw, compresslevel=9, mtime=0))
        except OSError as e:
            error = error or f"cannot read {path}: {e.strerror or e}"
    model, precision = split_name(
        path,
        listed.record.precision if listed else None,
        parsed,
        listed.record.variant.get("tag") if listed else None,
    )
    rows = []
    for threads in config.threads:
        row = BenchRow(
            id=f"{path.name}@{threads}t" if len(config.threads) > 1 else path.name,
            file=path.name,
            path=str(path),
            kind=kind,
            model=model,
            precision=precision,
            threads=threads,
            bytes=size,
            gzip_bytes=gz,
            weight_sparsity=sparsity,
        )
        if parsed is not None:
            row.sha256 = parsed.sha256
        if listed is not None and listed.record.accuracy is not None:
            row.manifest = _expected(listed)
        if error:
            row.status, row.error = "error", error
        rows.append(row)
    return rows


def _load_all(
    workers: list[_Worker], config: BenchConfig, sample_path: Path | None, say: Progress
) -> None:
    """Start each row's process and load its model (one at a time)."""
    # One at a time: loads in parallel would disturb each other's load times.
    for w in workers:
        if not w.row.ok:
            continue
        say(f"loading {w.row.label}")
        try:
            w.child = ChildProcess()
        except OSError as e:
            w.fail(f"cannot start a process for it: {e}")
            continue
        try:
            ans = w.child.request(
                {
                    "cmd": "load",
                    "kind": w.row.kind,
                    "path": str(Path(w.row.path).resolve()),
                    "threads": w.row.threads,
                    "xnnpack": config.xnnpack,
                    "runtime": config.runtime,
                    "unsafe": config.unsafe,
                    "input": str(sample_path) if sample_path else None,
                },
                config.timeout_s,
            )
        except ChildError as e:
            w.fail(str(e))
            continue
        w.row.load_ms = ans["load_ns"] / 1e6
        w.row.first_inference_us = ans["first_inference_ns"] / 1e3
        rt = ans.get("runtime") or {}
        w.row.runtime = f"{rt.get('name')} {rt.get('version')}".strip()
        w.row.sparse = ans.get("sparse")
        if not ans.get("outputs_finite", True):
            w.row.accuracy_note = "the first inference returned NaN or infinite outputs"


def _run_rounds(workers: list[_Worker], config: BenchConfig, say: Progress) -> None:
    per_round = {
        "cmd": "round",
        "warmup_runs": config.warmup_runs,
        "warmup_time_s": config.warmup_time_s,
        "min_runs": math.ceil(config.min_runs / config.rounds),
        "min_time_s": config.min_time_s / config.rounds,
    }
    for r in range(config.rounds):
        live = [w for w in workers if w.row.ok]
        if not live:
            return
        say(f"round {r + 1}/{config.rounds}: {len(live)} model(s)")
        # Rotate the order each round so no file always runs first (or right after another).
        shift = r % len(live)
        for w in live[shift:] + live[:shift]:
            assert w.child is not None
            try:
                ans = w.child.request(per_round, config.timeout_s)
            except ChildError as e:
                w.fail(f"during round {r + 1}: {e}")
                continue
            samples = [int(s) for s in ans["samples_ns"]]
            w.row.samples_ns += samples
            w.row.round_p50_us.append(float(np.median(samples)) / 1e3)
    for w in workers:
        if w.row.ok and w.row.samples_ns:
            w.row.latency = LatencyStats.from_samples_ns(w.row.samples_ns)
            w.row.round_spread = _spread(w.row.round_p50_us)


def _read_memory(workers: list[_Worker], config: BenchConfig) -> None:
    for w in workers:
        if w.row.ok and w.child is not None:
            try:
                ans = w.child.request({"cmd": "memory"}, config.timeout_s)
            except ChildError as e:
                w.fail(str(e))
                continue
            w.row.peak_memory_bytes = ans.get("peak_added_bytes")


def _evaluate_all(
    workers: list[_Worker],
    config: BenchConfig,
    tmpdir: Path,
    data_info: dict[str, Any],
    say: Progress,
) -> dict[str, np.ndarray]:
    """Accuracy of every row, with the row's own runtime options (threads, XNNPACK on/off), so
    the figure belongs to the latency beside it. Returns the outputs by row id."""
    outputs: dict[str, np.ndarray] = {}
    if config.data is None:
        return outputs
    for w in workers:
        row = w.row
        if not row.ok or w.child is None:
            continue
        say(f"accuracy of {row.label} on {data_info.get('samples')} samples")
        out = tmpdir / f"out{id(row)}.npy"  # rows live on: ids are unique
        try:
            ans = w.child.request(
                {
                    "cmd": "evaluate",
                    "x": str(tmpdir / "x.npy"),
                    "y": str(tmpdir / "y.npy"),
                    "out": str(out),
                },
                config.timeout_s,
            )
        except ChildError as e:
            if w.child.dead:  # crashed: an error row; a refusal (wrong data shape): a note
                w.fail(f"during evaluation: {e}")
            else:
                row.accuracy_note = f"accuracy not measured: {e}"
            continue
        row.accuracy = float(ans["accuracy"])
        row.accuracy_samples = int(ans["samples"])
        row.accuracy_threads, row.accuracy_xnnpack = ans.get("threads"), ans.get("xnnpack")
        outputs[row.id] = np.load(out)
    return outputs


def _compare(
    rows: list[BenchRow],
    outputs: dict[str, np.ndarray],
    machine: dict[str, Any] | None = None,
    data_info: dict[str, Any] | None = None,
) -> None:
    """Agreement with the float32 file, speed-ups over float32 and Keras, per-row verdicts."""
    ok = [r for r in rows if r.ok and r.latency]
    for row in rows:
        if row.kind != "tflite":
            continue
        ref = _reference(row, ok)
        if ref is not None:
            row.reference = ref.file
            if ref.latency and row.latency and ref is not row:
                row.speedup_vs_float32 = ref.latency.p50_us / row.latency.p50_us
            a, b = outputs.get(row.id), outputs.get(ref.id)
            if ref is not row and a is not None and b is not None and a.shape == b.shape:
                row.top1_agreement = float((a.argmax(1) == b.argmax(1)).mean()) if len(a) else None
                row.max_abs_diff = float(np.abs(a - b).max()) if a.size else None
            if ref is not row and row.accuracy is not None and ref.accuracy is not None:
                row.accuracy_delta_pp = (row.accuracy - ref.accuracy) * 100
        keras = _keras_baseline(row, ok)
        if keras is not None and keras.latency and row.latency:
            row.keras_baseline = keras.file
            row.speedup_vs_keras = keras.latency.p50_us / row.latency.p50_us
    for row in rows:
        row.verdict = row_verdict(row, machine, data_info)


def _reference(row: BenchRow, candidates: list[BenchRow]) -> BenchRow | None:
    """The float32 .tflite of the same model at the same thread count (same folder first)."""
    refs = [
        c
        for c in candidates
        if c.kind == "tflite"
        and c.precision == "float32"
        and c.model == row.model
        and c.threads == row.threads
    ]
    # A dense file first (a sparse-encoded float32 file is compared with it), same folder first.
    refs.sort(key=lambda c: (c.sparse is not None, Path(c.path).parent != Path(row.path).parent))
    return refs[0] if refs else None


def _keras_baseline(row: BenchRow, candidates: list[BenchRow]) -> BenchRow | None:
    keras = [c for c in candidates if c.kind == "keras"]
    if not keras:
        return None
    same = [c for c in keras if row.model.startswith(c.model) or c.model.startswith(row.model)]
    pool = same or (keras if len({c.path for c in keras}) == 1 else [])
    pool.sort(key=lambda c: c.threads != row.threads)
    return pool[0] if pool else None


def _expected(listed: _Listed) -> dict[str, Any]:
    """What export recorded about a file: accuracy, data, file hash, runtime, machine."""
    acc = listed.record.accuracy
    assert acc is not None
    return {
        "accuracy": acc.accuracy,
        "samples": acc.samples,
        "sha256": listed.record.sha256,
        "data_sha256": listed.manifest.dataset.get("test_sha256"),
        "runtime": acc.runtime or listed.manifest.versions.get("runtime"),
        "cpu": listed.manifest.machine.get("cpu"),
        "arch": listed.manifest.machine.get("arch"),
        "threads": acc.threads,
        "xnnpack": acc.xnnpack,
        "recommended": listed.manifest.recommended == listed.record.file,
        "max_accuracy_drop_points": listed.manifest.selection.get("max_accuracy_drop_points"),
        "sparse": listed.record.variant.get("sparse"),
    }
