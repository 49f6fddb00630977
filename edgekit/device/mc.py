"""MC-dropout files on the device: mean class probabilities and their spread, picked by name.

A file written by `edgekit.workstation.export.mc` runs N dropout passes batched inside its graph
and has three outputs: `mc_mean` (mean class probabilities), `mc_std` (their per-class standard
deviation over the N passes) and `mc_entropy` (predictive entropy of the mean, in nats). Files
written since 0.2.0 hold them in that order (output 0 is mc_mean, for apps that read output 0);
older ones in the converter's order (the MLP here: std, entropy, mean). edgekit finds them by
their signature output names (or tensor names), never by position. No TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from edgekit.core.data.dataset import InputSpec
from edgekit.core.errors import EdgekitError
from edgekit.device.interpreter import Interpreter
from edgekit.device.outputs import MC_OUTPUTS, mc_output_indices
from edgekit.device.runtime import (
    EVAL_BATCH_SIZE,
    Runtime,
    load_interpreter,
    output_details,
    predict_outputs,
)

# Added to the mean before its log: entropy = -sum(p * log(p + eps)); p = 0 adds nothing.
ENTROPY_EPS = 1e-7


def predictive_entropy(probs: np.ndarray, eps: float = ENTROPY_EPS) -> np.ndarray:
    """Entropy in nats of each row of class probabilities, computed as the MC files do."""
    p = np.asarray(probs, dtype=np.float64)
    return (-(p * np.log(p + eps)).sum(axis=-1)).astype(np.float32)


@dataclass(frozen=True)
class McPrediction:
    """What an MC-dropout file returns for n samples."""

    mean: np.ndarray  # (n, classes): mean class probabilities over the N dropout passes
    std: np.ndarray  # (n, classes): their standard deviation over the passes (ddof 0)
    entropy: np.ndarray  # (n,): predictive entropy of `mean`, nats

    @property
    def predictions(self) -> np.ndarray:
        """Top-1 class of the mean, per sample."""
        return self.mean.argmax(axis=1)


def predict_mc(
    model: str | os.PathLike[str] | bytes | Interpreter,
    x: np.ndarray,
    batch_size: int = EVAL_BATCH_SIZE,
    preprocessing: InputSpec | None = None,
    runtime: str | Runtime = "auto",
) -> McPrediction:
    """Mean class probabilities, per-class std and entropy of an MC-dropout file for inputs x.

    Args:
        model: a .tflite path, its bytes, or a loaded interpreter.
        x: float inputs shaped like the model's input (int8 files are quantized as needed), or
            raw samples when `preprocessing` (a manifest's `input`) is given.
        batch_size: samples per invoke (the files take any batch; fixed masks give the same
            numbers at every batch size).

    Raises:
        EdgekitError: the file has no MC outputs, or x does not fit its input.
        ModelFileError: the file cannot be loaded.

    Examples:
        A file of `edgekit export --dropout 0.2 --mc-samples 10`, on raw uint8 images:

        >>> from edgekit.core.data import load_fashion_mnist_arrays
        >>> from edgekit.device.manifest import read_manifest
        >>> folder = "artifacts"  # doctest: +SKIP
        >>> manifest = read_manifest(folder)
        >>> raw, _ = load_fashion_mnist_arrays()
        >>> mc = predict_mc(
        ...     f"{folder}/fashion_mnist_mlp_sp80_mc10_int8.tflite",
        ...     raw["x_test"][:5],
        ...     preprocessing=manifest.input,
        ... )
        >>> mc.mean.shape, mc.std.shape, mc.entropy.shape
        ((5, 10), (5, 10), (5,))
        >>> bool((mc.std >= 0).all() and (mc.entropy >= 0).all())
        True
    """
    interpreter = (
        load_interpreter(model, runtime)
        if isinstance(model, (str, os.PathLike, bytes, bytearray))
        else model
    )
    indices = mc_output_indices(interpreter)
    if indices is None:
        names = ", ".join(i.name for i in output_details(interpreter))
        raise EdgekitError(
            f"the file has no MC-dropout outputs ({', '.join(MC_OUTPUTS)}; it has {names}): "
            "export one with --mc-samples N from a model with Dropout layers"
        )
    mean, std, entropy = predict_outputs(
        interpreter, x, [indices[n] for n in MC_OUTPUTS], batch_size, preprocessing
    )
    return McPrediction(mean=mean, std=std, entropy=entropy.reshape(len(mean)))
