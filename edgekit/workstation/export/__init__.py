"""Workstation side: TFLite conversion by recipe, verification before writing, the manifest.

`recipes`, `model_path`, `calibration` and `aeq` (ai-edge-quantizer's int4) need no TensorFlow;
the names below are imported from the modules that do (`tflite`, `convert`, `model_io`) only
when first used, so `edgekit.core.recipes` can be read on a device.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_tflite": "edgekit.workstation.export.tflite",
    "verify_tflite": "edgekit.workstation.export.tflite",
    "default_stem": "edgekit.workstation.export.tflite",
    "file_name": "edgekit.workstation.export.tflite",
    "ExportResult": "edgekit.workstation.export.tflite",
    "ExportedFile": "edgekit.workstation.export.tflite",
    "convert": "edgekit.workstation.export.converter",
    "load_keras_model": "edgekit.workstation.export.model_io",
    "save_keras_atomic": "edgekit.workstation.export.model_io",
    "quantize_int4": "edgekit.workstation.export.aeq",
    "quantize_mixed": "edgekit.workstation.export.aeq",
    "aeq_available": "edgekit.workstation.export.aeq",
    "RECIPES": "edgekit.core.recipes",
    "ExportRecipe": "edgekit.core.recipes",
    "recipe_for": "edgekit.core.recipes",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgekit.workstation.export' has no attribute {name!r}")
