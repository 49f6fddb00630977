"""Tests of edgekit.device.bench / report and `edgekit bench`, on real files exported by the
pipeline.

Timing settings are tiny (a few runs, milliseconds): the tests check what is measured and
reported, never how fast anything is.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli.main import main
from edgekit.cli.report import require_matplotlib
from edgekit.core.errors import EdgekitError, ModelFileError
from edgekit.device.bench import (
    DEFAULT_MIN_RUNS,
    DEFAULT_MIN_TIME_S,
    BenchConfig,
    BenchResult,
    BenchRow,
    LatencyStats,
    discover_models,
    machine_info,
    run_bench,
    split_name,
)
from edgekit.device.bench.measure import _compare, _run_rounds, _Worker
from edgekit.device.bench.verdict import overall_verdict
from edgekit.device.runtime import evaluate, load_interpreter
from edgekit.device.worker import TEST_FAULT_ENV

FAST: dict[str, Any] = {
    "min_runs": 6,
    "min_time_s": 0.01,
    "warmup_runs": 1,
    "warmup_time_s": 0.0,
    "rounds": 3,
}
FAST_CLI = [
    "--min-runs",
    "6",
    "--min-time",
    "0.01",
    "--warmup-runs",
    "1",
    "--warmup-time",
    "0",
    "--rounds",
    "3",
]
PRECISIONS = ("float32", "float16", "int8")


def manifest_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())  # type: ignore[no-any-return]


def records(folder: Path) -> dict[str, dict[str, Any]]:
    return {r["file"]: r for r in manifest_of(folder)["files"]}


def export_samples(folder: Path) -> int:
    """The number of test samples export measured accuracy on."""
    return int(next(iter(records(folder).values()))["accuracy"]["samples"])


@pytest.fixture(scope="module")
def result(artifacts_dir: Path) -> BenchResult:
    """One in-process run over the exported float32, float16 and int8 files."""
    return run_bench([artifacts_dir], BenchConfig(samples=export_samples(artifacts_dir), **FAST))


@pytest.fixture()
def art_copy(artifacts_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the exported folder."""
    return Path(shutil.copytree(artifacts_dir, tmp_path / "art"))


def bench_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, ["bench", *FAST_CLI, *args], env=env)


# ---- units -----------------------------------------------------------------------------------


def test_defaults_are_those_of_the_official_benchmark_tool() -> None:
    assert (DEFAULT_MIN_RUNS, DEFAULT_MIN_TIME_S) == (50, 1.0)
    config = BenchConfig()
    assert (config.min_runs, config.min_time_s, config.threads, config.xnnpack) == (
        50,
        1.0,
        (1,),
        True,
    )


def test_latency_stats_summarise_samples_in_microseconds() -> None:
    samples_ns = [1000 * i for i in range(1, 101)]  # 1..100 us
    stats = LatencyStats.from_samples_ns(samples_ns)
    assert stats.runs == 100
    assert stats.min_us == 1.0
    assert stats.mean_us == pytest.approx(50.5)
    assert stats.p50_us == pytest.approx(50.5)
    assert stats.p90_us == pytest.approx(90.1)
    assert stats.p99_us == pytest.approx(99.01)
    assert stats.std_us == pytest.approx(float(np.std(np.arange(1, 101))))
    with pytest.raises(ValueError, match="no latency samples"):
        LatencyStats.from_samples_ns([])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threads": (0,)}, "threads must be positive counts, got (0,): e.g. --threads 1,2"),
        ({"min_runs": 0}, "min_runs must be >= 1, got 0"),
        ({"rounds": 0}, "rounds must be >= 1, got 0"),
        ({"runtime": "onnx"}, "unknown runtime 'onnx': expected one of auto, litert"),
        ({"samples": 0}, "samples must be >= 1, got 0: or omit it for all"),
        ({"timeout_s": 0}, "timeout_s must be > 0, got 0"),
    ],
)
def test_bench_config_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(EdgekitError) as e:
        BenchConfig(**kwargs)
    assert str(e.value).startswith(message)


def test_discover_models_reports_missing_empty_and_foreign_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="nope does not exist: pass .tflite files"):
        discover_models([tmp_path / "nope"])
    with pytest.raises(ModelFileError, match="holds no .tflite file: run `edgekit export` first"):
        discover_models([tmp_path])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelFileError, match="is not a .tflite or .keras file"):
        discover_models([tmp_path / "notes.txt"])
    (tmp_path / "b.tflite").write_bytes(b"x")
    (tmp_path / "a.tflite").write_bytes(b"x")
    # A file named twice (directly and through its folder) is measured once.
    assert [p.name for p in discover_models([tmp_path / "a.tflite", tmp_path])] == [
        "a.tflite",
        "b.tflite",
    ]


def test_split_name_prefers_manifest_then_file_name_then_contents(artifacts_dir: Path) -> None:
    from edgekit.device.modelfile import read_model_file

    int8 = next(artifacts_dir.glob("*_int8.tflite"))
    parsed = read_model_file(int8)
    stem = int8.stem.removesuffix("_int8")
    assert split_name(int8, None, None) == (stem, "int8")
    assert split_name(int8, "dynamic", None) == (stem, "dynamic")
    # No precision in the name: the int8 input tensor says what the file is.
    assert split_name(Path("model.tflite"), None, parsed) == ("model", "int8")
    assert split_name(Path("m_folded.keras"), None, None) == ("m_folded", "keras")


class _FakeChild:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log, self.dead = name, log, None

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.log.append(self.name)
        assert message["cmd"] == "round"
        return {"ok": True, "samples_ns": [1000, 3000]}

    def kill(self) -> None:
        pass


def test_rounds_interleave_the_models_and_rotate_their_order() -> None:
    log: list[str] = []
    workers = []
    for name in "ABC":
        w = _Worker(BenchRow(name, name, name, "tflite", "m", "float32", 1))
        w.child = _FakeChild(name, log)  # type: ignore[assignment]
        workers.append(w)
    _run_rounds(workers, BenchConfig(rounds=3, min_runs=6), lambda _m: None)
    assert "".join(log) == "ABCBCACAB"
    for w in workers:
        assert w.row.round_p50_us == [2.0, 2.0, 2.0]
        assert w.row.latency is not None and w.row.latency.runs == 6


def _fake_row(file: str, precision: str, p50_us: float, bytes_: int) -> BenchRow:
    row = BenchRow(file, file, f"/x/{file}", "tflite", "m", precision, 1, bytes=bytes_)
    row.samples_ns = [int(p50_us * 1000)] * 3
    row.latency = LatencyStats.from_samples_ns(row.samples_ns)
    row.accuracy, row.accuracy_samples = (0.88 if precision == "float32" else 0.87), 100
    return row


def _pair(int8_p50_us: float) -> list[BenchRow]:
    """A float32 file at 20 us and its int8 version at `int8_p50_us`."""
    return [
        _fake_row("m_float32.tflite", "float32", 20.0, 4000),
        _fake_row("m_int8.tflite", "int8", int8_p50_us, 1000),
    ]


def _verdict_for(rows: list[BenchRow], flags: list[str]) -> list[str]:
    _compare(rows, {})
    result = BenchResult(
        rows, {"cpu": "Test CPU", "cpu_flags": flags}, BenchConfig(), {}, {"count": 1}, [], "", 0
    )
    return overall_verdict(result)


def test_verdict_warns_when_int8_is_not_faster_than_float32() -> None:
    lines = _verdict_for(_pair(int8_p50_us=25.0), ["avx2", "fma"])
    warning = next(line for line in lines if line.startswith("WARNING"))
    assert "m_int8.tflite (int8) is not faster than float32 on this CPU (Test CPU)" in warning
    assert "p50 25.0 us against 20.0 us" in warning
    assert "no int8 dot-product instructions" in warning
    assert "int8 (m_int8.tflite) costs 1.00 pp of accuracy against float32" in " ".join(lines)
    rows = _pair(int8_p50_us=25.0)
    _verdict_for(rows, ["avx2"])
    assert rows[1].speedup_vs_float32 == pytest.approx(0.8)
    assert rows[1].verdict.startswith("1.2x slower than float32")
    # With VNNI the warning stays (int8 is still slower) but does not blame missing instructions.
    assert "dot-product" not in " ".join(_verdict_for(_pair(25.0), ["avx512_vnni"]))
    lines = _verdict_for(_pair(int8_p50_us=5.0), ["avx2"])
    assert not any(line.startswith("WARNING") for line in lines)
    assert lines[0] == "Fastest at 1 thread: m_int8.tflite (p50 5.0 us, 4.0x faster than float32)."


def test_verdict_says_when_the_cpu_holds_int8_back() -> None:
    # int8 faster, but on an AVX2-only CPU: the verdict names the kernels it runs on.
    lines = _verdict_for(_pair(int8_p50_us=6.0), ["avx2", "fma"])
    held = [line for line in lines if line.startswith("int8 gain held back")]
    assert len(held) == 1
    assert "no VNNI: int8 uses AVX2 integer kernels" in held[0]
    assert "m_int8.tflite is 3.3x faster than float32" in held[0]
    # With VNNI nothing holds it back; on ARM without dotprod the note names NEON.
    assert not any("held back" in line for line in _verdict_for(_pair(6.0), ["avx512_vnni"]))
    assert not any("held back" in line for line in _verdict_for(_pair(6.0), ["asimddp"]))
    arm = _verdict_for(_pair(6.0), ["neon", "asimd"])
    assert any("no asimddp: int8 uses NEON" in line for line in arm)


def test_machine_info_names_the_cpu_and_its_relevant_flags() -> None:
    info = machine_info()
    assert info["cpu"] and info["cpu"] != "unknown"
    assert info["cores"] >= 1 and 1 <= info["usable_cores"] <= info["cores"]
    if sys.platform == "linux" and "avx2" in Path("/proc/cpuinfo").read_text():
        assert "avx2" in info["cpu_flags"]
    assert "pni" not in info["cpu_flags"]  # only flags that matter for inference speed
    assert info["cpu_class"].split()[0] in ("x86", "ARM")


def test_missing_matplotlib_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(
        EdgekitError, match=r"a plot needs matplotlib.*pip install 'edgekit\[plot\]'"
    ):
        require_matplotlib()


# ---- a real run ------------------------------------------------------------------------------


def test_bench_measures_every_exported_precision(result: BenchResult) -> None:
    assert result.ok, [r.error for r in result.rows]
    assert [r.precision for r in result.rows] == list(PRECISIONS)  # float32 first
    for row in result.rows:
        lat = row.latency
        assert lat is not None
        assert lat.runs == len(row.samples_ns) >= FAST["min_runs"]
        assert len(row.round_p50_us) == FAST["rounds"]
        assert lat.min_us <= lat.p50_us <= lat.p90_us <= lat.p99_us
        assert lat.p50_us == pytest.approx(np.median(row.samples_ns) / 1000)
        assert lat.mean_us == pytest.approx(np.mean(row.samples_ns) / 1000)
        assert row.load_ms is not None and row.load_ms > 0
        assert row.first_inference_us is not None and row.first_inference_us > 0
        assert row.runtime and row.runtime.startswith("litert")
    assert result.rounds["count"] == FAST["rounds"]
    assert result.rounds["max_round_spread"] is not None


def test_bench_accuracy_equals_the_manifest_for_every_precision(
    result: BenchResult, artifacts_dir: Path
) -> None:
    recorded = records(artifacts_dir)
    for row in result.rows:
        rec = recorded[row.file]["accuracy"]
        assert row.accuracy_samples == rec["samples"]
        assert row.accuracy == rec["accuracy"]  # exactly: the same evaluation as export
        assert row.manifest_accuracy == rec["accuracy"]
    assert any(
        line.startswith("Accuracy equals the manifest's for 3 file(s)") for line in result.verdict
    )


def test_bench_compares_each_file_with_the_float32_file(result: BenchResult) -> None:
    f32, f16, i8 = result.rows
    assert f32.reference == f16.reference == i8.reference == f32.file
    assert f32.top1_agreement is None and f32.speedup_vs_float32 is None
    assert f16.top1_agreement is not None and f16.top1_agreement >= 0.99
    assert i8.top1_agreement is not None and 0.9 <= i8.top1_agreement <= 1.0
    # Dequantized int8 outputs differ from float32 ones; float16 much less so.
    assert i8.max_abs_diff is not None and f16.max_abs_diff is not None
    assert 0 < i8.max_abs_diff < 1 and f16.max_abs_diff < i8.max_abs_diff
    for row in (f16, i8):
        assert row.latency and f32.latency
        assert row.speedup_vs_float32 == pytest.approx(f32.latency.p50_us / row.latency.p50_us)
        assert row.accuracy is not None and f32.accuracy is not None
        assert row.accuracy_delta_pp == pytest.approx(100 * (row.accuracy - f32.accuracy))


def test_bench_reports_size_sparsity_memory_and_the_machine(
    result: BenchResult, artifacts_dir: Path
) -> None:
    recorded = records(artifacts_dir)
    for row in result.rows:
        rec = recorded[row.file]
        assert (row.bytes, row.gzip_bytes) == (rec["bytes"], rec["gzip_bytes"])
        assert row.weight_sparsity == pytest.approx(rec["weight_sparsity"], abs=1e-6)
        # The model, its tensors and XNNPACK's packed weights take memory.
        assert row.peak_memory_bytes is not None and row.peak_memory_bytes > 0
    f32, f16, i8 = result.rows
    assert f32.bytes and f16.bytes and i8.bytes and i8.bytes < f16.bytes < f32.bytes
    assert result.machine["runtime"].startswith("litert ")
    assert result.machine["cpu"]


def test_bench_verdict_in_plain_words(result: BenchResult) -> None:
    text = "\n".join(result.verdict)
    fastest = min(result.rows, key=lambda r: r.latency.p50_us if r.latency else 1e9)
    assert f"Fastest at 1 thread: {fastest.file}" in text
    assert "int8 (" in text and "against float32" in text and "smaller" in text
    assert f"Measured in {FAST['rounds']} interleaved rounds" in text
    assert result.rows[0].verdict.startswith("float32 reference")


# ---- the command -----------------------------------------------------------------------------


def test_cli_writes_table_json_csv_markdown_and_png(art_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    n = str(export_samples(art_copy))
    res = bench_cli(
        str(art_copy),
        "--samples",
        n,
        "--json",
        str(out / "r.json"),
        "--csv",
        str(out / "r.csv"),
        "--markdown",
        str(out / "r.md"),
        "--plot",
        str(out / "r.png"),
    )
    assert res.exit_code == 0, res.output
    for precision in PRECISIONS:
        assert f"_{precision}.tflite" in res.stdout
    assert "Fastest at 1 thread" in res.stdout
    assert "round 1/3" in res.stderr  # progress goes to stderr
    data = json.loads((out / "r.json").read_text())
    assert data["format"] == "edgekit-bench/1"
    rows = data["rows"]
    assert [r["precision"] for r in rows] == list(PRECISIONS)
    # Raw samples are kept, apart from the summary.
    assert all("samples_ns" not in r for r in rows)
    assert set(data["samples_ns"]) == {r["id"] for r in rows}
    for r in rows:
        samples = data["samples_ns"][r["id"]]
        assert len(samples) == r["latency"]["runs"]
        assert r["latency"]["p50_us"] == pytest.approx(np.median(samples) / 1000)
    assert data["machine"]["cpu"] and "cpu_flags" in data["machine"]
    table = list(csv.DictReader(io.StringIO((out / "r.csv").read_text())))
    assert [t["file"] for t in table] == [r["file"] for r in rows]
    assert [float(t["p50_us"]) for t in table] == pytest.approx(
        [r["latency"]["p50_us"] for r in rows]
    )
    md = (out / "r.md").read_text()
    assert md.startswith("# edgekit bench")
    assert "| File | Prec | Thr | p50 us |" in md and "## Verdict" in md
    assert all(f"| {r['file']} |" in md for r in rows)
    png = (out / "r.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    assert matplotlib.image.imread(str(out / "r.png")).shape[0] > 300
    # A single folder as PATH: bench.* are written into it too (by default).
    for name in ("bench.json", "bench.csv", "bench.md", "bench.png"):
        assert (art_copy / name).is_file(), name
    assert json.loads((art_copy / "bench.json").read_text())["rows"][0]["file"] == rows[0]["file"]
    assert not list(art_copy.glob(".edgekit-tmp-*"))  # atomic writes leave nothing behind


def test_cli_no_save_and_quiet(art_copy: Path) -> None:
    res = bench_cli(str(art_copy), "--no-accuracy", "--no-save", "--quiet")
    assert res.exit_code == 0, res.output
    assert res.stderr == ""
    assert not list(art_copy.glob("bench.*"))
    assert "Acc %" in res.stdout
    res = bench_cli(str(art_copy), str(art_copy.parent), "--no-accuracy", "--save")
    assert res.exit_code == 2
    assert "--save needs exactly one folder among PATHS" in res.stderr


def test_a_corrupt_or_crashing_file_gives_an_error_row_and_the_rest_is_measured(
    art_copy: Path, tmp_path: Path
) -> None:
    good = sorted(p.name for p in art_copy.glob("*.tflite"))
    f32 = next(art_copy.glob("*_float32.tflite")).read_bytes()
    (art_copy / "truncated.tflite").write_bytes(f32[: len(f32) // 3])
    (art_copy / "garbage.tflite").write_bytes(np.random.default_rng(0).bytes(4096))
    shutil.copy(art_copy / good[0], art_copy / "segfaults.tflite")
    out = tmp_path / "r.json"
    res = bench_cli(
        str(art_copy),
        "--samples",
        "50",
        "--json",
        str(out),
        env={TEST_FAULT_ENV: "crash:segfaults"},
    )
    assert res.exit_code == 1
    assert "Error: 3 file(s) failed: garbage.tflite, segfaults.tflite, truncated.tflite" in (
        res.stderr
    )
    data = json.loads(out.read_text())  # every output was still written
    assert (art_copy / "bench.md").is_file() and (art_copy / "bench.png").is_file()
    rows = {r["file"]: r for r in data["rows"]}
    assert rows["segfaults.tflite"]["status"] == "error"
    assert "crashed with SIGSEGV" in rows["segfaults.tflite"]["error"]
    assert "not a TensorFlow Lite flatbuffer" in rows["garbage.tflite"]["error"]
    assert "is damaged" in rows["truncated.tflite"]["error"]
    for name in good:
        assert rows[name]["status"] == "ok"
        assert rows[name]["latency"]["runs"] >= 6
        assert rows[name]["accuracy"] is not None
    assert "FAILED: 3 file(s) could not be measured" in " ".join(data["verdict"])


def test_a_hanging_model_is_killed_after_the_timeout(art_copy: Path) -> None:
    res = bench_cli(
        str(art_copy),
        "--no-accuracy",
        "--no-save",
        "--timeout",
        "1.5",
        env={TEST_FAULT_ENV: "hang:_int8"},
    )
    assert res.exit_code == 1
    assert "timed out after 1.5 s" in res.stdout
    assert "float32.tflite" in res.stdout and "Fastest at 1 thread" in res.stdout


def test_threads_and_no_xnnpack_give_one_row_per_file_and_thread_count(
    artifacts_dir: Path, tmp_path: Path, small_data: Any
) -> None:
    int8 = next(artifacts_dir.glob("*_int8.tflite"))
    f32 = next(artifacts_dir.glob("*_float32.tflite"))
    out = tmp_path / "r.json"
    res = bench_cli(
        str(f32),
        str(int8),
        "--threads",
        "1,2",
        "--no-xnnpack",
        "--samples",
        "50",
        "--json",
        str(out),
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["config"]["xnnpack"] is False and data["machine"]["xnnpack"] is False
    got = [(r["precision"], r["threads"]) for r in data["rows"]]
    assert got == [("float32", 1), ("float32", 2), ("int8", 1), ("int8", 2)]
    assert len({r["id"] for r in data["rows"]}) == 4
    # Each row's accuracy is measured with that row's options (threads, XNNPACK off): the
    # figure of an interpreter made the same way, by edgekit's own evaluate().
    x, y = small_data.x_test[:50], small_data.y_test[:50]
    for r in data["rows"]:
        path = int8 if r["precision"] == "int8" else f32
        same = load_interpreter(path, num_threads=r["threads"], xnnpack=False)
        assert r["accuracy"] == evaluate(same, x, y).accuracy
        assert r["accuracy_samples"] == 50
        assert (r["accuracy_threads"], r["accuracy_xnnpack"]) == (r["threads"], False)
    # Speed-ups compare equal thread counts.
    p50 = {(r["precision"], r["threads"]): r["latency"]["p50_us"] for r in data["rows"]}
    for r in data["rows"]:
        if r["precision"] == "int8":
            expected = p50[("float32", r["threads"])] / p50[("int8", r["threads"])]
            assert r["speedup_vs_float32"] == pytest.approx(expected)
    assert "Fastest at 2 threads" in res.stdout


def _edit_manifest_accuracy(folder: Path, file: str, accuracy: float) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    next(r for r in manifest["files"] if r["file"] == file)["accuracy"]["accuracy"] = accuracy
    path.write_text(json.dumps(manifest))


def test_an_accuracy_unlike_the_manifest_names_the_runtime_when_the_file_is_the_same(
    art_copy: Path,
) -> None:
    """Same file (sha256), same data: the difference is the runtime's or the CPU's, said so."""
    int8 = next(art_copy.glob("*_int8.tflite"))
    _edit_manifest_accuracy(art_copy, int8.name, 0.5)  # as if measured elsewhere
    samples = export_samples(art_copy)
    result = run_bench([art_copy], BenchConfig(samples=samples, **FAST))
    (warning,) = [v for v in result.verdict if v.startswith("WARNING: accuracy differs")]
    assert warning.startswith(f"WARNING: accuracy differs from the manifest's for {int8.name}: ")
    assert "the file and the data are those of export" in warning
    assert "file changed" not in warning
    runtime = next(r.runtime for r in result.rows if r.file == int8.name)
    assert f"here {runtime}, XNNPACK on, 1 thread on {result.machine['cpu']}" in warning
    assert "at export ai-edge-litert" in warning or "at export litert" in warning
    row = next(r for r in result.rows if r.file == int8.name)
    assert "differs from the manifest's 50.00%" in row.verdict


def test_an_accuracy_unlike_the_manifest_says_file_changed_only_when_its_sha256_differs(
    art_copy: Path,
) -> None:
    int8 = next(art_copy.glob("*_int8.tflite"))
    path = art_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    rec = next(r for r in manifest["files"] if r["file"] == int8.name)
    rec["accuracy"]["accuracy"] = 0.5
    rec["sha256"] = "0" * 64  # the file on disk is not the one export wrote
    path.write_text(json.dumps(manifest))
    result = run_bench([art_copy], BenchConfig(samples=export_samples(art_copy), **FAST))
    (warning,) = [v for v in result.verdict if v.startswith("WARNING: accuracy differs")]
    assert warning.endswith(
        "the file changed since export (its sha256 differs from the manifest's)."
    )


def test_an_accuracy_on_other_data_says_the_data_differs(
    art_copy: Path, tmp_path: Path, small_data: Any
) -> None:
    samples = export_samples(art_copy)
    npz = tmp_path / "other.npz"  # as many samples as export used, but other ones
    np.savez(npz, x_test=small_data.x_train[:samples], y_test=small_data.y_train[:samples])
    result = run_bench([art_copy], BenchConfig(samples=samples, data=str(npz), **FAST))
    warnings = [v for v in result.verdict if v.startswith("WARNING: accuracy differs")]
    assert warnings, result.verdict
    assert all("the test data differs from export's" in w for w in warnings)


def test_npz_data_gives_the_accuracy_of_edgekit_runtime_evaluate(
    artifacts_dir: Path, tmp_path: Path, small_data: Any
) -> None:
    x, y = small_data.x_test[:120], small_data.y_test[:120]
    npz = tmp_path / "mine.npz"
    np.savez(npz, x_test=x, y_test=y)  # a device's test set: no training arrays needed
    int8 = next(artifacts_dir.glob("*_int8.tflite"))
    out = tmp_path / "r.json"
    res = bench_cli(str(int8), "--data", str(npz), "--json", str(out))
    assert res.exit_code == 0, res.output
    row = json.loads(out.read_text())["rows"][0]
    assert row["accuracy_samples"] == 120
    assert row["accuracy"] == evaluate(int8, x, y).accuracy
    assert json.loads(out.read_text())["data"]["name"] == "mine"


def test_data_that_does_not_fit_the_model_is_a_note_not_a_crash(
    artifacts_dir: Path, tmp_path: Path
) -> None:
    npz = tmp_path / "small.npz"
    x = np.zeros((4, 5, 5), np.float32)
    np.savez(npz, x_train=x, y_train=np.zeros(4), x_test=x, y_test=np.zeros(4))
    res = bench_cli(str(next(artifacts_dir.glob("*_int8.tflite"))), "--data", str(npz))
    assert res.exit_code == 0, res.output
    assert "accuracy not measured" in res.stdout and "the model expects (28, 28)" in res.stdout


def test_bench_of_a_missing_path_is_a_one_line_error(tmp_path: Path) -> None:
    res = bench_cli(str(tmp_path / "missing"))
    assert res.exit_code == 1
    assert res.stderr.strip() == (
        f"Error: {tmp_path / 'missing'} does not exist: pass .tflite files or a folder of them"
    )


def test_a_runtime_that_is_not_installed_is_one_clear_error(
    artifacts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes the import fail, whether or not tflite-runtime is installed.
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    res = bench_cli(str(artifacts_dir), "--runtime", "tflite-runtime", "--no-save")
    assert res.exit_code == 1
    assert res.stderr.startswith("Error: no TFLite runtime could be imported (tflite-runtime:")
    assert "pip install ai-edge-litert" in res.stderr and res.stdout == ""


@pytest.mark.slow
def test_keras_baseline_row_and_speedups(artifacts_dir: Path, tmp_path: Path) -> None:
    keras_file = next(artifacts_dir.glob("*.keras"))
    int8 = next(artifacts_dir.glob("*_int8.tflite"))
    out = tmp_path / "r.json"
    manifest = manifest_of(artifacts_dir)
    n = manifest["dataset"]["test_samples"]  # the samples export measured the model on
    res = bench_cli(str(int8), str(keras_file), "--samples", str(n), "--json", str(out))
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    keras_row, int8_row = data["rows"]  # the baseline comes first
    assert keras_row["kind"] == "keras" and keras_row["status"] == "ok"
    assert keras_row["runtime"].startswith("tf_keras")
    assert int8_row["keras_baseline"] == keras_file.name
    assert int8_row["speedup_vs_keras"] == pytest.approx(
        keras_row["latency"]["p50_us"] / int8_row["latency"]["p50_us"]
    )
    # The baseline is the folded model export measured: same accuracy, within one sample
    # (export's Keras pass ran in batches of 512, bench's in batches of 256).
    assert keras_row["accuracy_samples"] == n
    assert keras_row["accuracy"] == pytest.approx(manifest["keras_accuracy"], abs=1.5 / n)
    assert "x Keras" in res.stdout and "faster than Keras" in res.stdout


def test_cli_defaults_are_the_library_defaults() -> None:
    """cli.py spells bench's and verify's defaults out (it imports neither for --help)."""
    from edgekit.cli.main import main
    from edgekit.device import bench as b
    from edgekit.device.runtime import RUNTIME_CHOICES
    from edgekit.device.verify import DEFAULT_VERIFY_TIMEOUT_S

    def defaults(command: str) -> dict[str, Any]:
        return {p.name: p.default for p in main.commands[command].params}

    bench = defaults("bench")
    assert bench["min_runs"] == b.DEFAULT_MIN_RUNS
    assert bench["min_time"] == b.DEFAULT_MIN_TIME_S
    assert bench["warmup_runs"] == b.DEFAULT_WARMUP_RUNS
    assert bench["warmup_time"] == b.DEFAULT_WARMUP_TIME_S
    assert bench["rounds"] == b.DEFAULT_ROUNDS
    assert bench["timeout"] == b.DEFAULT_TIMEOUT_S
    runtime = next(p for p in main.commands["bench"].params if p.name == "runtime")
    assert tuple(runtime.type.choices) == RUNTIME_CHOICES  # type: ignore[attr-defined]
    assert defaults("verify")["timeout"] == DEFAULT_VERIFY_TIMEOUT_S


def test_a_ctrl_c_while_the_runtime_loads_stops_instead_of_falling_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A native module interrupted in its init raises ImportError('initialization failed') from
    the KeyboardInterrupt (LiteRT does): that is a Ctrl-C, not a missing runtime to skip."""
    from edgekit.device import runtime

    (tmp_path / "interrupted_runtime.py").write_text(
        "raise ImportError('initialization failed') from KeyboardInterrupt()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(runtime._MODULES, "litert", ("interrupted_runtime", "ai-edge-litert"))
    with pytest.raises(KeyboardInterrupt):
        runtime.get_runtime("auto")
    # A plain ImportError is still a runtime that is not installed: the next one is tried.
    (tmp_path / "interrupted_runtime.py").write_text("raise ImportError('not here')\n")
    sys.modules.pop("interrupted_runtime", None)
    assert runtime.get_runtime("auto").name in ("tflite-runtime", "tf")


def test_cpu_class_examples_run() -> None:
    import doctest

    from edgekit.device.bench import machine

    assert doctest.testmod(machine).failed == 0
    assert machine.cpu_class(["avx2", "avx512f", "avx512bw"], "x86_64") == "x86 AVX-512 (no VNNI)"
    assert machine.cpu_class(["neon", "asimd"], "armv7l") == "ARM without asimddp"
