"""`edgekit push`: copy a build to a board whole, or not at all, then verify it there.

The files go as one tar stream over ssh into a temporary folder next to the destination;
their sha256 is checked there against the manifest; only then is the folder renamed into
place (the previous build moved aside first and removed after). A copy cut short (board gone,
disk full, timeout) leaves the previous build as it was, and the next push removes the
temporary folder it left.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edgekit.core.errors import DeviceError
from edgekit.device.manifest import MANIFEST_NAME, file_problems, read_manifest
from edgekit.fleet.board import BoardInfo, probe, shell_prelude
from edgekit.fleet.devices import Device
from edgekit.fleet.ssh import BoardError, remote_error, run_remote

# Marks the temporary and previous folders next to the destination (hidden, named after it).
TMP_MARK = "edgekit-tmp-"
PREV_MARK = "edgekit-prev"


@dataclass(frozen=True)
class LocalBuild:
    """An export folder checked against its manifest: what a push sends."""

    folder: Path
    files: tuple[str, ...]  # manifest.json last
    sha256: dict[str, str]
    manifest_sha256: str

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> LocalBuild:
        """The files the manifest lists, each checked here first: a broken build never ships.

        Raises:
            ManifestError: no valid manifest.json.
            DeviceError: a listed file is missing or differs from the manifest.
        """
        root = Path(folder)
        manifest = read_manifest(root)
        records = list(manifest.files)
        if manifest.keras_model is not None and (root / manifest.keras_model.file).is_file():
            records.append(manifest.keras_model)
        for record in records:
            problems = file_problems(root, record)
            if problems:
                raise DeviceError(
                    f"{root / record.file}: {problems[0][1]}: this build is not what its "
                    "manifest says; re-export it (or `edgekit verify` it) before pushing"
                )
        digest = hashlib.sha256((root / MANIFEST_NAME).read_bytes()).hexdigest()
        return cls(
            folder=root,
            files=tuple(r.file for r in records) + (MANIFEST_NAME,),
            sha256={r.file: r.sha256 for r in records} | {MANIFEST_NAME: digest},
            manifest_sha256=digest,
        )

    def tar_to(self, out: IO[bytes]) -> None:
        """The files as one uncompressed ustar stream (busybox and GNU tar both read it)."""
        write_tar(out, [(name, self.folder / name) for name in self.files])


def write_tar(out: IO[bytes], members: list[tuple[str, Path]]) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for arcname, path in members:
            if path.is_dir():
                for sub in sorted(path.rglob("*")):
                    if sub.is_file():
                        _add(tar, f"{arcname}/{sub.relative_to(path).as_posix()}", sub)
            else:
                _add(tar, arcname, path)


def _add(tar: tarfile.TarFile, arcname: str, path: Path) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = path.stat().st_size
    info.mtime = int(path.stat().st_mtime)
    info.mode = 0o644
    with path.open("rb") as f:
        tar.addfile(info, f)


@dataclass
class PushOutcome:
    """One board's line: ok or what failed, and what was done."""

    name: str
    ok: bool
    message: str
    pushed: bool = False
    verified_by: str | None = None  # "edgekit verify" or "sha256"
    hint: str | None = None
    info: BoardInfo | None = None
    verify: dict[str, Any] | None = field(default=None, repr=False)

    def line(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'FAILED'}: {self.message}"


def receive_script(build: LocalBuild, device: Device) -> str:
    """sh on the board: unpack stdin into a temporary folder, check sha256, swap it in."""
    sums = "\n".join(f"{build.sha256[n]}  {n}" for n in build.files)
    return shell_prelude(device) + "\n".join(
        [
            "set -u",
            'fail() { echo "edgekit-fleet: $*" >&2; exit 1; }',
            'parent=$(dirname -- "$dest"); base=$(basename -- "$dest")',
            f'prev="$parent/.$base.{PREV_MARK}"',
            'mkdir -p -- "$parent" 2>/dev/null || fail "cannot create $parent (permissions?)"',
            # An earlier push stopped between its two renames: put the previous build back.
            'if [ ! -e "$dest" ] && [ -d "$prev" ]; then mv -- "$prev" "$dest"; fi',
            'if [ -e "$dest" ] && { [ ! -d "$dest" ] || { [ -n "$(ls -A -- "$dest")" ] && '
            '[ ! -f "$dest/manifest.json" ]; }; }; then',
            '  fail "$dest exists and holds no edgekit build (no manifest.json): '
            'choose another path in devices.toml, or empty it"',
            "fi",
            f'rm -rf -- "$prev" "$parent/.$base.{TMP_MARK}"*',
            "command -v sha256sum >/dev/null 2>&1 || "
            'fail "no sha256sum on the board: install coreutils (or busybox)"',
            f'tmp=$(mktemp -d "$parent/.$base.{TMP_MARK}XXXXXX") || '
            'fail "cannot create a folder in $parent (disk full? permissions?)"',
            "trap 'rm -rf -- \"$tmp\"' EXIT",
            "trap 'exit 1' HUP INT TERM PIPE",
            'err=$(tar -xf - -C "$tmp" 2>&1); rc=$?',
            "if [ $rc -ne 0 ]; then",
            '  why=$(printf "%s" "$err" | tail -n 1)',
            '  fail "the copy was cut short (tar exit $rc${why:+: $why}; disk full?): '
            'the previous build is kept"',
            "fi",
            f"sums={shlex.quote(sums)}",
            'bad=$(printf "%s\\n" "$sums" | (cd "$tmp" && sha256sum -c - 2>&1) | '
            "grep -v ': OK$' | head -n 1)",
            '[ -z "$bad" ] || fail "sha256 differs after the copy ($bad): '
            'the previous build is kept"',
            'if [ -e "$dest" ]; then mv -- "$dest" "$prev" || fail "cannot move $dest aside"; fi',
            'if ! mv -- "$tmp" "$dest"; then',
            '  if [ -d "$prev" ]; then mv -- "$prev" "$dest"; fi',
            '  fail "cannot rename the copy to $dest"',
            "fi",
            "trap - EXIT",
            'rm -rf -- "$prev"',
            'echo "dest=$dest"',
        ]
    )


def copy_build(build: LocalBuild, device: Device) -> None:
    """Copy and swap in (sha256 checked on the board before the swap).

    Raises:
        BoardError: unreachable, refused, cut short, or the copy differs.
    """
    done = run_remote(device, receive_script(build, device), feed=build.tar_to, what="copy")
    if done.returncode != 0:
        raise remote_error(device, done, "copy")


def manifest_script(old_sha256: str, new_sha256: str, device: Device) -> str:
    """sh on the board: replace manifest.json by stdin, only if the board holds the build whose
    manifest is `old_sha256`; the new one is sha256-checked, then renamed into place."""
    return shell_prelude(device) + "\n".join(
        [
            "set -u",
            'fail() { echo "edgekit-fleet: $*" >&2; exit 1; }',
            'm="$dest/manifest.json"; tmp="$dest/.manifest.json.edgekit-tmp"',
            '[ -f "$m" ] || fail "$dest holds no build: push it first"',
            'have=$(sha256sum "$m" | cut -d" " -f1)',
            f'[ "$have" = {old_sha256} ] || [ "$have" = {new_sha256} ] || '
            'fail "$dest holds another build: push this one"',
            "trap 'rm -f -- \"$tmp\"' EXIT",
            'cat > "$tmp" || fail "cannot write in $dest (disk full?)"',
            f'[ "$(sha256sum "$tmp" | cut -d" " -f1)" = {new_sha256} ] || '
            'fail "manifest.json differs after the copy"',
            'mv -f -- "$tmp" "$m" || fail "cannot rename the manifest into place"',
            "trap - EXIT",
        ]
    )


def refresh_manifest(folder: str | os.PathLike[str], old_sha256: str, device: Device) -> None:
    """Send the folder's manifest.json alone to a board that holds the build as it was before
    the manifest changed (`export --on` records the boards' p50s in it), so the next push finds
    the board up to date instead of sending every file again.

    Raises:
        BoardError: unreachable, or the board holds another build.
    """
    data = (Path(folder) / MANIFEST_NAME).read_bytes()
    new = hashlib.sha256(data).hexdigest()
    script = manifest_script(old_sha256, new, device)

    def feed(out: IO[bytes]) -> None:
        out.write(data)

    done = run_remote(device, script, feed=feed, what="manifest")
    if done.returncode != 0:
        raise remote_error(device, done, "manifest")


def verify_script(device: Device, runtime: str) -> str:
    return shell_prelude(device) + (
        f'exec "$py" -m edgekit.cli.main verify "$dest" --json -q --runtime {shlex.quote(runtime)}'
    )


def verify_remote(device: Device, runtime: str = "auto") -> dict[str, Any]:
    """`edgekit verify --json` on the board; its JSON.

    Raises:
        BoardError: verify could not run (e.g. no runtime: the message says so) or a file failed.
    """
    done = run_remote(device, verify_script(device, runtime), what="edgekit verify")
    try:
        result = json.loads(done.stdout.decode("utf-8", "replace"))
    except ValueError:
        raise remote_error(device, done, "edgekit verify") from None
    if not result.get("ok"):
        bad = [f for f in result.get("files", []) if not f.get("ok")]
        detail = "; ".join(
            f"{f['file']}: {', '.join(f.get('problems') or [f['status']])}" for f in bad
        )
        raise BoardError(f"{device.name}: edgekit verify failed: {detail}")
    return dict(result)


def push_to(
    build: LocalBuild,
    device: Device,
    *,
    verify: bool = True,
    runtime: str = "auto",
    force: bool = True,
    say: Callable[[str], None] | None = None,
) -> PushOutcome:
    """Probe, copy (unless `force` is off and the board holds this build), verify.

    Never raises for a board's failure: the outcome says what failed, in one line.
    """
    say = say or (lambda _m: None)
    try:
        info = probe(device)
        same = info.manifest_sha256 == build.manifest_sha256
        pushed = False
        if force or not same:
            say(f"{device.name}: copying {len(build.files)} files to {device.where}")
            copy_build(build, device)
            pushed = True
        where = f"{len(build.files)} files in {device.where}"
        if not pushed:
            where = f"{device.where} already holds this build"
        if not verify:
            return PushOutcome(
                device.name, True, f"{where} (sha256 checked)", pushed, "sha256", None, info
            )
        if not info.edgekit:
            hint = (
                f"edgekit is not installed on {device.name} ({info.python_cmd}): "
                f"`edgekit devices setup {device.name}`, or pip install edgekit there"
            )
            return PushOutcome(
                device.name, True, f"{where}, sha256 checked; {hint}", pushed, "sha256", hint, info
            )
        result = verify_remote(device, runtime)
        return PushOutcome(
            device.name,
            True,
            f"{where}, edgekit verify passed ({result.get('runtime') or 'no run'})",
            pushed,
            "edgekit verify",
            None,
            info,
            result,
        )
    except BoardError as e:
        message = str(e).removeprefix(f"{device.name}: ")
        return PushOutcome(device.name, False, message)
