"""Runs that meet in one folder: one holds it (a lock the OS frees when it dies), the other is
told who (or waits), and only temporaries of writers that are gone are swept."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import edgekit
from edgekit.core.errors import EdgekitError
from edgekit.core.io.files import TMP_PREFIX, atomic_open
from edgekit.core.io.lock import (
    LOCK_NAME,
    holds_output_lock,
    lock_output_dir,
    remove_stale_temporaries,
)
from edgekit.core.io.process import machine_tag

ROOT = Path(edgekit.__file__).parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    "COLUMNS": "200",
}
STARTED = r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d"

# A process that holds a folder's lock, or a temporary file of its own, until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from edgekit.core.io.files import atomic_open
from edgekit.core.io.lock import lock_output_dir
mode, folder = sys.argv[1], Path(sys.argv[2])
if mode == "lock":
    with lock_output_dir(folder):
        print("ready", flush=True)
        sys.stdin.read()
else:  # a report being written into the folder by a writer that takes no lock
    with atomic_open(folder / "bench.md", "w") as f:
        f.write("# half a report")
        f.flush()
        print("ready", flush=True)
        sys.stdin.read()
"""


@contextmanager
def holder(mode: str, folder: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding `folder` ("lock") or a temporary in it ("tmp") until the end."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, mode, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
        proc.wait(timeout=30)


def in_use(folder: Path, pid: int) -> str:
    return (
        rf"{re.escape(str(folder))} is in use by another edgekit run \(pid {pid}, {STARTED}\): "
        r"wait for it, pass --wait, or choose another folder with -o"
    )


# ---- the lock (no TensorFlow: fast) --------------------------------------------------------


def test_a_second_run_into_a_held_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with holder("lock", tmp_path) as other:
        held = json.loads((tmp_path / LOCK_NAME).read_text())
        assert held["pid"] == other.pid and "lock" in held["command"] and held["host"]
        with pytest.raises(EdgekitError) as e, lock_output_dir(tmp_path):
            pytest.fail("entered a folder another run holds")
        assert re.fullmatch(in_use(tmp_path, other.pid), str(e.value)), str(e.value)
    with lock_output_dir(tmp_path):  # free once the holder is done
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()  # nothing left behind in the output folder


def test_wait_takes_the_folder_once_the_holder_finishes(tmp_path: Path) -> None:
    told: list[str] = []
    ended = threading.Event()
    with holder("lock", tmp_path) as other:
        stdin = other.stdin
        assert stdin is not None

        def end_the_other_run(message: str) -> None:
            told.append(message)
            ended.set()
            stdin.close()

        # The other run ends once this one waits (not after a fixed time a busy CPU can beat).
        with lock_output_dir(tmp_path, wait=True, on_wait=end_the_other_run):
            assert ended.is_set()  # in only after the holder let go
            assert holds_output_lock(tmp_path)
    assert len(told) == 1
    assert re.fullmatch(
        in_use(tmp_path, other.pid).split(": wait")[0] + ": waiting for it", told[0]
    ), told


def test_wait_gives_up_after_the_timeout(tmp_path: Path) -> None:
    with holder("lock", tmp_path) as other:
        t0 = time.monotonic()
        with pytest.raises(EdgekitError) as e, lock_output_dir(tmp_path, wait=True, timeout_s=0.5):
            pytest.fail("entered a folder another run holds")
        assert time.monotonic() - t0 >= 0.5
        assert other.poll() is None
    assert re.fullmatch(
        rf"{re.escape(str(tmp_path))} is still in use by another edgekit run \(pid {other.pid}, "
        rf"{STARTED}\) after waiting 0.5 s: wait for it, or choose another folder with -o",
        str(e.value),
    ), str(e.value)


def test_a_killed_holder_leaves_the_folder_free(tmp_path: Path) -> None:
    with holder("lock", tmp_path) as other:
        other.send_signal(signal.SIGKILL)
        other.wait(10)
    # SIGKILL left the lock file (naming the dead run) but the OS let go of the lock.
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == other.pid
    with lock_output_dir(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_the_lock_is_reentrant_in_its_thread_and_exclusive_across_threads(
    tmp_path: Path,
) -> None:
    seen: list[object] = []

    def other_thread() -> None:
        seen.append(holds_output_lock(tmp_path))
        try:
            with lock_output_dir(tmp_path):
                seen.append("entered")
        except EdgekitError as e:
            seen.append(str(e))

    with lock_output_dir(tmp_path):
        with lock_output_dir(tmp_path):  # export_tflite inside run_pipeline: no deadlock
            assert holds_output_lock(tmp_path)
        assert holds_output_lock(tmp_path)  # the inner exit did not let go
        t = threading.Thread(target=other_thread)
        t.start()
        t.join(10)
        assert seen[0] is False
        assert re.fullmatch(in_use(tmp_path, os.getpid()), str(seen[1])), seen
    assert not holds_output_lock(tmp_path)
    seen.clear()
    other_thread()
    assert seen == [False, "entered"]


# ---- temporaries ---------------------------------------------------------------------------


def test_temporaries_are_swept_only_once_their_writer_is_dead(tmp_path: Path) -> None:
    with holder("tmp", tmp_path) as writer:
        (tmp,) = tmp_path.glob(TMP_PREFIX + "*")
        assert tmp.name.startswith(f"{TMP_PREFIX}bench.md.{writer.pid}-{machine_tag()}.")
        with lock_output_dir(tmp_path):  # holding the lock is no licence to sweep a live writer
            assert remove_stale_temporaries(tmp_path) == []
        assert tmp.exists()
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        assert remove_stale_temporaries(tmp_path) == [tmp.name]  # no lock needed: it is dead
    assert not tmp.exists()


def test_temporaries_whose_writer_cannot_be_checked_are_swept_only_under_the_lock(
    tmp_path: Path,
) -> None:
    other_machine = "0" * 8 if machine_tag() != "0" * 8 else "1" * 8
    names = [
        f"{TMP_PREFIX}m_int8.tflite.x1y2z3ab",  # an edgekit that did not name its pid
        f"{TMP_PREFIX}m_int8.tflite.{os.getpid()}-{other_machine}.k9x8y7ab",  # another machine
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"TFL3 partial")
    assert remove_stale_temporaries(tmp_path) == []
    with lock_output_dir(tmp_path):
        assert remove_stale_temporaries(tmp_path) == sorted(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_this_process_keeps_its_own_temporary_and_sweeps_one_of_its_pid_it_is_not_writing(
    tmp_path: Path,
) -> None:
    # Same pid and machine, but not in flight here: an earlier process had this pid (containers).
    earlier = tmp_path / f"{TMP_PREFIX}m.tflite.{os.getpid()}-{machine_tag()}.q1w2e3ab"
    earlier.write_bytes(b"TFL3 partial")
    with atomic_open(tmp_path / "m.tflite") as f:
        f.write(b"new")
        (mine,) = set(tmp_path.glob(TMP_PREFIX + "*")) - {earlier}
        assert remove_stale_temporaries(tmp_path) == [earlier.name]
        assert mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_a_vanished_temporary_is_named_in_the_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(EdgekitError) as e, atomic_open(out / "m_int8.tflite") as f:
        f.write(b"TFL3")
        (tmp,) = out.glob(TMP_PREFIX + "*")
        tmp.unlink()  # what the sweep of an older, lock-less edgekit run did
    assert str(e.value) == (
        f"a temporary file of this run vanished from {out} before it became m_int8.tflite: "
        f"another program removed it ({tmp.name}); keep other programs (clean-up jobs, older "
        f"edgekit versions) out of {out} while edgekit writes into it, then run again"
    )
    assert list(out.iterdir()) == []


def test_a_vanished_output_folder_is_named_in_the_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(EdgekitError) as e, atomic_open(out / "manifest.json", "w") as f:
        f.write("{}")
        shutil.rmtree(out)
    assert str(e.value) == (
        f"the output folder {out} vanished while this run wrote manifest.json into it: another "
        "program removed it; keep other programs out of the folder while edgekit writes into "
        "it, then run again"
    )


# ---- two real `edgekit export` runs into one folder ----------------------------------------

TINY = [
    "--train-samples",
    "600",
    "--test-samples",
    "200",
    "--validation-size",
    "100",
    "--epochs",
    "1",
    "--prune-epochs",
    "1",
    "--precision",
    "float32",
]


def start_export(cwd: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgekit.cli.main", "export", "-o", "out", *TINY, *extra],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def wait_until_it_holds(out: Path, proc: subprocess.Popen[str]) -> None:
    """Wait until `proc` holds `out` (its pid in the lock file)."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        try:
            if json.loads((out / LOCK_NAME).read_text())["pid"] == proc.pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    pytest.fail(f"pid {proc.pid} never took {out}")


@pytest.mark.heavy
@pytest.mark.slow
def test_two_exports_into_one_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # A run killed while it holds the folder: the OS frees the lock, its temporary stays.
    killed = start_export(tmp_path)
    wait_until_it_holds(out, killed)
    killed.kill()
    killed.communicate()
    dead_tmp = out / f"{TMP_PREFIX}m_float32.tflite.{killed.pid}-{machine_tag()}.k9x8y7ab"
    dead_tmp.write_bytes(b"TFL3 partial")

    with holder("tmp", out):  # meanwhile another program writes a report into the folder
        (live_tmp,) = set(out.glob(TMP_PREFIX + "*")) - {dead_tmp}
        first = start_export(tmp_path)
        wait_until_it_holds(out, first)  # the killed run's lock did not stop it
        second = subprocess.run(
            [sys.executable, "-m", "edgekit.cli.main", "export", "-o", "out", *TINY],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
        assert first.poll() is None  # refused while the first still runs: before any training
        assert second.returncode == 1
        assert re.fullmatch("Error: " + in_use(Path("out"), first.pid) + "\n", second.stderr), (
            second.stderr
        )
        waiting = start_export(tmp_path, "--wait")
        _, first_err = first.communicate(timeout=300)
        assert first.returncode == 0, first_err
        assert waiting.poll() is None  # it trains only now, after the first one
        _, waiting_err = waiting.communicate(timeout=300)
        assert waiting.returncode == 0, waiting_err
        assert waiting_err.startswith(f"out is in use by another edgekit run (pid {first.pid}, ")
        assert waiting_err.splitlines()[0].endswith("): waiting for it")
        # The dead run's temporary is swept, the live writer's is not.
        assert not dead_tmp.exists()
        assert live_tmp.exists()
        assert sorted(p.name for p in out.iterdir()) == sorted(
            [
                "fashion_mnist_mlp_sp80_float32.tflite",
                "fashion_mnist_mlp_sp80_folded.keras",
                "manifest.json",
                live_tmp.name,
            ]
        )  # no lock file left, nothing of the killed run
    verify = subprocess.run(
        [sys.executable, "-m", "edgekit.cli.main", "verify", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "all 2 file(s) match the manifest" in verify.stdout
