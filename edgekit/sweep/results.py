"""What a sweep found: one row per exported file (or per failed point), the Pareto frontier.

Plain data, no TensorFlow: the words and tables are in edgekit.cli.report.sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edgekit import __version__

# Columns of a row that the same seeded grid reproduces exactly, whichever engine ran it
# (everything but times and latency).
REPRODUCIBLE_COLUMNS = (
    "point",
    "params",
    "status",
    "error",
    "file",
    "precision",
    "bytes",
    "gzip_bytes",
    "weight_sparsity",
    "accuracy",
    "accuracy_drop_points",
    "sha256",
)


@dataclass
class SweepRow:
    """One .tflite file of one point, or a failed point (file None, error set)."""

    point: str  # the point's id (its folder's name)
    params: dict[str, Any]
    label: str  # the params as `key=value ...`
    status: str = "ok"  # "ok" or "error"
    error: str | None = None
    file: str | None = None
    precision: str | None = None
    bytes: int | None = None
    gzip_bytes: int | None = None
    weight_sparsity: float | None = None
    accuracy: float | None = None
    accuracy_drop_points: float | None = None
    sha256: str | None = None
    p50_us: float | None = None
    p90_us: float | None = None
    seconds: float | None = None  # the point's wall time in its worker (TensorFlow import on)
    resumed: bool = False  # finished by an earlier run of the sweep, not rerun
    frontier: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SweepResult:
    """Every point of a sweep, its rows and how it ran."""

    rows: list[SweepRow]
    points: list[dict[str, Any]]  # each point's point.json (status, files, summary, ...)
    grid: dict[str, list[str]]  # key -> its values as written on the command line
    engine: dict[str, Any]
    machine: dict[str, Any]
    output_dir: str
    started_at: str
    duration_s: float
    bench: dict[str, Any] | None = None  # how p50 was measured (None: not measured)
    objectives: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[SweepRow]:
        return [r for r in self.rows if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def frontier(self) -> list[SweepRow]:
        return [r for r in self.rows if r.frontier]

    def to_dict(self) -> dict[str, Any]:
        ok_points = sum(1 for p in self.points if p.get("status") == "ok")
        return {
            "format": "edgekit-sweep/1",
            "edgekit_version": __version__,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "output_dir": self.output_dir,
            "engine": self.engine,
            "machine": self.machine,
            "grid": {k: [_jsonable(v) for v in vs] for k, vs in self.grid.items()},
            "counts": {
                "points": len(self.points),
                "ok": ok_points,
                "failed": len(self.points) - ok_points,
                "resumed": sum(1 for p in self.points if p.get("resumed")),
            },
            "frontier_objectives": self.objectives,
            "bench": self.bench,
            "rows": [r.to_dict() for r in self.rows],
            "points": self.points,
        }


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is at least as good as b everywhere and better somewhere (all minimized)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def mark_frontier(rows: list[SweepRow]) -> list[str]:
    """Mark the rows no other row beats on accuracy, gzipped size and p50 latency at once.

    p50 takes part only when every file with an accuracy has one (latency measured).

    Returns:
        The objectives used, e.g. ["accuracy", "gzip_bytes", "p50_us"].
    """
    candidates = [r for r in rows if r.ok and r.accuracy is not None and r.gzip_bytes is not None]
    with_latency = bool(candidates) and all(r.p50_us is not None for r in candidates)
    objectives = ["accuracy", "gzip_bytes"] + (["p50_us"] if with_latency else [])

    def costs(r: SweepRow) -> tuple[float, ...]:
        c = (-float(r.accuracy or 0.0), float(r.gzip_bytes or 0))
        return c + ((float(r.p50_us or 0.0),) if with_latency else ())

    for r in rows:
        r.frontier = False
    for r in candidates:
        r.frontier = not any(_dominates(costs(o), costs(r)) for o in candidates if o is not r)
    return objectives


def rows_of_point(record: dict[str, Any], label: str) -> list[SweepRow]:
    """The rows of one point's point.json: one per .tflite file, or one error row."""
    common = {
        "point": record["id"],
        "params": record.get("params", {}),
        "label": label,
        "seconds": record.get("seconds"),
        "resumed": bool(record.get("resumed")),
    }
    if record.get("status") != "ok":
        return [SweepRow(status="error", error=record.get("error"), **common)]
    rows = []
    for f in record.get("files", []):
        if not f["file"].endswith(".tflite"):
            continue
        rows.append(
            SweepRow(
                file=f["file"],
                precision=f.get("precision"),
                bytes=f.get("bytes"),
                gzip_bytes=f.get("gzip_bytes"),
                weight_sparsity=f.get("weight_sparsity"),
                accuracy=f.get("accuracy"),
                accuracy_drop_points=f.get("accuracy_drop_points"),
                sha256=f.get("sha256"),
                **common,
            )
        )
    return rows
