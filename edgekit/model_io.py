"""Load and save tf_keras models; safe mode is on, so no code runs that the user did not ask for."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgekit._keras import keras
from edgekit.errors import ModelError
from edgekit.io import TMP_PREFIX

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_keras_model(path: str | os.PathLike[str], unsafe: bool = False) -> keras.Model:
    """Load a tf_keras model file (.keras or .h5) with safe mode on unless `unsafe`.

    Raises:
        ModelError: missing/unreadable file, not a Keras model, Lambda layers or custom objects.
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
    try:
        if path.suffix.lower() == ".keras":
            model = keras.models.load_model(path, compile=False, safe_mode=not unsafe)
        else:
            model = keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError, TypeError, OSError, zipfile errors...
        msg = str(e).strip().replace("\n", " ")
        low = msg.lower()
        if "lambda" in low and ("safe_mode" in low or "unsafe" in low):
            raise ModelError(
                f"{path} holds a Lambda layer, whose Python code runs only with safe mode off: "
                "pass --unsafe if you trust the file, or replace the Lambda with a built-in layer"
            ) from None
        if "unknown layer" in low or "custom_object" in low or "could not locate" in low:
            raise ModelError(
                f"{path} uses custom layers or objects edgekit cannot load ({msg[:160]}): "
                "rebuild the model from built-in tf_keras layers"
            ) from None
        raise ModelError(
            f"{path} is not a Keras model edgekit can load ({type(e).__name__}: {msg[:160]}): "
            "save it with tf_keras `model.save('model.keras')`"
        ) from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} holds a {type(model).__name__}, not a Keras model")
    return model


def save_keras_atomic(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Save a tf_keras model in the .keras format via a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp, overwrite=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
