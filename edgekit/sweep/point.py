"""One sweep point, run in a fresh process (a local worker or a Ray task): the whole pipeline
into a private temporary folder, its files handed back as bytes.

Handing the bytes back (rather than writing into the sweep folder) lets a point run on another
machine of a Ray cluster without a shared file system; the driver writes them (sweep.run).
TensorFlow is imported only inside `execute_point`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.sweep.grid import SweepPoint

# Names of the files a point writes besides the export's own.
POINT_RESULT_NAME = "point.json"
POINT_LOG_NAME = "point.log"
MANIFEST_NAME = "manifest.json"  # edgekit.device.manifest.MANIFEST_NAME


@dataclass(frozen=True)
class PointJob:
    """What a worker needs to run one point.

    Args:
        point: the point (its config's output_dir is the folder the files will land in).
        threads: TensorFlow's intra-op and inter-op thread counts, pinned for the point, so
            that the engine's own defaults cannot change the numbers.
        model_bytes / model_name: the user's .keras/.h5 model, carried as bytes so a worker on
            another machine needs no copy of it; None: the architecture is trained.
        unsafe: load that model with Keras safe mode off.
    """

    point: SweepPoint
    threads: int = 1
    model_bytes: bytes | None = field(default=None, repr=False)
    model_name: str | None = None  # the path the user gave (shown in the manifest)
    unsafe: bool = False


def execute_point(job: PointJob) -> dict[str, Any]:
    """Run one point; never raises for a failing point: its error comes back in the outcome.

    Returns:
        {"id", "status": "ok" | "error", "error", "seconds", "host", "pid", "log": [lines],
        "tf_threads", "summary": the PipelineResult's dict (or None), "left_out": [...],
        "files": {name: bytes}} -- files of the export folder (the .tflite files, the folded
        .keras model, manifest.json), also for a point whose requested file was left out.
    """
    started = time.perf_counter()
    log: list[str] = []
    outcome: dict[str, Any] = {
        "id": job.point.id,
        "status": "ok",
        "error": None,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "log": log,
        "summary": None,
        "left_out": [],
        "files": {},
    }
    try:
        with _terminate_as_exit(), tempfile.TemporaryDirectory(prefix="edgekit-point-") as tmp:
            _run(job, Path(tmp), log, outcome)
    except EdgekitError as e:
        outcome |= {"status": "error", "error": str(e)}
    except Exception as e:  # a bug or a library error: one line in the row, the trace in the log
        log.extend(traceback.format_exc().splitlines())
        first = (str(e).strip().splitlines() or [""])[0]
        outcome |= {"status": "error", "error": f"{type(e).__name__}: {first}".rstrip(": ")}
    outcome["seconds"] = round(time.perf_counter() - started, 3)
    if outcome["error"]:
        log.append(f"error: {outcome['error']}")
    return outcome


def _run(job: PointJob, tmp: Path, log: list[str], outcome: dict[str, Any]) -> None:
    import dataclasses

    outcome["tf_threads"] = pin_tensorflow_threads(job.threads)
    from edgekit.workstation.pipeline import run_pipeline

    out = tmp / "out"
    config = dataclasses.replace(job.point.config, output_dir=str(out))
    model_path = None
    if job.model_bytes is not None:
        model_path = tmp / Path(job.model_name or "model.keras").name
        model_path.write_bytes(job.model_bytes)
    result = run_pipeline(config, model_path=model_path, unsafe=job.unsafe, progress=log.append)
    # Paths as the user knows them, not the worker's temporary ones.
    moved = {str(out): job.point.config.output_dir}
    if model_path is not None:
        moved[str(model_path)] = job.model_name or model_path.name
    assert result.export is not None  # a point never runs as a --distributed worker
    left_out = [r.to_dict() for r in result.export.requested_left_out]
    if not job.point.strict_precisions:  # as `edgekit export` without --precision
        defaults = {f"_{p}.tflite" for p in ("float32", "float16", "int8")}
        left_out = [r for r in left_out if not any(r["file"].endswith(t) for t in defaults)]
    outcome["summary"] = _moved(result.to_dict(), moved)
    outcome["left_out"] = left_out
    outcome["files"] = _collect(out, moved)
    if left_out:
        outcome["status"] = "error"
        outcome["error"] = f"{len(left_out)} file(s) asked for were not written: " + "; ".join(
            f"{r['file']}: {r['reason']}" for r in left_out
        )


def _collect(out: Path, moved: dict[str, str]) -> dict[str, bytes]:
    """The files of the export folder; the manifest names the folder they will be in."""
    files: dict[str, bytes] = {}
    for p in sorted(out.iterdir()):
        if p.is_file() and not p.name.startswith("."):  # not the lock, not temporaries
            files[p.name] = p.read_bytes()
    if MANIFEST_NAME in files:
        manifest = _moved(json.loads(files[MANIFEST_NAME]), moved)
        # As edgekit.core.io.files.write_json_atomic writes it.
        files[MANIFEST_NAME] = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()
    return files


def _moved(obj: Any, moved: dict[str, str]) -> Any:
    """`obj` with every string naming a temporary path replaced by the path it stands for."""
    if isinstance(obj, str):
        return moved.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _moved(v, moved) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_moved(v, moved) for v in obj]
    return obj


def pin_tensorflow_threads(threads: int) -> dict[str, int]:
    """Fix TensorFlow's intra-op and inter-op thread pools before its first op runs.

    Returns:
        The thread counts TensorFlow reports afterwards: {"intra_op": n, "inter_op": n}.

    Raises:
        EdgekitError: TensorFlow already started its thread pools in this process.
    """
    from edgekit.workstation._keras import tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as e:
        raise EdgekitError(
            f"cannot pin TensorFlow to {threads} thread(s) ({e}): a sweep point must run in a "
            "fresh process"
        ) from None
    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit, so the point's temporary folder is removed when the sweep is
    stopped (the driver ends its workers with SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not allowed here (an embedding host)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def worker_init() -> None:
    """Local workers ignore Ctrl-C: the driver stops them (SIGTERM) and keeps what finished.
    They start with SIGINT blocked (see engines.run_local): ignored first, then unblocked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
