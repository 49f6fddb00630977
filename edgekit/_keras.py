"""The ONLY module of edgekit that imports TensorFlow, tf_keras and TF-MOT.

TF-MOT 0.8.1 works only with Keras 2 (`tf_keras`). Whether `tf.keras` means Keras 2 or 3
depends on `TF_USE_LEGACY_KERAS` at the time TensorFlow is first imported, so it is set
here, before that import, and every model of edgekit is built with `keras` from this module.
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter off stderr

import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras as keras  # noqa: E402

tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "tf", "tfmot", "set_determinism"]

_determinism_on = False


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic.

    `enable_op_determinism` makes reductions and some CPU kernels pick deterministic
    algorithms; it is process-wide and cannot be turned off again.
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
