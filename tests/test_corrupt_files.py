"""Damaged .tflite files: truncated, bit-flipped, empty, or another kind of file altogether.

Hundreds of them go through the Python parser in-process (it must raise ModelFileError or
return a result: never another exception, never hang); a smaller sample goes through
`edgekit verify` and `edgekit bench`, which load files in child processes, so a file that
crashes or hangs the runtime costs one error, not the run.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import random
import signal
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_edgekit

from edgekit.core.errors import ModelFileError
from edgekit.device.modelfile import read_model_file

PRECISIONS = ("float32", "float16", "int8")
# A guard against hangs, far above the milliseconds a parse takes: not a speed claim.
HANG_GUARD_S = 60


def _png() -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def _zip(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model.tflite", payload)
    return buf.getvalue()


def damaged_corpus(originals: dict[str, bytes], seed: int = 0) -> list[tuple[str, str, bytes]]:
    """(name, kind, bytes): per original ~55 truncations and 150 bit flips, plus other files."""
    rng = random.Random(seed)
    out: list[tuple[str, str, bytes]] = []
    for precision, data in originals.items():
        n = len(data)
        cuts = sorted({1, 4, 7, 8, 9, 16, 64, 200, n // 2, n - 1, *rng.sample(range(1, n), 45)})
        out += [(f"{precision}_cut{c}", "truncated", data[:c]) for c in cuts]
        for i in range(150):
            b = bytearray(data)
            # Most flips in the first 4 KB, where the flatbuffer tables and offsets live.
            for _ in range(rng.choice((1, 1, 2, 4, 16))):
                pos = rng.randrange(min(n, 4096)) if rng.random() < 0.7 else rng.randrange(n)
                b[pos] ^= 1 << rng.randrange(8)
            out.append((f"{precision}_flip{i}", "flipped", bytes(b)))
        b = bytearray(data)
        b[8:16] = b"\xff" * 8  # the root table offset and more, pointing anywhere
        out.append((f"{precision}_root", "flipped", bytes(b)))
    f32 = originals["float32"]
    out += [
        ("empty", "other", b""),
        ("png", "other", _png()),
        ("zip_of_model", "other", _zip(f32)),
        ("gzip_of_model", "other", gzip.compress(f32, mtime=0)),
        ("text", "other", b"this is not a model\n" * 50),
        ("json", "other", json.dumps({"format": "edgekit-manifest/1", "files": []}).encode()),
        ("elf", "other", Path(sys.executable).read_bytes()[:8192]),
        ("only_identifier", "other", b"\x00\x00\x00\x00TFL3"),
        ("identifier_then_zeros", "other", b"\x10\x00\x00\x00TFL3" + bytes(4096)),
        ("identifier_then_ones", "other", b"\x10\x00\x00\x00TFL3" + b"\xff" * 4096),
        ("random", "other", rng.randbytes(20000)),
        ("random_with_identifier", "other", rng.randbytes(4) + b"TFL3" + rng.randbytes(20000)),
        # Bytes after a complete flatbuffer are never read: it parses (and verify's sha256
        # check tells the copy from the original).
        ("model_then_junk", "appended", f32 + b"junk" * 1000),
    ]
    return out


@pytest.fixture(scope="module")
def originals(artifacts_dir: Path) -> dict[str, bytes]:
    return {p: next(artifacts_dir.glob(f"*_{p}.tflite")).read_bytes() for p in PRECISIONS}


@contextlib.contextmanager
def hang_guard(seconds: int) -> Iterator[None]:
    def fail(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still parsing after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_the_parser_survives_hundreds_of_damaged_files(
    originals: dict[str, bytes], tmp_path: Path
) -> None:
    corpus = damaged_corpus(originals)
    assert len(corpus) >= 350
    outcomes: dict[str, dict[str, int]] = {}
    for name, kind, data in corpus:
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        with hang_guard(HANG_GUARD_S):
            try:
                model = read_model_file(path)
            except ModelFileError as e:
                message = str(e)
                # One line that names the file and says how to go on.
                assert "\n" not in message and message.startswith(str(path)), message
                result = "error"
            else:
                # A flipped byte in a weight or a name still parses: honest about what it holds.
                assert model.bytes == len(data)
                result = "parsed"
        outcomes.setdefault(kind, {"error": 0, "parsed": 0})[result] += 1
        if kind == "truncated":
            assert result == "error", f"{name} parsed although it is truncated"
    assert outcomes["truncated"]["parsed"] == 0
    assert outcomes["other"] == {"error": 12, "parsed": 0}
    assert outcomes["appended"] == {"error": 0, "parsed": 1}
    # Both outcomes occur among bit flips, so both paths were exercised.
    assert outcomes["flipped"]["error"] > 10 and outcomes["flipped"]["parsed"] > 10


def test_a_vector_length_past_the_end_of_the_file_is_refused(
    originals: dict[str, bytes], tmp_path: Path
) -> None:
    from edgekit.device.tflite_schema import schema

    data = bytearray(originals["float32"])
    sub = schema.Model.GetRootAs(bytes(data), 0).Subgraphs(0)
    tab = sub._tab
    length_at = tab.Vector(tab.Offset(4)) - 4  # Subgraph.tensors is field 0 (vtable slot 4)
    data[length_at : length_at + 4] = (2**31 - 1).to_bytes(4, "little")
    path = tmp_path / "huge.tflite"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as e:
        read_model_file(path)
    assert str(e.value) == (
        f"{path} is damaged: it claims {2**31 - 1} tensors in {len(data)} bytes; "
        "re-export or re-copy it"
    )


# ---- a sample through the commands that load the files (child processes) ----------------


def _sample(originals: dict[str, bytes]) -> list[tuple[str, str, bytes, str]]:
    """(file name, kind, bytes, precision of the original) - about 30 files, 3 of them good."""
    corpus = damaged_corpus(originals, seed=1)
    rng = random.Random(2)
    picked = [
        c
        for c in corpus
        if c[1] == "other"
        and c[0] in ("empty", "png", "zip_of_model", "text", "identifier_then_zeros")
    ]
    for precision in PRECISIONS:
        mine = [c for c in corpus if c[0].startswith(precision + "_")]
        picked += rng.sample([c for c in mine if c[1] == "truncated"], 3)
        picked += rng.sample([c for c in mine if c[1] == "flipped"], 5)
    out = [(f"{n}.tflite", k, d, n.split("_")[0]) for n, k, d in picked]
    out = [(f, k, d, p if p in PRECISIONS else "float32") for f, k, d, p in out]
    out += [(f"good_{p}.tflite", "good", originals[p], p) for p in PRECISIONS]
    return out


@pytest.fixture(scope="module")
def sample_dir(artifacts_dir: Path, originals: dict[str, bytes], tmp_path_factory: Any) -> Path:
    """A folder of damaged and good files, with a manifest listing each under the record of
    the file it was made from: what `verify` finds after a bad copy to a device."""
    folder = tmp_path_factory.mktemp("sample")
    manifest = json.loads((artifacts_dir / "manifest.json").read_text())
    records = {r["precision"]: r for r in manifest["files"]}
    manifest.pop("keras_model", None)
    manifest["files"] = []
    for name, _kind, data, precision in _sample(originals):
        (folder / name).write_bytes(data)
        manifest["files"].append({**records[precision], "file": name})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _parses(path: Path) -> bool:
    try:
        read_model_file(path)
    except ModelFileError:
        return False
    return True


def test_verify_reports_every_damaged_file_and_passes_the_good_ones(sample_dir: Path) -> None:
    names = [r["file"] for r in json.loads((sample_dir / "manifest.json").read_text())["files"]]
    assert 25 <= len(names) <= 40
    proc = run_edgekit("verify", str(sample_dir), "--json", "--timeout", "60", "-q")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    damaged = [n for n in names if not n.startswith("good_")]
    assert proc.stderr.strip().splitlines() == [
        f"Error: {len(damaged)} file(s) failed verification: {', '.join(damaged)}"
    ]
    checks = {f["file"]: f for f in json.loads(proc.stdout)["files"]}
    assert sorted(checks) == sorted(names)
    for name in damaged:
        check = checks[name]
        assert check["status"] in ("mismatch", "damaged", "failed"), check
        assert all(p and "\n" not in p for p in check["problems"]), check
        # The copy differs from what was exported: always caught, whatever else happens.
        assert "sha256 differs from the manifest (file changed or damaged)" in check["problems"]
        if not _parses(sample_dir / name):
            assert check["status"] in ("damaged", "failed"), check
    for precision in PRECISIONS:
        good = checks[f"good_{precision}.tflite"]
        assert good["status"] == "ok" and good["problems"] == [], good
        assert good["load_ms"] is not None and good["first_inference_us"] is not None


def test_bench_gives_one_error_row_per_unusable_file_and_measures_the_rest(
    sample_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    proc = run_edgekit(
        "bench",
        str(sample_dir),
        "--no-accuracy",
        "--no-save",
        "--json",
        str(out),
        "--min-runs",
        "3",
        "--min-time",
        "0",
        "--rounds",
        "1",
        "--warmup-runs",
        "1",
        "--warmup-time",
        "0",
        "--timeout",
        "60",
        "-q",
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = {r["file"]: r for r in json.loads(out.read_text())["rows"]}
    files = sorted(p.name for p in sample_dir.glob("*.tflite"))
    assert sorted(rows) == files
    failed = sorted(name for name, row in rows.items() if row["status"] == "error")
    assert proc.stderr.strip().splitlines() == [
        f"Error: {len(failed)} file(s) failed: {', '.join(failed)} (see the error rows)"
    ]
    for name, row in rows.items():
        if row["status"] == "error":
            assert row["error"] and "\n" not in row["error"], row
            assert row["latency"] is None
        else:
            # Loaded and ran: a bit flip in a weight can leave a working file (verify's sha256
            # check is what catches it).
            assert row["latency"]["runs"] >= 3, row
        if not _parses(sample_dir / name):
            assert row["status"] == "error", row
    for precision in PRECISIONS:
        assert rows[f"good_{precision}.tflite"]["status"] == "ok"
    assert len(failed) >= 15  # the truncated and foreign files at least
