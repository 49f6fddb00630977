"""What `edgekit bench` measures with, and what it measured: config, latency summary, rows, result.

Plain data: no measuring here (bench/measure.py) and no formatting (edgekit/report/).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgekit import __version__
from edgekit.core.config import Precision
from edgekit.core.errors import EdgekitError
from edgekit.device.runtime import RUNTIME_CHOICES

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
# edgekit's precisions (the order of rows), then those of files from elsewhere.
KNOWN_PRECISIONS = (*(p.value for p in Precision), "uint8", "int16")


@dataclass(frozen=True)
class BenchConfig:
    """How `run_bench` measures.

    Args:
        threads: thread counts to measure each file with.
        xnnpack: use the XNNPACK delegate (the runtime's default).
        runtime: auto, litert, tflite-runtime or tf (see edgekit.device.runtime.get_runtime).
        min_runs / min_time_s: timed runs go on until both are reached (over all rounds).
        warmup_runs / warmup_time_s: untimed runs before every round, until both are reached.
        rounds: number of interleaved rounds the timed runs are split over.
        data: 'fashion_mnist', the path of a .npz (x_test, y_test), or None for no accuracy.
        data_dir: folder of the Fashion-MNIST files (else the usual places are searched).
        samples: use only the first N test samples.
        timeout_s: per request to a model's process (load, a round, the evaluation).
        unsafe: load .keras baselines with Keras safe mode off (trusted files only).
        test_split / split_seed: an image folder's test split (None: the one the manifest
            next to the files recorded at export, else 0.2 and 42), so bench tests on the
            images export tested on.
        skip_bad_images: go on without image files that cannot be read.
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
    unsafe: bool = False
    test_split: float | None = None
    split_seed: int | None = None
    skip_bad_images: bool = False

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
    # MC-dropout files: calibration and risk-coverage against the deterministic file.
    uncertainty: dict[str, Any] | None = None
    # The interpreter options accuracy was measured with (the row's own, as its latency).
    accuracy_threads: int | None = None
    accuracy_xnnpack: bool | None = None
    reference: str | None = None  # the float32 file compared against
    top1_agreement: float | None = None
    max_abs_diff: float | None = None
    accuracy_delta_pp: float | None = None  # accuracy - reference accuracy, percentage points
    speedup_vs_float32: float | None = None  # reference p50 / this p50, same threads
    keras_baseline: str | None = None
    speedup_vs_keras: float | None = None
    sha256: str | None = None
    # What export recorded (accuracy, samples, sha256, data_sha256, runtime, cpu, arch,
    # threads, xnnpack), when the manifest next to the file lists it.
    manifest: dict[str, Any] | None = None
    runtime: str | None = None
    # Sparse-encoded weights: whether a sparse kernel ran (edgekit.device.opcheck.sparse_path);
    # None for a file without them.
    sparse: dict[str, Any] | None = None
    verdict: str = ""
    samples_ns: list[int] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def manifest_accuracy(self) -> float | None:
        return self.manifest["accuracy"] if self.manifest else None

    @property
    def label(self) -> str:
        return f"{self.file} @{self.threads}t"

    def summary(self) -> dict[str, Any]:
        """The row without its raw samples (those go to BenchResult.to_dict()['samples_ns'])."""
        d = {k: v for k, v in self.__dict__.items() if k != "samples_ns"}
        d["latency"] = self.latency.to_dict() if self.latency else None
        d["manifest_accuracy"] = self.manifest_accuracy
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
