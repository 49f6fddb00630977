"""Checks of a model path that need no TensorFlow, so a wrong path fails in milliseconds."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from edgekit.core.errors import ModelError

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


def _model_config(path: Path) -> Any:
    """A .keras/.h5 file's model config (JSON), read without TensorFlow; None if unreadable."""
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
    return config


def _layer_configs(node: Any, class_name: str) -> list[dict[str, Any]]:
    """Configs of the layers of `class_name` in a model config, in order."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("class_name") == class_name:
            return [node.get("config") or {}]
        for value in node.values():
            found += _layer_configs(value, class_name)
    elif isinstance(node, list):
        for value in node:
            found += _layer_configs(value, class_name)
    return found


def model_input_shape(path: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """The sample shape (without the batch) a .keras/.h5 model file takes, read from its config
    without TensorFlow; None when the file does not say (or has several inputs)."""
    shapes = [
        s
        for cfg in _layer_configs(_model_config(Path(path)), "InputLayer")
        if isinstance(s := cfg.get("batch_shape") or cfg.get("batch_input_shape"), list)
    ]
    if not shapes or any(not isinstance(d, int) for d in shapes[0][1:]):
        return None
    return tuple(int(d) for d in shapes[0][1:])


# A first Rescaling layer with a scale this small takes raw 0..255 pixels (e.g. 1/255, 1/127.5).
RAW_PIXEL_RESCALING = 0.01


# Layers that move pixels around without changing their values.
_SHAPE_ONLY = ("Reshape", "Flatten", "Permute")


def model_takes_raw_pixels(path: str | os.PathLike[str]) -> bool:
    """Whether the model rescales raw pixels itself: the first layer after its input (past
    Reshape/Flatten/Permute) is a Rescaling that multiplies by <= 0.01 (1/255 or 1/127.5),
    so uint8 images go in unscaled."""
    config = _model_config(Path(path)) or {}
    layers = [x for x in (config.get("config") or {}).get("layers") or [] if isinstance(x, dict)]
    sequential = config.get("class_name") == "Sequential"
    fed = {c.get("name") for c in _layer_configs(config, "InputLayer")}  # read the raw input
    for layer in layers:
        kind, cfg = layer.get("class_name"), layer.get("config") or {}
        if kind == "InputLayer":
            continue
        if not sequential and not fed & set(_inbound_names(layer)):
            continue
        if kind == "Rescaling":
            scale = cfg.get("scale")
            return isinstance(scale, (int, float)) and 0 < scale <= RAW_PIXEL_RESCALING
        if kind not in _SHAPE_ONLY:
            if sequential:
                return False
            continue
        fed.add(cfg.get("name") or layer.get("name"))
    return False


def _inbound_names(layer: dict[str, Any]) -> list[str]:
    """Names of the layers a Functional layer record reads (Keras 3 and tf_keras formats)."""
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            history = (node.get("config") or {}).get("keras_history")
            if isinstance(history, list) and history:
                names.append(str(history[0]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            if node and isinstance(node[0], str) and len(node) >= 3:
                names.append(node[0])  # tf_keras: [name, node_index, tensor_index, kwargs]
            for value in node:
                walk(value)

    walk(layer.get("inbound_nodes"))
    return names


def keras_major_version(path: str | Path) -> int | None:
    """The major Keras version a .keras/.h5 file was saved with (2 or 3), None if it says not."""
    path = Path(path)
    version = None
    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as z:
                version = json.loads(z.read("metadata.json")).get("keras_version")
        else:
            import h5py  # light: no TensorFlow

            with h5py.File(path, "r") as f:
                version = f.attrs.get("keras_version")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    if isinstance(version, bytes):
        version = version.decode(errors="replace")
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def lambda_refused(path: str | os.PathLike[str]) -> str:
    """The one-line error for a Lambda layer met in safe mode (tf_keras or Keras 3)."""
    return (
        f"{path} holds a Lambda layer, whose Python code runs only with safe mode off: pass "
        "--unsafe if you trust the file, or replace the Lambda with a built-in layer"
    )
