"""`bench`, `inspect` and `verify` work where TensorFlow cannot be imported (as on a device).

Each command runs in a subprocess whose Python (and every child process it starts) has a
`sitecustomize` that makes importing tensorflow, tf_keras or keras fail, and logs the attempt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BLOCKED = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")
FAST = [
    "--min-runs",
    "5",
    "--min-time",
    "0.01",
    "--warmup-runs",
    "1",
    "--warmup-time",
    "0",
    "--rounds",
    "2",
]
SITECUSTOMIZE = f"""
import importlib.abc, os, sys

class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            log = os.environ.get("EDGEKIT_TF_IMPORT_LOG")
            if log:
                with open(log, "a") as f:
                    f.write(f"{{os.getpid()}} {{name}}\\n")
            raise ImportError(f"{{name}} is blocked: this test runs without TensorFlow")
        return None

sys.meta_path.insert(0, _NoTensorFlow())
"""


@pytest.fixture(scope="module")
def no_tf_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("no_tf")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    repo = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), repo, env.get("PYTHONPATH", "")])
    env["EDGEKIT_TF_IMPORT_LOG"] = str(folder / "attempts.log")
    env["COLUMNS"] = "200"
    return env


def attempts(env: dict[str, str]) -> list[str]:
    log = Path(env["EDGEKIT_TF_IMPORT_LOG"])
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def edgekit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_the_blocker_really_blocks_tensorflow(no_tf_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=no_tf_env
    )
    assert proc.returncode != 0
    assert "tensorflow is blocked" in proc.stderr
    assert [line.split()[1] for line in attempts(no_tf_env)] == ["tensorflow"]


def test_bench_runs_without_tensorflow(
    no_tf_env: dict[str, str], artifacts_dir: Path, tmp_path: Path
) -> None:
    manifest = json.loads((artifacts_dir / "manifest.json").read_text())
    samples = manifest["files"][0]["accuracy"]["samples"]
    out = tmp_path / "r.json"
    proc = edgekit(
        no_tf_env,
        "bench",
        str(artifacts_dir),
        *FAST,
        "--samples",
        str(samples),
        "--json",
        str(out),
        "--no-save",
    )
    assert proc.returncode == 0, proc.stderr
    assert attempts(no_tf_env) == []  # nobody even tried: neither bench nor its children
    rows = json.loads(out.read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok"] * 3
    recorded = {r["file"]: r["accuracy"]["accuracy"] for r in manifest["files"]}
    assert {r["file"]: r["accuracy"] for r in rows} == recorded


def test_inspect_and_verify_run_without_tensorflow(
    no_tf_env: dict[str, str], artifacts_dir: Path
) -> None:
    int8 = next(artifacts_dir.glob("*_int8.tflite"))
    proc = edgekit(no_tf_env, "inspect", str(int8), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["inputs"][0]["dtype"] == "int8"
    proc = edgekit(no_tf_env, "verify", str(artifacts_dir))
    assert proc.returncode == 0, proc.stderr
    assert "match the manifest" in proc.stdout
    proc = edgekit(no_tf_env, "--help")
    assert proc.returncode == 0 and "bench" in proc.stdout
    assert attempts(no_tf_env) == []


def test_a_keras_baseline_without_tensorflow_is_an_error_row(
    no_tf_env: dict[str, str], artifacts_dir: Path, tmp_path: Path
) -> None:
    keras_file = next(artifacts_dir.glob("*.keras"))
    int8 = next(artifacts_dir.glob("*_int8.tflite"))
    out = tmp_path / "r.json"
    proc = edgekit(
        no_tf_env,
        "bench",
        str(int8),
        str(keras_file),
        *FAST,
        "--no-accuracy",
        "--json",
        str(out),
    )
    assert proc.returncode == 1
    rows = {r["kind"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["tflite"]["status"] == "ok" and rows["tflite"]["latency"]["runs"] >= 5
    assert rows["keras"]["status"] == "error"
    assert "a .keras baseline needs TensorFlow and tf_keras" in rows["keras"]["error"]
    assert "pip install 'edgekit[train]'" in rows["keras"]["error"]
    # Only the Keras child tried, and was refused.
    assert attempts(no_tf_env)


@pytest.mark.parametrize("command", ["export", "train"])
def test_training_commands_without_tensorflow_say_what_to_install(
    no_tf_env: dict[str, str], tmp_path: Path, command: str
) -> None:
    """On a device install, `export` and `train` end in one line naming the extra to install."""
    out = tmp_path / ("out" if command == "export" else "model.keras")
    proc = edgekit(no_tf_env, command, "--epochs", "1", "-o", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert line.startswith(
        "Error: training and export need TensorFlow, tf-keras and TF-MOT, which cannot be "
        "imported here ("
    ), line
    assert line.endswith("): pip install 'edgekit[train]'"), line
    assert not out.exists() or not any(out.iterdir())
    attempts(no_tf_env)  # the blocked attempt was expected here


def test_a_missing_model_fails_before_tensorflow_or_data_are_touched(
    no_tf_env: dict[str, str], tmp_path: Path
) -> None:
    """`edgekit export missing.keras` says so at once: no TensorFlow import, no data load."""
    env = {**no_tf_env, "EDGEKIT_DATA_DIR": str(tmp_path / "no-data-here")}
    proc = edgekit(env, "export", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"Error: model file {tmp_path / 'missing.keras'} does not exist: "
        "pass the path of a .keras file"
    )
    assert attempts(no_tf_env) == []


@pytest.fixture(scope="module")
def no_runtime_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A Python where neither TensorFlow nor any TFLite runtime can be imported."""
    folder = tmp_path_factory.mktemp("no_runtime")
    blocked = (*BLOCKED, "ai_edge_litert", "tflite_runtime")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.replace(repr(BLOCKED), repr(blocked)))
    repo = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), repo, env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "200"
    return env


def test_without_any_runtime_inspect_works_and_verify_says_the_runtime_is_missing(
    no_runtime_env: dict[str, str], artifacts_dir: Path
) -> None:
    """The schema travels with edgekit: no runtime is needed to read a file, and a missing
    runtime is named as missing (one line), never blamed on the file."""
    int8 = next(artifacts_dir.glob("*_int8.tflite"))
    proc = edgekit(no_runtime_env, "inspect", str(int8), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "FULLY_CONNECTED" in json.loads(proc.stdout)["operators"]
    for args in (["verify", str(artifacts_dir)], ["bench", str(artifacts_dir), "--no-save"]):
        proc = edgekit(no_runtime_env, *args)
        assert proc.returncode == 1
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("Error: no TFLite runtime could be imported (ai-edge-litert:"), line
        assert "pip install ai-edge-litert" in line and "damaged" not in line
    proc = edgekit(no_runtime_env, "verify", str(artifacts_dir), "--no-run")
    assert proc.returncode == 0, proc.stderr
