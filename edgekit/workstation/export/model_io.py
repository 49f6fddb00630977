"""Load and save tf_keras models; safe mode is on, so no code runs that the user did not ask for."""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.core.errors import ModelError
from edgekit.core.io.files import write_bytes_atomic
from edgekit.core.model_path import check_model_path, keras_major_version, lambda_refused
from edgekit.workstation._keras import keras
from edgekit.workstation.cpu_kernels import check_layout_runs_here
from edgekit.workstation.train import activations as _activations  # noqa: F401  (registers edgekit>SELU)
from edgekit.workstation.train import schedules as _schedules  # noqa: F401  (registers edgekit>OneCycle)

# The class name in tf_keras' "Cannot deserialize object of type `X`" / "Unknown layer: 'X'".
_CUSTOM_NAME = re.compile(
    r"(?:object of type|unknown (?:layer|object)[^:]*:)\s*[`'\"]?([\w.]+)", re.I
)


@dataclass
class UserModel:
    """A user's model file, loaded for the pipeline.

    Args:
        model: what the stages work on: the tf_keras model (as loaded, or rebuilt from Keras 3),
            or the Keras 3 model itself when it could not be rebuilt (export only).
        keras_version: 2 (tf_keras) or 3 (Keras 3), as the file says.
        original: the Keras 3 model, for a Keras 3 file.
        rebuild_error: why a Keras 3 model could not be rebuilt in tf_keras (None if it was).
    """

    model: Any
    keras_version: int
    original: Any = None
    rebuild_error: str | None = None


def load_user_model(path: str | os.PathLike[str], unsafe: bool = False) -> UserModel:
    """Load a tf_keras or Keras 3 model file (.keras or .h5), safe mode on unless `unsafe`.

    A Keras 3 model is rebuilt in tf_keras with its weights (see
    edgekit.workstation.export.keras3); the
    caller checks the rebuild on real samples.

    Raises:
        ModelError: missing/unreadable file, not a Keras model, Lambda layers or custom objects,
            channels_first layers that TensorFlow's CPU kernels here cannot run.
    """
    user = _load_user_model(path, unsafe)
    check_layout_runs_here(user.model)  # before any stage evaluates or trains it
    return user


def _load_user_model(path: str | os.PathLike[str], unsafe: bool) -> UserModel:
    from edgekit.workstation.export.keras3 import UnsupportedLayerError, rebuild_in_tf_keras

    path = check_model_path(path)
    if keras_major_version(path) != 3:
        return UserModel(_one_input_one_output(load_keras_model(path, unsafe), path), 2)
    original = _one_input_one_output(load_keras3_file(path, unsafe), path)
    try:
        return UserModel(rebuild_in_tf_keras(original), 3, original)
    except UnsupportedLayerError as e:
        return UserModel(original, 3, original, str(e))
    except Exception as e:  # a config tf_keras cannot take (an activation name it lacks, ...)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        return UserModel(
            original,
            3,
            original,
            (
                f"the Keras 3 model cannot be rebuilt in tf_keras ({type(e).__name__}: {first}), "
                "so TF-MOT (--prune) cannot work on it: export it without --prune (converted as "
                "it is)"
            ),
        )


def load_keras3_file(path: str | os.PathLike[str], unsafe: bool = False) -> Any:
    """A Keras 3 model file, loaded with Keras 3 (safe mode, foreign modules refused)."""
    from edgekit.workstation.export.keras3 import load_keras3_model

    path = check_model_path(path)
    if not unsafe and path.suffix.lower() == ".keras":
        _refuse_foreign_modules(path)
    return load_keras3_model(path, unsafe)


def _one_input_one_output(model: Any, path: Path) -> Any:
    n_in, n_out = len(model.inputs), len(model.outputs)
    if (n_in, n_out) != (1, 1):
        raise ModelError(
            f"{path} has {n_in} input(s) and {n_out} output(s): edgekit exports classifiers "
            "with one input and one output; export a single-input, single-output model"
        )
    return model


def load_keras_model(path: str | os.PathLike[str], unsafe: bool = False) -> keras.Model:
    """Load a tf_keras model file (.keras or .h5) with safe mode on unless `unsafe`.

    Raises:
        ModelError: missing/unreadable file, not a Keras model, Lambda layers or custom objects.
    """
    path = check_model_path(path)
    if not unsafe and path.suffix.lower() == ".keras":
        _refuse_foreign_modules(path)
    try:
        # tf_keras applies `safe_mode` to .keras files only; the scope makes the legacy .h5
        # loader refuse Lambda bytecode too.
        with keras.src.saving.serialization_lib.SafeModeScope(not unsafe):
            if path.suffix.lower() == ".keras":
                model = keras.models.load_model(path, compile=False, safe_mode=not unsafe)
            else:
                model = keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError, TypeError, OSError, zipfile errors...
        msg = str(e).strip().replace("\n", " ")
        low = msg.lower()
        if "lambda" in low and ("safe_mode" in low or "unsafe" in low):
            raise ModelError(lambda_refused(path)) from None
        custom = _CUSTOM_NAME.search(msg)
        if custom or "custom_object" in low or "could not locate" in low or "custom class" in low:
            what = f" ({custom.group(1)})" if custom else ""
            raise ModelError(
                f"{path} uses a custom layer or object{what} that edgekit cannot load "
                "(it runs no code from outside tf_keras): rebuild the model from built-in "
                "tf_keras layers, or pass --unsafe if you trust the file and its module"
            ) from None
        raise ModelError(
            f"{path} is not a Keras model edgekit can load ({type(e).__name__}: {msg[:160]}): "
            "save it with tf_keras `model.save('model.keras')`"
        ) from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} holds a {type(model).__name__}, not a Keras model")
    return model


# Modules a .keras config may name: tf_keras' own (saved as `keras.*`) and builtins.
_SAFE_MODULE = re.compile(r"(?:tf_)?keras(?:\..+)?|builtins")
# And edgekit's own serializable objects (SELU, OneCycle), registered by the imports above.
_EDGEKIT_MODULES = frozenset({_activations.__name__, _schedules.__name__})


def _refuse_foreign_modules(path: Path) -> None:
    """Refuse a .keras file whose config names classes from modules outside tf_keras.

    tf_keras imports the module a config names to find a class, even in safe mode, and an
    import runs that module's code: check before Keras reads the file.
    """
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return  # not a readable .keras archive: Keras' own error explains it
    foreign: dict[str, None] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            # An object reference is {"module", "class_name", "config", ...}; a Lambda's own
            # config also has a "module" (where its code was written), never imported.
            module = node.get("module")
            if (
                "class_name" in node
                and isinstance(module, str)
                and not _SAFE_MODULE.fullmatch(module)
                and module not in _EDGEKIT_MODULES
            ):
                foreign[f"{node['class_name']} from module {module}"] = None
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    if foreign:
        raise ModelError(
            f"{path} uses a custom layer or object ({', '.join(foreign)}) that edgekit cannot "
            "load (it runs no code from outside tf_keras): rebuild the model from built-in "
            "tf_keras layers, or pass --unsafe if you trust the file and its module"
        )


def keras_model_bytes(model: keras.Model) -> bytes:
    """A tf_keras model in the .keras format, as bytes that depend only on the model.

    The archive is normalized (see `_normalize_keras_archive`) so the same weights give the
    same bytes: two runs with the same seed write the same sha256 into the manifest.
    """
    with tempfile.TemporaryDirectory(prefix="edgekit-keras-") as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path, overwrite=True)
        return _normalize_keras_archive(path)


def save_keras_atomic(model: keras.Model, path: str | os.PathLike[str]) -> bytes:
    """Save a tf_keras model as .keras, written like every output (temporary, fsync, rename).

    Returns the bytes written.
    """
    blob = keras_model_bytes(model)
    write_bytes_atomic(path, blob)
    return blob


# Every entry of a saved .keras archive gets this timestamp (the earliest a zip can hold).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _normalize_keras_archive(path: str | os.PathLike[str]) -> bytes:
    """Rewrite a .keras zip without the parts that change from one save to the next.

    tf_keras stamps the weights entry with the current time and writes `date_saved` into
    metadata.json; neither is read when loading. Both are dropped (entries get a fixed
    timestamp), the rest is copied unchanged and in order.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta).encode()
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_EPOCH)
            entry.compress_type = info.compress_type
            entry.external_attr = 0o644 << 16
            dst.writestr(entry, data)
    return buf.getvalue()
