"""`edgekit sweep`: a grid of pipeline runs, on local worker processes or Ray, and the
frontier of accuracy, gzipped size and latency.

No TensorFlow at import: each point imports it in its own process (edgekit.sweep.point).
`keys` parses grids, `grid` expands them into points, `engines` runs points, `run` drives a
sweep, `results` holds what it found; the words, tables and plot are in edgekit.cli.report.sweep.
"""

from edgekit.sweep.grid import (
    SweepPoint,
    config_id,
    expand_grid,
    point_config,
    point_from_record,
)
from edgekit.sweep.keys import (
    GRID_KEYS,
    check_key,
    describe_params,
    load_grid_file,
    parse_grid,
)
from edgekit.sweep.point import PointJob, execute_point
from edgekit.sweep.results import REPRODUCIBLE_COLUMNS, SweepResult, SweepRow, mark_frontier
from edgekit.sweep.run import SweepConfig, point_salt, run_sweep

__all__ = [
    "GRID_KEYS",
    "REPRODUCIBLE_COLUMNS",
    "PointJob",
    "SweepConfig",
    "SweepPoint",
    "SweepResult",
    "SweepRow",
    "check_key",
    "config_id",
    "describe_params",
    "execute_point",
    "expand_grid",
    "load_grid_file",
    "mark_frontier",
    "parse_grid",
    "point_config",
    "point_from_record",
    "point_salt",
    "run_sweep",
]
