"""Process helpers: which pids can be checked here, signals held over a commit, quiet logs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (a zombie, exited but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, another user's
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[:1] != ["Z"]
    except OSError:  # no /proc (not Linux), or it ended just now
        return True


_machine_tag: str | None = None


def machine_tag() -> str:
    """8 hex digits naming this machine, boot and pid namespace: where a pid means a process.

    Two machines sharing a folder, two containers with their own pids, or the same machine
    before and after a reboot get different tags, so a pid is only checked where it is valid.
    """
    global _machine_tag
    if _machine_tag is None:
        parts = [socket.gethostname()]
        for where in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
            with contextlib.suppress(OSError):
                parts.append(os.readlink(where) if where.endswith("/pid") else _read(where))
        _machine_tag = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]
    return _machine_tag


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read().strip()


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True) -> Iterator[None]:
    """Silence file descriptor 2 (C++ logs of TensorFlow and LiteRT) inside the block.

    Python exceptions still propagate; EDGEKIT_DEBUG=1 leaves stderr alone.
    """
    if not enabled or os.environ.get("EDGEKIT_DEBUG"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done, then deliver them.

    For short commit steps that must not stop half-way (replacing a run's files and its
    manifest): an interrupt during the block takes effect right after it. Works in the main
    thread only (the only one Python delivers signals to); elsewhere the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous: dict[int, Any] = {}
    for held in _DEFERRED_SIGNALS:
        if signal.getsignal(held) == signal.SIG_IGN:
            continue  # ignored (nohup, a background job): stays ignored
        previous[held] = signal.getsignal(held)
        signal.signal(held, lambda signum, _frame: pending.append(signum))
    try:
        yield
    finally:
        for restored, old_handler in previous.items():
            signal.signal(restored, old_handler)
        for signum in dict.fromkeys(pending):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                # Default action (end the process) once the block is complete.
                os.kill(os.getpid(), signum)
