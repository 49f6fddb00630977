"""int4 weights and mixed per-layer precision by Google's ai-edge-quantizer (AEQ).

AEQ quantizes a float32 .tflite file (edgekit's float32 export), not a Keras model, and needs
no TensorFlow: neither does this module (numpy, AEQ imported on first use, edgekit's own
TF-free modules). AEQ chooses layers by a regular expression searched (`re.search`) in an op's
scope: the names of its output tensors, each followed by ';' (`layer_names` lists them).

- `quantize_int4`: every supported layer with int4 weights (symmetric, per channel), float
  activations, float input and output.
- `quantize_mixed`: full integer like edgekit's int8 (int8 activations calibrated on training
  samples, int8 weights), but int4 weights in the layers a pattern names; float input and
  output (a QUANTIZE and a DEQUANTIZE op at the ends).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np

from edgekit.core.data.arrays import Samples
from edgekit.core.errors import ExportError, first_line
from edgekit.core.io.process import quiet_native_stderr
from edgekit.device.modelfile import parse_model_bytes
from edgekit.workstation.export.calibration import calibration_indices

INSTALL_HINT = "pip install 'edgekit[int4]'"
INT4_MODES = ("dynamic", "weight_only")
# Threads AEQ's calibration runs the float model with (its default is 16).
CALIBRATION_THREADS = 2
_INT4 = 17  # TensorType.INT4 of the TFLite schema


def aeq_available() -> bool:
    """True when ai-edge-quantizer can be imported."""
    try:
        _aeq()
    except ExportError:
        return False
    return True


def _aeq() -> Any:
    """AEQ's modules, imported on first use.

    Raises:
        ExportError: ai-edge-quantizer (or a package it needs) cannot be imported.
    """
    try:
        from ai_edge_quantizer import (
            algorithm_manager,
            calibrator,
            qtyping,
            quantizer,
            recipe,
            recipe_manager,
        )
        from ai_edge_quantizer.utils import qsv_utils, tfl_flatbuffer_utils
    except Exception as e:  # ImportError, or a broken install raising anything
        raise ExportError(
            "int4 needs Google's ai-edge-quantizer, which cannot be imported "
            f"({type(e).__name__}: {e}): {INSTALL_HINT}"
        ) from None

    return SimpleNamespace(
        algorithm_manager=algorithm_manager,
        calibrator=calibrator,
        qtyping=qtyping,
        quantizer=quantizer,
        recipe=recipe,
        recipe_manager=recipe_manager,
        qsv_utils=qsv_utils,
        fb=tfl_flatbuffer_utils,
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep AEQ's prints, progress bars, Python warnings and logging and LiteRT's C++ logs off
    the console (EDGEKIT_DEBUG=1 shows them). Logging and sys.stdout/stderr are process-wide:
    other threads' output during the block is dropped too."""
    if os.environ.get("EDGEKIT_DEBUG"):
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        # sys.stderr may not be file descriptor 2 (pytest, notebooks): redirect both.
        with quiet_native_stderr(), warnings.catch_warnings(), _python_streams_to_null():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


@contextlib.contextmanager
def _python_streams_to_null() -> Iterator[None]:
    with (
        open(os.devnull, "w") as null,
        contextlib.redirect_stdout(null),
        contextlib.redirect_stderr(null),
    ):
        yield


def quantize_int4(float_tflite: bytes, mode: str = "dynamic") -> bytes:
    """int4 weights in every layer AEQ supports, float activations, float input and output.

    Args:
        float_tflite: a float32 .tflite file's bytes.
        mode: "dynamic" (AEQ's dynamic_wi4_afp32: activations quantized on the fly, integer
            kernels) or "weight_only" (weight_only_wi4_afp32: weights dequantized to float
            before a float kernel).

    Returns:
        The .tflite bytes.

    Raises:
        ExportError: AEQ is missing, the mode is unknown, the file is not float32, AEQ failed,
            or no layer got int4.
        ModelFileError: the bytes are not a readable .tflite file.
    """
    if mode not in INT4_MODES:
        raise ExportError(f"unknown int4 mode {mode!r}: expected one of {', '.join(INT4_MODES)}")
    aeq = _aeq()
    _check_float32(float_tflite)
    rp = aeq.recipe.dynamic_wi4_afp32() if mode == "dynamic" else aeq.recipe.weight_only_wi4_afp32()
    with _quiet():
        try:
            qz = aeq.quantizer.Quantizer(bytes(float_tflite), rp)
            out = bytes(qz.quantize(enable_progress_report=False).quantized_model)
        except Exception as e:
            raise _failed(f"int4 {mode}", e) from None
    # Weight-only files feed int4 constants to DEQUANTIZE ops: look at the constants themselves.
    if not any(w.dtype == "int4" for w in parse_model_bytes(out, "the int4 file").weights):
        raise ExportError(
            "ai-edge-quantizer gave no layer int4 weights (layers with weights: "
            f"{_listing(_weighted_layers(aeq, float_tflite))}): int4 needs FULLY_CONNECTED, "
            "CONV_2D or similar layers with weights"
        )
    return out


# Long for its docstring (Args/Returns/Raises): the body is one quantizer run and its checks.
def quantize_mixed(
    float_tflite: bytes,
    int4_layers: str,
    calibration_x: Samples,
    samples: int = 500,
    seed: int = 42,
) -> bytes:
    """Full integer (int8 activations, int8 weights) with int4 weights in the layers whose
    scope matches the regular expression `int4_layers` (searched, as AEQ does).

    Activation ranges come from `samples` rows of `calibration_x` drawn with `seed` by the
    rule edgekit's int8 export uses (`calibration_indices`). Input and output stay float32.

    Args:
        float_tflite: a float32 .tflite file's bytes (one signature, one input).
        int4_layers: a regular expression naming the layers to give int4 weights.
        calibration_x: training samples shaped like the model's input (an array or any
            sliceable sequence of float rows, e.g. `Dataset.x_train`).
        samples: calibration samples to draw.
        seed: seed of the draw.

    Returns:
        The .tflite bytes.

    Raises:
        ExportError: AEQ is missing, the pattern is not a regular expression or names no layer
            with weights, the file is not float32, no calibration data, AEQ failed, or it left
            a named layer without int4.
        ModelFileError: the bytes are not a readable .tflite file.
    """
    try:
        pattern = re.compile(int4_layers)
    except re.error as e:
        raise ExportError(
            f"int4 layer pattern {int4_layers!r} is not a regular expression ({e}): "
            "pass e.g. 'dense1' or 'dense[12]'"
        ) from None
    aeq = _aeq()
    _check_float32(float_tflite)
    layers = _weighted_layers(aeq, float_tflite)
    chosen = [scope for scope in layers if pattern.search(scope)]
    if not chosen:
        raise ExportError(
            f"int4 layer pattern {int4_layers!r} matches no layer with weights; the layers "
            f"are {_listing(layers)}: pass a pattern that matches one of them"
        )
    signature, input_name, input_shape = _signature_input(aeq, float_tflite)
    calibration = _calibration_set(calibration_x, samples, seed, input_shape)
    mods = aeq.qtyping.TFLOperationName
    no_quantize = aeq.algorithm_manager.AlgorithmName.NO_QUANTIZE
    with _quiet():
        try:
            qz = aeq.quantizer.Quantizer(bytes(float_tflite))
            qz.add_static_config(".*", mods.ALL_SUPPORTED, 8, 8)
            qz.add_static_config(int4_layers, mods.ALL_SUPPORTED, 8, 4)
            # Float input and output, also where the pattern happens to match them.
            for scope in (".*", int4_layers):
                for io in (mods.INPUT, mods.OUTPUT):
                    qz.update_quantization_recipe(scope, io, None, no_quantize)
            data = {signature: [{input_name: row} for row in calibration]}
            qsvs = _calibrate(aeq, float_tflite, qz.get_quantization_recipe(), data)
            out = bytes(qz.quantize(qsvs, enable_progress_report=False).quantized_model)
        except Exception as e:
            raise _failed(f"mixed int4/int8 ({int4_layers!r})", e) from None
    kinds = _weighted_layers(aeq, out)
    left = [scope for scope in chosen if kinds.get(scope) != _INT4]
    if left:
        raise ExportError(
            f"ai-edge-quantizer did not give int4 weights to {_listing(left)}: its int4 "
            "config does not support that layer's op; leave it out of the pattern"
        )
    return out


def _calibrate(aeq: Any, float_tflite: bytes, recipe: Any, data: dict[str, Any]) -> Any:
    """Activation ranges as the TFLite converter takes them: the min and max over all samples.

    That is the rule of edgekit's int8 export. `Quantizer.calibrate` keeps a moving average
    of per-sample ranges instead (narrower ranges: on the test MLP's mixed file, .790 against
    .794 on 1,000 samples) and cannot be told otherwise; this is its body with AEQ's own
    `min_max_update`.
    """
    manager = aeq.recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe)
    cal = aeq.calibrator.Calibrator(
        bytes(float_tflite),
        num_threads=CALIBRATION_THREADS,
        qsv_update_func=aeq.qsv_utils.min_max_update,
    )
    cal.calibrate(data, manager)
    return cal.get_model_qsvs()


def layer_names(tflite: bytes) -> list[str]:
    """The scopes (output tensor names, each followed by ';') of the layers with weights, in
    graph order: what a pattern of `quantize_mixed` is searched in.

    Raises:
        ExportError: AEQ is missing or cannot read the file.
    """
    return list(_weighted_layers(_aeq(), tflite))


def _check_float32(tflite: bytes) -> None:
    """Refuse what is not a float32 .tflite file (a damaged file: ModelFileError)."""
    kinds = sorted({w.dtype for w in parse_model_bytes(tflite, "the float model").weights})
    if kinds != ["float32"]:
        raise ExportError(
            f"int4 quantizes a float32 file, got one with {', '.join(kinds) or 'no'} weights: "
            "pass the float32 export's bytes"
        )


def _read(aeq: Any, tflite: bytes) -> Any:
    try:
        return aeq.fb.read_model(bytes(tflite))
    except Exception as e:
        raise ExportError(
            f"ai-edge-quantizer cannot read the float model ({type(e).__name__}: {e}): "
            "pass the bytes of a float32 .tflite file"
        ) from None


def _weights_of(aeq: Any, model: Any) -> Iterator[tuple[str, int]]:
    """(scope, weight tensor type) of each op with a constant input of rank >= 2."""
    for sub in model.subgraphs:
        for op in sub.operators:
            if model.operatorCodes[op.opcodeIndex].builtinCode not in aeq.fb.TFL_OP_CODE_TO_NAME:
                continue  # an op AEQ does not know: never quantized, never listed
            for i in op.inputs:
                if i < 0:
                    continue
                tensor = sub.tensors[i]
                data = model.buffers[tensor.buffer].data
                rank = 0 if tensor.shape is None else len(tensor.shape)
                if data is not None and len(data) and rank >= 2:
                    yield aeq.fb.get_op_scope(op, sub.tensors), int(tensor.type)
                    break


def _weighted_layers(aeq: Any, tflite: bytes) -> dict[str, int]:
    return dict(_weights_of(aeq, _read(aeq, tflite)))


def _listing(scopes: Any) -> str:
    return ", ".join(repr(s) for s in scopes) or "none"


def _signature_input(aeq: Any, tflite: bytes) -> tuple[str, str, tuple[int, ...]]:
    """The one signature's key, its one input's name and that input's shape."""
    model = _read(aeq, tflite)
    sigs = model.signatureDefs or []
    inputs = [len(s.inputs or []) for s in sigs]
    if inputs != [1]:
        raise ExportError(
            "mixed precision needs a model with one signature of one input, got "
            f"{len(sigs)} signature(s) with {sum(inputs)} input(s): export the float32 file "
            "with edgekit (or the TFLite converter)"
        )
    sig = sigs[0]
    tensor = model.subgraphs[sig.subgraphIndex].tensors[sig.inputs[0].tensorIndex]
    shape = tuple(int(d) for d in tensor.shape) if tensor.shape is not None else ()
    return sig.signatureKey.decode(), sig.inputs[0].name.decode(), shape


def _calibration_set(
    x: Samples, samples: int, seed: int, input_shape: tuple[int, ...]
) -> list[np.ndarray]:
    """Rows of `x` (batch 1, float32: AEQ refuses float64) drawn as edgekit's int8 export does."""
    if x is None or len(x) == 0:
        raise ExportError(
            "mixed precision needs a calibration set, got none: pass training data so a "
            "representative sample can be drawn"
        )
    if tuple(x.shape[1:]) != tuple(input_shape[1:]):
        raise ExportError(
            f"calibration samples have shape {tuple(x.shape[1:])} but the model expects "
            f"{tuple(input_shape[1:])}: pass data shaped like the model's input"
        )
    idx = calibration_indices(len(x), samples, seed)
    return [np.asarray(x[i : i + 1], np.float32) for i in idx]


def _failed(what: str, e: Exception) -> ExportError:
    first = first_line(e)
    return ExportError(
        f"ai-edge-quantizer failed for {what} ({type(e).__name__}: {first}): the model may use "
        "ops it cannot quantize; try int8 or float16"
    )
