"""Whether TensorFlow's CPU kernels in this process can run a model's layers.

TensorFlow's stock CPU kernels run Conv2D, DepthwiseConv2D and pooling only in channels_last
(NHWC). Channels_first (NCHW) runs on the CPU only through oneDNN, which TensorFlow 2.21 turns on
by default on CPUs with AVX-512 class features and which `TF_ENABLE_ONEDNN_OPTS=0` turns off.
Without it Keras cannot evaluate, train or fine-tune a channels_first model (the TFLite
converter still can convert it: it rewrites the layout). A user's model is probed once, on one
sample, before any stage runs it, so such a model gets a one-line error instead of a
traceback from deep inside `predict` or `fit`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from edgekit.core.errors import ModelError
from edgekit.workstation._keras import tf

__all__ = ["channels_first_layers", "check_layout_runs_here", "layout_runs_here"]


def channels_first_layers(model: Any) -> list[str]:
    """Names of the layers (nested ones as 'outer/inner') with data_format='channels_first'."""
    found: list[str] = []
    for layer in getattr(model, "layers", []):
        if getattr(layer, "data_format", None) == "channels_first":
            found.append(layer.name)
        if hasattr(layer, "layers"):
            found += [f"{layer.name}/{name}" for name in channels_first_layers(layer)]
    return found


def layout_runs_here(model: Any) -> str | None:
    """None if the model's channels_first layers (if any) run on this CPU; else TensorFlow's
    reason, one line. A model without channels_first layers is not run at all."""
    if not channels_first_layers(model):
        return None
    shape = tuple(model.inputs[0].shape)[1:] if getattr(model, "inputs", None) else ()
    if not shape or any(d is None for d in shape):
        return None  # no fixed input shape to probe with; nothing to say in advance
    dtype = getattr(model.inputs[0].dtype, "name", None) or str(model.inputs[0].dtype)
    probe = np.zeros((1, *shape), dtype=np.dtype(dtype) if dtype != "string" else np.float32)
    try:
        model(probe, training=False)
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError) as e:
        lines = [line.strip() for line in str(e.message).splitlines() if line.strip()]
        why = next((line for line in lines if "NHWC" in line or "format" in line), None)
        why = why or (lines[0] if lines else type(e).__name__)
        # "{{function_node ...}} The Conv2D op ... NCHW [Op:Conv2D] name: " -> the sentence
        why = re.sub(r"\s*\[Op:.*$", "", re.sub(r"\{\{[^}]*\}\}\s*", "", why))
        return why.strip()[:200]
    return None


def check_layout_runs_here(model: Any) -> None:
    """Refuse a channels_first model that TensorFlow's CPU kernels here cannot run.

    Raises:
        ModelError: one line naming the layers, TensorFlow's reason and the fix.
    """
    why = layout_runs_here(model)
    if why is None:
        return
    layers = channels_first_layers(model)
    named = ", ".join(repr(n) for n in layers[:4]) + (" ..." if len(layers) > 4 else "")
    raise ModelError(
        f"model {model.name!r} has channels_first layers ({named}) that TensorFlow's CPU "
        f"kernels cannot run in this process ({why.rstrip('.')}): without oneDNN (a CPU "
        "without AVX-512, or TF_ENABLE_ONEDNN_OPTS=0) they run only channels_last; rebuild "
        "the model with data_format='channels_last' (and BatchNormalization(axis=-1)), or "
        "run edgekit where oneDNN is on"
    )
