"""`edgekit quantize-report`: which layers of a model lose accuracy in int8, worst first."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgekit.core.config import DataConfig
from edgekit.core.errors import EdgekitError
from edgekit.core.io.console import Progress


def model_of(path: str | os.PathLike[str]) -> Path:
    """A model file, or the folded .keras model an export folder's manifest lists.

    Raises:
        EdgekitError: a folder without a manifest or without a saved Keras model.
    """
    p = Path(path)
    if not p.is_dir():
        return p
    from edgekit.device.manifest import read_manifest

    manifest = read_manifest(p)
    if manifest.keras_model is None:
        raise EdgekitError(
            f"{p}'s manifest lists no Keras model: pass the .keras file the files were made from"
        )
    return p / manifest.keras_model.file


def quantize_report(
    path: str | os.PathLike[str],
    data_config: DataConfig,
    samples: int = 100,
    calibration_samples: int = 500,
    unsafe: bool = False,
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-layer int8 error of the model at `path` (a model file or an export folder).

    Returns:
        (layers worst first as dicts, meta: model, samples, data) for edgekit.cli.report.quantize.
    """
    from edgekit.core.data import load_dataset
    from edgekit.core.model_path import check_model_path
    from edgekit.workstation.pipeline import data_config_for_model

    say = progress or (lambda msg: None)
    model_path = check_model_path(model_of(path))
    data = load_dataset(data_config_for_model(data_config, model_path, say))
    from edgekit.workstation.export.layer_debug import debug_layers
    from edgekit.workstation.export.model_io import load_user_model

    user = load_user_model(model_path, unsafe=unsafe)
    say(f"running the QuantizationDebugger on {samples} training samples")
    errors = debug_layers(
        user.model,
        data.x_train,
        samples=samples,
        seed=data_config.seed,
        calibration_samples=calibration_samples,
    )
    meta = {
        "model": str(model_path),
        "samples": samples,
        "data": data.name,
        "calibration_samples": calibration_samples,
    }
    return [e.to_dict() for e in errors], meta
