"""Checks of a model path that need no TensorFlow, so a wrong path fails in milliseconds."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from edgekit.errors import ModelError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def check_model_path(path: str | os.PathLike[str]) -> Path:
    """Return `path` if it names a readable Keras model file, else raise ModelError.

    Run before TensorFlow is imported and data is loaded: a typo costs no seconds.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file {path} does not exist: pass the path of a .keras file")
    if not path.is_file():
        raise ModelError(f"model path {path} is not a file: pass a .keras or .h5 file")
    if not os.access(path, os.R_OK):
        raise ModelError(f"model file {path} is not readable: check its permissions")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelError(
            f"{path} is not a Keras model file (suffix {path.suffix or 'none'}): "
            f"pass a {' or '.join(MODEL_SUFFIXES)} file saved with tf_keras"
        )
    return path


def model_input_shape(path: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """The sample shape (without the batch) a .keras/.h5 model file takes, read from its config
    without TensorFlow; None when the file does not say (or has several inputs)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as z:
                config = json.loads(z.read("config.json"))
        else:
            import h5py  # light: no TensorFlow

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except Exception:  # a damaged file: the loader's own error says what is wrong
        return None
    shapes: list[list[Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "InputLayer":
                cfg = node.get("config") or {}
                shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
                if isinstance(shape, list):
                    shapes.append(shape)
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    if not shapes or any(not isinstance(d, int) for d in shapes[0][1:]):
        return None
    return tuple(int(d) for d in shapes[0][1:])
