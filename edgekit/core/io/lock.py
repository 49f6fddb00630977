"""One run per output folder: an flock on the folder's lock file, released by the OS when the
holder's process ends (even by SIGKILL).

Two `edgekit export -o out` started together would otherwise interleave their files and
manifests. A second run into a held folder fails at once with a one-line error naming the
holder's pid, or waits for it (`--wait`). Also here: the sweep of the temporaries that runs
killed in the middle of a write left behind (remove_stale_temporaries).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgekit.core.errors import EdgekitError
from edgekit.core.io.console import Progress
from edgekit.core.io.files import TMP_PREFIX, ensure_writable_dir, writing_now
from edgekit.core.io.process import machine_tag, pid_alive

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


# The writer's pid and machine tag in a temporary's name (atomic_open), before mkstemp's suffix.
_TMP_WRITER = re.compile(r"\.(\d+)-([0-9a-f]{8})\.[^.]*$")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[str]:
    """Remove the temporaries that runs killed in the middle of a write left in `folder`.

    A temporary is removed only when its writer is gone: its name carries the writer's pid and
    machine (atomic_open), and that process no longer exists here (or it is this process and
    the file is not one it is writing: an earlier process had the same pid). A temporary whose
    writer cannot be checked (written on another machine, in another pid namespace, before a
    reboot, or by an edgekit that did not name its pid) is removed only while this thread holds
    the folder's lock (lock_output_dir), when no other edgekit run can be writing it.

    Returns:
        The names of the files removed.
    """
    folder = Path(folder)
    locked = holds_output_lock(folder)
    removed = []
    for p in sorted(folder.glob(TMP_PREFIX + "*")):
        if _writer_gone(p.name, locked):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p.name)
    return removed


def _writer_gone(name: str, locked: bool) -> bool:
    m = _TMP_WRITER.search(name)
    pid = int(m.group(1)) if m else 0
    if m is None or m.group(2) != machine_tag() or pid <= 0:
        return locked  # a writer this process cannot see
    if pid == os.getpid():
        return not writing_now(name)
    return not pid_alive(pid)
