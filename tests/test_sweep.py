"""`edgekit sweep`: grids, engines, failures and resuming, with real tiny pipeline runs.

Each point is a real train -> prune -> fold -> int8 export on 2000 Fashion-MNIST samples, in a
fresh process. A sweep stopped with SIGINT at 5 moments keeps exactly its finished points and
resumes with the rest; the same grid through a local Ray (2 CPUs, no dashboard) gives the
same table and files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgekit.cli.main import main
from edgekit.core.config import PruneConfig
from edgekit.core.errors import EdgekitError
from edgekit.sweep import (
    REPRODUCIBLE_COLUMNS,
    SweepRow,
    expand_grid,
    load_grid_file,
    mark_frontier,
    parse_grid,
)

# Big enough that every int8 file stays within export's 1-point accuracy budget.
TINY = [
    "--train-samples",
    "2000",
    "--test-samples",
    "500",
    "--validation-size",
    "200",
    "--epochs",
    "2",
    "--prune-epochs",
    "1",
    "--hidden",
    "64,32",
    "--precision",
    "int8",
    "--calibration-samples",
    "100",
]
GRID = ["--grid", "sparsity=0.5,0.7,0.8"]
RAY_GRID = ["--grid", "sparsity=0.5,0.8"]
PRUNE_TOO_SHORT = (
    "1 pruning epoch(s) of 1 batches are too few to reach the target sparsity: raise "
    "--prune-epochs or use more data"
)


def _sweep(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit.cli.main", "sweep", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def _digests(folder: Path) -> dict[str, str]:
    """point/file -> sha256 of every model file of a sweep folder."""
    return {
        f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.glob("*/*"))
        if p.suffix in (".tflite", ".keras")
    }


def _table(folder: Path) -> list[dict[str, Any]]:
    rows = json.loads((folder / "sweep.json").read_text())["rows"]
    return [{k: r[k] for k in REPRODUCIBLE_COLUMNS} for r in rows]


# ---- grids: checked before anything runs ---------------------------------------------------


def test_a_bad_grid_key_is_one_line_error_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["sweep", "--grid", "sparsty=0.5,0.8", "-o", str(out)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "Error: unknown grid key 'sparsty' (did you mean sparsity?): valid keys are activation, "
    )
    assert "precision" in lines[0] and "qat" in lines[0] and "seed" in lines[0]
    assert not out.exists()  # nothing created, nothing run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--grid", "sparsity=0.5,1.5"],
            "grid point sparsity=1.5: sparsity must be in [0, 1), got 1.5: e.g. 0.8 for 80% zeros",
        ),
        (
            ["--grid", "epochs=two"],
            "grid value epochs='two' is not an integer: pass e.g. epochs=5,10",
        ),
        (
            ["--grid", "precision=int8,int9"],
            "grid value precision='int9': unknown precision 'int9': expected one of float32, ",
        ),
        (
            ["--sparsity", "0.5", "--grid", "sparsity=0.8"],
            "sparsity is given both as --sparsity and as a grid key: pass it in one place",
        ),
        (
            ["--grid", "sparsity"],
            "--grid 'sparsity' is neither KEY=V1,V2 nor a .toml/.json grid file",
        ),
        ([], "no --grid given: pass the values to sweep, e.g. --grid sparsity=0.5,0.8"),
        (
            ["--distributed", "--grid", "sparsity=0.5"],
            "--distributed trains one run across a TF_CONFIG cluster, not a sweep's points: ",
        ),
    ],
)
def test_bad_grids_are_refused_with_their_reason(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["sweep", *args, "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {message}")
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_grid_keys_map_onto_the_configs(tmp_path: Path) -> None:
    base = {"prune": False}  # the options of the sweep: pruning off
    grid = parse_grid(["arch=mlp,cnn", "sparsity=0.5", "seed=3", "precision=float16+int8"])
    points = expand_grid(grid, base, tmp_path)
    assert [p.label for p in points] == [
        "arch=mlp sparsity=0.5 seed=3 precision=float16+int8",
        "arch=cnn sparsity=0.5 seed=3 precision=float16+int8",
    ]
    mlp, cnn = (p.config for p in points)
    assert isinstance(mlp.prune, PruneConfig) and mlp.prune.target_sparsity == 0.5  # on by key
    assert (mlp.prune.epochs, cnn.prune.epochs) == (8, 6)  # each architecture's default
    assert (mlp.data.seed, mlp.train.seed, mlp.prune.seed, mlp.export.calibration_seed) == (3,) * 4
    assert [p.value for p in mlp.export.precisions] == ["float16", "int8"]
    assert all(p.config.output_dir == str(tmp_path / p.id) for p in points)
    assert len({p.id for p in points}) == 2 and all(len(p.id) == 12 for p in points)
    # Combinations that make the same config run once.
    same = expand_grid(parse_grid(["prune=false", "sparsity=0.5,0.8"]), base, tmp_path)
    assert len(same) == 1 and same[0].config.prune is None
    # The ids depend on the settings only: the same grid again gives the same ids.
    assert [p.id for p in expand_grid(grid, base, tmp_path / "x")] == [p.id for p in points]


def test_a_grid_file_in_toml_or_json(tmp_path: Path) -> None:
    toml = tmp_path / "grid.toml"
    toml.write_text('[grid]\nsparsity = [0.5, 0.9]\nhidden = [[64, 32], "32+16"]\nqat = true\n')
    assert load_grid_file(toml) == {
        "sparsity": [0.5, 0.9],
        "hidden": [(64, 32), (32, 16)],
        "qat": [True],
    }
    js = tmp_path / "grid.json"
    js.write_text('{"prune-epochs": [1, 2], "sparsity": 0.8}')
    assert parse_grid([str(js), "arch=mlp"]) == {
        "prune_epochs": [1, 2],
        "sparsity": [0.8],
        "arch": ["mlp"],
    }
    js.write_text('{"sparsity": [0.5], "spartsity": [1]}')
    with pytest.raises(EdgekitError, match=r"unknown grid key 'spartsity' \(did you mean"):
        load_grid_file(js)


def test_the_frontier_keeps_files_nothing_beats_on_all_three() -> None:
    def row(name: str, acc: float, gz: int, p50: float) -> SweepRow:
        return SweepRow(
            point=name,
            params={},
            label=name,
            file=f"{name}.tflite",
            accuracy=acc,
            gzip_bytes=gz,
            p50_us=p50,
        )

    rows = [
        row("best_acc", 0.90, 300, 5.0),
        row("smallest", 0.80, 100, 5.0),
        row("fastest", 0.85, 200, 1.0),
        row("beaten", 0.85, 250, 2.0),  # fastest is as accurate, smaller and faster
        SweepRow(point="failed", params={}, label="failed", status="error", error="x"),
    ]
    assert mark_frontier(rows) == ["accuracy", "gzip_bytes", "p50_us"]
    assert [r.point for r in rows if r.frontier] == ["best_acc", "smallest", "fastest"]
    rows[0].p50_us = None  # latency not measured for every file: size and accuracy only
    assert mark_frontier(rows) == ["accuracy", "gzip_bytes"]
    assert [r.point for r in rows if r.frontier] == ["best_acc", "smallest", "fastest"]


# ---- real sweeps ---------------------------------------------------------------------------


def _sigint_default() -> None:
    """In the sweep's child: SIGINT at its default, also when this suite runs with it ignored
    (started by `nohup` or `cmd &` in a script, whose children inherit SIG_IGN)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _RunningSweep:
    """`edgekit sweep` in its own process group, its stderr lines collected as they come."""

    def __init__(self, args: list[str], tmpdir: Path) -> None:
        self.tmpdir = tmpdir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgekit.cli.main", "sweep", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200", "TMPDIR": str(tmpdir)},
            start_new_session=True,  # its own group: a terminal's Ctrl-C can be imitated
            preexec_fn=_sigint_default,
        )
        self.lines: list[str] = []
        self.out: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def said(self, prefix: str) -> bool:
        """Whether a progress line (indented on stderr) starts with `prefix`."""
        return any(line.strip().startswith(prefix) for line in list(self.lines))

    def wait_for(self, what: str, ready: Callable[[], bool], timeout_s: float = 400) -> None:
        """Poll (no fixed sleep decides anything) until `ready()`; fail if the sweep ends first."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert self.proc.poll() is None, f"the sweep ended before {what}: {''.join(self.lines)}"
            assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
            time.sleep(0.02)

    def interrupt(self, group: bool) -> tuple[int, str]:
        """SIGINT to the sweep (group: to its whole process group, as a terminal does)."""
        if group:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGINT)
        return self.finish()

    def finish(self, timeout_s: float = 400) -> tuple[int, str]:
        rc = self.proc.wait(timeout=timeout_s)
        for reader in self._readers:
            reader.join(timeout=30)
        return rc, "".join(self.lines)


def _finished_points(out: Path) -> dict[str, dict[str, int]]:
    """point id -> {file: mtime_ns} of every point folder; a folder without point.json (a point
    written half-way) fails the check, as does any file point.json does not list."""
    found = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        files = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
        assert "point.json" in files, f"{folder.name} holds {sorted(files)} without point.json"
        record = json.loads((folder / "point.json").read_text())
        listed = {f["file"] for f in record["files"]} | {"point.json", "point.log"}
        assert set(files) == listed, folder.name
        found[folder.name] = files
    return found


@pytest.fixture(scope="module")
def interrupted_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 3-point sweep (default engine, one worker) stopped with SIGINT at 5 moments, found by
    watching its output and files, each run resuming the last; then run to the end."""
    out = tmp_path_factory.mktemp("sweep") / "local"
    tmpdir = tmp_path_factory.mktemp("tmp")
    args = [*TINY, *GRID, "--jobs", "1", "-o", str(out)]
    stops: dict[str, Any] = {}

    def stop(moment: str, group: bool, what: str, ready: Callable[[_RunningSweep], bool]) -> None:
        sweep = _RunningSweep(args, tmpdir)
        sweep.wait_for(what, lambda: ready(sweep))
        rc, err = sweep.interrupt(group)
        stops[moment] = {"rc": rc, "stderr": err, "kept": _finished_points(out)}

    def said(prefix: str) -> Callable[[_RunningSweep], bool]:
        return lambda sweep: sweep.said(prefix)

    # 1. the first worker is starting (Python, TensorFlow): nothing finished
    stop("first worker starts", False, "the start", said("running 3 point(s)"))
    # 2. a point is training (its pipeline has made its output folder): nothing finished
    stop("a point runs", True, "a running point", lambda _: any(tmpdir.glob("edgekit-point-*/out")))
    # 3. the first point's files were just written: it is kept
    stop("between points", False, "a point.json", lambda _: any(out.glob("*/point.json")))
    # 4. the second point was written, the next worker is starting: both kept
    stop("next worker starts", True, "the second point", said("[2/3]"))
    # 5. every point finished, latency is being measured: all kept, no report written
    stop("latency pass", True, "the latency pass", said("measuring p50 latency"))
    no_report = not (out / "sweep.json").exists()
    again = _sweep(*args)
    return {"out": out, "stops": stops, "no_report": no_report, "again": again}


def test_a_sweep_stopped_at_any_moment_keeps_finished_points_and_resumes(
    interrupted_sweep: dict[str, Any],
) -> None:
    out, stops = interrupted_sweep["out"], interrupted_sweep["stops"]
    assert list(stops) == [
        "first worker starts",
        "a point runs",
        "between points",
        "next worker starts",
        "latency pass",
    ]
    for moment, stop in stops.items():
        assert stop["rc"] == 130, f"{moment}: {stop['stderr']}"
        assert "Traceback" not in stop["stderr"], f"{moment}: {stop['stderr']}"
        last = stop["stderr"].strip().splitlines()[-1]
        assert last == "interrupted: no partial output was left behind", moment
    kept = [len(stop["kept"]) for stop in stops.values()]
    assert kept == [0, 0, 1, 2, 3]
    assert "stopped: 0 of 3 point(s) finished and kept in" in stops["a point runs"]["stderr"]
    assert "stopped: 1 of 3 point(s) finished" in stops["between points"]["stderr"]
    # Each run resumed the last: a finished point is never run or written again.
    assert "1 of 3 point(s) already done" in stops["next worker starts"]["stderr"]
    assert "2 of 3 point(s) already done" in stops["latency pass"]["stderr"]
    assert (
        "stopped while measuring latency: all 3 point(s) finished and kept"
        in (stops["latency pass"]["stderr"])
    )
    first = stops["between points"]["kept"]
    assert {k: stops["latency pass"]["kept"][k] for k in first} == first
    assert interrupted_sweep["no_report"]
    (done,) = first
    assert sorted(first[done]) == [
        "fashion_mnist_mlp_sp50_folded.keras",
        "fashion_mnist_mlp_sp50_int8.tflite",
        "manifest.json",
        "point.json",
        "point.log",
    ]

    again = interrupted_sweep["again"]
    assert again.returncode == 0, again.stderr
    assert "3 of 3 point(s) already done" in again.stderr and ": ok (" not in again.stderr
    assert _finished_points(out) == stops["latency pass"]["kept"]
    report = json.loads((out / "sweep.json").read_text())
    assert report["counts"] == {"points": 3, "ok": 3, "failed": 0, "resumed": 3}
    assert [r["label"] for r in report["rows"]] == [
        "sparsity=0.5",
        "sparsity=0.7",
        "sparsity=0.8",
    ]
    assert all(r["p50_us"] > 0 for r in report["rows"])


@pytest.mark.heavy
def test_the_default_engine_and_ray_give_the_same_table_and_files(
    interrupted_sweep: dict[str, Any],
) -> None:
    pytest.importorskip("ray")
    local = interrupted_sweep["out"]
    ray_out = local.parent / "ray"
    # Two of the three points: a point's id and files depend on its settings only.
    result = _sweep(*TINY, *RAY_GRID, "--jobs", "2", "--ray", "-o", str(ray_out), "--quiet")
    assert result.returncode == 0, result.stderr

    assert _table(ray_out) == [r for r in _table(local) if r["params"]["sparsity"] != 0.7]
    digests = _digests(ray_out)
    assert len(digests) == 4 and digests.items() <= _digests(local).items()
    report = {
        name: json.loads((d / "sweep.json").read_text())
        for name, d in (("local", local), ("ray", ray_out))
    }
    assert report["ray"]["engine"]["name"] == "ray"
    assert report["ray"]["engine"]["cluster_cpus"] == 2.0
    for name, rep in report.items():
        rows = rep["rows"]
        assert all(r["status"] == "ok" and r["p50_us"] > 0 for r in rows), name
        assert any(r["frontier"] for r in rows)
        # Each point in a fresh process, TensorFlow pinned to one thread.
        assert len({p["pid"] for p in rep["points"]}) == len(rep["points"])
        assert all(p["tf_threads"] == {"intra_op": 1, "inter_op": 1} for p in rep["points"])
    assert [p["engine"] for p in report["ray"]["points"]] == ["ray", "ray"]
    # The manifests name the folder the files are in, not the worker's temporary one.
    for point in report["ray"]["points"]:
        manifest = json.loads((ray_out / point["id"] / "manifest.json").read_text())
        assert manifest["config"]["output_dir"] == str(ray_out / point["id"])
    assert (ray_out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((ray_out / "sweep.csv").read_text().splitlines()) == 3


@pytest.fixture
def ray_cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray cluster as a user starts one (`ray start --head`, token authentication on, as Ray
    2.60 does by default), on a free loopback port, in its own HOME (its auth token) and temp
    dir; `--block` keeps it in one process group, stopped at the end (not `ray stop`, which
    stops every Ray of the machine). Yields its address and the environment to reach it with."""
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token", "COLUMNS": "200"}
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command of this Python
    # The cluster's token, in HOME/.ray/auth_token, where the sweep's Ray client reads it.
    token = subprocess.run(
        [*ray_cli, "get-auth-token", "--generate"], env=env, capture_output=True, check=False
    )
    assert (home / ".ray" / "auth_token").is_file(), token.stderr[-2000:]
    argv = [*ray_cli, "start", "--head", "--block", f"--port={port}"]
    argv += ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false"]
    # A short temp dir: Ray's socket paths must fit in 107 bytes.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ekray-"))
    argv += ["--disable-usage-stats", f"--temp-dir={ray_tmp}"]
    log = (tmp_path / "ray-start.log").open("w")
    head = subprocess.Popen(
        argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # up when its GCS port answers and `ray status` sees the node
            assert head.poll() is None, (tmp_path / "ray-start.log").read_text()[-2000:]
            status = subprocess.run(
                [*ray_cli, "status", f"--address={address}"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if status.returncode == 0 and "2.0 CPU" in status.stdout:
                break
            assert time.monotonic() < deadline, status.stdout + status.stderr
            time.sleep(1)
        yield address, env
    finally:
        with contextlib.suppress(ProcessLookupError):  # its whole group, whatever is left
            os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.heavy
def test_a_sweep_sent_to_a_running_ray_cluster_gives_the_default_engines_files(
    interrupted_sweep: dict[str, Any], ray_cluster: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    address, env = ray_cluster
    out = tmp_path / "cluster"
    args = [*TINY, *RAY_GRID, "--ray", address, "-o", str(out), "--quiet"]
    result = subprocess.run(
        [sys.executable, "-m", "edgekit.cli.main", "sweep", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,  # the cluster gets edgekit from the upload, not from the working folder
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "sweep.json").read_text())
    assert report["engine"]["name"] == "ray"
    assert report["engine"]["address"] == address
    assert report["engine"]["cluster_cpus"] == 2.0
    assert [p["engine"] for p in report["points"]] == ["ray", "ray"]
    # The same files, byte for byte, as the default engine's run of the same two points.
    local = interrupted_sweep["out"]
    assert _table(out) == [r for r in _table(local) if r["params"]["sparsity"] != 0.7]
    digests = _digests(out)
    assert len(digests) == 4 and digests.items() <= _digests(local).items()
    for point in report["points"]:
        manifest = json.loads((out / point["id"] / "manifest.json").read_text())
        assert manifest["config"]["output_dir"] == str(out / point["id"])


@pytest.mark.heavy
def test_a_failing_point_is_a_row_with_its_error_and_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # A batch larger than the training set leaves one pruning step: pruning cannot work.
    result = _sweep(
        *TINY, "--grid", "batch_size=64,4096", "--jobs", "2", "--no-bench", "-o", str(out)
    )
    assert result.returncode == 1
    report = json.loads((out / "sweep.json").read_text())
    ok, failed = report["rows"]
    assert ok["status"] == "ok" and ok["label"] == "batch_size=64" and ok["sha256"]
    assert failed["status"] == "error" and failed["label"] == "batch_size=4096"
    assert failed["error"] == PRUNE_TOO_SHORT and failed["file"] is None
    assert report["counts"] == {"points": 2, "ok": 1, "failed": 1, "resumed": 0}
    assert f"{failed['point']} batch_size=4096: {PRUNE_TOO_SHORT}" in result.stdout
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"Error: 1 of 2 point(s) failed: {failed['point']} (see the error rows")
    )
    assert (out / failed["point"] / "point.log").read_text().strip().endswith(PRUNE_TOO_SHORT)
    assert "| **error** |" in (out / "sweep.md").read_text()
