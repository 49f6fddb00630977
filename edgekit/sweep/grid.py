"""Sweep grids -> points: one PipelineConfig per combination of values, checked by the config
dataclasses before anything runs, named by a hash of what decides its files. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.core.config import (
    DEFAULT_EPOCHS,
    ClusterConfig,
    DataConfig,
    ExportConfig,
    PipelineConfig,
    PruneConfig,
    QatConfig,
    TrainConfig,
    to_dict,
)
from edgekit.core.errors import EdgekitError
from edgekit.sweep.keys import GRID_KEYS, Grid, GridValue, describe_params, normalize_key

# Characters of a point id (hex of a sha256): short enough for a folder name, long enough that
# two points of one sweep never collide.
POINT_ID_LENGTH = 12
_SWITCHES = {"prune": "prune", "qat": "qat", "cluster": "clusters"}


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
    base: PipelineConfig,
    output_dir: str | os.PathLike[str],
    fixed: Iterable[str] = (),
    strict_precisions: bool = True,
    salt: str = "",
) -> list[SweepPoint]:
    """Every combination of the grid's values applied over `base`, checked, with its id.

    Args:
        grid: key -> values (parse_grid / load_grid_file); key order is the points' order.
        base: the settings of the keys the grid does not name.
        output_dir: the sweep folder; each point's files go into `<output_dir>/<id>`.
        fixed: keys set explicitly in `base` (options given on the command line): a grid key
            may not set them too, and a `preset` in the grid does not override them.
        strict_precisions: whether a precision asked for and not written fails a point.
        salt: more that decides the files (e.g. the given model's sha256, threads per point).

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
            config = apply_params(base, params, fixed)
        except EdgekitError as e:
            raise EdgekitError(f"grid point {describe_params(params)}: {e}") from None
        point_id = config_id(config, salt)
        config = dataclasses.replace(config, output_dir=str(Path(output_dir) / point_id))
        points.setdefault(point_id, SweepPoint(point_id, params, config, strict_precisions))
    return list(points.values())


def _fields(config: Any) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def apply_params(
    base: PipelineConfig, params: dict[str, Any], fixed: Iterable[str] = ()
) -> PipelineConfig:
    """`base` with one point's grid values applied (see GRID_KEYS); validated on construction."""
    fixed = set(fixed)
    req = {"data": _fields(base.data), "train": _fields(base.train), "export": _fields(base.export)}
    opt: dict[str, dict[str, Any] | None] = {
        "prune": _fields(base.prune) if base.prune else None,
        "qat": _fields(base.qat) if base.qat else None,
        "cluster": _fields(base.cluster) if base.cluster else None,
    }
    # Pruning epochs left at the architecture's default follow the point's architecture.
    prune = opt["prune"]
    default_epochs = DEFAULT_EPOCHS[base.train.arch.value][1]
    if prune is not None and "prune_epochs" not in fixed | set(params):
        prune["epochs"] = None if prune["epochs"] == default_epochs else prune["epochs"]
    if "preset" in params:
        _apply_preset(req, opt, params, fixed)
    seed = params.get("seed", base.data.seed)
    for key, value in params.items():
        spec = GRID_KEYS[key]
        if spec.section in req:
            req[spec.section][spec.field] = value
    if "seed" in params:
        req["data"]["seed"] = req["train"]["seed"] = req["export"]["calibration_seed"] = seed
    if "batch_size" in params:
        req["train"]["batch_size"] = params["batch_size"]
    if "max_accuracy_drop" in params:  # as `edgekit export`: a budget given = search
        drop = params["max_accuracy_drop"]
        req["export"]["search"] = drop is not None
        req["export"]["max_accuracy_drop"] = (
            ExportConfig.max_accuracy_drop if drop is None else drop
        )
    for section, switch in _SWITCHES.items():
        fields = opt[section]
        if not _section_on(section, switch, fields is not None, params):
            opt[section] = None
            continue
        if fields is None:  # turned on here: seeded like the rest of the run
            fields = {"seed": seed}
            if section == "prune":
                fields["batch_size"] = req["train"]["batch_size"]
        for key, value in params.items():
            if GRID_KEYS[key].section == section:
                fields[GRID_KEYS[key].field] = value
        if "seed" in params:
            fields["seed"] = seed
        if section == "prune" and "batch_size" in params:
            fields["batch_size"] = params["batch_size"]
        if section == "cluster" and params.get("clusters") is not None:
            fields["clusters"] = params["clusters"]
        opt[section] = fields
    return PipelineConfig(
        data=DataConfig(**req["data"]),
        train=TrainConfig(**req["train"]),
        prune=_optional(PruneConfig, opt["prune"]),
        export=ExportConfig(**req["export"]),
        qat=_optional(QatConfig, opt["qat"]),
        cluster=_optional(ClusterConfig, opt["cluster"]),
        output_dir=base.output_dir,
    )


def _optional(cls: Any, fields: dict[str, Any] | None) -> Any:
    return None if fields is None else cls(**fields)


def _section_on(section: str, switch: str, on: bool, params: dict[str, Any]) -> bool:
    """A section's own switch decides; else any of its keys turns it on; else the base."""
    if switch in params:
        value = params[switch]
        return value is not None and value is not False and value != 0
    if any(GRID_KEYS[k].section == section for k in params):
        return True
    return on


def _apply_preset(
    req: dict[str, dict[str, Any]],
    opt: dict[str, dict[str, Any] | None],
    params: dict[str, Any],
    fixed: set[str],
) -> None:
    """The preset's training settings and pruning, under the point's and the options' own."""
    from edgekit.core.presets import preset_settings

    settings = preset_settings(str(params["preset"]))
    prune = settings.pop("prune")
    for field, value in settings.items():
        if field not in fixed and field not in params:
            req["train"][field] = value
    if "prune" not in fixed and "prune" not in params:
        if prune and opt["prune"] is None:
            opt["prune"] = {
                "seed": params.get("seed", req["data"]["seed"]),
                "batch_size": req["train"]["batch_size"],
            }
        elif not prune:
            opt["prune"] = None


def config_id(config: PipelineConfig, salt: str = "") -> str:
    """A short hash of everything that decides a point's files, and the edgekit version.

    Left out: where the files go (output_dir) and where the data is read from (data_dir).
    """
    d = to_dict(config)
    d.pop("output_dir", None)
    d["data"].pop("data_dir", None)
    blob = json.dumps({"edgekit": __version__, "config": d, "salt": salt}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:POINT_ID_LENGTH]
