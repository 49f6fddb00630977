"""Nothing half-written: outputs appear whole or not at all, even when a run is interrupted."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgekit.core.io.files import TMP_PREFIX, atomic_open, write_bytes_atomic
from edgekit.core.io.process import deferred_signals


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def assert_manifest_matches_its_files(folder: Path) -> None:
    from edgekit.device.manifest import file_problems, read_manifest

    manifest = read_manifest(folder)
    records = [*manifest.files, *([manifest.keras_model] if manifest.keras_model else [])]
    for record in records:
        assert file_problems(folder, record) == [], record.file


# ---- atomic_open -------------------------------------------------------------------------


def test_atomic_open_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_open(target) as f:
        f.write(b"new content")
        # Until the block ends, the old file is intact and the new bytes sit in a temporary.
        assert target.read_bytes() == b"old"
        (tmp,) = tmp_path.glob(TMP_PREFIX + "*")
        assert tmp.name.startswith(f"{TMP_PREFIX}out.bin.")
    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # an ordinary file, not 0600


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_an_error_mid_write_leaves_the_old_content_and_no_temporary(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "model.tflite"
    target.write_bytes(b"complete old file")
    with pytest.raises(type(error)), atomic_open(target) as f:
        f.write(b"half of the ne")
        raise error
    assert target.read_bytes() == b"complete old file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


def test_an_error_mid_write_of_a_new_file_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "new.json", "w") as f:
        f.write("{")
        raise RuntimeError("serializer failed")
    assert list(tmp_path.iterdir()) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- signals during the commit -------------------------------------------------------------


@pytest.fixture(autouse=True)
def ctrl_c_raises() -> Any:
    """Ctrl-C raises KeyboardInterrupt here, even when pytest runs as a background job.

    A shell without job control starts background jobs with SIGINT ignored, and Python then
    keeps it ignored; the tests below need the interactive behaviour.
    """
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def _default_signals() -> None:
    """In a child before exec: SIGINT back to the default, so Python installs its handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_deferred_signals_hold_ctrl_c_until_the_block_is_done(tmp_path: Path) -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), deferred_signals():
        os.kill(os.getpid(), signal.SIGINT)
        for i in range(3):  # bytecode runs on: without deferral the interrupt lands here
            write_bytes_atomic(tmp_path / f"f{i}", b"x")
            done.append(i)
    assert done == [0, 1, 2]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_signal_during_the_commit_takes_effect_after_it(
    pipeline_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while files are being replaced: the new run is committed whole, then it stops."""
    import edgekit.workstation.export.tflite as export_mod
    from edgekit.core.config import ExportConfig

    out = tmp_path / "out"
    shutil.copytree(Path(pipeline_run.export.output_dir), out)
    # What a SIGKILLed run leaves behind: swept by the next run, ignored until then.
    (out / f"{TMP_PREFIX}fashion_mnist_mlp_sp75_int8.tflite.x1y2z3").write_bytes(b"TFL3 partial")
    (out / f"{TMP_PREFIX}a1b2c3.keras").write_bytes(b"PK partial")
    real_write = export_mod.write_bytes_atomic
    sent = []

    def write_then_interrupt(path: Any, data: bytes) -> None:
        if not sent:  # the old manifest is gone, no new file written yet
            sent.append(path)
            os.kill(os.getpid(), signal.SIGINT)
        real_write(path, data)

    monkeypatch.setattr(export_mod, "write_bytes_atomic", write_then_interrupt)
    config = ExportConfig(precisions=("float32", "float16"), calibration_samples=100)
    with pytest.raises(KeyboardInterrupt):
        export_mod.export_tflite(
            pipeline_run.models["folded"], pipeline_run.dataset, config, out, "new"
        )
    assert sent
    assert sorted(p.name for p in out.iterdir()) == [
        "fashion_mnist_mlp_sp75_folded.keras",  # not part of the manifest: left alone
        "manifest.json",
        "new_float16.tflite",
        "new_float32.tflite",
    ]
    assert_manifest_matches_its_files(out)


# ---- a real export, interrupted ----------------------------------------------------------


# Re-export the fixture's own model under the same names, so each file can be compared.
def _export_args(artifacts_dir: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "edgekit.cli.main",
        "export",
        str(artifacts_dir / "fashion_mnist_mlp_sp75_folded.keras"),
        "--no-prune",
        "--name",
        "fashion_mnist_mlp_sp75",
        "--train-samples",
        "3000",
        "--test-samples",
        "1000",
        "--validation-size",
        "500",
        "--calibration-samples",
        "100",
        "--seed",
        "7",
        "-o",
        str(out),
    ]


@pytest.mark.parametrize(
    ("signum", "when", "status", "said"),
    [
        (signal.SIGTERM, "converting float16", 143, "terminated"),
        (signal.SIGINT, "verifying int8", 130, "interrupted"),
    ],
    ids=["sigterm-converting", "sigint-verifying"],
)
def test_an_interrupted_export_leaves_the_previous_run_whole(
    artifacts_dir: Path, tmp_path: Path, signum: int, when: str, status: int, said: str
) -> None:
    out = tmp_path / "out"
    shutil.copytree(artifacts_dir, out)
    before = digests(out)
    proc = subprocess.Popen(
        _export_args(artifacts_dir, out),
        preexec_fn=_default_signals,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith(when):
                proc.send_signal(signum)
                break
        rest = proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen and seen[-1].startswith(when), "".join(seen)
    assert proc.returncode == status, rest
    assert rest.strip().splitlines()[-1] == f"{said}: no partial output was left behind"
    assert "Traceback" not in rest
    after = digests(out)
    # Every file is the previous run's, whole; nothing new, nothing temporary.
    assert after == before
    assert_manifest_matches_its_files(out)


def test_stale_temporaries_of_a_killed_run_are_ignored_by_verify_and_bench(
    artifacts_dir: Path, tmp_path: Path
) -> None:
    from edgekit.cli.main import main
    from edgekit.device.bench import discover_models

    out = tmp_path / "out"
    shutil.copytree(artifacts_dir, out)
    partial = (out / "fashion_mnist_mlp_sp75_int8.tflite").read_bytes()[:5000]
    (out / f"{TMP_PREFIX}fashion_mnist_mlp_sp75_int8.tflite.k9x8y7").write_bytes(partial)
    (out / f"{TMP_PREFIX}q1w2e3.keras").write_bytes(b"PK\x03\x04")
    res = CliRunner().invoke(main, ["verify", str(out), "--no-run", "-q"])
    assert res.exit_code == 0, res.output
    assert TMP_PREFIX not in res.output
    assert all(TMP_PREFIX not in p.name for p in discover_models([out]))
