"""One way from options to a PipelineConfig (edgekit.core.build): `edgekit export`'s options, a
sweep grid point and a Python call build equal configs; presets, the budget rule, the one seed
and explicit options; every config round-trips through its dict, and a sweep point through its
point.json. No training here (the manifest test uses the session's tiny pipeline run).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import small_pipeline_config

from edgekit.cli.build import pipeline_config_from_options
from edgekit.cli.main import main
from edgekit.cli.sweep import sweep_points
from edgekit.core.build import OPTION_NAMES, build_config, config_from_record, option_defaults
from edgekit.core.config import (
    Activation,
    Arch,
    ClusterConfig,
    DataConfig,
    ExportConfig,
    Init,
    LrSchedule,
    Optimizer,
    PipelineConfig,
    Precision,
    PruneConfig,
    QatConfig,
    TrainConfig,
    to_dict,
)
from edgekit.core.errors import EdgekitError
from edgekit.core.presets import PRESETS
from edgekit.sweep import GRID_KEYS, expand_grid, parse_grid, point_from_record
from edgekit.sweep.point import POINT_RESULT_NAME
from edgekit.sweep.run import finished_record, write_point


def _parsed(command: str, args: list[str]) -> tuple[dict[str, Any], click.Context]:
    cmd = main.commands[command]
    ctx = cmd.make_context(command, list(args))
    return dict(ctx.params), ctx


def export_config(line: str = "") -> PipelineConfig:
    """The config `edgekit export LINE` builds: its real option parsing, then the function the
    command calls (the run itself is not started)."""
    params, ctx = _parsed("export", shlex.split(line))
    with ctx:
        model = params.pop("model")
        return pipeline_config_from_options(params, model)


def sweep_configs(line: str) -> list[PipelineConfig]:
    """The configs of the points `edgekit sweep LINE` would run (output folders left aside)."""
    params, ctx = _parsed("sweep", shlex.split(line))
    with ctx:
        model = params.pop("model")
        points = sweep_points(params, model, parse_grid(params["grid"]))
    return [dataclasses.replace(p.config, output_dir="artifacts") for p in points]


def grid_config(tmp_path: Path, *items: str) -> PipelineConfig:
    """The config of the one point of a grid given as `--grid` items, over no options."""
    (point,) = expand_grid(parse_grid(list(items)), {}, tmp_path)
    return dataclasses.replace(point.config, output_dir="artifacts")


# ---- one config, three ways in --------------------------------------------------------------


def test_export_options_a_grid_point_and_a_python_call_give_equal_configs(
    tmp_path: Path,
) -> None:
    cli = export_config(
        "--preset sparse --sparsity 0.5 --activation relu --seed 3 --max-accuracy-drop 2 --qat "
        "--hidden 64,32 --precision int8,int4"
    )
    grid = grid_config(
        tmp_path,
        "preset=sparse",
        "sparsity=0.5",
        "activation=relu",
        "seed=3",
        "max_accuracy_drop=2",
        "qat=true",
        "hidden=64+32",
        "precision=int8+int4",
    )
    python = build_config(
        {
            "sparsity": 0.5,
            "activation": "relu",
            "seed": 3,
            "max_accuracy_drop": 2.0,
            "qat": True,
            "hidden": (64, 32),
            "precision": ("int8", "int4"),
        },
        preset="sparse",
    )
    assert cli == grid == python
    # What each rule made of it: the preset under the explicit options, the budget's search,
    # the one seed in every config that draws random numbers.
    assert (python.train.activation.value, python.train.l2, python.train.optimizer.value) == (
        "relu",
        1e-4,
        "nadam",
    )
    assert python.prune is not None and python.prune.target_sparsity == 0.5
    assert (python.export.search, python.export.max_accuracy_drop) == (True, 2.0)
    assert python.qat is not None
    seeds = (python.data.seed, python.train.seed, python.prune.seed, python.qat.seed)
    assert seeds + (python.export.calibration_seed,) == (3,) * 5


def test_options_split_between_command_line_and_grid_give_the_same_config(
    tmp_path: Path,
) -> None:
    options = "--preset default --seed 5"
    (swept,) = sweep_configs(f"{options} --grid sparsity=0.6 --grid l2=0.001 -o {tmp_path}")
    cli = export_config(f"{options} --sparsity 0.6 --l2 0.001")
    python = build_config({"seed": 5, "sparsity": 0.6, "l2": 0.001}, preset="default")
    # The default preset does not prune, but a pruning key of the grid turns pruning on: the
    # command line says it with --prune.
    assert swept.prune is not None and cli.prune is None
    assert swept == export_config(f"{options} --sparsity 0.6 --l2 0.001 --prune")
    assert cli == python and python.train.l2 == 0.001 and python.train.activation.value == "elu"


def test_the_default_export_is_the_default_python_call() -> None:
    assert export_config() == build_config() == build_config({}, explicit=())
    assert build_config().prune == PipelineConfig().prune  # pruned when training
    assert export_config("model.keras").prune is None  # a given model: not unless --prune
    assert export_config("model.keras --prune").prune == build_config().prune
    assert build_config(model_given=True) == export_config("model.keras")


def test_every_grid_key_and_preset_setting_is_an_option_of_the_builder() -> None:
    assert set(GRID_KEYS) <= OPTION_NAMES
    for settings in PRESETS.values():
        assert set(settings) <= OPTION_NAMES
    assert set(option_defaults()) == OPTION_NAMES


# ---- the rules --------------------------------------------------------------------------------


def test_explicit_options_beat_the_preset_and_the_others_do_not() -> None:
    # All of a Python call's values are explicit...
    assert build_config({"activation": "relu"}, preset="default").train.activation.value == "relu"
    # ... unless it names the explicit ones: then the preset replaces the rest.
    config = build_config({"activation": "relu", "l1": 0.5}, explicit={"l1"}, preset="default")
    assert (config.train.activation.value, config.train.l1) == ("elu", 0.5)
    # On the command line, an option given at its default value is still given.
    assert export_config("--preset default --l1 1e-5").train.l1 == 1e-5
    assert export_config("--preset default").train.l1 == 0.0
    # --prune/--no-prune against the preset's pruning, the same way.
    assert export_config("--preset sparse --no-prune").prune is None
    assert export_config("--preset default --prune").prune is not None
    # A grid's preset does not override an option of the command line.
    grid = parse_grid(["preset=self-normalizing"])
    (point,) = expand_grid(grid, {"batch_norm": True}, Path("x"), fixed=["batch_norm"])
    assert point.config.train.batch_norm and point.config.train.activation.value == "selu"
    with pytest.raises(EdgekitError, match=r"^two presets given, 'fast' and 'sparse': pass one"):
        build_config({"preset": "fast"}, preset="sparse")


def test_a_budget_given_means_the_search(tmp_path: Path) -> None:
    default = build_config()
    assert (default.export.search, default.export.max_accuracy_drop) == (False, 1.0)
    given = build_config(max_accuracy_drop=0.5)
    assert (given.export.search, given.export.max_accuracy_drop) == (True, 0.5)
    # Given at the default budget, it still searches: the rule is "given", not "changed".
    cli = export_config("--max-accuracy-drop 1")
    assert (cli.export.search, cli.export.max_accuracy_drop) == (True, 1.0)
    assert cli == build_config(max_accuracy_drop=1.0) != default
    assert grid_config(tmp_path, "max_accuracy_drop=none") == default
    assert grid_config(tmp_path, "max_accuracy_drop=1") == cli


def test_one_seed_is_handed_down_to_every_config_that_draws() -> None:
    config = build_config(seed=11, qat=True, clusters=8)
    assert config.seed == 11
    parts = [config.data, config.train, config.prune, config.qat, config.cluster]
    assert [p.seed for p in parts] == [11] * 5  # type: ignore[union-attr]
    assert config.export.calibration_seed == 11
    # A PipelineConfig made by hand hands its seed down the same way.
    by_hand = PipelineConfig(train=TrainConfig(seed=1), qat=QatConfig(seed=2), seed=9)
    assert (by_hand.train.seed, by_hand.qat.seed, by_hand.data.seed) == (9, 9, 9)  # type: ignore[union-attr]
    # Without it, each config keeps its own (as before).
    assert PipelineConfig(train=TrainConfig(seed=1)).train.seed == 1


def test_batch_size_is_one_option_for_training_and_pruning() -> None:
    config = export_config("--batch-size 32")
    assert (config.train.batch_size, config.prune.batch_size) == (32, 32)  # type: ignore[union-attr]


def test_fields_without_an_option_are_set_by_section_and_name() -> None:
    config = build_config({"prune.learning_rate": 1e-4, "train.leaky_alpha": 0.1})
    assert config.prune.learning_rate == 1e-4 and config.train.leaky_alpha == 0.1  # type: ignore[union-attr]
    with pytest.raises(EdgekitError, match=r"^prune.seed is set by the option seed: pass that$"):
        build_config({"prune.seed": 1})


def test_unknown_option_is_one_line_with_a_hint() -> None:
    with pytest.raises(EdgekitError) as e:
        build_config({"sparsty": 0.5})
    assert str(e.value).startswith("unknown option 'sparsty' (did you mean sparsity?): expected ")
    assert "\n" not in str(e.value)


def test_invalid_values_fail_as_the_configs_say() -> None:
    with pytest.raises(EdgekitError, match=r"^sparsity must be in \[0, 1\), got 1.5"):
        build_config(sparsity=1.5)
    # A stage switched off is not built, so its values are not checked (as --no-prune).
    assert build_config(sparsity=1.5, prune=False).prune is None


# ---- dicts: to_dict and back ------------------------------------------------------------------


ROUND_TRIPS = [
    DataConfig(),
    DataConfig(source="imgs", input_shape=(32, 32, 3), image_size=(32, 32), pixel_scale=1.0),
    TrainConfig(),
    TrainConfig(Arch.CNN, (64,), activation=Activation.SELU, alpha_dropout=0.1, init=Init.LECUN),
    TrainConfig(optimizer=Optimizer.NADAM, lr_schedule=LrSchedule.ONE_CYCLE, dropout=0.2),
    PruneConfig(),
    PruneConfig(target_sparsity=0.5, epochs=3, ramp_fraction=1.0),
    ExportConfig(),
    ExportConfig((Precision.INT8, Precision.INT4), mc_samples=(1, 10), float_layers="auto:2"),
    QatConfig(epochs=3, seed=1),
    ClusterConfig(clusters=8, preserve_sparsity=True),
    PipelineConfig(),
    PipelineConfig(prune=None, seed=4),
    build_config(preset="self-normalizing", qat=True, clusters=16, max_accuracy_drop=0.5),
    build_config(model_given=True, arch="cnn_gap", seed=9),
]


@pytest.mark.parametrize("config", ROUND_TRIPS, ids=lambda c: type(c).__name__)
def test_every_config_round_trips_through_its_json_dict(config: Any) -> None:
    d = json.loads(json.dumps(config.to_dict()))
    assert d == to_dict(config)
    again = type(config).from_dict(d)
    assert again == config and again.to_dict() == d


def test_from_dict_refuses_unknown_keys_in_one_line() -> None:
    with pytest.raises(EdgekitError) as e:
        PipelineConfig.from_dict({"train": {"hiden_units": [3]}})
    assert str(e.value) == (
        "unknown key 'hiden_units' in TrainConfig: expected some of "
        + ", ".join(f.name for f in dataclasses.fields(TrainConfig))
    )
    with pytest.raises(EdgekitError, match=r"^unknown key 'outptu_dir' in PipelineConfig: "):
        PipelineConfig.from_dict({"outptu_dir": "x"})
    with pytest.raises(EdgekitError, match=r"^PruneConfig must be a dict of its fields, got list$"):
        PipelineConfig.from_dict({"prune": [0.8]})
    # Validated as on construction.
    with pytest.raises(EdgekitError, match=r"^sparsity must be in \[0, 1\), got 2"):
        PruneConfig.from_dict({"target_sparsity": 2})


def test_the_manifest_config_round_trips(pipeline_run: Any, artifacts_dir: Path) -> None:
    manifest = json.loads((artifacts_dir / "manifest.json").read_text())
    config = config_from_record(manifest["config"])
    assert config == small_pipeline_config(artifacts_dir)
    assert to_dict(config) == {k: v for k, v in manifest["config"].items() if k != "run"}


# ---- a sweep point and its point.json ---------------------------------------------------------


def test_a_sweep_point_is_rebuilt_from_its_point_json(tmp_path: Path) -> None:
    grid = parse_grid(["sparsity=0.5,0.8", "hidden=64+32", "precision=int8+float16", "seed=2"])
    points = expand_grid(grid, {"preset": "sparse", "qat": True}, tmp_path, fixed=["preset"])
    for point in points:
        write_point(point, {"status": "ok", "files": {}}, engine="test")
        record = json.loads((Path(point.config.output_dir) / POINT_RESULT_NAME).read_text())
        assert point_from_record(record) == point
        assert finished_record(point) == record  # resumed: not rerun
    # A point.json whose settings are not the point's is not taken for it.
    first = Path(points[0].config.output_dir) / POINT_RESULT_NAME
    record = json.loads(first.read_text())
    record["config"]["train"]["l2"] = 0.5
    first.write_text(json.dumps(record))
    assert finished_record(points[0]) is None
    record["config"]["train"]["l3"] = 0.5
    with pytest.raises(EdgekitError, match=r"^unknown key 'l3' in TrainConfig: "):
        point_from_record(record)
