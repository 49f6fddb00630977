"""The sweep driver: lock the sweep folder, skip finished points, run the rest on an engine,
write each point's files as it arrives (its point.json last), measure p50, mark the frontier.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.core.config import to_dict
from edgekit.core.errors import EdgekitError
from edgekit.core.io.console import Progress  # noqa: E402
from edgekit.core.io.files import (
    ensure_writable_dir,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from edgekit.core.io.lock import lock_output_dir, remove_stale_temporaries
from edgekit.core.io.process import deferred_signals
from edgekit.sweep.grid import SweepPoint, decisive_settings, point_from_record
from edgekit.sweep.keys import Grid, GridValue, format_value
from edgekit.sweep.point import POINT_LOG_NAME, POINT_RESULT_NAME, PointJob
from edgekit.sweep.results import SweepResult, SweepRow, mark_frontier, rows_of_point

POINT_FORMAT = "edgekit-sweep-point/1"
# Latency of every point's files, measured on the machine running the sweep after the points
# finished, all files interleaved (edgekit.device.bench): comparable across points and engines.
BENCH_THREADS = 1
BENCH_MIN_RUNS = 50
BENCH_MIN_TIME_S = 0.3
BENCH_ROUNDS = 3


@dataclass(frozen=True)
class SweepConfig:
    """How a sweep runs (what each point does is in its PipelineConfig).

    Args:
        output_dir: the sweep folder: one subfolder per point, sweep.json/.csv/.md/.png.
        jobs: points run at once (local worker processes; the CPUs of a local Ray).
        ray: run the points as Ray tasks.
        ray_address: a running Ray cluster; None with `ray`: a local Ray started for the run.
        threads_per_point: TensorFlow intra-op and inter-op threads of each point.
        bench: measure p50 latency of every file (1 thread) when the points are done.
        wait: wait for another run holding the sweep folder instead of failing at once.
    """

    output_dir: str = "artifacts/sweep"
    jobs: int = 1
    ray: bool = False
    ray_address: str | None = None
    threads_per_point: int = 1
    bench: bool = True
    wait: bool = False

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise EdgekitError(f"--jobs must be >= 1, got {self.jobs}: e.g. --jobs 2")
        if self.threads_per_point < 1:
            raise EdgekitError(
                f"--threads-per-point must be >= 1, got {self.threads_per_point}: e.g. 1"
            )
        if self.ray_address is not None and not self.ray:
            object.__setattr__(self, "ray", True)


def point_salt(threads_per_point: int, model_sha256: str | None = None) -> str:
    """What decides a point's files besides its config: TensorFlow's threads, the given model."""
    return f"threads={threads_per_point};model={model_sha256 or ''}"


def finished_record(point: SweepPoint) -> dict[str, Any] | None:
    """The point.json of `point` finished by an earlier run, if its files are all intact and
    the point it describes, rebuilt from it, has the same settings."""
    folder = Path(point.config.output_dir)
    try:
        record = json.loads((folder / POINT_RESULT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != POINT_FORMAT:
        return None
    if (record.get("id"), record.get("edgekit_version")) != (point.id, __version__):
        return None
    try:
        done = point_from_record(record)
    except EdgekitError:
        return None
    if decisive_settings(done.config) != decisive_settings(point.config):
        return None
    if record.get("status") != "ok":
        return None  # failed points run again: the cause may be gone
    for f in record.get("files", []):
        path = folder / f["file"]
        try:
            if path.stat().st_size != f["bytes"] or _sha256(path.read_bytes()) != f["sha256"]:
                return None
        except OSError:
            return None
    return record


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_point(point: SweepPoint, outcome: dict[str, Any], engine: str) -> dict[str, Any]:
    """Write one point's files into its folder, its log, then point.json (last, atomically).

    Returns:
        The point.json record.
    """
    folder = ensure_writable_dir(point.config.output_dir)
    (folder / POINT_RESULT_NAME).unlink(missing_ok=True)  # never describes files being replaced
    remove_stale_temporaries(folder)
    new = outcome.get("files", {})
    for old in folder.iterdir():  # an earlier (failed) run's files that this one did not make
        if old.suffix in (".tflite", ".keras") and old.name not in new:
            old.unlink(missing_ok=True)
    summary = outcome.get("summary") or {}
    by_name = {r["file"]: r for r in summary.get("files", [])}
    files = []
    for name, data in new.items():
        write_bytes_atomic(folder / name, data)
        known = {k: v for k, v in by_name.get(name, {}).items() if k != "file"}
        files.append({"file": name, "bytes": len(data), "sha256": _sha256(data), **known})
    write_text_atomic(folder / POINT_LOG_NAME, "\n".join(outcome.get("log", [])) + "\n")
    record = {
        "format": POINT_FORMAT,
        "id": point.id,
        "edgekit_version": __version__,
        "params": {k: _plain(v) for k, v in point.params.items()},
        "label": point.label,
        "status": outcome["status"],
        "error": outcome.get("error"),
        "seconds": outcome.get("seconds"),
        "engine": engine,
        "host": outcome.get("host"),
        "pid": outcome.get("pid"),
        "tf_threads": outcome.get("tf_threads"),
        "files": files,
        "accuracy": summary.get("accuracy"),
        "kernel_sparsity": summary.get("kernel_sparsity"),
        "stage_seconds": summary.get("stage_seconds"),
        "left_out": outcome.get("left_out", []),
        "config": to_dict(point.config),
    }
    write_json_atomic(folder / POINT_RESULT_NAME, record)
    return record


def _plain(value: GridValue) -> object:  # JSON has lists, not tuples
    return list(value) if isinstance(value, tuple) else value


# Over 60 lines for its docstring (a doctest example); the body is 33 lines.
def run_sweep(
    points: Sequence[SweepPoint],
    config: SweepConfig,
    grid: Grid | None = None,
    model_path: str | os.PathLike[str] | None = None,
    unsafe: bool = False,
    progress: Progress | None = None,
) -> SweepResult:
    """Run every point not finished yet, gather all points' results, mark the frontier.

    The sweep folder is locked for the whole run (edgekit.core.io.lock). A failing point is a
    row with its one-line error; the others go on. Ctrl-C stops the running points and keeps
    the finished ones: the same command resumes (a point whose point.json exists for the same
    config hash and edgekit version, with its files intact, is not rerun).

    Args:
        points: from expand_grid, their ids salted with point_salt(config.threads_per_point).
        model_path: a tf_keras model every point starts from (shipped to workers as bytes).

    Examples:
        Two tiny points (8 and 16 hidden units), two worker processes, no latency pass. The
        options every point shares are `edgekit export`'s (edgekit.core.build); the budget is
        set as a field, so that it is 5 points without the search of cheaper files:

        >>> import tempfile
        >>> from edgekit.sweep import expand_grid, parse_grid
        >>> base = {
        ...     "train_samples": 1000,
        ...     "test_samples": 200,
        ...     "validation_size": 100,
        ...     "epochs": 2,
        ...     "batch_size": 32,
        ...     "learning_rate": 0.01,
        ...     "prune": False,
        ...     "precision": ("int8",),
        ...     "calibration_samples": 50,
        ...     "export.max_accuracy_drop": 5,
        ... }
        >>> out = tempfile.mkdtemp()
        >>> grid = parse_grid(["hidden=8,16"])
        >>> points = expand_grid(grid, base, out, salt=point_salt(1))
        >>> sweep = run_sweep(points, SweepConfig(out, jobs=2, bench=False), grid)
        >>> [(row.label, row.precision, row.error) for row in sweep.rows]
        [('hidden=8', 'int8', None), ('hidden=16', 'int8', None)]
        >>> bool(sweep.frontier)
        True
    """
    say = progress or (lambda _msg: None)
    started = time.time()
    out = ensure_writable_dir(config.output_dir)
    with lock_output_dir(out, wait=config.wait, on_wait=say):
        records: dict[str, dict[str, Any]] = {}
        todo = []
        for p in points:
            done = finished_record(p)
            if done is not None:
                records[p.id] = done | {"resumed": True}
            else:
                todo.append(p)
        if records:
            say(f"{len(records)} of {len(points)} point(s) already done in {out}: not rerun")
        engine = _run_points(todo, config, model_path, unsafe, records, len(points), say)
        rows = [r for p in points for r in rows_of_point(records[p.id], p.label)]
        folders = {p.id: Path(p.config.output_dir) for p in points}
        try:
            bench = _measure_latency(rows, folders, say) if config.bench else None
        except KeyboardInterrupt:
            say(
                f"stopped while measuring latency: all {len(points)} point(s) finished and "
                f"kept in {out}; run the same command again to measure and report them"
            )
            raise
        objectives = mark_frontier(rows)
        from edgekit.device.bench import machine_info

        return SweepResult(
            rows=rows,
            points=[records[p.id] for p in points],
            grid={k: [format_value(v) for v in vs] for k, vs in (grid or {}).items()},
            engine=engine | {"jobs": config.jobs, "threads_per_point": config.threads_per_point},
            machine=machine_info(),
            output_dir=str(out),
            started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            duration_s=time.time() - started,
            bench=bench,
            objectives=objectives,
        )


def _run_points(
    todo: list[SweepPoint],
    config: SweepConfig,
    model_path: str | os.PathLike[str] | None,
    unsafe: bool,
    records: dict[str, dict[str, Any]],
    total: int,
    say: Progress,
) -> dict[str, Any]:
    from edgekit.sweep.engines import run_local, run_ray

    model_bytes = Path(model_path).read_bytes() if model_path is not None else None
    jobs = [
        PointJob(
            p,
            config.threads_per_point,
            model_bytes,
            str(model_path) if model_path is not None else None,
            unsafe,
        )
        for p in todo
    ]
    name = "ray" if config.ray else "local"

    def on_result(job: PointJob, outcome: dict[str, Any]) -> None:
        with deferred_signals():  # a Ctrl-C now stops the sweep once the point is written
            record = write_point(job.point, outcome, name)
            records[job.point.id] = record
        n = len(records)
        took = f"{record['seconds']:.1f} s" if record["seconds"] is not None else "-"
        what = "ok" if record["status"] == "ok" else f"FAILED: {record['error']}"
        say(f"[{n}/{total}] {job.point.id} {job.point.label}: {what} ({took})")

    if not jobs:
        return {"name": name, "ran": 0}
    where = (
        ("Ray at " + config.ray_address if config.ray_address else "a local Ray")
        if config.ray
        else f"{config.jobs} local worker process(es)"
    )
    say(f"running {len(jobs)} point(s) on {where}")
    try:
        if config.ray:
            cpus = config.jobs * config.threads_per_point
            info = run_ray(jobs, config.ray_address, cpus, config.threads_per_point, on_result)
        else:
            info = run_local(jobs, config.jobs, on_result)
    except KeyboardInterrupt:
        left = total - len(records)
        say(
            f"stopped: {len(records)} of {total} point(s) finished and kept in "
            f"{config.output_dir}; run the same command again to run the other {left}"
        )
        raise
    return info | {"ran": len(jobs)}


def _measure_latency(
    rows: list[SweepRow], folders: dict[str, Path], say: Progress
) -> dict[str, Any] | None:
    """p50/p90 of every file (one thread, batch 1), all files interleaved in one bench run."""
    from edgekit.device.bench import BenchConfig, run_bench

    ok = [r for r in rows if r.ok and r.file is not None]
    if not ok:
        return None
    paths = {str(folders[r.point] / r.file): r for r in ok if r.file is not None}
    bench_config = BenchConfig(
        threads=(BENCH_THREADS,),
        min_runs=BENCH_MIN_RUNS,
        min_time_s=BENCH_MIN_TIME_S,
        rounds=BENCH_ROUNDS,
        data=None,
    )
    say(f"measuring p50 latency of {len(paths)} file(s), {BENCH_THREADS} thread, interleaved")
    result = run_bench(list(paths), bench_config)
    for b in result.rows:
        row = paths.get(b.path)
        if row is None:
            continue
        if b.ok and b.latency is not None:
            row.p50_us, row.p90_us = b.latency.p50_us, b.latency.p90_us
        else:
            row.status, row.error = "error", f"{row.file} failed in bench: {b.error}"
    return {
        "config": bench_config.to_dict(),
        "runtime": result.machine.get("runtime"),
        "noisy": result.rounds.get("noisy"),
        "max_round_spread": result.rounds.get("max_round_spread"),
        "duration_s": round(result.duration_s, 3),
    }
