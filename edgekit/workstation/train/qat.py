"""Quantization-aware training (QAT) with TF-MOT's 8-bit schemes, pruning-preserving when sparse.

Three traps of TF-MOT 0.8.1 (measured, see STACK.md) shape this stage:
- a Dense + BatchNormalization pair trained with QAT converts SILENTLY to a float
  FULLY_CONNECTED: batch norm is folded first (`fold_batchnorm`);
- a Dense/Conv followed by a separate ReLU layer gets no weight quantizer at all (TF-MOT's
  `LayerReLUQuantize` transform), so its zeros come back while fine-tuning: the ReLU is fused
  into the layer first (`fuse_relu`);
- the default scheme does not keep pruned zeros (0.80 -> 0.37-0.62): a sparse model is trained
  with `Default8BitPrunePreserveQuantizeScheme`, and the zeros are checked afterwards.

The result is a quantize-wrapped tf_keras model; a full-integer conversion of it still needs a
representative dataset (`edgekit.workstation.export.converter.convert(model, recipe_for("int8"),
x)`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.core.config import QatConfig
from edgekit.core.data import Dataset
from edgekit.core.errors import EdgekitError, ModelError, first_line
from edgekit.core.io.console import Progress
from edgekit.workstation._keras import keras, set_determinism, tf, tfmot
from edgekit.workstation.optimize.fold import fold_batchnorm
from edgekit.workstation.optimize.fuse import fuse_relu
from edgekit.workstation.train.model import check_data_fits, fine_tune
from edgekit.workstation.train.prune import SPARSITY_TOLERANCE

__all__ = [
    "SPARSE_KERNEL_FRACTION",
    "QatResult",
    "has_sparse_kernels",
    "kernel_values",
    "model_kernels",
    "quantize_aware_train",
    "quantized_kernel_sparsity",
    "require_training_data",
]

# A kernel with at least this fraction of exact zeros is taken as pruned.
SPARSE_KERNEL_FRACTION = 0.05
_KERNEL_ATTRS = ("kernel", "depthwise_kernel")


@dataclass(frozen=True)
class QatResult:
    """A quantization-aware trained model and what was done to it.

    Args:
        model: quantize-wrapped tf_keras model (compiled); convert it with a full-integer recipe.
        scheme: "default", "prune_preserve" (a kernel was sparse) or "cluster_preserve" (the
            kernels were clustered: clusters and zeros kept).
        folded_batchnorms: BatchNormalization layers folded before QAT.
        kernel_sparsity: zeros in each kernel as QAT quantizes it, i.e. as the int8 file
            stores it, by layer name.
        epochs_run: fine-tuning epochs.
        fused_activations: ReLU layers fused into the layer before them.
        unquantized: layers QAT leaves float (converted by calibration) -> why.
        history: Keras training history.
    """

    model: keras.Model
    scheme: str
    folded_batchnorms: list[str]
    kernel_sparsity: dict[str, float]
    epochs_run: int
    fused_activations: list[str]
    unquantized: dict[str, str]
    history: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "folded_batchnorms": self.folded_batchnorms,
            "fused_activations": self.fused_activations,
            "kernel_sparsity": self.kernel_sparsity,
            "unquantized": self.unquantized,
            "epochs_run": self.epochs_run,
        }


def require_training_data(data: Dataset | None, flag: str) -> Dataset:
    """The dataset, or a one-line EdgekitError when it holds no training samples."""
    if data is None or len(data.x_train) == 0:
        raise EdgekitError(
            f"{flag} needs training data: got no training samples; pass data with a training "
            "set (the model is fine-tuned on it)"
        )
    return data


def has_sparse_kernels(sparsity: dict[str, float]) -> bool:
    """Whether any kernel has >= SPARSE_KERNEL_FRACTION exact zeros (a pruned model)."""
    return any(v >= SPARSE_KERNEL_FRACTION for v in sparsity.values())


def _kernel_variable(layer: keras.layers.Layer) -> tf.Variable | None:
    """The kernel variable of a Dense/Conv2D/DepthwiseConv2D-like layer, or None.

    Looked up among the layer's weights by name: inside a QuantizeWrapper the inner layer's
    `kernel` attribute is the quantized tensor of the last call, and the wrapper tracks the
    variable (pass the wrapper).
    """
    for w in layer.weights:
        if w.name.split(":")[0].split("/")[-1] in _KERNEL_ATTRS:
            return w
    return None


def kernel_values(layer: keras.layers.Layer) -> np.ndarray | None:
    """The kernel of a Dense/Conv2D/DepthwiseConv2D-like layer as NumPy, or None."""
    w = _kernel_variable(layer)
    return None if w is None else np.asarray(w.numpy())


def model_kernels(model: keras.Model) -> dict[str, np.ndarray]:
    """Every kernel of a model's top-level layers as NumPy, by layer name."""
    out = {}
    for layer in model.layers:
        kernel = kernel_values(layer)
        if kernel is not None:
            out[layer.name] = kernel
    return out


def _quantized_kernel(wrapper: Any) -> tuple[np.ndarray | None, bool]:
    """(kernel as QAT's weight quantizer outputs it in inference, whether it is quantized)."""
    kernel = _kernel_variable(wrapper)  # the inner layer no longer tracks it
    for weight, quantizer, quantizer_vars in getattr(wrapper, "_weight_vars", []):
        if kernel is not None and weight is kernel:
            return np.asarray(quantizer(weight, False, weights=quantizer_vars).numpy()), True
    return (None if kernel is None else np.asarray(kernel.numpy())), False


def quantized_kernel_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of zeros in every kernel of a QAT model, as its weight quantizers output them
    (what a converted file stores); plain kernels of unwrapped layers as they are."""
    out: dict[str, float] = {}
    for layer in model.layers:
        if isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
            name, (kernel, _) = layer.layer.name, _quantized_kernel(layer)
        else:
            name, kernel = layer.name, kernel_values(layer)
        if kernel is not None:
            out[name] = float((kernel == 0).mean()) if kernel.size else 0.0
    return out


# A kernel (of >= this many weights) holding at most CLUSTERED_MAX_VALUES distinct values is
# taken as clustered (`--clusters`): QAT then keeps its clusters (and zeros).
CLUSTERED_MIN_WEIGHTS = 1024
CLUSTERED_MAX_VALUES = 256


def is_clustered(kernels: dict[str, np.ndarray]) -> bool:
    """Whether the large kernels were clustered: few distinct values in each."""
    big = [k for k in kernels.values() if k.size >= CLUSTERED_MIN_WEIGHTS]
    return bool(big) and all(len(np.unique(k)) <= CLUSTERED_MAX_VALUES for k in big)


class _PerLayerWeightQuantizers:
    """A cluster-preserve quantize registry that gives every layer its own weight quantizer.

    TF-MOT 0.8.1's registry hands ONE weight quantizer per config class (one for every Conv2D,
    one for every Dense) to all layers, and building it for a layer without zeros (a small
    kernel left dense by `--min-weights`) sets its `preserve_sparsity` to False for every
    layer built after it: their pruned zeros are then trained freely and come back
    (measured: conv3 0.70 -> 0.67, conv4 0.70 -> 0.68 after 4 epochs, cnn --hidden 32, seed 0).
    """

    def __init__(self, registry: Any, preserve_sparsity: bool) -> None:
        self._registry = registry
        self._preserve_sparsity = preserve_sparsity

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    def get_quantize_config(self, layer: keras.layers.Layer) -> Any:
        config = self._registry.get_quantize_config(layer)
        shared = getattr(config, "weight_quantizer", None)
        if shared is not None and hasattr(shared, "preserve_sparsity"):
            config.weight_quantizer = type(shared)(preserve_sparsity=self._preserve_sparsity)
        return config


class _ClusterPreserveScheme(tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme):
    """TF-MOT's prune-cluster-preserving 8-bit scheme with a weight quantizer per layer."""

    def get_quantize_registry(self) -> Any:
        return _PerLayerWeightQuantizers(super().get_quantize_registry(), self.preserve_sparsity)


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _quiet_cqat_notice() -> Iterator[None]:
    """TF-MOT logs 'Input layer does not contain zero weights, so apply CQAT instead.' on the
    root logger for each layer without zeros (those left dense by --min-weights): expected, and
    no news to the user (the zeros of the others are checked after QAT)."""
    drop = _DropMessage("does not contain zero weights")
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


def _scheme(name: str) -> Any:
    if name == "prune_preserve":
        return tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    if name == "cluster_preserve":
        return _ClusterPreserveScheme(preserve_sparsity=True)
    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()


def _annotate(model: keras.Model, scheme: Any) -> tuple[keras.Model, dict[str, str]]:
    """Annotate every layer both registries can quantize; the others are returned with why."""
    default = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    registries = (default.get_quantize_registry(), scheme.get_quantize_registry())
    left: dict[str, str] = {}

    def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        if all(r.supports(layer) for r in registries):
            return tfmot.quantization.keras.quantize_annotate_layer(layer)
        left[layer.name] = (
            f"TF-MOT's 8-bit QAT has no quantize config for {type(layer).__name__}: trained in "
            "float, quantized by calibration at conversion"
        )
        return layer

    if any(isinstance(layer, keras.Model) for layer in model.layers):
        raise ModelError(
            "the model nests another model, which TF-MOT cannot quantize layer by layer: "
            "flatten it into one Sequential/Functional model, or export without QAT"
        )
    return keras.models.clone_model(model, clone_function=annotate), left


def _apply(model: keras.Model, scheme_name: str) -> tuple[keras.Model, dict[str, str]]:
    annotated, left = _annotate(model, _scheme(scheme_name))
    try:
        qat = tfmot.quantization.keras.quantize_apply(annotated, _scheme(scheme_name))
    except (ValueError, RuntimeError, TypeError) as e:
        first = first_line(e)
        raise ModelError(
            f"TF-MOT cannot apply quantization-aware training to model {model.name!r} "
            f"({first}): use built-in tf_keras layers with relu/softmax/linear activations, or "
            "export without QAT (post-training int8)"
        ) from None
    for layer in qat.layers:
        if isinstance(layer, tfmot.quantization.keras.QuantizeWrapper):
            kernel, quantized = _quantized_kernel(layer)
            if kernel is not None and not quantized:
                left[layer.layer.name] = (
                    f"TF-MOT gives this {type(layer.layer).__name__} no weight quantizer (its "
                    "output feeds an activation layer it could not be fused with): its kernel "
                    "is trained in float and quantized by calibration at conversion"
                )
    return qat, left


# ~60 lines with its docstring: one straight run (fold, fuse, wrap, fine-tune, check zeros).
def quantize_aware_train(
    model: keras.Model,
    data: Dataset | None,
    config: QatConfig,
    progress: Progress | None = None,
    augment: Sequence[str] = (),
) -> QatResult:
    """Fold batch norm, fuse ReLUs, wrap the model for 8-bit QAT and fine-tune it on `data`.

    A model with a kernel of >= SPARSE_KERNEL_FRACTION zeros is trained with the
    pruning-preserving scheme, and every such kernel must keep its zeros (within
    SPARSITY_TOLERANCE) as quantized. The input model is not modified.

    Raises:
        EdgekitError: no training data, or a sparse kernel lost its zeros.
        DataError: the data does not fit the model.
        ModelError: TF-MOT cannot quantize the model.
    """
    data = require_training_data(data, "--qat")
    check_data_fits(model, data)
    folded = fold_batchnorm(model)
    fused = fuse_relu(folded.model)
    float_model = fused.model
    kernels = model_kernels(float_model)
    before = {n: float((k == 0).mean()) for n, k in kernels.items() if k.size}
    if is_clustered(kernels):
        scheme = "cluster_preserve"  # keeps the clusters and (preserve_sparsity) the zeros
    else:
        scheme = "prune_preserve" if has_sparse_kernels(before) else "default"
    set_determinism(config.seed)
    with _quiet_cqat_notice():
        qat, unquantized = _apply(float_model, scheme)

    hist = fine_tune(
        qat,
        data,
        config.epochs,
        config.batch_size,
        config.learning_rate,
        config.seed,
        "qat",
        progress,
        augment,
    )
    after = quantized_kernel_sparsity(qat)
    lost = {
        n: (v, after.get(n, 0.0))
        for n, v in before.items()
        if v >= SPARSE_KERNEL_FRACTION and after.get(n, 0.0) < v - SPARSITY_TOLERANCE
    }
    if lost:
        detail = ", ".join(f"{n} {a:.2f} -> {b:.2f}" for n, (a, b) in lost.items())
        raise EdgekitError(
            f"quantization-aware training lost pruned zeros ({detail}): TF-MOT trained these "
            "kernels without holding their zeros (no weight quantizer, or no sparsity mask); "
            "fuse the ReLU after them into the layer (Dense(..., activation='relu')) or export "
            "without QAT"
        )
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return QatResult(
        model=qat,
        scheme=scheme,
        folded_batchnorms=[p.batchnorm for p in folded.folded],
        kernel_sparsity=after,
        epochs_run=len(history.get("loss", [])),
        fused_activations=[f.relu for f in fused.fused],
        unquantized=unquantized,
        history=history,
    )
