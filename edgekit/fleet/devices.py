"""The boards: a devices file (devices.toml) and the TARGETs of the command line.

ssh_config = "~/.ssh/lab_config"      # optional: passed to ssh as -F
[devices.pi5]
target = "pi@pi5.local"               # what you type after `ssh`: a Host of ~/.ssh/config
path = "edgekit/models"               # the folder the build goes to (relative: home)
python = "python3"                    # the Python that creates the venv (or has edgekit)
venv = "edgekit-venv"                 # used when it exists: VENV/bin/python
threads = 4                           # bench threads on this board
system_site_packages = false          # venv sees Debian's numpy (32-bit ARM: true)
emulated = false                      # timings under qemu are not speeds
timeout = 600                         # seconds one remote step may take
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.core.errors import DeviceError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEVICES_FILE_NAME = "devices.toml"
# Where the devices file is looked for when --devices is not given, after $EDGEKIT_DEVICES.
DEVICES_SEARCH = (Path(DEVICES_FILE_NAME), Path("~/.config/edgekit") / DEVICES_FILE_NAME)
DEFAULT_REMOTE_PATH = "edgekit/models"
DEFAULT_VENV = "edgekit-venv"
DEFAULT_STEP_TIMEOUT_S = 600.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "target": str,
    "path": str,
    "python": str,
    "venv": str,
    "threads": int,
    "system_site_packages": bool,
    "emulated": bool,
    "timeout": (int, float),
    "pip_args": list,
}


@dataclass(frozen=True)
class Device:
    """One board: how to reach it (`target`, as typed after `ssh`) and where things go there."""

    name: str
    target: str
    path: str = DEFAULT_REMOTE_PATH
    python: str = "python3"
    venv: str = DEFAULT_VENV
    threads: int | None = None
    system_site_packages: bool = False
    emulated: bool = False
    timeout_s: float = DEFAULT_STEP_TIMEOUT_S
    pip_args: tuple[str, ...] = ()
    ssh_config: str | None = None
    from_file: bool = field(default=False, compare=False)

    @property
    def where(self) -> str:
        """`target:path`, as scp would write it."""
        return f"{self.target}:{self.path}"


@dataclass(frozen=True)
class DevicesFile:
    path: Path | None
    devices: dict[str, Device]
    ssh_config: str | None = None

    def get(self, name: str) -> Device:
        if name in self.devices:
            return self.devices[name]
        known = ", ".join(self.devices) or "none"
        where = self.path or "no devices file"
        raise DeviceError(
            f"unknown board {name!r} (boards in {where}: {known}): add it to {DEVICES_FILE_NAME} "
            "or give user@host:path"
        )


def find_devices_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    """--devices, else $EDGEKIT_DEVICES, else ./devices.toml, else ~/.config/edgekit/."""
    if path is not None:
        return Path(path)
    env = os.environ.get("EDGEKIT_DEVICES")
    if env:
        return Path(env)
    for candidate in DEVICES_SEARCH:
        candidate = candidate.expanduser()
        if candidate.is_file():
            return candidate
    return None


def _bad(path: Path, what: str) -> DeviceError:
    return DeviceError(f"{path}: {what}")


def load_devices(path: str | os.PathLike[str] | None = None) -> DevicesFile:
    """Read a devices file (see the module doc); no file found means no named boards.

    Raises:
        DeviceError: the file is missing (when named), not TOML, or a field is wrong.
    """
    found = find_devices_file(path)
    ssh_config_env = os.environ.get("EDGEKIT_SSH_CONFIG") or None
    if found is None:
        return DevicesFile(None, {}, ssh_config_env)
    try:
        data = tomllib.loads(found.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeviceError(
            f"devices file {found} does not exist: write one (see docs/fleet.md) or drop --devices"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DeviceError(f"cannot read devices file {found}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise _bad(found, f"not valid TOML ({e}): fix the line it names") from None
    unknown_top = set(data) - {"ssh_config", "devices"}
    if unknown_top:
        raise _bad(
            found,
            f"unknown key(s) {', '.join(sorted(unknown_top))}: expected ssh_config and "
            "[devices.NAME] tables",
        )
    ssh_config = data.get("ssh_config", ssh_config_env)
    if ssh_config is not None and not isinstance(ssh_config, str):
        raise _bad(found, "ssh_config must be a path (a string)")
    if ssh_config:
        ssh_config = _relative_to(found, ssh_config)
    boards = data.get("devices", {})
    if not isinstance(boards, dict):
        raise _bad(found, "devices must be tables: [devices.NAME] with target = 'user@host'")
    devices = {}
    for name, entry in boards.items():
        devices[name] = _device(found, name, entry, ssh_config)
    return DevicesFile(found, devices, ssh_config)


def _relative_to(devices_file: Path, value: str) -> str:
    """A relative ssh_config is relative to the devices file's folder."""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (devices_file.parent / p).resolve())


def _device(found: Path, name: str, entry: Any, ssh_config: str | None) -> Device:
    if not _NAME.fullmatch(name):
        raise _bad(found, f"board name {name!r}: use letters, digits, '-', '_' or '.'")
    if not isinstance(entry, dict):
        raise _bad(found, f"[devices.{name}] must be a table with target = 'user@host'")
    for key, value in entry.items():
        want = _FIELDS.get(key)
        if want is None:
            raise _bad(
                found,
                f"[devices.{name}]: unknown key {key!r} (expected {', '.join(_FIELDS)})",
            )
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise _bad(found, f"[devices.{name}]: {key} has the wrong type ({value!r})")
    if not entry.get("target"):
        raise _bad(found, f"[devices.{name}] needs target = 'user@host' (as typed after ssh)")
    threads = entry.get("threads")
    if threads is not None and threads < 1:
        raise _bad(found, f"[devices.{name}]: threads must be >= 1, got {threads}")
    timeout = float(entry.get("timeout", DEFAULT_STEP_TIMEOUT_S))
    if not timeout > 0:
        raise _bad(found, f"[devices.{name}]: timeout must be > 0 seconds, got {timeout}")
    pip_args = entry.get("pip_args", [])
    if not all(isinstance(a, str) for a in pip_args):
        raise _bad(found, f"[devices.{name}]: pip_args must be a list of strings")
    return Device(
        name=name,
        target=entry["target"],
        path=entry.get("path", DEFAULT_REMOTE_PATH),
        python=entry.get("python", "python3"),
        venv=entry.get("venv", DEFAULT_VENV),
        threads=threads,
        system_site_packages=entry.get("system_site_packages", False),
        emulated=entry.get("emulated", False),
        timeout_s=timeout,
        pip_args=tuple(pip_args),
        ssh_config=ssh_config,
        from_file=True,
    )


def _adhoc(text: str, ssh_config: str | None) -> Device:
    """`user@host:path` (scp's form) as a board named after its host."""
    host, _, path = text.rpartition(":")
    if not host or not path:
        raise DeviceError(
            f"target {text!r} is neither a board of the devices file nor user@host:path: "
            "e.g. pi@pi5.local:edgekit/models"
        )
    bare = host.rpartition("@")[2]
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", bare).strip(".-") or "board"
    return Device(name=name, target=host, path=path, ssh_config=ssh_config)


def resolve_targets(targets: Iterable[str], devices: DevicesFile) -> list[Device]:
    """Boards for TARGETs: names of the devices file or user@host:path, comma lists allowed.

    Raises:
        DeviceError: a name is unknown, a target is malformed, or two boards share a name.
    """
    out: dict[str, Device] = {}
    for text in targets:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if part in devices.devices:
                board = devices.devices[part]
            elif ":" in part:
                board = _adhoc(part, devices.ssh_config)
            else:
                devices.get(part)  # raises: unknown name
                continue
            if board.name in out and out[board.name] != board:
                raise DeviceError(
                    f"two targets are both named {board.name!r}: name them in {DEVICES_FILE_NAME}"
                )
            out[board.name] = board
    if not out:
        raise DeviceError("no board given: name boards of devices.toml or user@host:path")
    return list(out.values())
