"""Remote commands through the system OpenSSH client, with a timeout and one-line errors.

`ssh` reads the user's ~/.ssh/config, keys, agent, jump hosts and known_hosts by itself; edgekit
adds only `BatchMode=yes` (never prompt: a missing key or an unknown host fails at once) and
timeouts. Host-key checking is never turned off. Why not Fabric/paramiko/asyncssh: docs/fleet.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from edgekit.core.errors import DeviceError
from edgekit.fleet.devices import Device

CONNECT_TIMEOUT_S = 10
# A board that stops answering mid-session is dropped after about 3 x 5 s.
SERVER_ALIVE = ("ServerAliveInterval=5", "ServerAliveCountMax=3")
SSH_FAILED = 255  # ssh's own exit status (connection, authentication, host key)
# The ssh processes running now (any thread), so Ctrl-C can stop them all.
_live: set[subprocess.Popen[bytes]] = set()
_live_guard = threading.Lock()


class BoardError(DeviceError):
    """One board failed one step; the message is the whole one-line story."""


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: str


def ssh_argv(device: Device, remote_command: str | None = None) -> list[str]:
    """The ssh command line for `device` (the command runs under `sh -c` there)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
    for opt in SERVER_ALIVE:
        argv += ["-o", opt]
    if device.ssh_config:
        argv += ["-F", device.ssh_config]
    argv += ["--", device.target]
    if remote_command is not None:
        argv.append("sh -c " + shlex.quote(remote_command))
    return argv


def shown(device: Device, remote_command: str) -> str:
    """How a remote command reads when printed: ssh HOST 'COMMAND'."""
    return f"ssh {device.target} {shlex.quote(remote_command)}"


def run_remote(
    device: Device,
    script: str,
    *,
    feed: Callable[[IO[bytes]], None] | None = None,
    timeout_s: float | None = None,
    what: str = "run",
) -> Completed:
    """Run `script` (POSIX sh) on `device`; `feed` writes its stdin (a tar stream), if given.

    Raises:
        BoardError: ssh could not connect or log in, the host key is refused, or the step
            took longer than the timeout (the ssh process and its children are killed).
    """
    timeout = timeout_s if timeout_s is not None else device.timeout_s
    read_fd, write_fd = os.pipe() if feed is not None else (None, None)
    try:
        proc = subprocess.Popen(
            ssh_argv(device, script),
            stdin=read_fd if read_fd is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills ssh and children
        )
    except FileNotFoundError:
        if write_fd is not None:
            os.close(write_fd)
        raise BoardError(
            f"{device.name}: no ssh client on this machine: install OpenSSH "
            "(apt install openssh-client)"
        ) from None
    finally:
        if read_fd is not None:
            os.close(read_fd)
    with _live_guard:
        _live.add(proc)
    writer = None
    if feed is not None and write_fd is not None:
        writer = threading.Thread(target=_feed, args=(feed, write_fd), daemon=True)
        writer.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise BoardError(
            f"{device.name}: timed out after {timeout:g} s ({what}): the board is slow or hung; "
            "raise timeout in devices.toml"
        ) from None
    except BaseException:
        _kill(proc)
        raise
    finally:
        with _live_guard:
            _live.discard(proc)
        if writer is not None:
            writer.join(timeout=5)
    text = err.decode("utf-8", "replace")
    if proc.returncode == SSH_FAILED:
        raise BoardError(f"{device.name}: {ssh_failure(device, text)}")
    return Completed(proc.returncode, out, text)


def kill_all() -> None:
    """Kill every ssh session this process has running (Ctrl-C): copies stop, boards keep
    their previous build."""
    with _live_guard:
        running = list(_live)
    for proc in running:
        _kill(proc)


def _feed(feed: Callable[[IO[bytes]], None], fd: int) -> None:
    with open(fd, "wb") as f, contextlib.suppress(BrokenPipeError, OSError):
        feed(f)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the ssh process group this module started, and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.communicate(timeout=5)


_OFFENDING = re.compile(r"Offending \S+ key in (\S+):(\d+)")
_CHANGED_FOR = re.compile(r"Host key for (\S+) has changed")
_UNKNOWN_FOR = re.compile(r"host key is known for (\S+) and")


def ssh_failure(device: Device, stderr: str) -> str:
    """ssh's own failure (exit 255) in one line that says what to do."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    text = "\n".join(lines)
    host = device.target.rpartition("@")[2]
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "has changed and you have" in text:
        m = _OFFENDING.search(text)
        where = f"{m.group(1)}:{m.group(2)}" if m else "known_hosts"
        named = _CHANGED_FOR.search(text)
        key_host = named.group(1) if named else host
        file = f"-f {m.group(1)} " if m else ""
        return (
            f"wrong host key: {key_host}'s key differs from the one in {where}; nothing was "
            "copied. If the board was reinstalled, check its new key, then "
            f"`ssh-keygen {file}-R '{key_host}'`"
        )
    if "Host key verification failed" in text or "host key is known" in text:
        named = _UNKNOWN_FOR.search(text)
        key_host = named.group(1) if named else host
        return (
            f"unknown host key: {key_host} is not in known_hosts; nothing was copied. Connect "
            f"once with `ssh {device.target}` to check and accept its key"
        )
    if "Permission denied" in text:
        return (
            f"cannot log in to {device.target} with a key (BatchMode, no passwords): "
            f"`ssh-copy-id {device.target}`, or set User/IdentityFile in ~/.ssh/config"
        )
    if "Could not resolve hostname" in text:
        return f"unreachable: cannot resolve {host}: check the name or add it to ~/.ssh/config"
    for pattern, words in (
        ("Connection refused", "connection refused (is sshd running? right port?)"),
        ("timed out", "connection timed out (board off or off the network?)"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network is unreachable"),
        ("Connection closed", "the connection was closed"),
        ("Broken pipe", "the connection broke"),
    ):
        if pattern in text:
            return f"unreachable: {words}"
    return f"ssh failed: {lines[-1] if lines else 'exit 255 and no message'}"


def remote_error(device: Device, done: Completed, what: str) -> BoardError:
    """A remote step that exited non-zero: its last `edgekit-fleet:` line, else its last line."""
    lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
    ours = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("edgekit-fleet:")]
    clicks = [ln[len("Error:") :].strip() for ln in lines if ln.startswith("Error:")]
    message = (ours or clicks or lines or [f"exit {done.returncode}"])[-1]
    return BoardError(f"{device.name}: {what} failed: {message}")


def remote_path(path: str) -> str:
    """`path` for a remote sh: quoted, with a leading ~/ meaning $HOME."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)
