"""`edgekit sweep`, registered on the `edgekit` group by cli.py (kept apart: cli.py stays short).

Parsing only; the work is edgekit.sweep's. No TensorFlow: each point imports it in its own
process.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgekit.cli.build import option_values, pipeline_config_from_options
from edgekit.cli.options import (
    console,
    data_options,
    export_options,
    sweep_options,
    train_options,
)
from edgekit.core.errors import EdgekitError
from edgekit.core.io.console import stderr_progress

if TYPE_CHECKING:
    from edgekit.sweep import SweepPoint
    from edgekit.sweep.keys import Grid

DEFAULT_SWEEP_DIR = "artifacts/sweep"


def _refuse_what_a_sweep_cannot_do(kw: dict[str, Any]) -> None:
    """One-line errors before anything runs: no grid, or an option no sweep point can take."""
    if not kw["grid"]:
        raise EdgekitError(
            "no --grid given: pass the values to sweep, e.g. --grid sparsity=0.5,0.8 "
            "--grid precision=int8,float16"
        )
    if kw["distributed"]:  # each point would wait for a cluster of its own
        raise EdgekitError(
            "--distributed trains one run across a TF_CONFIG cluster, not a sweep's points: "
            "drop --distributed (points run side by side with --jobs N or --ray)"
        )


def _model_sha256(model: str | None) -> str | None:
    """sha256 of the model every point starts from (part of the points' ids), checked first."""
    if model is None:
        return None
    from edgekit.core.model_path import check_model_path

    check_model_path(model)
    return hashlib.sha256(Path(model).read_bytes()).hexdigest()


@click.command(context_settings={"default_map": {"output": DEFAULT_SWEEP_DIR}})
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@sweep_options
@data_options
@train_options
@export_options
def sweep(model: str | None, **kw: Any) -> None:
    """Run a grid of export settings, one full pipeline run per point, and find the frontier.

    \b
    edgekit sweep --grid sparsity=0.5,0.8,0.9 --grid precision=int8,float16 --jobs 2
    edgekit sweep --grid grid.toml --ray          # a local Ray; --ray ADDRESS: a cluster

    \b
    Options not in the grid are fixed for every point (as for `edgekit export`). Each point
    runs in a fresh process with pinned TensorFlow threads and writes into OUTPUT/<id>/ (id:
    a hash of its settings and the edgekit version); a point already finished there is not
    rerun, so the same command resumes a stopped sweep. Then every file's p50 latency is
    measured here, and sweep.json/.csv/.md/.png in OUTPUT list all points with the frontier
    of accuracy, gzipped size and p50 marked. A failed point is a row with its error; the
    exit status is then 1.
    """
    from edgekit.cli.report.plot import require_matplotlib
    from edgekit.cli.report.sweep import print_sweep, write_sweep_outputs
    from edgekit.sweep import run_sweep

    grid, config, points = plan_sweep(model, kw)
    try:
        require_matplotlib()
        plot = True
    except EdgekitError:
        plot = False
    say = stderr_progress(kw["quiet"], indent="  ")
    result = run_sweep(points, config, grid, model, kw["unsafe"], say)
    print_sweep(result, console())
    written = write_sweep_outputs(result, kw["output"], plot=plot)
    say(
        "wrote "
        + ", ".join(str(p) for p in written)
        + ("" if plot else " (no sweep.png: matplotlib is not installed)")
    )
    if not result.ok:
        failed = sorted({r.point for r in result.failed})
        raise click.ClickException(
            f"{len(failed)} of {len(result.points)} point(s) failed: {', '.join(failed)} "
            f"(see the error rows; each point's log: {kw['output']}/<id>/point.log)"
        )


def sweep_points(
    kw: dict[str, Any], model: str | None, grid: Grid, salt: str = ""
) -> list[SweepPoint]:
    """The points `edgekit sweep` runs: each grid point over the command's options, built by
    edgekit.core.build.build_config as `edgekit export` builds its config.

    Args:
        kw: the command's parameters, as click passes them.
        model: the MODEL argument (pruning then defaults to off).
        grid: the parsed --grid values.
        salt: what decides the files besides the config (see edgekit.sweep.point_salt).
    """
    from edgekit.sweep import expand_grid

    pipeline_config_from_options(kw, model)  # the options alone make a valid config
    base, fixed = option_values(kw)
    return expand_grid(
        grid,
        base,
        kw["output"],
        fixed=fixed,
        strict_precisions=kw["precisions"] is not None or "precision" in grid,
        salt=salt,
        model_given=model is not None,
    )


def plan_sweep(model: str | None, kw: dict[str, Any]) -> tuple[Grid, Any, list[SweepPoint]]:
    """`sweep`'s options as (grid, SweepConfig, checked points): everything before a point runs.

    Raises:
        EdgekitError: no --grid, a bad grid value or option, or a point with invalid settings.
    """
    from edgekit.sweep import SweepConfig, parse_grid, point_salt

    _refuse_what_a_sweep_cannot_do(kw)
    grid = parse_grid(kw["grid"])
    config = SweepConfig(
        output_dir=kw["output"],
        jobs=kw["jobs"],
        ray=kw["ray_address"] is not None,
        ray_address=None if kw["ray_address"] in (None, "local") else kw["ray_address"],
        threads_per_point=kw["threads_per_point"],
        bench=kw["bench"],
        wait=kw["wait"],
    )
    model_sha = _model_sha256(model)
    points = sweep_points(kw, model, grid, salt=point_salt(config.threads_per_point, model_sha))
    return grid, config, points
