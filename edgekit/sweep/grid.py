"""Sweep grids -> points: one PipelineConfig per combination of values, checked by the config
dataclasses before anything runs, named by a hash of what decides its files. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.core.build import build_config, config_from_record
from edgekit.core.config import ClusterConfig, PipelineConfig, to_dict
from edgekit.core.errors import EdgekitError
from edgekit.sweep.keys import (
    Grid,
    GridValue,
    check_key,
    describe_params,
    normalize_key,
    parse_value,
)

# Characters of a point id (hex of a sha256): short enough for a folder name, long enough that
# two points of one sweep never collide.
POINT_ID_LENGTH = 12
# Grid keys that turn a stage on, by the stage's switch.
_SWITCHED = {
    "prune": {"sparsity", "prune_epochs", "min_weights"},
    "qat": {"qat_epochs"},
    "clusters": {"cluster_epochs"},
}


@dataclass(frozen=True)
class SweepPoint:
    """One point of a grid: its values, its full config and its id (a hash of the config).

    `config.output_dir` is the point's folder, `<sweep folder>/<id>`.
    `strict_precisions`: a precision asked for and not written fails the point (as `edgekit
    export` exits 1 when a precision named with --precision is left out).
    """

    id: str
    params: dict[str, GridValue]
    config: PipelineConfig
    strict_precisions: bool = True

    @property
    def label(self) -> str:
        """'sparsity=0.8 precision=int8' (the grid's values of this point)."""
        return describe_params(self.params)


def expand_grid(
    grid: Grid,
    base: Mapping[str, Any],
    output_dir: str | os.PathLike[str],
    fixed: Iterable[str] = (),
    strict_precisions: bool = True,
    salt: str = "",
    model_given: bool = False,
) -> list[SweepPoint]:
    """Every combination of the grid's values over the `base` options, checked, with its id.

    Each point's config is built by edgekit.core.build.build_config, as `edgekit export` builds
    its own: see point_config.

    Args:
        grid: key -> values (parse_grid / load_grid_file); key order is the points' order.
        base: option values for the keys the grid does not name (build_config's names, e.g.
            the command line's options).
        output_dir: the sweep folder; each point's files go into `<output_dir>/<id>`.
        fixed: options given explicitly in `base` (on the command line): a grid key may not
            set them too, and a `preset` in the grid does not override them.
        strict_precisions: whether a precision asked for and not written fails a point.
        salt: more that decides the files (e.g. the given model's sha256, threads per point).
        model_given: the points start from a given model (pruning then defaults to off).

    Returns:
        The points, in grid order; combinations that make the same config appear once.

    Raises:
        EdgekitError: a key the options set too, or a point whose settings are invalid (its
            values named).
    """
    fixed = {normalize_key(k) for k in fixed}
    both = sorted(set(grid) & fixed)
    if both:
        raise EdgekitError(
            f"{both[0]} is given both as --{both[0].replace('_', '-')} and as a grid key: pass "
            "it in one place (a single grid value is a fixed setting)"
        )
    keys = list(grid)
    points: dict[str, SweepPoint] = {}
    for values in product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        try:
            config = point_config(base, params, fixed, model_given)
        except EdgekitError as e:
            raise EdgekitError(f"grid point {describe_params(params)}: {e}") from None
        point_id = config_id(config, salt)
        config = dataclasses.replace(config, output_dir=str(Path(output_dir) / point_id))
        points.setdefault(point_id, SweepPoint(point_id, params, config, strict_precisions))
    return list(points.values())


def point_config(
    base: Mapping[str, Any],
    params: Mapping[str, GridValue],
    fixed: Iterable[str] = (),
    model_given: bool = False,
) -> PipelineConfig:
    """One point's config: its grid values over the `base` options, through build_config.

    The point's values count as given explicitly, with the `fixed` options. One rule is the
    grid's own: a key of pruning, QAT or clustering (sparsity, qat_epochs, cluster_epochs, ...)
    turns that stage on, unless the point's own switch (prune, qat, clusters) says otherwise;
    clusters=0 turns clustering off.
    """
    point = dict(params)
    if "prune" not in point and _SWITCHED["prune"] & set(point):
        point["prune"] = True
    if "qat" not in point and _SWITCHED["qat"] & set(point):
        point["qat"] = True
    clusters_off = base.get("clusters") is None
    if "clusters" not in point and _SWITCHED["clusters"] & set(point) and clusters_off:
        point["clusters"] = ClusterConfig.clusters
    if point.get("clusters") == 0:
        point["clusters"] = None
    return build_config(
        {**base, **point}, explicit=set(fixed) | set(point), model_given=model_given
    )


def decisive_settings(config: PipelineConfig) -> dict[str, Any]:
    """The config's dict without what does not decide a point's files: where they go
    (output_dir) and where the data is read from (data_dir)."""
    d = to_dict(config)
    d.pop("output_dir", None)
    d["data"].pop("data_dir", None)
    return d


def config_id(config: PipelineConfig, salt: str = "") -> str:
    """A short hash of everything that decides a point's files, and the edgekit version."""
    d = decisive_settings(config)
    blob = json.dumps({"edgekit": __version__, "config": d, "salt": salt}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:POINT_ID_LENGTH]


def point_from_record(record: Mapping[str, Any], strict_precisions: bool = True) -> SweepPoint:
    """The SweepPoint a point.json describes: its grid values read as the grid reads them, its
    config rebuilt by edgekit.core.build.config_from_record.

    Raises:
        EdgekitError: a record without id, params or config, or with an invalid one.
    """
    try:
        point_id, params, config = record["id"], record["params"], record["config"]
    except (KeyError, TypeError):
        raise EdgekitError(
            "a point record needs id, params and config: pass a sweep's point.json"
        ) from None
    values = {check_key(k): parse_value(check_key(k), v) for k, v in params.items()}
    return SweepPoint(str(point_id), values, config_from_record(config), strict_precisions)
