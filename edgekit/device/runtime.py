"""The TFLite runtime: picks ai_edge_litert, tflite_runtime or tf.lite; runs files on NumPy data.

Never imports TensorFlow unless the user asked for `runtime="tf"` (or nothing else exists).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from edgekit.core.data.arrays import Samples, scale_pixels
from edgekit.core.data.dataset import InputSpec
from edgekit.core.errors import EdgekitError, ModelFileError, RuntimeMissingError, first_line
from edgekit.device.interpreter import Interpreter, TensorDetail
from edgekit.device.outputs import MC_MEAN, mc_output_indices

RUNTIME_CHOICES = ("auto", "litert", "tflite-runtime", "tf")
_MODULES = {
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
    "tf": ("tensorflow", "tensorflow"),
}
# Batch used to evaluate accuracy: export and bench use the same one so they agree exactly.
EVAL_BATCH_SIZE = 256


@dataclass(frozen=True)
class Runtime:
    """A loaded runtime module: `name` is one of RUNTIME_CHOICES (not auto)."""

    name: str
    version: str
    module: ModuleType

    @property
    def interpreter_class(self) -> Callable[..., Interpreter]:
        return self.module.lite.Interpreter if self.name == "tf" else self.module.Interpreter

    def op_resolver_without_delegates(self) -> object:
        ns = self.module.lite.experimental if self.name == "tf" else self.module
        return ns.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def _package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def get_runtime(name: str = "auto") -> Runtime:
    """Import the requested runtime. `auto` prefers ai-edge-litert, then tflite-runtime, then tf."""
    if name not in RUNTIME_CHOICES:
        choices = ", ".join(RUNTIME_CHOICES)
        raise EdgekitError(f"unknown runtime {name!r}: expected one of {choices}")
    candidates = ["litert", "tflite-runtime", "tf"] if name == "auto" else [name]
    errors = []
    for cand in candidates:
        module_name, dist = _MODULES[cand]
        if cand == "tf":
            os.environ["TF_USE_LEGACY_KERAS"] = "1"
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            module = importlib.import_module(module_name)
            # tflite-runtime 2.14 fails under NumPy 2 only when an Interpreter is made.
            if cand == "tflite-runtime" and int(np.__version__.split(".")[0]) >= 2:
                raise ImportError("tflite-runtime needs numpy<2")
        except Exception as e:  # ImportError, or a broken install raising anything
            if _interrupted(e):  # Ctrl-C inside a native module's init: not a broken install
                raise KeyboardInterrupt from e
            errors.append(f"{dist}: {type(e).__name__}: {e}")
            continue
        return Runtime(cand, _package_version(dist), module)
    raise RuntimeMissingError(
        f"no TFLite runtime could be imported ({'; '.join(errors)}): install one with "
        "`pip install ai-edge-litert` (on 32-bit ARM: `pip install tflite-runtime 'numpy<2'`)"
    )


def _interrupted(error: BaseException) -> bool:
    """Whether `error` comes from a Ctrl-C: a native module interrupted while it initializes
    raises ImportError('initialization failed') from the KeyboardInterrupt."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True)
class TensorInfo:
    """An input or output tensor of a .tflite file."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype in ("int8", "uint8", "int16") and self.scale != 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "quantization": {"scale": self.scale, "zero_point": self.zero_point},
        }


def _tensor_info(detail: TensorDetail) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        name=str(detail["name"]),
        index=int(detail["index"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zero_point),
    )


def load_interpreter(
    model: str | os.PathLike[str] | bytes,
    runtime: str | Runtime = "auto",
    num_threads: int = 1,
    xnnpack: bool = True,
) -> Interpreter:
    """Create and allocate an interpreter for a .tflite path or its bytes.

    Raises:
        ModelFileError: the file is missing or the runtime refuses it.

    Examples:
        >>> folder = "artifacts"  # doctest: +SKIP
        >>> path = f"{folder}/fashion_mnist_mlp_sp80_int8.tflite"
        >>> interpreter = load_interpreter(path, num_threads=2)
        >>> detail = interpreter.get_input_details()[0]
        >>> detail["dtype"].__name__, detail["shape"].tolist()
        ('int8', [1, 28, 28])
    """
    rt = runtime if isinstance(runtime, Runtime) else get_runtime(runtime)
    kwargs: dict[str, object] = {"num_threads": int(num_threads)}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = rt.op_resolver_without_delegates()
    if isinstance(model, (bytes, bytearray)):
        kwargs["model_content"] = bytes(model)
        label = "model bytes"
    else:
        label = str(model)
        if not os.path.isfile(model):
            raise ModelFileError(f"{label} does not exist: pass the path of a .tflite file")
        kwargs["model_path"] = str(model)
    try:
        interpreter = rt.interpreter_class(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        first = first_line(e)
        raise ModelFileError(
            f"{label} cannot be loaded by {rt.name} {rt.version} ({first}): "
            "re-export or re-copy the file"
        ) from None
    return interpreter


def input_details(interpreter: Interpreter) -> list[TensorInfo]:
    return [_tensor_info(d) for d in _details(interpreter.get_input_details)]


def output_details(interpreter: Interpreter) -> list[TensorInfo]:
    return [_tensor_info(d) for d in _details(interpreter.get_output_details)]


def _details(get: Any) -> list[dict[str, Any]]:
    """The runtime's tensor details; a damaged name (not UTF-8) is a damaged file."""
    try:
        return list(get())
    except UnicodeDecodeError as e:
        raise ModelFileError(
            f"a tensor name in the file is not UTF-8 (byte {e.object[e.start]:#04x} at "
            f"{e.start}): the file is damaged; re-export or re-copy it"
        ) from None


def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float input -> the tensor's dtype. int8/uint8 use q = round(x / scale + zero_point)."""
    dtype = np.dtype(info.dtype)
    if info.quantized:
        q = np.round(np.asarray(x, dtype=np.float32) / info.scale + info.zero_point)
        limits = np.iinfo(dtype)
        return np.clip(q, limits.min, limits.max).astype(dtype)
    return np.asarray(x, dtype=dtype)


def dequantize(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Output tensor -> float32 (reverse of `quantize` for quantized outputs)."""
    if info.quantized:
        return (y.astype(np.float32) - info.zero_point) * np.float32(info.scale)
    return y.astype(np.float32)


def preprocess(raw: Samples, spec: InputSpec) -> np.ndarray:
    """Raw samples as the float input the files take, the way export fed them: `raw * scale +
    offset` (uint8 / 255 exactly as export computed it), reshaped to the sample shape, as
    `spec` (a manifest's `input`) records it. Images must be decoded and resized first
    (Pillow, bilinear, to the model's height and width, as export did).

    Raises:
        EdgekitError: the manifest records no input, or the samples do not fit it.
    """
    if "raw_dtype" not in spec or "scale" not in spec:
        raise EdgekitError(
            "the manifest records no input preprocessing (written before it did): re-export "
            "the files, or scale the samples as the model was trained"
        )
    x = np.asarray(raw)
    if spec["raw_dtype"] == "uint8" and x.dtype != np.uint8:
        raise EdgekitError(
            f"raw samples have dtype {x.dtype}, the manifest says uint8: pass the images as "
            "decoded (uint8), before any scaling"
        )
    shape = [int(d) for d in spec.get("shape") or x.shape[1:]]
    if int(np.prod(shape)) != int(np.prod(x.shape[1:])):
        raise EdgekitError(
            f"samples of shape {tuple(x.shape[1:])} do not fit the model's input {tuple(shape)}: "
            "resize (and convert to grayscale or RGB) first"
        )
    scale, offset = float(spec["scale"]), float(spec.get("offset") or 0.0)
    if x.dtype == np.uint8 and offset == 0.0:  # export's own rule, bit for bit
        out = scale_pixels(x, None if abs(scale - 1 / 255) < 1e-12 else scale)
    else:
        out = x.astype(np.float32) * np.float32(scale) + np.float32(offset)
    return out.reshape(len(x), *shape)


def _resize_batch(interpreter: Interpreter, info: TensorInfo, batch: int) -> TensorInfo:
    if info.shape and info.shape[0] == batch:
        return info
    interpreter.resize_tensor_input(info.index, [batch, *info.shape[1:]], strict=False)
    interpreter.allocate_tensors()
    return input_details(interpreter)[0]


def predict(
    interpreter: Interpreter,
    x: Samples,
    batch_size: int = EVAL_BATCH_SIZE,
    preprocessing: InputSpec | None = None,
) -> np.ndarray:
    """Float outputs of the first output tensor for float inputs x (quantizing as needed).

    With `preprocessing` (a manifest's `input`), x holds raw samples (decoded uint8 images)
    and is turned into the model's input by `preprocess` first, as export did. Data is
    streamed through the interpreter in batches. For an MC-dropout file (see
    `edgekit.device.mc`) the output is `mc_mean`, found by name: its mean class probabilities.

    Examples:
        Raw uint8 images in, class probabilities out (the int8 file's quantization is applied
        and undone here):

        >>> from edgekit.core.data import load_fashion_mnist_arrays
        >>> from edgekit.device.manifest import read_manifest
        >>> folder = "artifacts"  # doctest: +SKIP
        >>> manifest = read_manifest(folder)
        >>> interpreter = load_interpreter(f"{folder}/fashion_mnist_mlp_sp80_int8.tflite")
        >>> raw, _ = load_fashion_mnist_arrays()
        >>> probs = predict(interpreter, raw["x_test"][:5], preprocessing=manifest.input)
        >>> probs.shape, probs.sum(axis=1).round(1).tolist()
        ((5, 10), [1.0, 1.0, 1.0, 1.0, 1.0])
        >>> label = manifest.labels[probs[0].argmax()]
    """
    mc = mc_output_indices(interpreter)
    index = mc[MC_MEAN] if mc else output_details(interpreter)[0].index
    return predict_outputs(interpreter, x, [index], batch_size, preprocessing)[0]


def predict_outputs(
    interpreter: Interpreter,
    x: Samples,
    output_indices: list[int],
    batch_size: int = EVAL_BATCH_SIZE,
    preprocessing: InputSpec | None = None,
) -> list[np.ndarray]:
    """Float values of the output tensors `output_indices` (tensor indices), as `predict`.

    Raises:
        EdgekitError: an index is not an output of the file, or x does not fit its input.
    """
    if preprocessing is not None:
        x = preprocess(x, preprocessing)
    inp = input_details(interpreter)[0]
    expected = tuple(inp.shape[1:])
    if tuple(x.shape[1:]) != expected:
        raise EdgekitError(
            f"data samples have shape {tuple(x.shape[1:])} but the model expects {expected}: "
            "pass data shaped like the model's input"
        )
    infos = {o.index: o for o in output_details(interpreter)}
    unknown = [i for i in output_indices if i not in infos]
    if unknown:
        raise EdgekitError(
            f"tensor(s) {unknown} are not outputs of the file: expected one of {sorted(infos)}"
        )
    outputs: list[list[np.ndarray]] = [[] for _ in output_indices]
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        inp = _resize_batch(interpreter, inp, len(chunk))
        interpreter.set_tensor(inp.index, quantize(chunk, inp))
        interpreter.invoke()
        for out, i in zip(outputs, output_indices, strict=True):
            out.append(dequantize(interpreter.get_tensor(i), infos[i]))
    return [
        np.concatenate(out) if out else np.zeros((0, *infos[i].shape[1:]), np.float32)
        for out, i in zip(outputs, output_indices, strict=True)
    ]


@dataclass(frozen=True)
class Evaluation:
    """Accuracy of a .tflite file on labeled data."""

    accuracy: float
    samples: int
    predictions: np.ndarray  # top-1 class per sample
    outputs: np.ndarray  # dequantized outputs

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "samples": self.samples}


def evaluate(
    model: str | os.PathLike[str] | bytes | Interpreter,
    x: Samples,
    y: np.ndarray,
    runtime: str | Runtime = "auto",
    batch_size: int = EVAL_BATCH_SIZE,
) -> Evaluation:
    """Top-1 accuracy of a .tflite file (path, bytes or interpreter) on float inputs x, labels y."""
    interpreter = (
        load_interpreter(model, runtime=runtime, num_threads=os.cpu_count() or 1)
        if isinstance(model, (str, os.PathLike, bytes, bytearray))
        else model
    )
    outputs = predict(interpreter, x, batch_size)
    preds = outputs.argmax(axis=1) if outputs.ndim == 2 else outputs.reshape(len(x), -1).argmax(1)
    acc = float((preds == np.asarray(y)).mean()) if len(y) else float("nan")
    return Evaluation(accuracy=acc, samples=len(y), predictions=preds, outputs=outputs)


def undelegated_ops(interpreter: Interpreter) -> set[int] | None:
    """Indices of the first subgraph's ops the runtime runs with its own builtin kernels (no
    delegate took them), read from the interpreter's node list; None where it cannot say.

    A delegate (XNNPACK) replaces the ops it takes by DELEGATE nodes whose inputs and outputs
    bound its partition: an op whose output lies inside some partition was taken. The node list
    is the runtime's `_get_ops_details` (LiteRT, tflite-runtime >= 2.5; not a public API).
    """
    get = getattr(interpreter, "_get_ops_details", None)
    if get is None:
        return None
    try:
        nodes = list(get())
    except (ValueError, RuntimeError):
        return None
    ops = [n for n in nodes if n.get("op_name") != "DELEGATE"]
    producer = {int(t): int(n["index"]) for n in ops for t in n.get("outputs", ()) if t >= 0}
    inputs = {int(n["index"]): [int(t) for t in n.get("inputs", ()) if t >= 0] for n in ops}
    taken: set[int] = set()
    for d in (n for n in nodes if n.get("op_name") == "DELEGATE"):
        bound = {int(t) for t in d.get("inputs", ())}
        todo = [int(t) for t in d.get("outputs", ())]
        while todo:  # back from the partition's outputs to its inputs
            k = producer.get(todo.pop())
            if k is None or k in taken:
                continue
            taken.add(k)
            todo += [t for t in inputs.get(k, []) if t not in bound]
    return {int(n["index"]) for n in ops} - taken
