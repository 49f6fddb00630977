"""The ONLY module of edgekit that imports TensorFlow, tf_keras and TF-MOT.

TF-MOT 0.8.1 works only with Keras 2 (`tf_keras`). Whether `tf.keras` means Keras 2 or 3
depends on `TF_USE_LEGACY_KERAS` at the time TensorFlow is first imported, so it is set
here, before that import, and every model of edgekit is built with `keras` from this module.
"""

from __future__ import annotations

import os
from typing import Any

os.environ["TF_USE_LEGACY_KERAS"] = "1"
# Keep TF's C++ start-up chatter (oneDNN, CUDA probing, tf.data attribute noise) off stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


def _import_quietly() -> tuple[Any, Any, Any]:
    """TF 2.21 logs oneDNN/CUDA notices through absl before TF_CPP_MIN_LOG_LEVEL applies."""
    from edgekit.core.errors import EdgekitError
    from edgekit.core.io.process import quiet_native_stderr

    try:
        with quiet_native_stderr():
            import tensorflow as tf_mod
            import tensorflow_model_optimization as tfmot_mod
            import tf_keras as keras_mod
    except ImportError as e:  # a device install: runtime side only
        raise EdgekitError(
            "training and export need TensorFlow, tf-keras and TF-MOT, which cannot be "
            f"imported here ({e}): pip install 'edgekit[train]'"
        ) from None
    return tf_mod, keras_mod, tfmot_mod


tf, keras, tfmot = _import_quietly()

tf.get_logger().setLevel("ERROR")

__all__ = ["import_keras3", "keras", "tf", "tfmot", "set_determinism"]


def import_keras3() -> Any:
    """Keras 3 (the `keras` package TensorFlow 2.21 installs), for reading Keras 3 models.

    With TF_USE_LEGACY_KERAS=1, `tf.keras` is tf_keras but `import keras` is still Keras 3:
    edgekit uses it only to load a user's Keras 3 file and to rebuild it in tf_keras.
    """
    from edgekit.core.io.process import quiet_native_stderr

    with quiet_native_stderr():
        import keras as keras3

    return keras3


_determinism_on = False


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic.

    `enable_op_determinism` makes reductions and some CPU kernels pick deterministic
    algorithms; it is process-wide, so it is turned on once. Its cost, measured by
    benchmarks/reproducibility.py on a 2-core x86 CPU, is within run-to-run noise (0.9-1.03x).
    """
    global _determinism_on
    keras.utils.set_random_seed(seed)
    if not _determinism_on:
        tf.config.experimental.enable_op_determinism()
        _determinism_on = True


def versions() -> dict[str, str]:
    """Versions of the training stack, for manifests and reports."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"tensorflow": tf.__version__, "tf_keras": keras.__version__}
    try:
        out["tensorflow_model_optimization"] = version("tensorflow-model-optimization")
    except PackageNotFoundError:  # pragma: no cover - installed with the train extra
        out["tensorflow_model_optimization"] = "unknown"
    return out
