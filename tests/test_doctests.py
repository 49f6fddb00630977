"""The public API's docstring examples run: each one is a doctest, run on real data and runtimes.

The device-side examples read `folder = "artifacts"`, an export folder; here `folder` is one
tiny real export (an MLP with 16 hidden units, 2 epochs on 1,000 Fashion-MNIST images, pruned to
80%, with an MC-dropout file), shared by all of them. Examples that make files of their own
write them under `tempfile.mkdtemp()`, pointed at the test's tmp_path.
"""

from __future__ import annotations

import doctest
import importlib
import tempfile
from pathlib import Path
from typing import Any

import pytest

from edgekit.core.config import DataConfig, ExportConfig, PipelineConfig, PruneConfig, TrainConfig

# (module, function): the public API whose examples must run.
PUBLIC_API = [
    ("edgekit.workstation.pipeline", "run_pipeline"),
    ("edgekit.workstation.export.tflite", "export_tflite"),
    ("edgekit.device.bench.measure", "run_bench"),
    ("edgekit.device.manifest", "read_manifest"),
    ("edgekit.device.runtime", "load_interpreter"),
    ("edgekit.device.runtime", "predict"),
    ("edgekit.device.mc", "predict_mc"),
    ("edgekit.sweep.run", "run_sweep"),
]
# The files the examples name, as the default `edgekit export --dropout 0.2 --mc-samples 10`.
STEM = "fashion_mnist_mlp_sp80"


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real export folder with the default files' names, made in seconds."""
    from edgekit.workstation.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("doctest-artifacts")
    config = PipelineConfig(
        data=DataConfig(train_samples=1000, test_samples=200, validation_size=100),
        train=TrainConfig(
            hidden_units=(16,), epochs=2, batch_size=32, learning_rate=0.01, dropout=0.2
        ),
        prune=PruneConfig(target_sparsity=0.8, epochs=1, batch_size=32),
        # 200 test samples are coarse (0.5 points each): a loose budget keeps every file.
        export=ExportConfig(calibration_samples=50, mc_samples=(10,), max_accuracy_drop=10.0),
        output_dir=str(out),
    )
    run_pipeline(config, progress=lambda _msg: None)
    expected = {f"{STEM}_{p}.tflite" for p in ("float32", "float16", "int8", "mc10_int8")}
    assert expected <= {p.name for p in out.iterdir()}
    return out


def _example(module: str, name: str) -> doctest.DocTest:
    func = getattr(importlib.import_module(module), name)
    tests = [t for t in doctest.DocTestFinder().find(func, name) if t.examples]
    assert len(tests) == 1, f"{module}.{name} has no Examples section with >>> lines"
    return tests[0]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "name"), PUBLIC_API, ids=[n for _, n in PUBLIC_API])
def test_the_docstring_example_runs(
    module: str, name: str, tiny_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test = _example(module, name)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # tempfile.mkdtemp() lands here
    globs: dict[str, Any] = {**test.globs, "folder": str(tiny_export)}
    test.globs = globs
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
