"""Atomic file output: write to a temporary name in the same folder, flush, fsync, rename.

The output-folder lock (one run per folder) and the sweep of temporaries left by killed runs
live in edgekit.core.io.lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from edgekit.core.errors import EdgekitError
from edgekit.core.io.process import machine_tag

TMP_PREFIX = ".edgekit-tmp-"
# Names of the temporaries this process is writing now (atomic_open), in any thread.
_in_flight: set[str] = set()
_in_flight_guard = threading.Lock()


def ensure_writable_dir(folder: str | os.PathLike[str]) -> Path:
    """Create `folder` if needed and check that files can be written in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgekitError(
            f"cannot create output folder {folder}: {e.strerror or e}; pass a writable --output"
        ) from None
    if not folder.is_dir():
        raise EdgekitError(f"output path {folder} is not a folder: pass a folder to --output")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EdgekitError(f"output folder {folder} is not writable: pass a writable --output")
    return folder


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to `path`; on success it replaces `path` in one rename.

    On any exception (KeyboardInterrupt included) the temporary file is removed and `path`
    keeps its previous content.
    """
    path = Path(path)
    # The writer's pid and machine in the name: remove_stale_temporaries can tell a temporary
    # being written from one a killed run left (the name cut to stay within 255 bytes).
    prefix = f"{TMP_PREFIX}{path.name[:200]}.{os.getpid()}-{machine_tag()}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    with _in_flight_guard:
        _in_flight.add(Path(tmp).name)
    try:
        text = "b" not in mode  # text outputs (JSON, Markdown, CSV) are UTF-8 on any locale
        with os.fdopen(fd, mode, encoding="utf-8" if text else None) as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600: an ordinary file
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except FileNotFoundError:
            if os.path.exists(tmp):
                raise
            raise _vanished(path, Path(tmp)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        with _in_flight_guard:
            _in_flight.discard(Path(tmp).name)
    _fsync_dir(path.parent)


def _vanished(path: Path, tmp: Path) -> EdgekitError:
    """The error for a temporary file removed by someone else before its rename."""
    folder = path.parent
    if not folder.is_dir():
        return EdgekitError(
            f"the output folder {folder} vanished while this run wrote {path.name} into it: "
            "another program removed it; keep other programs out of the folder while edgekit "
            "writes into it, then run again"
        )
    return EdgekitError(
        f"a temporary file of this run vanished from {folder} before it became {path.name}: "
        f"another program removed it ({tmp.name}); keep other programs (clean-up jobs, older "
        f"edgekit versions) out of {folder} while edgekit writes into it, then run again"
    )


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: not every file system lets a folder be fsynced)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_umask_fallback: int | None = None


def _umask() -> int:
    """The process umask, read without changing it (Linux >= 4.7 lists it in /proc).

    Setting the umask to read it back would change it for every thread for an instant (a
    file another thread creates then would get the wrong mode); where /proc does not say,
    it is read that way once and remembered.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    global _umask_fallback
    if _umask_fallback is None:  # not Linux: set it to read it, once
        _umask_fallback = os.umask(0o022)
        os.umask(_umask_fallback)
    return _umask_fallback


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# A file name stem: letters, digits, '-', '_' and '.', not starting with '.' (no hidden files,
# no '..', no folder separators), so every output stays inside the chosen output folder.
_STEM = re.compile(r"[\w-][\w.-]{0,199}")


def check_file_stem(name: str, option: str = "--name") -> str:
    """Return `name` if it is a plain file name stem, else raise EdgekitError.

    Outputs are written as `<output folder>/<stem>_<precision>.tflite`: a stem holding `/`,
    `..` or a leading `.` could write outside the folder or hide the file.
    """
    if not _STEM.fullmatch(name):
        raise EdgekitError(
            f"{option} {name!r} is not a plain file name: expected letters, digits, '-', '_' "
            "or '.' (not first), at most 200 characters; pass e.g. my_model and choose the "
            "folder with --output"
        )
    return name


def writing_now(name: str) -> bool:
    """Whether this process is writing the temporary `name` now (atomic_open, any thread)."""
    with _in_flight_guard:
        return name in _in_flight
