"""The model process: loads and runs one model for `edgekit bench` and `edgekit verify`.

Each model runs in its own process so a file that crashes the runtime (a segfault in native
code) or hangs costs one error row, not the whole run. The parent talks to the child with one
JSON object per line: a request on the child's stdin, the answer on its stdout. The child keeps
its model loaded between requests, so the interleaved rounds of `bench` pay no start-up.

Requests (`cmd`): `load`, `round`, `memory`, `evaluate`, `exit`; see `_Server`.
Answers: `{"ok": true, ...}` or `{"ok": false, "error": "one line"}`.

This module is imported by the parent for `ChildProcess` (the client side) and run with
`python -m edgekit.device.worker` as the child (the server side). Neither side imports
TensorFlow, except a child asked to load a `.keras` model (through `edgekit.workstation._keras`) or
to use
`runtime="tf"`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

# Fault injection for the isolation tests: a child whose model path contains this value
# kills itself with SIGSEGV (`crash`) or never answers (`hang`) when asked to load it.
TEST_FAULT_ENV = "_EDGEKIT_TEST_FAULT"  # "crash:<substring>" or "hang:<substring>"
STDERR_TAIL_CHARS = 600


class ChildError(Exception):
    """The child crashed, timed out, or answered with an error."""


# ---- parent side ---------------------------------------------------------------------------


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "did not exit"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"crashed with {name}"
    return f"exited with status {returncode}"


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child must import this very edgekit, installed or not.
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ChildProcess:
    """A running `python -m edgekit.device.worker`, answering one request at a time."""

    def __init__(self) -> None:
        # A file, not a pipe: a chatty child can never block on a full pipe nobody reads.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "edgekit.device.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_child_env(),
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.dead: str | None = None  # why the child is gone, once it is

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        lines = [
            ln.strip()
            for ln in text.strip().splitlines()
            if ln.strip() and not ln.startswith(("INFO:", "WARNING: All log messages"))
        ]
        return " | ".join(lines)[-STDERR_TAIL_CHARS:]

    def _fail(self, why: str) -> ChildError:
        self.kill()
        tail = self._stderr_tail()
        self.dead = why + (f" (stderr: {tail})" if tail else "")
        return ChildError(self.dead)

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and wait up to timeout_s for its answer.

        Raises:
            ChildError: the child answered with an error, crashed or timed out.
        """
        if self.dead:
            raise ChildError(self.dead)
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child is gone; its exit status is read below
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise self._fail(f"timed out after {timeout_s:g} s") from None
        if line is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            raise self._fail(f"the model's process {_describe_exit(self._proc.poll())}")
        try:
            answer = json.loads(line)
        except json.JSONDecodeError:
            raise self._fail(f"the model's process wrote garbage: {line[:200]!r}") from None
        if not answer.get("ok"):
            raise ChildError(str(answer.get("error", "unknown error")))
        return dict(answer)

    def kill(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)

    def close(self) -> None:
        """Ask the child to exit; kill it if it does not within a few seconds."""
        if self._proc.poll() is None and not self.dead:
            with contextlib.suppress(OSError, ValueError):
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self._proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        self.kill()
        for stream in (self._proc.stdin, self._proc.stdout, self._stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()


# ---- child side ----------------------------------------------------------------------------


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_bytes() -> int | None:
    kb = _proc_status_kb("VmRSS")
    return kb * 1024 if kb is not None else None


def _peak_rss_bytes() -> int | None:
    kb = _proc_status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS


def _time_loop(invoke: Callable[[], object], min_runs: int, min_ns: int) -> list[int]:
    """Call invoke() until both min_runs calls and min_ns of invoke time; return each call's ns.

    Only invoke() is timed: the input was set once before, nothing else happens in between.
    """
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    total = 0
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        while len(samples) < min_runs or total < min_ns:
            t0 = clock()
            invoke()
            t1 = clock()
            append(t1 - t0)
            total += t1 - t0
    finally:
        if gc_was_on:
            gc.enable()
    return samples


def input_sample(path: str | None, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 batch-1 input: the given sample if it fits `shape`, else a fixed random one."""
    import numpy as np

    if path:
        x = np.load(path)
        if x.size == int(np.prod(shape)):
            return x.astype(np.float32).reshape(shape)
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def _fault(path: str) -> None:
    fault = os.environ.get(TEST_FAULT_ENV, "")
    kind, _, needle = fault.partition(":")
    if needle and needle in path:
        if kind == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif kind == "hang":
            time.sleep(3600)


class TfliteModel:
    @staticmethod
    def prepare(request: dict[str, Any]) -> None:
        """Import the runtime, so its own memory is not counted as the model's, and refuse a
        file whose tensors the runtime would spend minutes allocating (a damaged shape)."""
        from edgekit.device.modelfile import check_tensor_sizes
        from edgekit.device.runtime import get_runtime

        get_runtime(str(request.get("runtime", "auto")))
        path = Path(str(request["path"]))
        with contextlib.suppress(OSError):  # a file that cannot be read: the runtime says so
            check_tensor_sizes(path.read_bytes(), str(path))

    def __init__(self, request: dict[str, Any]) -> None:
        from edgekit.device.runtime import get_runtime, input_details, load_interpreter, quantize

        self.path = str(request["path"])
        self.runtime = get_runtime(str(request.get("runtime", "auto")))  # imported by prepare()
        self.threads = int(request.get("threads", 1))
        self.xnnpack = bool(request.get("xnnpack", True))
        t0 = time.perf_counter_ns()
        self.interpreter = load_interpreter(
            self.path, runtime=self.runtime, num_threads=self.threads, xnnpack=self.xnnpack
        )
        self.load_ns = time.perf_counter_ns() - t0
        self.inputs = input_details(self.interpreter)
        for i, info in enumerate(self.inputs):
            x = input_sample(request.get("input") if i == 0 else None, info.shape)
            self.interpreter.set_tensor(info.index, quantize(x, info))
        # The interpreter's own bound method: the timed loop adds no call of ours around it.
        self.invoke: Callable[[], None] = self.interpreter.invoke

    def info(self) -> dict[str, Any]:
        from edgekit.device.runtime import output_details

        return {
            "runtime": {"name": self.runtime.name, "version": self.runtime.version},
            "sparse": self.sparse_path(),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in output_details(self.interpreter)],
        }

    def sparse_path(self) -> dict[str, Any] | None:
        """Whether the file's sparse weights run a sparse kernel here (None: no sparse
        weights, or the file cannot be read again)."""
        from edgekit.core.errors import ModelFileError
        from edgekit.device.opcheck import sparse_path
        from edgekit.device.runtime import undelegated_ops

        try:
            data = Path(self.path).read_bytes()
            return sparse_path(data, undelegated_ops(self.interpreter))
        except (OSError, ModelFileError):
            return None

    def outputs_finite(self) -> bool:
        import numpy as np

        from edgekit.device.runtime import dequantize, output_details

        return all(
            bool(np.isfinite(dequantize(self.interpreter.get_tensor(t.index), t)).all())
            for t in output_details(self.interpreter)
        )

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        from edgekit.device.runtime import evaluate, load_interpreter

        # The very function export uses, with this row's runtime options (threads, XNNPACK),
        # on an interpreter of its own: the timed one keeps its batch-1 shape.
        interpreter = load_interpreter(
            self.path, runtime=self.runtime, num_threads=self.threads, xnnpack=self.xnnpack
        )
        result = evaluate(interpreter, x, y)
        return result.accuracy, result.outputs

    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs[0].shape[1:])

    def settings(self) -> dict[str, Any]:
        """The options the accuracy interpreter was made with (those of the timed one)."""
        return {"threads": self.threads, "xnnpack": self.xnnpack}


class ModelKind(Protocol):
    """A kind of model the worker loads (see MODEL_KINDS): made from a load request, then
    timed by `invoke` and evaluated on the bench's test data."""

    load_ns: int  # time the load took

    @staticmethod
    def prepare(request: dict[str, Any]) -> None:
        """Fail early (a missing runtime) and import what the model needs, before memory is
        measured."""

    def __init__(self, request: dict[str, Any]) -> None: ...

    def invoke(self) -> None: ...

    def info(self) -> dict[str, Any]: ...

    def outputs_finite(self) -> bool: ...

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]: ...

    def input_shape(self) -> tuple[int, ...]: ...

    def settings(self) -> dict[str, Any]: ...


# The kinds of model the worker loads, by registered name -> "module:class" of a ModelKind.
# The Keras baseline lives on the workstation side and is imported by this name only when a
# request asks for it, so the device side never imports TensorFlow on its own.
MODEL_KINDS = {
    "tflite": "edgekit.device.worker:TfliteModel",
    "keras": "edgekit.workstation.keras_baseline:KerasModel",
}


def model_kind(name: str) -> type[ModelKind]:
    """The class registered under `name` in MODEL_KINDS (imported on first use)."""
    import importlib

    try:
        module, _, cls = MODEL_KINDS[name].partition(":")
    except KeyError:
        raise ValueError(
            f"unknown model kind {name!r}: expected one of {', '.join(MODEL_KINDS)}"
        ) from None
    return getattr(importlib.import_module(module), cls)


class _Server:
    """Answers requests for one model until `exit` or end of input."""

    def __init__(self) -> None:
        self.model: ModelKind | None = None
        self.rss_before: int | None = None
        self.peak_reset = False

    def load(self, req: dict[str, Any]) -> dict[str, Any]:
        from edgekit.core.errors import ModelFileError

        path = str(req.get("path", ""))
        _fault(path)
        kind = model_kind(str(req.get("kind") or "tflite"))
        kind.prepare(req)
        gc.collect()
        self.rss_before = _rss_bytes()
        self.peak_reset = _reset_peak_rss()
        try:
            model = kind(req)
            t0 = time.perf_counter_ns()
            try:
                model.invoke()
            except (RuntimeError, ValueError) as e:  # the runtime's words for a file it
                if isinstance(e, ModelFileError):  # loads but cannot run
                    raise
                raise ModelFileError(
                    f"loads but one inference fails ({_error_line(e)}): re-export or re-copy it"
                ) from None
            first_ns = time.perf_counter_ns() - t0
            try:
                answer = {
                    "load_ns": model.load_ns,
                    "first_inference_ns": first_ns,
                    "outputs_finite": model.outputs_finite(),
                    **model.info(),
                }
            except (RuntimeError, ValueError) as e:  # e.g. "Tensor data is null"
                if isinstance(e, ModelFileError):
                    raise
                raise ModelFileError(
                    f"runs but its outputs cannot be read ({_error_line(e)}): re-export or "
                    "re-copy it"
                ) from None
        except ModelFileError as e:  # name the file, once
            message = str(e)
            raise ModelFileError(message if path in message else f"{path}: {message}") from None
        self.model = model
        return answer

    def round(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.model is not None, "load first"
        invoke = self.model.invoke
        _time_loop(invoke, int(req["warmup_runs"]), int(float(req["warmup_time_s"]) * 1e9))
        samples = _time_loop(invoke, int(req["min_runs"]), int(float(req["min_time_s"]) * 1e9))
        return {"samples_ns": samples}

    def memory(self, req: dict[str, Any]) -> dict[str, Any]:
        peak = _peak_rss_bytes()
        added = None
        if peak is not None and self.rss_before is not None:
            added = max(peak - self.rss_before, 0)
        return {
            "rss_before_bytes": self.rss_before,
            "peak_rss_bytes": peak,
            "peak_added_bytes": added,
            "peak_reset": self.peak_reset,
        }

    def evaluate(self, req: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        assert self.model is not None, "load first"
        x = np.load(req["x"], mmap_mode="r")
        y = np.load(req["y"])
        shape = self.model.input_shape()
        if tuple(x.shape[1:]) != shape and int(np.prod(x.shape[1:])) == int(np.prod(shape)):
            x = x.reshape(len(x), *shape)  # e.g. (28, 28) images for a (28, 28, 1) input
        accuracy, outputs = self.model.evaluate(x, y)
        np.save(req["out"], np.asarray(outputs, np.float32).reshape(len(x), -1))
        return {"accuracy": accuracy, "samples": len(y), **self.model.settings()}


def _error_line(e: BaseException) -> str:
    from edgekit.core.errors import EdgekitError

    lines = str(e).strip().splitlines()
    first = lines[0] if lines else ""
    if isinstance(e, EdgekitError) and first:
        return first
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def main() -> int:
    """Serve requests from stdin; answers go to the original stdout, all else to stderr."""
    # Native code (the runtime's INFO lines) and print() must not corrupt the answers.
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    answers = os.fdopen(answer_fd, "w", buffering=1)
    server = _Server()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "exit":
                break
            handler = {
                "load": server.load,
                "round": server.round,
                "memory": server.memory,
                "evaluate": server.evaluate,
            }.get(cmd)
            if handler is None:
                raise ValueError(f"unknown command {cmd!r}")
            answer = {"ok": True, **handler(req)}
        except Exception as e:
            answer = {"ok": False, "error": _error_line(e)}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
