"""`edgekit bench DIR --on BOARD...`: the same bench on every board, the JSON brought back.

Per board, in parallel: probe; push when the board's manifest.json differs from DIR's (its
sha256); copy the test data next to the build; run `edgekit bench --json` there with the
options of a local bench; read the JSON. A board that fails is an outcome with one line;
the others are still measured.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edgekit import __version__
from edgekit.core.data import FASHION_MNIST_FILES, fashion_mnist_search_path
from edgekit.core.errors import DataError
from edgekit.device.bench.records import BenchConfig
from edgekit.fleet.board import BoardInfo, probe, shell_prelude
from edgekit.fleet.devices import Device
from edgekit.fleet.parallel import on_boards
from edgekit.fleet.push import LocalBuild, copy_build, write_tar
from edgekit.fleet.ssh import BoardError, remote_error, run_remote

DATA_MARK = "edgekit-data"
EMULATED_NOTE = "emulated (qemu): timings are not speeds; what is shown is correctness"


@dataclass
class BoardBench:
    """One board's bench: its JSON (format edgekit-bench/1), or the line that says what failed."""

    name: str
    target: str
    emulated: bool
    ok: bool
    error: str | None = None
    pushed: bool = False
    info: BoardInfo | None = None
    result: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def failed_files(self) -> list[str]:
        rows = (self.result or {}).get("rows", [])
        return sorted({r["file"] for r in rows if r.get("status") != "ok"})

    def summary(self) -> dict[str, Any]:
        machine = (self.result or {}).get("machine") or {}
        return {
            "name": self.name,
            "target": self.target,
            "emulated": self.emulated,
            "ok": self.ok,
            "error": self.error,
            "pushed": self.pushed,
            "failed_files": self.failed_files,
            "cpu": machine.get("cpu") or (self.info.cpu if self.info else None),
            "arch": machine.get("arch") or (self.info.arch if self.info else None),
            "cpu_flags": machine.get("cpu_flags") or (self.info.cpu_flags if self.info else []),
            "runtime": machine.get("runtime") or (self.info.runtime if self.info else None),
            "python": machine.get("python") or (self.info.python if self.info else None),
            "edgekit": machine.get("edgekit") or (self.info.edgekit if self.info else None),
        }


@dataclass
class FleetResult:
    folder: str
    boards: list[BoardBench]
    config: BenchConfig
    started_at: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return all(b.ok and not b.failed_files for b in self.boards)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "edgekit-fleet/1",
            "edgekit_version": __version__,
            "folder": self.folder,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "config": self.config.to_dict(),
            "boards": [b.summary() for b in self.boards],
            "rows": fleet_rows(self),
        }


def fleet_rows(fleet: FleetResult) -> list[dict[str, Any]]:
    """A row per file and thread count; per board p50/p90/accuracy (or that board's error)."""
    order: dict[tuple[str, int], dict[str, Any]] = {}
    for board in fleet.boards:
        for r in (board.result or {}).get("rows", []):
            key = (r["file"], int(r["threads"]))
            row = order.setdefault(
                key,
                {
                    "file": r["file"],
                    "precision": r.get("precision"),
                    "threads": key[1],
                    "boards": {},
                },
            )
            lat = r.get("latency") or {}
            row["boards"][board.name] = {
                "status": r.get("status"),
                "error": r.get("error"),
                "p50_us": lat.get("p50_us"),
                "p90_us": lat.get("p90_us"),
                "accuracy": r.get("accuracy"),
                "bytes": r.get("bytes"),
            }
    return list(order.values())


@dataclass(frozen=True)
class DataShipment:
    """Local files that become the board's test data, and the bench options naming them."""

    members: tuple[tuple[str, Path], ...]
    args: tuple[str, ...]  # with {data} standing for the board's data folder

    @classmethod
    def for_config(cls, config: BenchConfig) -> DataShipment:
        """Raises DataError when the local data is not there (before any board is touched)."""
        if config.data is None:
            return cls((), ("--no-accuracy",))
        if config.data in ("fashion_mnist", "fashion-mnist"):
            wanted = (FASHION_MNIST_FILES["x_test"], FASHION_MNIST_FILES["y_test"])
            folders = fashion_mnist_search_path(config.data_dir)
            found = next((f for f in folders if all((f / w).is_file() for w in wanted)), None)
            if found is None:
                raise DataError(
                    f"the Fashion-MNIST test files are not in {', '.join(map(str, folders))}: "
                    "they are copied to the boards from here; install them with `apt-get "
                    "install dataset-fashion-mnist`, or pass --data FILE.npz or --no-accuracy"
                )
            return cls(
                tuple((w, found / w) for w in wanted),
                ("--data", "fashion_mnist", "--data-dir", "{data}"),
            )
        path = Path(config.data)
        if not path.exists():
            raise DataError(
                f"--data {config.data}: no such file or folder here (it is copied to the "
                "boards from this machine): pass a .npz, an image folder or fashion_mnist"
            )
        return cls(((path.name, path),), ("--data", "{data}/" + path.name))

    def tar_to(self, out: IO[bytes]) -> None:
        write_tar(out, list(self.members))


def remote_bench_args(config: BenchConfig, data: DataShipment) -> list[str]:
    """The options of the local bench, for `edgekit bench` on the board."""
    args = [
        "--threads",
        ",".join(str(t) for t in config.threads),
        "--xnnpack" if config.xnnpack else "--no-xnnpack",
        "--runtime",
        config.runtime,
        "--min-runs",
        str(config.min_runs),
        "--min-time",
        repr(config.min_time_s),
        "--warmup-runs",
        str(config.warmup_runs),
        "--warmup-time",
        repr(config.warmup_time_s),
        "--rounds",
        str(config.rounds),
        "--timeout",
        repr(config.timeout_s),
    ]
    if config.samples is not None:
        args += ["--samples", str(config.samples)]
    if config.test_split is not None:
        args += ["--test-split", repr(config.test_split)]
    if config.split_seed is not None:
        args += ["--split-seed", str(config.split_seed)]
    if config.skip_bad_images:
        args.append("--skip-bad-images")
    return args + list(data.args)


def bench_script(device: Device, args: list[str]) -> str:
    quoted = " ".join(
        '"$data"' + shlex.quote(a[6:]) if a.startswith("{data}") else shlex.quote(a) for a in args
    )
    return shell_prelude(device) + "\n".join(
        [
            "set -u",
            'fail() { echo "edgekit-fleet: $*" >&2; exit 1; }',
            'parent=$(dirname -- "$dest"); base=$(basename -- "$dest")',
            f'data="$parent/.$base.{DATA_MARK}"',
            '[ -f "$dest/manifest.json" ] || fail "no build in $dest"',
            'rm -rf -- "$data" && mkdir -p -- "$data" || fail "cannot create $data"',
            'tar -xf - -C "$data" || fail "copying the test data was cut short (disk full?)"',
            'out=$(mktemp) || fail "cannot create a temporary file (disk full?)"',
            "trap 'rm -f -- \"$out\"' EXIT",
            f'"$py" -m edgekit.cli.main bench "$dest" --no-save -q --json "$out" {quoted} '
            ">/dev/null",
            "rc=$?",
            'cat -- "$out"',
            "exit $rc",
        ]
    )


def bench_board(
    build: LocalBuild,
    device: Device,
    config: BenchConfig,
    data: DataShipment,
    say: Callable[[str], None],
) -> BoardBench:
    """One board, start to end; never raises for the board's failure."""
    outcome = BoardBench(device.name, device.target, device.emulated, ok=False)
    try:
        outcome.info = info = probe(device)
        if not info.edgekit:
            hint = "; ".join(info.hints()) or "install edgekit there"
            raise BoardError(f"{device.name}: cannot bench: {hint}")
        if info.manifest_sha256 != build.manifest_sha256:
            say(f"{device.name}: its copy differs: pushing {len(build.files)} files")
            copy_build(build, device)
            outcome.pushed = True
        say(f"{device.name}: edgekit bench on {info.cpu or info.arch} ({info.runtime})")
        args = remote_bench_args(config, data)
        done = run_remote(device, bench_script(device, args), feed=data.tar_to, what="bench")
        try:
            outcome.result = json.loads(done.stdout.decode("utf-8", "replace"))
        except ValueError:
            raise remote_error(device, done, "edgekit bench") from None
        outcome.ok = True
    except BoardError as e:
        outcome.error = str(e).removeprefix(f"{device.name}: ")
    return outcome


def bench_on(
    folder: str,
    devices: Sequence[Device],
    config: BenchConfig,
    *,
    board_threads: bool = True,
    progress: Callable[[str], None] | None = None,
) -> FleetResult:
    """Bench `folder` on every board in parallel.

    Args:
        board_threads: a board's `threads` (devices.toml) replaces config.threads there.

    Raises:
        ManifestError, DeviceError, DataError: the local build or data is not usable (before
            any board is touched).
    """
    say = progress or (lambda _m: None)
    build = LocalBuild.load(folder)
    data = DataShipment.for_config(config)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()

    def one(device: Device) -> BoardBench:
        cfg = config
        if board_threads and device.threads:
            cfg = dataclasses.replace(config, threads=(device.threads,))
        return bench_board(build, device, cfg, data, say)

    boards = on_boards(devices, one)
    return FleetResult(str(folder), boards, config, started, time.perf_counter() - t0)
