"""`edgekit devices check` and `edgekit devices setup NAME`: what a board has; give it edgekit.

setup builds edgekit's wheel here, creates a venv on the board, copies the wheel there and
installs it with pip, which picks the runtime by the wheel's platform markers (ai-edge-litert,
or tflite-runtime + numpy<2 on 32-bit ARM), then checks the result. Every command is printed.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import edgekit
from edgekit.core.errors import DeviceError
from edgekit.fleet.board import BoardInfo, probe, shell_prelude
from edgekit.fleet.devices import Device
from edgekit.fleet.parallel import on_boards
from edgekit.fleet.push import verify_remote, write_tar
from edgekit.fleet.ssh import BoardError, remote_error, run_remote, shown

WHEEL_TIMEOUT_S = 300.0
# What a wheel is built from (besides edgekit/).
_SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "NOTICE", "MANIFEST.in")


@dataclass
class CheckOutcome:
    name: str
    target: str
    info: BoardInfo | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Reachable, with edgekit and a runtime."""
        return self.info is not None and bool(self.info.edgekit and self.info.runtime)


def check_boards(devices: Sequence[Device]) -> list[CheckOutcome]:
    """Probe every board in parallel; an unreachable board is an outcome with its error."""

    def one(device: Device) -> CheckOutcome:
        try:
            return CheckOutcome(device.name, device.target, probe(device))
        except BoardError as e:
            return CheckOutcome(
                device.name, device.target, error=str(e).removeprefix(f"{device.name}: ")
            )

    return on_boards(devices, one)


def source_tree() -> Path:
    """The source tree edgekit runs from (a checkout or an editable install).

    Raises:
        DeviceError: edgekit was installed from a wheel: there is nothing to build from.
    """
    root = Path(edgekit.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise DeviceError(
            f"edgekit here runs from {root}, not from a source tree: pass --wheel FILE "
            "(e.g. from `pip download edgekit --no-deps -d wheels`)"
        )
    return root


def build_wheel(out_dir: Path, say: Callable[[str], None]) -> Path:
    """`pip wheel --no-deps` of this edgekit into `out_dir` (from a clean copy of the tree).

    Raises:
        DeviceError: pip failed (its last lines are in the message).
    """
    root = source_tree()
    with tempfile.TemporaryDirectory(prefix="edgekit-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in _SOURCE_FILES:
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        shutil.copytree(
            root / "edgekit", src / "edgekit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out_dir)]
        if _can_build_here():
            cmd.append("--no-build-isolation")  # offline: build with what is installed
        say("$ " + shlex.join([*cmd, str(root)]))
        done = subprocess.run(
            [*cmd, str(src)], capture_output=True, text=True, timeout=WHEEL_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise DeviceError(f"pip wheel failed: {tail}")
    wheels = sorted(out_dir.glob("edgekit-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise DeviceError(f"pip wheel wrote no edgekit-*.whl into {out_dir}")
    return wheels[-1]


def _can_build_here() -> bool:
    """setuptools >= 70.1 builds wheels by itself; older ones need the wheel package."""
    import importlib.util

    try:
        from importlib.metadata import version

        major, minor = (int(v) for v in version("setuptools").split(".")[:2])
    except Exception:
        return False
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _step(
    device: Device,
    shown_cmd: str,
    script: str,
    say: Callable[[str], None],
    what: str,
    feed: Callable[..., None] | None = None,
) -> str:
    say("$ " + shown_cmd)
    done = run_remote(device, shell_prelude(device) + script, feed=feed, what=what)
    if done.returncode != 0:
        raise remote_error(device, done, what)
    return done.stdout.decode("utf-8", "replace")


# Long but flat: the printed steps of a board's set-up in order (probe, venv, copy, install,
# check), each failing with its own one-line error.
def setup_board(device: Device, wheel: Path, say: Callable[[str], None]) -> BoardInfo:
    """Create the venv on `device`, install `wheel` there, check it.

    Raises:
        BoardError: a step failed (the message names it and says what to do).
    """
    info = probe(device)
    if not info.python_ok:
        raise BoardError(f"{device.name}: " + (info.hints() or ["no usable Python"])[0])
    venv = device.venv
    flags = " --system-site-packages" if device.system_site_packages else ""
    pip_args = " ".join(shlex.quote(a) for a in device.pip_args)
    pip_args = f" {pip_args}" if pip_args else ""
    base_py = shlex.quote(device.python)
    _step(
        device,
        shown(device, f"{device.python} -m venv{flags} {venv}")
        + (
            "  # exists: kept" if info.python_cmd.endswith(f"{venv.strip('~/')}/bin/python") else ""
        ),
        f'if [ ! -x "$venv/bin/python" ]; then {base_py} -m venv{flags} "$venv" || '
        'echo "edgekit-fleet: python -m venv failed: install the venv module '
        '(Debian: apt install python3-venv)" >&2; fi\n'
        '[ -x "$venv/bin/python" ] || exit 1',
        say,
        "venv",
    )
    _step(
        device,
        f"tar -c {wheel.name} | " + shown(device, f"tar -x -C {venv}/wheels"),
        'mkdir -p -- "$venv/wheels" && tar -xf - -C "$venv/wheels"',
        say,
        "copy the wheel",
        feed=lambda out: write_tar(out, [(wheel.name, wheel)]),
    )
    w = shlex.quote(wheel.name)
    _step(
        device,
        shown(
            device,
            f"{venv}/bin/python -m pip install{pip_args} {venv}/wheels/{wheel.name} && "
            f"{venv}/bin/python -m pip install{pip_args} --force-reinstall --no-deps "
            f"{venv}/wheels/{wheel.name}",
        ),
        f'"$venv/bin/python" -m pip install -q{pip_args} "$venv/wheels/"{w} >&2 && '
        f'"$venv/bin/python" -m pip install -q{pip_args} --force-reinstall --no-deps '
        f'"$venv/wheels/"{w} >&2',
        say,
        "pip install",
    )
    say("$ " + shown(device, f"{venv}/bin/python -m edgekit.cli.main --version"))
    after = probe(device)
    want = edgekit.__version__
    if after.edgekit != want:
        raise BoardError(
            f"{device.name}: after the install the venv has edgekit {after.edgekit}, not {want}"
        )
    if not after.runtime:
        raise BoardError(f"{device.name}: installed, but " + "; ".join(after.hints()))
    if after.manifest_sha256:  # a build is there already: load and run it once
        say("$ " + shown(device, f"{venv}/bin/python -m edgekit.cli.main verify {device.path}"))
        verify_remote(device)
    return after
