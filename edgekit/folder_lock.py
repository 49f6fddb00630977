"""One run per output folder: an flock on the folder's lock file, released by the OS when the
holder's process ends (even by SIGKILL).

Two `edgekit export -o out` started together would otherwise interleave their files and
manifests. A second run into a held folder fails at once with a one-line error naming the
holder's pid, or waits for it (`--wait`). Also here: which pids of a temporary's writer can be
checked on this machine (machine_tag, pid_alive), used by edgekit.files to sweep only the
temporaries of runs that died.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EdgekitError

try:
    import fcntl
except ImportError:  # Windows: no flock, runs there are not locked
    fcntl = None  # type: ignore[assignment]

# The lock file of an output folder; it exists while a run holds the folder.
LOCK_NAME = ".edgekit.lock"
# How often a run waiting for a folder (--wait) tries the lock again.
LOCK_POLL_S = 0.2
# How long a run refused the lock waits for the holder to write its name into the lock file.
HOLDER_READ_S = 1.0

Progress = Callable[[str], None]


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


@dataclass
class _HeldLock:
    fd: int
    pid: int
    thread: int


# Folders (device, inode) this process holds the lock of, for re-entry from the same thread.
_held: dict[tuple[int, int], _HeldLock] = {}
_held_guard = threading.Lock()


def _folder_key(folder: Path) -> tuple[int, int]:
    st = os.stat(folder)
    return st.st_dev, st.st_ino


def _held_here(key: tuple[int, int]) -> _HeldLock | None:
    """The lock of folder `key` if this thread of this process holds it."""
    with _held_guard:
        held = _held.get(key)
    if held and held.pid == os.getpid() and held.thread == threading.get_ident():
        return held
    return None


def holds_output_lock(folder: str | os.PathLike[str]) -> bool:
    """Whether this thread holds the lock of `folder` (lock_output_dir)."""
    try:
        return _held_here(_folder_key(Path(folder))) is not None
    except OSError:
        return False


@contextlib.contextmanager
def lock_output_dir(
    folder: str | os.PathLike[str],
    wait: bool = False,
    timeout_s: float | None = None,
    on_wait: Progress | None = None,
) -> Iterator[Path]:
    """Hold `folder` for one run: no other edgekit run writes into it until the block ends.

    The lock is an flock on `folder/.edgekit.lock`, which names the holder (pid, host, start
    time, command line); the operating system releases it when the holder's process ends, even
    by SIGKILL, so a killed run never leaves the folder locked. Re-entrant in the thread that
    holds it (run_pipeline holds it, export_tflite takes it again). On a file system without
    locks (or without fcntl) the block runs unlocked.

    Args:
        folder: the output folder, created if needed.
        wait: when another run holds the folder, wait for it instead of failing.
        timeout_s: with `wait`, give up after this many seconds (None: as long as it takes).
        on_wait: told once, in one line, that the run is waiting and for whom.

    Returns:
        The folder, as a Path (the value of the `with`).

    Raises:
        EdgekitError: another run holds the folder (naming its pid) and `wait` is off, or it
            still holds it after `timeout_s`.
    """
    from edgekit.files import ensure_writable_dir

    folder = ensure_writable_dir(folder)
    key = _folder_key(folder)
    if _held_here(key) is not None:  # taken again inside the run holding it: its own
        yield folder
        return
    fd = _acquire(folder, wait, timeout_s, on_wait)
    if fd is None:
        yield folder
        return
    with _held_guard:
        _held[key] = _HeldLock(fd, os.getpid(), threading.get_ident())
    try:
        yield folder
    finally:
        with _held_guard:
            _held.pop(key, None)
        # Removed while still locked: a run that opened this file meanwhile sees it is no
        # longer the folder's lock file and takes a new one (_acquire).
        if _same_file(fd, folder / LOCK_NAME):
            with contextlib.suppress(OSError):
                os.unlink(folder / LOCK_NAME)
        os.close(fd)


def _acquire(
    folder: Path, wait: bool, timeout_s: float | None, on_wait: Progress | None
) -> int | None:
    """Lock `folder`'s lock file; its descriptor, or None where file locks do not work."""
    if fcntl is None:
        return None
    path = folder / LOCK_NAME
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    told = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise EdgekitError(
                f"cannot create the lock file {path}: {e.strerror or e}; pass a writable --output"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            if not wait:
                raise EdgekitError(
                    f"{folder} is in use by another edgekit run ({holder}): wait for it, pass "
                    "--wait, or choose another folder with -o"
                ) from None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise EdgekitError(
                    f"{folder} is still in use by another edgekit run ({holder}) after waiting "
                    f"{timeout_s:g} s: wait for it, or choose another folder with -o"
                ) from None
            if on_wait is not None and not told:
                on_wait(f"{folder} is in use by another edgekit run ({holder}): waiting for it")
                told = True
            time.sleep(LOCK_POLL_S if left is None else min(LOCK_POLL_S, left))
            continue
        except OSError:  # ENOLCK, EOPNOTSUPP: a file system without locks
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            _write_holder(fd)
            return fd
        os.close(fd)  # its holder removed it as it let go: lock the folder's new lock file


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` is still the file open as `fd` (not removed or replaced meanwhile)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _write_holder(fd: int) -> None:
    """Name this run in the lock file it holds: pid, host, start time, command line."""
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "machine": machine_tag(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(getattr(sys, "orig_argv", sys.argv)),
    }
    with contextlib.suppress(OSError):  # the name is for others' messages: the lock holds anyway
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def _holder(fd: int) -> str:
    """Who holds the lock, from its lock file: "pid 1234, started 2025-01-01 12:00:00"."""
    end = time.monotonic() + HOLDER_READ_S
    while True:
        try:
            info = json.loads(os.pread(fd, 65536, 0))
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            info, pid = {}, 0
        # Empty, or a killed holder's name: the new holder is about to write its own.
        here = info.get("machine") == machine_tag()
        if (pid > 0 and not (here and not pid_alive(pid))) or time.monotonic() >= end:
            break
        time.sleep(0.05)
    if pid <= 0:
        return "pid unknown"
    where = "" if here else f" on {info.get('host', 'another machine')}"
    started = f", started {info['started']}" if info.get("started") else ""
    return f"pid {pid}{where}{started}"
