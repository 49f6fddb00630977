"""`edgekit bench`: latency, accuracy, size and memory of .tflite files on this CPU.

Device side: never imports TensorFlow (a .keras baseline row loads it in its own process).
`records` holds the data (config, rows, result), `machine` the CPU detection, `measure`
the measuring; the words and tables are in `edgekit.cli.report`.
"""

from edgekit.device.bench.machine import cpu_flags, cpu_model, machine_info
from edgekit.device.bench.measure import discover_models, run_bench, split_name
from edgekit.device.bench.records import (
    DEFAULT_BENCH_DIR,
    DEFAULT_MIN_RUNS,
    DEFAULT_MIN_TIME_S,
    DEFAULT_ROUNDS,
    DEFAULT_TIMEOUT_S,
    DEFAULT_WARMUP_RUNS,
    DEFAULT_WARMUP_TIME_S,
    BenchConfig,
    BenchResult,
    BenchRow,
    LatencyStats,
)

__all__ = [
    "DEFAULT_BENCH_DIR",
    "DEFAULT_MIN_RUNS",
    "DEFAULT_MIN_TIME_S",
    "DEFAULT_ROUNDS",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_WARMUP_RUNS",
    "DEFAULT_WARMUP_TIME_S",
    "BenchConfig",
    "BenchResult",
    "BenchRow",
    "LatencyStats",
    "cpu_flags",
    "cpu_model",
    "discover_models",
    "machine_info",
    "run_bench",
    "split_name",
]
