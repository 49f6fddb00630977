"""Stage times: measured for every stage, printed on one line of the export summary, recorded
in the manifest (which still reads manifests written before them)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from edgekit.cli.report.export import print_export_summary, stage_times_line
from edgekit.core.errors import ManifestError
from edgekit.device.manifest import Manifest, read_manifest


def test_the_pipeline_times_every_stage_and_each_file(pipeline_run: Any) -> None:
    seconds = pipeline_run.stage_seconds
    for stage in ("data", "train", "prune", "fold batch norm"):
        assert seconds[stage] > 0, stage
    # 0.0 when this process had loaded TensorFlow before (an earlier test, a notebook); a fresh
    # `edgekit export` pays for it (tests/test_cli.py::test_export_end_to_end_on_a_small_slice).
    assert seconds["import tensorflow"] >= 0
    for precision in ("float32", "float16", "int8"):
        assert seconds[f"convert {precision}"] > 0
        assert seconds[f"verify {precision}"] > 0
    assert seconds["save keras"] > 0 and seconds["manifest"] > 0
    # In the order they ran.
    assert list(seconds)[:5] == ["data", "import tensorflow", "train", "prune", "fold batch norm"]


def test_the_manifest_records_the_stage_times_but_its_own_write(
    pipeline_run: Any, artifacts_dir: Path
) -> None:
    recorded = read_manifest(artifacts_dir).stage_seconds
    measured = pipeline_run.stage_seconds
    assert set(measured) - set(recorded) == {"manifest", "export"}
    assert recorded == {k: v for k, v in measured.items() if k in recorded}


def test_the_summary_prints_the_times_on_one_line_in_a_narrow_terminal(
    pipeline_run: Any,
) -> None:
    buffer = io.StringIO()
    print_export_summary(pipeline_run, Console(file=buffer, width=60))
    lines = [t for t in buffer.getvalue().splitlines() if "convert int8" in t]
    assert len(lines) == 1
    assert lines[0] == stage_times_line(pipeline_run.stage_seconds)
    assert len(lines[0]) > 60


def test_the_times_line_names_each_stage_in_order_with_the_total() -> None:
    line = stage_times_line({"data": 1.04, "train": 30.0, "convert int8": 0.96})
    assert line == "seconds: data 1.0, train 30.0, convert int8 1.0 (32 s in all)"


def _manifest_dict(artifacts_dir: Path) -> dict[str, Any]:
    return json.loads((artifacts_dir / "manifest.json").read_text())


def test_a_manifest_written_before_stage_times_still_reads(artifacts_dir: Path) -> None:
    old = _manifest_dict(artifacts_dir)
    del old["stage_seconds"]
    manifest = Manifest.from_dict(old)
    assert manifest.stage_seconds == {}
    assert "stage_seconds" not in manifest.to_dict()


def test_stage_times_round_trip_through_the_manifest(artifacts_dir: Path) -> None:
    d = _manifest_dict(artifacts_dir)
    assert Manifest.from_dict(d).to_dict()["stage_seconds"] == d["stage_seconds"]


@pytest.mark.parametrize("bad", [{"train": -1.0}, {"train": "12"}, {"train": True}, [1.0]])
def test_bad_stage_times_are_a_one_line_manifest_error(artifacts_dir: Path, bad: Any) -> None:
    d = _manifest_dict(artifacts_dir) | {"stage_seconds": bad}
    with pytest.raises(ManifestError, match="stage_seconds") as e:
        Manifest.from_dict(d)
    assert "\n" not in str(e.value)


def test_the_stages_of_a_run_follow_its_config() -> None:
    from edgekit.core.config import ClusterConfig, PipelineConfig
    from edgekit.workstation.stages import pipeline_stages

    def names(config: PipelineConfig, **kw: bool) -> list[str]:
        how = {"trains": True, "distributed": False, "writes": True} | kw
        return [s.name for s in pipeline_stages(config, **how)]

    default = PipelineConfig()
    assert names(default) == [
        "data",
        "import tensorflow",
        "train",
        "prune",
        "fold batch norm",
        "export",
    ]
    assert "prune" not in names(PipelineConfig(prune=None))
    assert names(default, trains=False)[2] == "load model"
    assert names(PipelineConfig(cluster=ClusterConfig()))[4] == "cluster"
    # A --distributed worker other than the chief stops once the weights are final.
    assert names(default, distributed=True, writes=False) == [
        "data",
        "import tensorflow",
        "join workers",
        "train",
        "prune",
        "report workers",
    ]


def test_a_stage_reads_only_its_inputs_and_makes_only_its_outputs() -> None:
    from edgekit.core.config import PipelineConfig
    from edgekit.workstation.stages import Made, RunEnv, Stage, run_stages

    seen: list[set[str]] = []

    def double(env: RunEnv, **inputs: Any) -> Made:
        seen.append(set(inputs))
        return Made({"y": 2 * inputs["x"]}, seconds={"double part": 0.0})

    def make_x(env: RunEnv) -> Made:
        return Made({"x": 21})

    env = RunEnv(PipelineConfig(), say=lambda message: None)
    run = run_stages([Stage("x", make_x, (), ("x",)), Stage("y", double, ("x",), ("y",))], env)
    assert run.values["y"] == 42
    assert seen == [{"x"}]
    assert list(run.seconds) == ["x", "double part", "y"]  # a stage's own steps, then the rest
    with pytest.raises(RuntimeError, match="declared"):
        run_stages([Stage("x", make_x, (), ("z",))], env)
