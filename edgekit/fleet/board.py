"""What a board has: Python, edgekit, runtime, CPU and the build it holds (one ssh probe)."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from edgekit.device.bench.machine import RELEVANT_CPU_FLAGS
from edgekit.fleet.devices import Device
from edgekit.fleet.ssh import BoardError, remote_path, run_remote

# ARM's CPU part numbers (/proc/cpuinfo "CPU part") of common boards' cores.
ARM_PARTS = {
    "0xc07": "Cortex-A7",
    "0xc08": "Cortex-A8",
    "0xc09": "Cortex-A9",
    "0xc0f": "Cortex-A15",
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd41": "Cortex-A78",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd80": "Cortex-A520",
    "0xd81": "Cortex-A720",
}
MIN_PYTHON = (3, 10)

# Runs on the board's Python (any 3.x): versions only, nothing heavy is imported.
_PY_PROBE = """
import platform, sys
print("python=" + platform.python_version())
try:
    from importlib.util import find_spec
    from importlib.metadata import version
except ImportError:
    sys.exit(0)
def found(name):
    try:
        return find_spec(name) is not None
    except Exception:  # a broken or blocked package counts as missing
        return False
if found("edgekit"):
    try:
        import edgekit
        print("edgekit=" + edgekit.__version__)
        print("edgekit_file=" + str(edgekit.__file__))
    except Exception as e:
        print("edgekit_error=" + str(e).splitlines()[0][:200])
for mod, dist in (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"),
                  ("tensorflow", "tensorflow")):
    if found(mod):
        try:
            print("runtime=%s %s" % (dist, version(dist)))
        except Exception:
            print("runtime=%s" % dist)
        break
if found("numpy"):
    try:
        print("numpy=" + version("numpy"))
    except Exception:
        pass
"""


def shell_prelude(device: Device) -> str:
    """sh lines setting $dest (absolute), $py (the venv's Python when it exists) and $venv."""
    py = remote_path(device.python) if "/" in device.python else shlex.quote(device.python)
    return "\n".join(
        [
            f"dest={remote_path(device.path)}",
            'case $dest in /*) ;; *) dest="$HOME/$dest" ;; esac',
            f"venv={remote_path(device.venv)}",
            'case $venv in /*) ;; *) venv="$HOME/$venv" ;; esac',
            f"py={py}",
            'if [ -x "$venv/bin/python" ]; then py="$venv/bin/python"; fi',
            "",
        ]
    )


@dataclass
class BoardInfo:
    """One board as the probe found it (strings as the board reported them)."""

    name: str
    target: str
    python_cmd: str = ""
    python: str | None = None
    arch: str | None = None
    edgekit: str | None = None
    edgekit_error: str | None = None
    edgekit_file: str | None = None
    runtime: str | None = None
    numpy: str | None = None
    cpu: str | None = None
    cpu_flags: list[str] = field(default_factory=list)
    has_sha256sum: bool = False
    manifest_sha256: str | None = None
    emulated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def python_ok(self) -> bool:
        if not self.python:
            return False
        try:
            major, minor = (int(v) for v in self.python.split(".")[:2])
        except ValueError:
            return False
        return (major, minor) >= MIN_PYTHON

    def hints(self) -> list[str]:
        """How to install what is missing, in the order to do it."""
        name = self.name
        out = []
        if not self.python:
            out.append(
                f"no Python at {self.python_cmd!r}: install Python >= 3.10 with venv "
                "(Debian: apt install python3 python3-venv), or set python in devices.toml"
            )
        elif not self.python_ok:
            out.append(f"Python {self.python} is older than 3.10, which edgekit needs")
        if self.python_ok and not self.edgekit:
            out.append(f"edgekit is not installed: `edgekit devices setup {name}`")
        if self.edgekit and not self.runtime:
            if self.arch in ("armv7l", "armv6l"):
                out.append("no TFLite runtime: pip install 'tflite-runtime==2.14.*' 'numpy<2'")
            else:
                out.append("no TFLite runtime: pip install ai-edge-litert")
        if not self.has_sha256sum:
            out.append("no sha256sum: install coreutils (or busybox)")
        return out


def probe_script(device: Device) -> str:
    return shell_prelude(device) + "\n".join(
        [
            'echo "python_cmd=$py"',
            'echo "arch=$(uname -m)"',
            "if command -v sha256sum >/dev/null 2>&1; then",
            "  echo sha256sum=yes",
            '  if [ -f "$dest/manifest.json" ]; then',
            '    echo "manifest_sha256=$(sha256sum <"$dest/manifest.json" | cut -c1-64)"',
            "  fi",
            "fi",
            "grep -iE '^(model name|hardware|cpu part|features|flags)[[:space:]]*:' "
            "/proc/cpuinfo 2>/dev/null | awk '!seen[$0]++' | sed 's/^/cpuinfo=/'",
            f'"$py" -c {shlex.quote(_PY_PROBE)} 2>/dev/null || true',
            "exit 0",
        ]
    )


def probe(device: Device) -> BoardInfo:
    """Ask the board what it has (one ssh session).

    Raises:
        BoardError: it cannot be reached (the message says why and what to do).
    """
    done = run_remote(device, probe_script(device), what="probe")
    if done.returncode != 0:
        raise BoardError(f"{device.name}: the probe failed: {done.stderr.strip()[-200:]}")
    return parse_probe(device, done.stdout.decode("utf-8", "replace"))


def parse_probe(device: Device, text: str) -> BoardInfo:
    info = BoardInfo(device.name, device.target, emulated=device.emulated)
    cpuinfo: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if key == "cpuinfo":
            k, _, v = value.partition(":")
            cpuinfo.setdefault(k.strip().lower(), v.strip())
        elif key == "sha256sum":
            info.has_sha256sum = True
        elif key in (
            "python_cmd",
            "python",
            "arch",
            "edgekit",
            "edgekit_error",
            "edgekit_file",
            "runtime",
        ):
            setattr(info, key, value or None)
        elif key == "numpy":
            info.numpy = value
        elif key == "manifest_sha256" and len(value) == 64:
            info.manifest_sha256 = value
    info.python_cmd = info.python_cmd or device.python
    info.cpu = cpu_name(cpuinfo)
    have = set((cpuinfo.get("flags") or cpuinfo.get("features") or "").split())
    info.cpu_flags = [f for f in RELEVANT_CPU_FLAGS if f in have]
    return info


def cpu_name(cpuinfo: dict[str, str]) -> str | None:
    """'model name' on x86; on ARM the core's name from its part number (and the board's)."""
    part = ARM_PARTS.get(cpuinfo.get("cpu part", "").lower())
    if part:
        hardware = cpuinfo.get("hardware")
        return f"{part} ({hardware})" if hardware else part
    return cpuinfo.get("model name") or cpuinfo.get("hardware") or None
