"""Workstation side: TFLite conversion by recipe, verification before writing, the manifest.

`recipes`, `model_path`, `calibration` and `aeq` (ai-edge-quantizer's int4) need no TensorFlow;
the names below are imported from the modules that do (`tflite`, `convert`, `model_io`) only
when first used, so `edgekit.export.recipes` can be read on a device.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_tflite": "edgekit.export.tflite",
    "verify_tflite": "edgekit.export.tflite",
    "default_stem": "edgekit.export.tflite",
    "file_name": "edgekit.export.tflite",
    "ExportResult": "edgekit.export.tflite",
    "ExportedFile": "edgekit.export.tflite",
    "convert": "edgekit.export.converter",
    "load_keras_model": "edgekit.export.model_io",
    "save_keras_atomic": "edgekit.export.model_io",
    "quantize_int4": "edgekit.export.aeq",
    "quantize_mixed": "edgekit.export.aeq",
    "aeq_available": "edgekit.export.aeq",
    "RECIPES": "edgekit.export.recipes",
    "ExportRecipe": "edgekit.export.recipes",
    "recipe_for": "edgekit.export.recipes",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgekit.export' has no attribute {name!r}")
