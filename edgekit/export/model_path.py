"""Checks of a model path that need no TensorFlow, so a wrong path fails in milliseconds."""

from __future__ import annotations

import os
from pathlib import Path

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
