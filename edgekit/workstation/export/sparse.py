"""The speed gate of sparse-encoded files: written only when faster than their dense twin.

Sparse encoding (`Optimize.EXPERIMENTAL_SPARSITY`) buys speed only where the runtime has a
sparse kernel for the pattern: float32 FULLY_CONNECTED with 1x4 blocks, run by the runtime's
builtin kernel. Other patterns are densified when the model is prepared (a DENSIFY op) and run
at the dense speed. So a sparse file is timed against its dense twin in the same run, on this
CPU, by the bench's own measuring (edgekit.device.bench.run_bench: a process per file,
interleaved rounds, p50 of `invoke()` at batch 1), and written only if its p50 is at least
`ExportConfig.sparse_min_speedup` times faster.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.core.errors import VerificationError
from edgekit.device.bench import BenchConfig, run_bench

# How the twins are timed: 1 thread (the sparse kernel is single-threaded work per op), no
# accuracy (export measured it already), the bench's rounds, half its timed second each.
SPEED_GATE_THREADS = 1
SPEED_GATE_BENCH = BenchConfig(threads=(SPEED_GATE_THREADS,), data=None, min_time_s=0.5)


@dataclass(frozen=True)
class SpeedCheck:
    """p50 latencies of a sparse file and its dense twin, measured in the same run."""

    p50_us: float
    dense_p50_us: float
    threads: int
    rounds: int
    max_round_spread: float | None  # (max - min) / median of the round medians, worst file

    @property
    def speedup(self) -> float:
        """Dense p50 over sparse p50: above 1 the sparse file is faster."""
        return self.dense_p50_us / self.p50_us

    def to_dict(self) -> dict[str, Any]:
        return {
            "speedup_vs_dense": round(self.speedup, 3),
            "p50_us": round(self.p50_us, 3),
            "dense_p50_us": round(self.dense_p50_us, 3),
            "threads": self.threads,
            "rounds": self.rounds,
            "max_round_spread": (
                None if self.max_round_spread is None else round(self.max_round_spread, 3)
            ),
        }


def time_against_dense(
    sparse: bytes, dense: bytes, config: BenchConfig = SPEED_GATE_BENCH
) -> SpeedCheck:
    """Time both files in the same run (see the module's docstring).

    Raises:
        VerificationError: either file failed to load or run in the bench.
    """
    with tempfile.TemporaryDirectory(prefix="edgekit-sparse-") as tmp:
        paths = [Path(tmp) / "dense.tflite", Path(tmp) / "sparse.tflite"]
        for path, blob in zip(paths, (dense, sparse), strict=True):
            path.write_bytes(blob)
        result = run_bench([str(p) for p in paths], config)
    by_file = {row.file: row for row in result.rows}
    for row in result.rows:
        if not row.ok or row.latency is None:
            raise VerificationError(f"the speed check failed: {row.file}: {row.error}")
    d, s = by_file["dense.tflite"].latency, by_file["sparse.tflite"].latency
    assert d is not None and s is not None
    spreads = [r.round_spread for r in result.rows if r.round_spread is not None]
    return SpeedCheck(
        s.p50_us, d.p50_us, config.threads[0], config.rounds, max(spreads) if spreads else None
    )


def speed_problem(check: SpeedCheck, min_speedup: float, twin: str) -> str | None:
    """Why a sparse file may not be written (not fast enough against `twin`), or None."""
    if check.speedup >= min_speedup:
        return None
    return (
        f"not faster than {twin}: {check.speedup:.2f}x at p50, {check.threads} thread "
        f"({check.p50_us:.1f} vs {check.dense_p50_us:.1f} us, same run; needs >= "
        f"{min_speedup:g}x, export.sparse_min_speedup)"
    )
