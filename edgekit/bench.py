"""Latency, accuracy, size and memory of .tflite files on this CPU. Never imports TensorFlow.

Every (file, thread count) runs in its own child process (`edgekit._bench_child`), kept alive
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
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import __version__
from edgekit._bench_child import ChildError, ChildProcess
from edgekit.errors import DataError, EdgekitError, ManifestError, ModelFileError
from edgekit.manifest import MANIFEST_NAME, read_manifest
from edgekit.runtime import RUNTIME_CHOICES, get_runtime
from edgekit.tflite_file import ModelFile, read_model_file

# Defaults of TensorFlow Lite's own benchmark_model tool: at least 50 runs and 1 s.
DEFAULT_MIN_RUNS = 50
DEFAULT_MIN_TIME_S = 1.0
# Warm-up before every round (another model ran in between and took the caches).
DEFAULT_WARMUP_RUNS = 5
DEFAULT_WARMUP_TIME_S = 0.05
# Timed runs of each model are split over this many interleaved rounds.
DEFAULT_ROUNDS = 5
# A child that does not answer one request (load, a round, evaluation) within this is killed.
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_BENCH_DIR = "artifacts"
# Round medians of one model varying more than this (max - min over median) = a noisy machine.
NOISY_SPREAD = 0.10
# Latency ratios within this of 1 are reported as ties.
TIE_TOLERANCE = 0.05
KNOWN_PRECISIONS = ("float32", "float16", "int8", "uint8", "int16", "dynamic")
# CPU features that decide how fast float and int8 kernels can be.
RELEVANT_CPU_FLAGS = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16",
    "neon", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "fphp",
)  # fmt: skip
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    """How `run_bench` measures.

    Args:
        threads: thread counts to measure each file with.
        xnnpack: use the XNNPACK delegate (the runtime's default).
        runtime: auto, litert, tflite-runtime or tf (see edgekit.runtime.get_runtime).
        min_runs / min_time_s: timed runs go on until both are reached (over all rounds).
        warmup_runs / warmup_time_s: untimed runs before every round, until both are reached.
        rounds: number of interleaved rounds the timed runs are split over.
        data: 'fashion_mnist', the path of a .npz (x_test, y_test), or None for no accuracy.
        data_dir: folder of the Fashion-MNIST files (else the usual places are searched).
        samples: use only the first N test samples.
        timeout_s: per request to a model's process (load, a round, the evaluation).
    """

    threads: tuple[int, ...] = (1,)
    xnnpack: bool = True
    runtime: str = "auto"
    min_runs: int = DEFAULT_MIN_RUNS
    min_time_s: float = DEFAULT_MIN_TIME_S
    warmup_runs: int = DEFAULT_WARMUP_RUNS
    warmup_time_s: float = DEFAULT_WARMUP_TIME_S
    rounds: int = DEFAULT_ROUNDS
    data: str | None = "fashion_mnist"
    data_dir: str | None = None
    samples: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        threads = tuple(dict.fromkeys(int(t) for t in self.threads))
        if not threads or min(threads) < 1:
            raise EdgekitError(
                f"threads must be positive counts, got {self.threads}: e.g. --threads 1,2"
            )
        object.__setattr__(self, "threads", threads)
        if self.runtime not in RUNTIME_CHOICES:
            raise EdgekitError(
                f"unknown runtime {self.runtime!r}: expected one of {', '.join(RUNTIME_CHOICES)}"
            )
        if self.min_runs < 1:
            raise EdgekitError(f"min_runs must be >= 1, got {self.min_runs}")
        if self.rounds < 1:
            raise EdgekitError(f"rounds must be >= 1, got {self.rounds}")
        if self.min_time_s < 0 or self.warmup_time_s < 0 or self.warmup_runs < 0:
            raise EdgekitError(
                "min_time_s, warmup_time_s and warmup_runs must be >= 0, got "
                f"{self.min_time_s}, {self.warmup_time_s}, {self.warmup_runs}"
            )
        if not self.timeout_s > 0:
            raise EdgekitError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.samples is not None and self.samples < 1:
            raise EdgekitError(f"samples must be >= 1, got {self.samples}: or omit it for all")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["threads"] = list(self.threads)
        return d


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples, in microseconds."""

    mean_us: float
    std_us: float
    min_us: float
    p50_us: float
    p90_us: float
    p99_us: float
    runs: int

    @classmethod
    def from_samples_ns(cls, samples_ns: Sequence[int]) -> LatencyStats:
        if not len(samples_ns):
            raise ValueError("no latency samples")
        us = np.asarray(samples_ns, dtype=np.float64) / 1000.0
        p50, p90, p99 = np.percentile(us, [50, 90, 99])
        return cls(
            mean_us=float(us.mean()),
            std_us=float(us.std()),
            min_us=float(us.min()),
            p50_us=float(p50),
            p90_us=float(p90),
            p99_us=float(p99),
            runs=int(us.size),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchRow:
    """One file measured at one thread count (or the error that stopped it)."""

    id: str
    file: str
    path: str
    kind: str  # "tflite" or "keras"
    model: str  # name stem shared by the precisions of one model
    precision: str
    threads: int
    status: str = "ok"  # "ok" or "error"
    error: str | None = None
    bytes: int | None = None
    gzip_bytes: int | None = None
    weight_sparsity: float | None = None
    load_ms: float | None = None
    first_inference_us: float | None = None
    latency: LatencyStats | None = None
    round_p50_us: list[float] = field(default_factory=list)
    round_spread: float | None = None  # (max - min) / median of the round medians
    peak_memory_bytes: int | None = None
    accuracy: float | None = None
    accuracy_samples: int | None = None
    accuracy_note: str | None = None
    reference: str | None = None  # the float32 file compared against
    top1_agreement: float | None = None
    max_abs_diff: float | None = None
    accuracy_delta_pp: float | None = None  # accuracy - reference accuracy, percentage points
    speedup_vs_float32: float | None = None  # reference p50 / this p50, same threads
    keras_baseline: str | None = None
    speedup_vs_keras: float | None = None
    manifest_accuracy: float | None = None
    manifest_samples: int | None = None
    runtime: str | None = None
    verdict: str = ""
    samples_ns: list[int] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        return f"{self.file} @{self.threads}t"

    def summary(self) -> dict[str, Any]:
        """The row without its raw samples (those go to BenchResult.to_dict()['samples_ns'])."""
        d = {k: v for k, v in self.__dict__.items() if k != "samples_ns"}
        d["latency"] = self.latency.to_dict() if self.latency else None
        return d


@dataclass
class BenchResult:
    """Everything one `run_bench` measured, with the machine it ran on."""

    rows: list[BenchRow]
    machine: dict[str, Any]
    config: BenchConfig
    data: dict[str, Any]
    rounds: dict[str, Any]
    verdict: list[str]
    started_at: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failed(self) -> list[BenchRow]:
        return [r for r in self.rows if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "edgekit-bench/1",
            "edgekit_version": __version__,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "timed": "interpreter.invoke() at batch 1, input set once per round, perf_counter_ns",
            "machine": self.machine,
            "config": self.config.to_dict(),
            "data": self.data,
            "rounds": self.rounds,
            "verdict": self.verdict,
            "rows": [r.summary() for r in self.rows],
            "samples_ns": {r.id: r.samples_ns for r in self.rows},
        }


# ---- the machine ---------------------------------------------------------------------------


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo, plus fields ARM puts after it."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key and key not in out:
            out[key] = value.strip()
    return out


def cpu_model() -> str:
    """A human name of this CPU, e.g. 'Intel(R) Xeon(R) Processor' or 'ARMv8 Cortex-A72'."""
    info = _cpuinfo()
    for key in ("model name", "hardware", "cpu model"):
        if info.get(key):
            return info[key]
    if sys.platform == "darwin":
        import subprocess

        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True, text=True, timeout=5, check=False,
            ).stdout.strip() or platform.machine()  # fmt: skip
        except OSError:
            pass
    try:
        model = Path("/sys/firmware/devicetree/base/model").read_text(errors="replace")
        return model.strip("\x00 \n")
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> list[str]:
    """The RELEVANT_CPU_FLAGS this CPU has (x86 'flags' or ARM 'Features')."""
    info = _cpuinfo()
    have = set((info.get("flags") or info.get("features") or "").split())
    if platform.machine().lower() in ("arm64", "aarch64") and sys.platform == "darwin":
        have |= {"neon", "asimd", "asimddp", "fphp", "asimdhp"}  # every Apple silicon has them
    return [f for f in RELEVANT_CPU_FLAGS if f in have]


def machine_info() -> dict[str, Any]:
    """CPU model and flags, cores, OS, Python and NumPy versions (the runtime is added later)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "edgekit": __version__,
    }


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


def _manifest_records(folder: Path, cache: dict[Path, dict[str, dict[str, Any]]]) -> Any:
    if folder not in cache:
        records: dict[str, dict[str, Any]] = {}
        if (folder / MANIFEST_NAME).is_file():
            try:
                records = {str(r["file"]): r for r in read_manifest(folder)["files"]}
            except ManifestError:
                records = {}
        cache[folder] = records
    return cache[folder]


def split_name(
    path: Path, record: dict[str, Any] | None, parsed: ModelFile | None
) -> tuple[str, str]:
    """(model stem, precision) of a file: the manifest's precision, else the file name's
    `_<precision>` suffix, else what the file holds."""
    stem = path.stem
    precision = str(record["precision"]) if record and record.get("precision") else ""
    m = re.match(rf"^(.*)_({'|'.join(KNOWN_PRECISIONS)})$", stem)
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


# ---- data ----------------------------------------------------------------------------------


def load_test_data(config: BenchConfig) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The labeled test set as export sees it: float32 images (uint8 scaled to [0, 1]), int64
    labels, the first `config.samples` of them. Only the test files are read.

    Raises:
        DataError: the data cannot be found or read (the message says how to fix it).
    """
    from edgekit import data as ekdata

    assert config.data is not None
    if config.data in ("fashion_mnist", "fashion-mnist"):
        wanted = (ekdata.FASHION_MNIST_FILES["x_test"], ekdata.FASHION_MNIST_FILES["y_test"])
        folders = ekdata.fashion_mnist_search_path(config.data_dir)
        found = next((f for f in folders if all((f / w).is_file() for w in wanted)), None)
        if found is None:
            raise DataError(
                f"the Fashion-MNIST test files ({', '.join(wanted)}) are not in "
                f"{', '.join(str(f) for f in folders)}: install them with `apt-get install "
                "dataset-fashion-mnist`, pass --data-dir, --data FILE.npz or --no-accuracy"
            )
        x_raw, y_raw = (ekdata.read_idx(found / w) for w in wanted)
        name, source, classes = "fashion_mnist", str(found), len(ekdata.FASHION_MNIST_LABELS)
    else:
        raw = ekdata.load_npz_arrays(config.data, keys=("x_test", "y_test"))
        x_raw, y_raw = raw["x_test"], np.asarray(raw["y_test"])
        name, source = Path(config.data).stem, str(config.data)
        labels = raw["labels"] if "labels" in raw else ekdata.numbered_labels(y_raw)
        classes = len(labels)
    if len(x_raw) != len(y_raw):
        raise DataError(f"{source}: x_test has {len(x_raw)} samples but y_test has {len(y_raw)}")
    n = len(y_raw) if config.samples is None else min(config.samples, len(y_raw))
    if n == 0:
        raise DataError(f"{source}: the test set is empty: pass data with x_test, y_test")
    x = ekdata.to_float_images(x_raw[:n], "x_test")
    y = ekdata.check_labels(np.asarray(y_raw[:n]), classes, f"{source}: y_test")
    return x, y, {"name": name, "source": source, "samples": n, "classes": classes}


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


def run_bench(
    paths: Sequence[str | os.PathLike[str]],
    config: BenchConfig | None = None,
    progress: ProgressFn | None = None,
) -> BenchResult:
    """Measure every model file in `paths` (see discover_models) with `config`.

    Files that fail to parse, load or run become rows with status "error"; the others are
    measured in full. Raises only for bad arguments (no files, unreadable --data).
    """
    config = config or BenchConfig()
    say = progress or (lambda _msg: None)
    started = time.time()
    files = discover_models(paths)
    if config.runtime in ("litert", "tflite-runtime"):
        get_runtime(config.runtime)  # a missing runtime is one clear error, not one per row
    data_info: dict[str, Any] = {"name": None, "samples": 0}
    x_test = y_test = None
    if config.data is not None:
        say(f"loading test data ({config.data})")
        x_test, y_test, data_info = load_test_data(config)

    manifests: dict[Path, dict[str, dict[str, Any]]] = {}
    rows: list[BenchRow] = []
    for path in files:
        rows += _make_rows(path, config, manifests)
    rows.sort(key=_row_order)
    names = [r.file for r in rows if r.threads == rows[0].threads]
    if len(names) != len(set(names)):  # same name in two folders: ids need the path
        for r in rows:
            r.id = r.path if len(config.threads) == 1 else f"{r.path}@{r.threads}t"

    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        tmpdir = Path(tmp)
        sample_path = None
        if x_test is not None and y_test is not None:
            sample_path = tmpdir / "sample.npy"
            np.save(sample_path, np.asarray(x_test[:1], np.float32))
            np.save(tmpdir / "x.npy", np.asarray(x_test, np.float32))
            np.save(tmpdir / "y.npy", np.asarray(y_test))
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
        _compare(rows, outputs, manifests)

    machine = machine_info()
    runtimes = sorted({r.runtime for r in rows if r.runtime and r.kind == "tflite"})
    machine["runtime"] = ", ".join(runtimes) if runtimes else "unknown (no file loaded)"
    machine["xnnpack"] = config.xnnpack
    spreads = [r.round_spread for r in rows if r.round_spread is not None]
    rounds = {
        "count": config.rounds,
        "max_round_spread": max(spreads) if spreads else None,
        "median_round_spread": statistics.median(spreads) if spreads else None,
        "noisy": bool(spreads) and max(spreads) > NOISY_SPREAD,
    }
    result = BenchResult(
        rows=rows,
        machine=machine,
        config=config,
        data=data_info,
        rounds=rounds,
        verdict=[],
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        duration_s=time.time() - started,
    )
    result.verdict = _verdicts(result)
    return result


def _row_order(row: BenchRow) -> tuple[bool, str, int, int]:
    """Keras baselines first, then float32, float16, ... int8 per model; threads ascending."""
    rank = KNOWN_PRECISIONS.index(row.precision) if row.precision in KNOWN_PRECISIONS else 99
    return (row.kind != "keras", row.model, rank, row.threads)


def _make_rows(
    path: Path, config: BenchConfig, manifests: dict[Path, dict[str, dict[str, Any]]]
) -> list[BenchRow]:
    record = _manifest_records(path.parent, manifests).get(path.name)
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
    model, precision = split_name(path, record, parsed)
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
        if record and isinstance(record.get("accuracy"), dict):
            acc = record["accuracy"]
            row.manifest_accuracy = acc.get("accuracy")
            row.manifest_samples = acc.get("samples")
        if error:
            row.status, row.error = "error", error
        rows.append(row)
    return rows


def _load_all(
    workers: list[_Worker], config: BenchConfig, sample_path: Path | None, say: ProgressFn
) -> None:
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
        if not ans.get("outputs_finite", True):
            w.row.accuracy_note = "the first inference returned NaN or infinite outputs"


def _run_rounds(workers: list[_Worker], config: BenchConfig, say: ProgressFn) -> None:
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
    say: ProgressFn,
) -> dict[str, np.ndarray]:
    """Accuracy once per file (it does not depend on threads); returns outputs by path."""
    outputs: dict[str, np.ndarray] = {}
    if config.data is None:
        return outputs
    done: dict[str, BenchRow] = {}
    for w in workers:
        row = w.row
        if not row.ok or w.child is None:
            continue
        if row.path in done:
            src = done[row.path]
            row.accuracy, row.accuracy_samples = src.accuracy, src.accuracy_samples
            row.accuracy_note = row.accuracy_note or src.accuracy_note
            continue
        done[row.path] = row
        say(f"accuracy of {row.file} on {data_info.get('samples')} samples")
        out = tmpdir / f"out{id(row)}.npy"  # rows live on: ids are unique
        try:
            ans = w.child.request(
                {"cmd": "evaluate", "x": str(tmpdir / "x.npy"), "y": str(tmpdir / "y.npy"),
                 "out": str(out)},
                config.timeout_s,
            )  # fmt: skip
        except ChildError as e:
            if w.child.dead:  # crashed: an error row; a refusal (wrong data shape): a note
                w.fail(f"during evaluation: {e}")
            else:
                row.accuracy_note = f"accuracy not measured: {e}"
            continue
        row.accuracy = float(ans["accuracy"])
        row.accuracy_samples = int(ans["samples"])
        outputs[row.path] = np.load(out)
    return outputs


def _compare(
    rows: list[BenchRow],
    outputs: dict[str, np.ndarray],
    manifests: dict[Path, dict[str, dict[str, Any]]],
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
            a, b = outputs.get(row.path), outputs.get(ref.path)
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
        row.verdict = _row_verdict(row)


def _reference(row: BenchRow, candidates: list[BenchRow]) -> BenchRow | None:
    """The float32 .tflite of the same model at the same thread count (same folder first)."""
    refs = [
        c
        for c in candidates
        if c.kind == "tflite" and c.precision == "float32" and c.model == row.model
        and c.threads == row.threads
    ]  # fmt: skip
    refs.sort(key=lambda c: Path(c.path).parent != Path(row.path).parent)
    return refs[0] if refs else None


def _keras_baseline(row: BenchRow, candidates: list[BenchRow]) -> BenchRow | None:
    keras = [c for c in candidates if c.kind == "keras"]
    if not keras:
        return None
    same = [c for c in keras if row.model.startswith(c.model) or c.model.startswith(row.model)]
    pool = same or (keras if len({c.path for c in keras}) == 1 else [])
    pool.sort(key=lambda c: c.threads != row.threads)
    return pool[0] if pool else None


# ---- words ---------------------------------------------------------------------------------


def _fmt_us(us: float) -> str:
    return f"{us:,.0f} us" if us >= 100 else f"{us:.1f} us"


def _speed_words(ratio: float, what: str) -> str:
    if abs(ratio - 1) <= TIE_TOLERANCE:
        return f"as fast as {what} (within {TIE_TOLERANCE:.0%})"
    if ratio > 1:
        return f"{ratio:.1f}x faster than {what}"
    return f"{1 / ratio:.1f}x slower than {what}"


def _row_verdict(row: BenchRow) -> str:
    if not row.ok:
        return f"FAILED: {row.error}"
    parts: list[str] = []
    if row.kind == "keras":
        parts.append("Keras baseline (tf.function, batch 1)")
    elif row.reference == row.file:
        parts.append("float32 reference")
    elif row.speedup_vs_float32 is not None:
        parts.append(_speed_words(row.speedup_vs_float32, "float32"))
    if row.speedup_vs_keras is not None and row.kind != "keras":
        parts.append(_speed_words(row.speedup_vs_keras, "Keras"))
    if row.accuracy is not None:
        acc = f"accuracy {row.accuracy:.2%}"
        if row.accuracy_delta_pp is not None:
            acc += f" ({row.accuracy_delta_pp:+.2f} pp vs float32"
            if row.top1_agreement is not None:
                acc += f", {row.top1_agreement:.1%} same top-1"
            acc += ")"
        parts.append(acc)
    if (
        row.manifest_accuracy is not None
        and row.accuracy is not None
        and row.manifest_samples == row.accuracy_samples
        and abs(row.manifest_accuracy - row.accuracy) > 1e-9
    ):
        parts.append(f"differs from the manifest's {row.manifest_accuracy:.2%}")
    if row.accuracy_note:
        parts.append(row.accuracy_note)
    return "; ".join(parts)


def _verdicts(result: BenchResult) -> list[str]:
    rows = result.rows
    ok = [r for r in rows if r.ok and r.latency]
    lines: list[str] = []
    flags = set(result.machine.get("cpu_flags", []))
    for threads in result.config.threads:
        at = [r for r in ok if r.threads == threads]
        tfl = [r for r in at if r.kind == "tflite"]
        if not tfl:
            continue
        best = min(tfl, key=lambda r: r.latency.p50_us if r.latency else math.inf)
        assert best.latency is not None
        text = (
            f"Fastest at {threads} thread{'s' if threads > 1 else ''}: {best.file} "
            f"(p50 {_fmt_us(best.latency.p50_us)}"
        )
        if best.speedup_vs_float32 is not None and best.reference != best.file:
            text += f", {_speed_words(best.speedup_vs_float32, 'float32')}"
        if best.speedup_vs_keras is not None:
            text += f", {_speed_words(best.speedup_vs_keras, 'Keras')}"
        lines.append(text + ").")
        for row in tfl:
            if row.precision not in ("int8", "uint8") or row.speedup_vs_float32 is None:
                continue
            if row.speedup_vs_float32 < 1 + TIE_TOLERANCE:
                ref = next((r for r in tfl if r.file == row.reference), None)
                ref_p50 = _fmt_us(ref.latency.p50_us) if ref and ref.latency else "?"
                assert row.latency is not None
                why = ""
                if not flags & set(INT8_DOT_FLAGS):
                    why = (
                        " This CPU has no int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI,"
                        " ARM dotprod), which int8 kernels need to be fast."
                    )
                lines.append(
                    f"WARNING: {row.file} (int8) is not faster than float32 on this CPU "
                    f"({result.machine.get('cpu')}): p50 {_fmt_us(row.latency.p50_us)} against "
                    f"{ref_p50} at {threads} thread(s).{why}"
                )
    seen: set[str] = set()
    for row in ok:
        if row.path in seen or row.kind != "tflite" or row.reference in (None, row.file):
            continue
        seen.add(row.path)
        if row.accuracy is None or row.accuracy_delta_pp is None:
            continue
        cost = -row.accuracy_delta_pp
        what = (
            f"costs {cost:.2f} pp of accuracy"
            if cost > 0
            else ("costs no accuracy" if cost == 0 else f"gains {-cost:.2f} pp of accuracy")
        )
        size = ""
        ref = next((r for r in ok if r.file == row.reference), None)
        if ref and ref.bytes and row.bytes:
            size = f"; it is {ref.bytes / row.bytes:.1f}x smaller"
        agree = (
            f" and agrees on {row.top1_agreement:.1%} of top-1 predictions"
            if row.top1_agreement is not None else ""
        )  # fmt: skip
        ref_acc = row.accuracy - row.accuracy_delta_pp / 100
        lines.append(
            f"{row.precision} ({row.file}) {what} against float32 "
            f"({row.accuracy:.2%} vs {ref_acc:.2%}){agree}{size}."
        )
    checked = [
        r for r in ok
        if r.manifest_accuracy is not None and r.accuracy is not None
        and r.manifest_samples == r.accuracy_samples
    ]  # fmt: skip
    mismatched = sorted({r.file for r in checked if abs(r.manifest_accuracy - r.accuracy) > 1e-9})  # type: ignore[operator]
    if mismatched:
        lines.append(
            f"WARNING: accuracy differs from the manifest's for {', '.join(mismatched)}: "
            "the file or the data changed since export."
        )
    elif checked:
        lines.append(
            f"Accuracy equals the manifest's for {len({r.file for r in checked})} file(s)."
        )
    rounds = result.rounds
    if rounds.get("max_round_spread") is not None:
        spread = rounds["max_round_spread"]
        noisy = rounds["noisy"]
        lines.append(
            f"Measured in {rounds['count']} interleaved rounds; round medians varied by up to "
            f"{spread:.1%}"
            + (
                " (noisy: something else used the CPU; compare figures with care or rerun "
                "on an idle machine)."
                if noisy
                else " (quiet machine)."
            )  # fmt: skip
        )
    notes = {r.file: r.accuracy_note for r in rows if r.ok and r.accuracy_note}
    lines += [f"{file}: {note}." for file, note in notes.items()]
    if result.failed:
        names = sorted({r.file for r in result.failed})
        lines.append(f"FAILED: {len(names)} file(s) could not be measured: {', '.join(names)}.")
    return lines
