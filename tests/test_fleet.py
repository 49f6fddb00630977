"""Boards over SSH through a real OpenSSH server on 127.0.0.1: push, verify, bench --on,
devices check|setup, and the failures (unreachable, wrong or unknown host key, a copy cut
short, a board without edgekit).

The session's sshd listens on two free ports of 127.0.0.1 with a throwaway host key, accepts
one throwaway user key, and knows nothing else; the client finds it through its own ssh
config (EDGEKIT_SSH_CONFIG, passed to ssh as -F) and known_hosts. On the second port every
command runs under `ulimit -f 64` (files of at most 64 KB): a board whose disk fills up
during a copy. The "boards" are folders of this machine; one runs this Python with edgekit
on its PYTHONPATH, one a Python without site-packages (no edgekit).
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_no_tensorflow import BLOCKED, SITECUSTOMIZE

import edgekit
from edgekit.device.bench.machine import cpu_flags

SSHD = "/usr/sbin/sshd"
REPO = Path(edgekit.__file__).resolve().parents[1]
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekit-test", "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().split()[:2]  # type: ignore[return-value]


def _executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


class Lab:
    """The sshd, the client's config, and the boards' folders."""

    def __init__(self, root: Path, ports: dict[str, int], env: dict[str, str]) -> None:
        self.root, self.ports, self.env = root, ports, env
        self.devices = root / "devices.toml"

    def edgekit(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgekit.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )

    def board_dir(self, name: str) -> Path:
        return self.root / "boards" / name


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not os.path.exists(SSHD):
        pytest.fail(
            f"{SSHD} is missing: apt-get install -y openssh-server (scripts/install-data.sh "
            "installs it)"
        )
    root = tmp_path_factory.mktemp("fleet")
    host_type, host_key = _keygen(root / "host_key")
    _, other_key = _keygen(root / "other_host_key")
    _keygen(root / "user_key")
    shutil.copy(root / "user_key.pub", root / "authorized_keys")
    ports = {n: _free_port() for n in ("main", "full", "slow", "down")}
    user = getpass.getuser()
    (root / "sshd_config").write_text(
        f"Port {ports['main']}\nPort {ports['full']}\nPort {ports['slow']}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nLogLevel ERROR\n"
        f"AllowUsers {user}\n"
        # The second port: files of at most 64 KB, as on a board whose disk is full.
        f"Match LocalPort {ports['full']}\n"
        '    ForceCommand ulimit -f 64; eval "$SSH_ORIGINAL_COMMAND"\n'
        # The third: a board that accepts the login, then hangs.
        f"Match LocalPort {ports['slow']}\n    ForceCommand sleep 60\n"
    )
    (root / "known_hosts").write_text(
        f"[127.0.0.1]:{ports['main']} {host_type} {host_key}\n"
        f"[127.0.0.1]:{ports['full']} {host_type} {host_key}\n"
        f"[127.0.0.1]:{ports['slow']} {host_type} {host_key}\n"
    )
    (root / "wrong_known_hosts").write_text(
        f"[127.0.0.1]:{ports['main']} {host_type} {other_key}\n"
    )
    (root / "empty_known_hosts").write_text("")
    (root / "ssh_config").write_text(
        f"Host board-full\n    Port {ports['full']}\n"
        f"Host board-badkey\n    UserKnownHostsFile {root / 'wrong_known_hosts'}\n"
        f"Host board-unknown\n    UserKnownHostsFile {root / 'empty_known_hosts'}\n"
        f"Host board-down\n    Port {ports['down']}\n"
        f"Host board-slow\n    Port {ports['slow']}\n"
        f"Host *\n    HostName 127.0.0.1\n    Port {ports['main']}\n    User {user}\n"
        f"    IdentityFile {root / 'user_key'}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {root / 'known_hosts'}\n    StrictHostKeyChecking yes\n"
        "    GlobalKnownHostsFile /dev/null\n"
    )
    # A board Python with edgekit (this tree, by PYTHONPATH) and one without any site-packages.
    py = _executable(
        root / "board-python", f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} "$@"\n'
    )
    bare_py = _executable(root / "bare-python", f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    # edgekit, but every TFLite runtime blocked (test_no_tensorflow's import blocker).
    blocker = root / "no-runtime"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(SITECUSTOMIZE.replace(repr(BLOCKED), repr(RUNTIMES)))
    no_runtime_py = _executable(
        root / "no-runtime-python",
        f'#!/bin/sh\nPYTHONPATH={blocker}:{REPO} exec {sys.executable} "$@"\n',
    )
    boards = root / "boards"
    novenv = root / "no-venv"
    devices = {
        "board": ("board", "board/models", py),
        "bench1": ("board", "bench1/models", py),
        "bare": ("board", "bare/models", bare_py),
        "full": ("board-full", "cut/models", py),
        "cut": ("board", "cut/models", py),
        "badkey": ("board-badkey", "badkey/models", py),
        "unknown": ("board-unknown", "unknown/models", py),
        "down": ("board-down", "down/models", py),
        "noruntime": ("board", "noruntime/models", no_runtime_py),
        "slow": ("board-slow", "slow/models", py),
    }
    lines = [f'ssh_config = "{root / "ssh_config"}"']
    for name, (target, path, python) in devices.items():
        lines += [
            f"[devices.{name}]",
            f'target = "{target}"',
            f'path = "{boards / path}"',
            f'python = "{python}"',
            f'venv = "{novenv}"',
            f"timeout = {3 if name == 'slow' else 120}",
        ]
    lines += [
        "[devices.fresh]",
        'target = "board"',
        f'path = "{boards / "fresh/models"}"',
        f'python = "{sys.executable}"',
        f'venv = "{root / "fresh-venv"}"',
        "system_site_packages = true",
        'pip_args = ["--no-index"]',  # offline: the dependencies are this Python's
    ]
    (root / "devices.toml").write_text("\n".join(lines) + "\n")
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder
    proc = subprocess.Popen(
        [SSHD, "-f", str(root / "sshd_config"), "-D", "-e"],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "sshd.log", "w"),  # noqa: SIM115
    )
    env = {**os.environ, "EDGEKIT_DEVICES": str(root / "devices.toml"), "COLUMNS": "250"}
    env.pop("EDGEKIT_SSH_CONFIG", None)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", ports["main"]), timeout=1).close()
                socket.create_connection(("127.0.0.1", ports["full"]), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sshd did not start: {(root / 'sshd.log').read_text()[-2000:]}")
                time.sleep(0.1)
        yield Lab(root, ports, env)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.glob(f".{folder.name}.edgekit-*"))


@pytest.fixture(scope="session")
def build(artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's export (read-only): float32, float16, int8 and manifest.json."""
    out = tmp_path_factory.mktemp("build") / "models"
    shutil.copytree(artifacts_dir, out, ignore=shutil.ignore_patterns("*.keras", "bench.*"))
    return out


@pytest.fixture(scope="session")
def test_npz(small_data: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "test.npz"
    x = np.round(np.asarray(small_data.x_test[:100]) * 255).astype(np.uint8)
    np.savez(path, x_test=x, y_test=np.asarray(small_data.y_test[:100]))
    return path


def _other_build(build: Path, tmp_path: Path) -> Path:
    """The same files with a manifest.json that differs (another build, as a board sees it)."""
    other = tmp_path / "models"
    shutil.copytree(build, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["config"]["note"] = "the second build"
    (other / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return other


def test_push_copies_the_build_whole_and_verifies_it_on_the_board(lab: Lab, build: Path) -> None:
    proc = lab.edgekit("push", str(build), "board", "-q")
    assert proc.returncode == 0, proc.stderr
    dest = lab.board_dir("board/models")
    litert = importlib.metadata.version("ai-edge-litert")
    assert proc.stdout.splitlines() == [
        f"board: ok: 4 files in board:{dest}, edgekit verify passed (litert {litert})"
    ]
    for f in build.iterdir():
        assert _sha(dest / f.name) == _sha(f)
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in build.iterdir())
    assert _leftovers(dest) == []


def test_a_board_without_edgekit_gets_a_sha256_check_and_an_install_hint(
    lab: Lab, build: Path
) -> None:
    proc = lab.edgekit("push", str(build), "bare", "-q")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("bare: ok: 4 files in"), line
    assert "sha256 checked; edgekit is not installed on bare" in line
    assert "`edgekit devices setup bare`" in line
    assert _sha(lab.board_dir("bare/models") / "manifest.json") == _sha(build / "manifest.json")


def test_unreachable_and_host_key_failures_are_one_line_each_and_copy_nothing(
    lab: Lab, build: Path
) -> None:
    proc = lab.edgekit("push", str(build), "board,down", "badkey", "unknown", "-q")
    assert proc.returncode == 1
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert list(lines) == ["board", "down", "badkey", "unknown"]
    assert lines["board"].startswith("ok: "), lines["board"]
    assert lines["down"] == "FAILED: unreachable: connection refused (is sshd running? right port?)"
    assert lines["badkey"].startswith(
        f"FAILED: wrong host key: [127.0.0.1]:{lab.ports['main']}'s key differs from the one in "
        f"{lab.root / 'wrong_known_hosts'}:1; nothing was copied."
    ), lines["badkey"]
    assert lines["unknown"].startswith(
        f"FAILED: unknown host key: [127.0.0.1]:{lab.ports['main']} is not in known_hosts"
    )
    for name in ("down", "badkey", "unknown"):
        assert not lab.board_dir(name).exists()
    assert "Error: 3 of 4 board(s) failed: down, badkey, unknown" in proc.stderr


def test_a_hung_board_times_out_and_a_board_without_runtime_says_so(lab: Lab, build: Path) -> None:
    proc = lab.edgekit("push", str(build), "slow", "noruntime", "-q")
    assert proc.returncode == 1
    slow, noruntime = proc.stdout.splitlines()
    assert slow == (
        "slow: FAILED: timed out after 3 s (probe): the board is slow or hung; "
        "raise timeout in devices.toml"
    )
    assert noruntime.startswith(
        "noruntime: FAILED: edgekit verify failed: no TFLite runtime could be imported"
    ), noruntime
    assert "pip install ai-edge-litert" in noruntime
    # The files arrived whole (sha256 checked there) before verify found no runtime.
    dest = lab.board_dir("noruntime/models")
    assert _sha(dest / "manifest.json") == _sha(build / "manifest.json")
    check = lab.edgekit("devices", "check", "noruntime", "--json")
    (out,) = json.loads(check.stdout)
    assert out["info"]["edgekit"] == edgekit.__version__ and out["info"]["runtime"] is None
    assert out["hints"] == ["no TFLite runtime: pip install ai-edge-litert"]


def test_a_copy_cut_short_by_a_full_disk_leaves_the_previous_build(
    lab: Lab, build: Path, tmp_path: Path
) -> None:
    first = lab.edgekit("push", str(build), "cut", "-q")
    assert first.returncode == 0, first.stdout + first.stderr
    dest = lab.board_dir("cut/models")
    before = {p.name: _sha(p) for p in dest.iterdir()}
    other = _other_build(build, tmp_path)
    assert max(p.stat().st_size for p in other.iterdir()) > 64 * 1024  # too big for that disk
    proc = lab.edgekit("push", str(other), "full", "-q")
    assert proc.returncode == 1
    (line,) = proc.stdout.splitlines()
    assert line.startswith("full: FAILED: copy failed: the copy was cut short (tar exit"), line
    assert line.endswith("disk full?): the previous build is kept"), line
    assert {p.name: _sha(p) for p in dest.iterdir()} == before
    assert _leftovers(dest) == []
    # The same build through a disk with room replaces it whole.
    again = lab.edgekit("push", str(other), "cut", "-q")
    assert again.returncode == 0, again.stdout
    assert _sha(dest / "manifest.json") == _sha(other / "manifest.json") != before["manifest.json"]
    assert _leftovers(dest) == []


def test_bench_on_boards_gives_one_table_and_a_row_for_the_board_that_failed(
    lab: Lab, build: Path, test_npz: Path, tmp_path: Path
) -> None:
    out = tmp_path / "models"
    shutil.copytree(build, out)
    fast = ["--min-runs", "5", "--min-time", "0", "--warmup-runs", "1", "--warmup-time", "0"]
    args = ["bench", str(out), "--on", "bench1,down", "--data", str(test_npz), *fast, "-q"]
    proc = lab.edgekit(*args, "--rounds", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fleet = json.loads((out / "fleet.json").read_text())
    assert [(b["name"], b["ok"], b["pushed"]) for b in fleet["boards"]] == [
        ("bench1", True, True),
        ("down", False, False),
    ]
    assert fleet["boards"][1]["error"].startswith("unreachable: connection refused")
    board = json.loads((out / "bench.bench1.json").read_text())
    assert board["format"] == "edgekit-bench/1"
    assert board["machine"]["cpu_flags"] == cpu_flags()
    assert board["data"]["samples"] == 100
    files = sorted(r["file"] for r in board["rows"])
    assert sorted(r["file"] for r in fleet["rows"]) == files
    assert len(files) == 3 and all(r["status"] == "ok" for r in board["rows"])
    for row in fleet["rows"]:
        cell = row["boards"]["bench1"]
        mine = next(r for r in board["rows"] if r["file"] == row["file"])
        assert cell["p50_us"] == mine["latency"]["p50_us"] > 0
        assert cell["accuracy"] == mine["accuracy"] > 0.5
    table = proc.stdout
    for f in files:
        assert f in table
    assert "down: unreachable: connection refused" in table
    assert not (out / "bench.down.json").exists()
    assert (out / "fleet.md").read_text().count("| ") > 3
    assert (out / "fleet.png").read_bytes()[:4] == b"\x89PNG"
    with (out / "fleet.csv").open(newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert sorted(r["file"] for r in lines if r["board"] == "bench1") == files
    assert [r["status"] for r in lines if r["board"] == "down"] == [
        "error: " + fleet["boards"][1]["error"]
    ]
    # The board holds this build now: the second run measures without copying; --csv too.
    again = lab.edgekit(
        *args[:3], "bench1", *args[4:], "--rounds", "1", "--csv", str(tmp_path / "f.csv")
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((out / "fleet.json").read_text())["boards"][0]["pushed"] is False
    with (tmp_path / "f.csv").open(newline="") as fh:
        again_lines = list(csv.DictReader(fh))
    assert {r["board"] for r in again_lines} == {"bench1"} and len(again_lines) == len(files)
    assert all(float(r["p50_us"]) > 0 for r in again_lines)


def test_devices_check_says_what_each_board_has_and_lacks(lab: Lab) -> None:
    proc = lab.edgekit("devices", "check", "board", "bare", "down", "--json")
    assert proc.returncode == 1
    by_name = {o["name"]: o for o in json.loads(proc.stdout)}
    board = by_name["board"]["info"]
    assert by_name["board"]["ok"] and board["edgekit"] == edgekit.__version__
    assert board["runtime"].startswith("ai-edge-litert ")
    assert board["cpu_flags"] == cpu_flags() and board["arch"] == os.uname().machine
    assert by_name["board"]["hints"] == []
    assert not by_name["bare"]["ok"] and by_name["bare"]["info"]["edgekit"] is None
    assert by_name["bare"]["hints"] == ["edgekit is not installed: `edgekit devices setup bare`"]
    assert by_name["down"]["error"].startswith("unreachable: connection refused")
    table = lab.edgekit("devices", "check", "board", "bare")
    assert table.returncode == 1
    assert "bare: edgekit is not installed: `edgekit devices setup bare`" in table.stdout
    assert "Error: 1 of 2 board(s) not ready: bare" in table.stderr


def test_devices_setup_builds_the_wheel_installs_it_in_a_venv_and_checks_it(
    lab: Lab, build: Path
) -> None:
    proc = lab.edgekit("devices", "setup", "fresh", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    venv = lab.root / "fresh-venv"
    assert proc.stdout.startswith(f"fresh: ok: edgekit {edgekit.__version__} with ai-edge-litert")
    shown = [line for line in proc.stderr.splitlines() if line.startswith("$ ")]
    assert "-m pip wheel --no-deps" in shown[0]
    assert shown[1] == f"$ ssh board '{sys.executable} -m venv --system-site-packages {venv}'"
    assert shown[2].startswith("$ tar -c edgekit-") and "| ssh board 'tar -x -C" in shown[2]
    assert "-m pip install --no-index" in shown[3]
    check = lab.edgekit("devices", "check", "fresh", "--json")
    (info,) = json.loads(check.stdout)
    # edgekit now comes from the venv (its own copy), not from this tree.
    assert info["info"]["edgekit_file"].startswith(str(venv) + "/")
    assert info["info"]["python_cmd"] == f"{venv}/bin/python"
    pushed = lab.edgekit("push", str(build), "fresh", "-q")
    assert pushed.returncode == 0 and "edgekit verify passed" in pushed.stdout, pushed.stdout


def test_a_devices_file_error_is_one_line(lab: Lab, tmp_path: Path, build: Path) -> None:
    bad = tmp_path / "devices.toml"
    bad.write_text('[devices.pi]\ntarget = "pi@pi"\nthread = 4\n')
    proc = lab.edgekit("push", str(build), "pi", "--devices", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: {bad}: [devices.pi]: unknown key 'thread' (expected target, path, python, "
        "venv, threads, system_site_packages, emulated, timeout, pip_args)"
    ]
    proc = lab.edgekit("push", str(build), "nosuchboard")
    assert proc.returncode == 1
    assert "unknown board 'nosuchboard'" in proc.stderr and "user@host:path" in proc.stderr


@pytest.mark.heavy
def test_export_on_boards_records_each_boards_p50_and_recommendation(
    lab: Lab, artifacts_dir: Path, tmp_path: Path
) -> None:
    """Issue 17, item 5: the export summary and manifest carry each board's p50; a latency
    budget on a named board picks the smallest file within it there (none fits 1 ns)."""
    (model,) = artifacts_dir.glob("*.keras")
    out = tmp_path / "out"
    small = ["--train-samples", "3000", "--test-samples", "1000", "--validation-size", "500"]
    args = ["export", str(model), "-o", str(out), *small, "--calibration-samples", "100", "-q"]
    wrong = lab.edgekit(*args, "--on", "board", "--max-latency-ms", "bench1=1")
    assert wrong.returncode == 2 and "names board(s) not in --on: bench1" in wrong.stderr
    assert not out.exists()  # refused before anything was trained or written
    proc = lab.edgekit(
        *args,
        "--on",
        "board,bench1",
        "--max-latency-ms",
        "board=1000",
        "--max-latency-ms",
        "bench1=0.000001",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["file"]: f["bytes"] for f in manifest["files"]}
    smallest = min(files, key=lambda f: files[f])
    boards = manifest["selection"]["boards"]
    assert set(boards) == {"board", "bench1"}
    for entry in boards.values():
        assert set(entry["p50_us"]) == set(files) and all(v > 0 for v in entry["p50_us"].values())
        assert entry["cpu_flags"] == cpu_flags() and entry["emulated"] is False
    assert boards["board"]["recommended"] == smallest and boards["board"]["max_latency_ms"] == 1000
    assert boards["bench1"]["recommended"] is None
    assert boards["bench1"]["note"].startswith("no file within 1e-06 ms (fastest: ")
    p50 = boards["board"]["p50_us"][smallest]
    assert f"recommended on board: {smallest} (p50 {p50:.1f} us, within 1000 ms)" in proc.stdout
    assert "recommended on bench1: none (no file within 1e-06 ms" in proc.stdout
    assert (out / "bench.board.json").is_file() and (out / "fleet.json").is_file()
    # The boards got the manifest with their p50s: they hold this build, a push sends nothing.
    for name in ("board", "bench1"):
        assert _sha(lab.board_dir(f"{name}/models") / "manifest.json") == _sha(
            out / "manifest.json"
        )
    fast = ["--min-runs", "3", "--min-time", "0", "--warmup-runs", "1", "--warmup-time", "0"]
    again = lab.edgekit("bench", str(out), "--on", "board", *fast, "--rounds", "1", "-q")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((out / "fleet.json").read_text())["boards"][0]["pushed"] is False


def test_targets_are_board_names_comma_lists_or_user_at_host_colon_path(tmp_path: Path) -> None:
    from edgekit.core.errors import DeviceError
    from edgekit.fleet.devices import load_devices, resolve_targets

    file = tmp_path / "devices.toml"
    file.write_text(
        'ssh_config = "lab_config"\n[devices.pi5]\ntarget = "pi@pi5.local"\nthreads = 4\n'
        '[devices.pi4]\ntarget = "pi4"\nvenv = "/opt/ek"\nemulated = true\n'
    )
    devices = load_devices(file)
    assert devices.ssh_config == str(tmp_path / "lab_config")  # relative to the file
    boards = resolve_targets(["pi5,pi4", "me@10.0.0.7:/srv/models"], devices)
    assert [(b.name, b.target, b.path) for b in boards] == [
        ("pi5", "pi@pi5.local", "edgekit/models"),
        ("pi4", "pi4", "edgekit/models"),
        ("10.0.0.7", "me@10.0.0.7", "/srv/models"),
    ]
    assert boards[0].threads == 4 and boards[1].venv == "/opt/ek" and boards[1].emulated
    assert all(b.ssh_config == str(tmp_path / "lab_config") for b in boards)
    with pytest.raises(DeviceError, match=r"unknown board 'pi3' \(boards in .*: pi5, pi4\)"):
        resolve_targets(["pi3"], devices)
    with pytest.raises(DeviceError, match="two targets are both named 'h'"):
        resolve_targets(["a@h:/x", "b@h:/y"], devices)
    file.write_text('[devices.pi5]\ntarget = "pi5"\nthreads = "4"\n')
    with pytest.raises(DeviceError, match=r"\[devices.pi5\]: threads has the wrong type \('4'\)"):
        load_devices(file)
