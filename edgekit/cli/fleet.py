"""`edgekit push`, `edgekit devices check|setup` and `edgekit bench --on` (boards over SSH).

Parsing and printing only: the work is in edgekit.fleet. No TensorFlow.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import click

from edgekit.cli.options import RUNTIME_OPTION, console
from edgekit.core.errors import EdgekitError
from edgekit.core.io.console import stderr_progress

DEVICES_OPTION = click.option(
    "--devices",
    "devices_file",
    type=click.Path(dir_okay=False),
    help="The devices file [default: $EDGEKIT_DEVICES, ./devices.toml, "
    "~/.config/edgekit/devices.toml].",
)


def _boards(targets: tuple[str, ...], devices_file: str | None) -> list[Any]:
    from edgekit.fleet.devices import load_devices, resolve_targets

    return resolve_targets(targets, load_devices(devices_file))


@click.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.argument("targets", nargs=-1, required=True)
@DEVICES_OPTION
@RUNTIME_OPTION
@click.option("--no-verify", is_flag=True, help="Check sha256 only; do not run edgekit verify.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def push(
    folder: str,
    targets: tuple[str, ...],
    devices_file: str | None,
    runtime: str,
    no_verify: bool,
    quiet: bool,
) -> None:
    """Copy the build in FOLDER to every TARGET over SSH, whole or not at all, and verify it.

    \b
    TARGET: a board of the devices file, or user@host:path (comma lists allowed).
    The files the manifest lists go into a temporary folder on the board, their sha256 is
    checked there, and only then does the folder replace the previous build (which stays
    as it was when the copy is cut short). Then `edgekit verify` runs there (or, without
    edgekit on the board, the sha256 check stands, with an install hint).
    Uses your ssh: ~/.ssh/config, keys, jump hosts, known_hosts (never bypassed).
    One line per board; exit status 1 when any board failed.
    """
    from edgekit.fleet.parallel import on_boards
    from edgekit.fleet.push import LocalBuild, push_to

    boards = _boards(targets, devices_file)
    build = LocalBuild.load(folder)
    say = stderr_progress(quiet, indent="  ")
    outcomes = on_boards(
        boards, lambda d: push_to(build, d, verify=not no_verify, runtime=runtime, say=say)
    )
    for o in outcomes:
        click.echo(o.line())
    failed = [o.name for o in outcomes if not o.ok]
    if failed:
        raise click.ClickException(
            f"{len(failed)} of {len(outcomes)} board(s) failed: {', '.join(failed)}"
        )


@click.group()
def devices() -> None:
    """The boards of the devices file (devices.toml): check them, set one up."""


@devices.command("check")
@click.argument("names", nargs=-1)
@DEVICES_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def devices_check(names: tuple[str, ...], devices_file: str | None, as_json: bool) -> None:
    """Per board: reachable?, edgekit, runtime, Python, CPU and its flags, what to install.

    NAMES: boards of the devices file or user@host:path [default: every board of the file].
    Exit status 1 when a board is unreachable or lacks edgekit or a runtime.
    """
    from edgekit.cli.report import dumps_json
    from edgekit.cli.report.fleet import print_devices_check
    from edgekit.fleet.devices import load_devices, resolve_targets
    from edgekit.fleet.provision import check_boards

    file = load_devices(devices_file)
    if not names and not file.devices:
        raise EdgekitError(
            f"no boards: {file.path or 'no devices.toml found'}; write a devices.toml "
            "(docs/fleet.md) or name user@host:path"
        )
    boards = resolve_targets(names or tuple(file.devices), file)
    outcomes = check_boards(boards)
    if as_json:
        click.echo(
            dumps_json(
                [
                    {"name": o.name, "target": o.target, "ok": o.ok, "error": o.error}
                    | ({"info": o.info.to_dict(), "hints": o.info.hints()} if o.info else {})
                    for o in outcomes
                ]
            ),
            nl=False,
        )
    else:
        print_devices_check(outcomes, console())
    bad = [o.name for o in outcomes if not o.ok]
    if bad:
        raise click.ClickException(
            f"{len(bad)} of {len(outcomes)} board(s) not ready: {', '.join(bad)}"
        )


@devices.command("setup")
@click.argument("name")
@DEVICES_OPTION
@click.option(
    "--wheel",
    type=click.Path(dir_okay=False, exists=True),
    help="Install this edgekit wheel [default: build one from this source tree].",
)
def devices_setup(name: str, devices_file: str | None, wheel: str | None) -> None:
    """Give board NAME a venv with edgekit and its runtime, and check it. Prints each command.

    \b
    Builds edgekit's wheel here (pip wheel --no-deps), creates the venv of devices.toml on the
    board (python -m venv; --system-site-packages with system_site_packages = true, e.g. for
    Debian's numpy on 32-bit ARM), copies the wheel, installs it with pip there (the runtime
    comes from the wheel's markers: ai-edge-litert, or tflite-runtime on armv7l), then checks
    that edgekit and the runtime import and, when the board holds a build, verifies it.
    """
    import tempfile

    from edgekit.fleet.devices import load_devices
    from edgekit.fleet.provision import build_wheel, setup_board

    device = load_devices(devices_file).get(name)

    def say(msg: str) -> None:
        click.echo(msg, err=True)

    with tempfile.TemporaryDirectory(prefix="edgekit-setup-") as tmp:
        path = Path(wheel) if wheel else build_wheel(Path(tmp), say)
        info = setup_board(device, path, say)
    click.echo(
        f"{device.name}: ok: edgekit {info.edgekit} with {info.runtime} in {device.venv} "
        f"(Python {info.python}, {info.arch})"
    )


def bench_on_boards(
    paths: tuple[str, ...], targets: tuple[str, ...], kw: dict[str, Any], config: Any
) -> None:
    """`edgekit bench FOLDER --on TARGET...`: called by the bench command."""
    from edgekit.cli.report import require_matplotlib
    from edgekit.cli.report.fleet import print_fleet, write_fleet_outputs
    from edgekit.fleet.bench import bench_on

    if len(paths) != 1 or not Path(paths[0]).is_dir():
        raise click.UsageError("--on needs exactly one build folder: edgekit bench DIR --on BOARD")
    folder = paths[0]
    boards = _boards(targets, kw.get("devices_file"))
    if kw.get("plot_path"):
        require_matplotlib()
    plot_in_folder = True
    try:
        require_matplotlib()
    except EdgekitError:
        plot_in_folder = False
    threads_given = kw.get("threads_given", False)
    result = bench_on(
        folder,
        boards,
        config,
        board_threads=not threads_given,
        progress=stderr_progress(kw["quiet"], indent="  "),
    )
    print_fleet(result, console())
    written = write_fleet_outputs(
        result,
        folder if kw.get("save") is not False else None,
        kw.get("json_path"),
        kw.get("markdown_path"),
        kw.get("plot_path"),
        plot_in_folder=plot_in_folder,
        csv_path=kw.get("csv_path"),
    )
    if written and not kw["quiet"]:
        click.echo("  wrote " + ", ".join(str(p) for p in written), err=True)
    bad = [b for b in result.boards if not b.ok or b.failed_files]
    if bad:
        raise click.ClickException(
            f"{len(bad)} of {len(result.boards)} board(s) failed: "
            + "; ".join(f"{b.name}: {b.error or 'files ' + ', '.join(b.failed_files)}" for b in bad)
        )


def export_boards_precheck(kw: dict[str, Any]) -> list[Any] | None:
    """`export --on`: the boards and budgets, checked before anything is trained."""
    from edgekit.fleet.selection import parse_latency_budgets

    if kw["max_latency_ms"] and not kw["on"]:
        raise click.UsageError("--max-latency-ms needs --on BOARD (the board it applies to)")
    if not kw["on"]:
        return None
    budgets = parse_latency_budgets(kw["max_latency_ms"])
    boards = _boards(kw["on"], kw["devices_file"])
    unknown = sorted(set(budgets) - {b.name for b in boards})
    if unknown:
        raise click.UsageError(f"--max-latency-ms names board(s) not in --on: {', '.join(unknown)}")
    return boards


def export_on_boards(folder: Path, boards: list[Any], kw: dict[str, Any]) -> None:
    """`export --on`: bench the written files on the boards (latency; accuracy was measured at
    export), print the table and each board's recommended file, record both in manifest.json."""
    from edgekit.cli.report.fleet import print_fleet, write_fleet_outputs
    from edgekit.device.bench import BenchConfig
    from edgekit.fleet.bench import bench_on
    from edgekit.fleet.push import refresh_manifest
    from edgekit.fleet.selection import parse_latency_budgets, record_boards
    from edgekit.fleet.ssh import BoardError

    budgets = parse_latency_budgets(kw["max_latency_ms"])
    old_sha = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    fleet = bench_on(
        str(folder),
        boards,
        BenchConfig(data=None),
        progress=stderr_progress(kw["quiet"], indent="  "),
    )
    print_fleet(fleet, console())
    try:
        from edgekit.cli.report import require_matplotlib

        require_matplotlib()
        with_plot = True
    except EdgekitError:
        with_plot = False
    write_fleet_outputs(fleet, folder, plot_in_folder=with_plot)
    for name, entry in record_boards(folder, fleet, budgets).items():
        if entry.get("error"):
            click.echo(f"recommended on {name}: - ({entry['error']})")
            continue
        pick = entry.get("recommended")
        budget = entry.get("max_latency_ms")
        p50 = (entry.get("p50_us") or {}).get(pick) if pick else None
        within = f", within {budget:g} ms" if budget is not None else ""
        if pick:
            click.echo(f"recommended on {name}: {pick} (p50 {p50:.1f} us{within})")
        else:
            click.echo(f"recommended on {name}: none ({entry.get('note')})")
    click.echo(f"each board's p50 is in {folder / 'manifest.json'} (selection.boards)")
    for board in boards:  # the boards hold the build: give them its new manifest too
        if any(b.name == board.name and b.ok for b in fleet.boards):
            try:
                refresh_manifest(folder, old_sha, board)
            except BoardError as e:
                click.echo(f"  {board.name}: manifest not updated there: {e}", err=True)
    bad = [b.name for b in fleet.boards if not b.ok or b.failed_files]
    if bad:
        raise click.ClickException(
            f"{len(bad)} of {len(fleet.boards)} board(s) failed: {', '.join(bad)}"
        )
