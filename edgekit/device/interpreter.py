"""The TFLite interpreter as edgekit uses it: the part of its API that ai-edge-litert,
tflite-runtime and tf.lite share. The runtimes ship no type hints; this protocol is what
edgekit's own code is checked against (mypy), nothing runs through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

# One entry of get_input_details() / get_output_details(): name, index, shape, dtype,
# quantization, ... (the runtimes' own dicts; edgekit reads them into runtime.TensorInfo).
TensorDetail = dict[str, Any]


class SignatureRunner(Protocol):
    """A signature of the file, called with its input names; returns outputs by name."""

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]: ...

    def get_output_details(self) -> dict[str, TensorDetail]: ...


class Interpreter(Protocol):
    """A loaded, allocated .tflite file (runtime.load_interpreter returns one)."""

    def allocate_tensors(self) -> None: ...

    def invoke(self) -> None: ...

    def get_input_details(self) -> list[TensorDetail]: ...

    def get_output_details(self) -> list[TensorDetail]: ...

    def set_tensor(self, tensor_index: int, value: np.ndarray) -> None: ...

    def get_tensor(self, tensor_index: int) -> np.ndarray: ...

    def resize_tensor_input(
        self, input_index: int, tensor_size: Sequence[int], strict: bool = False
    ) -> None: ...

    def get_signature_list(self) -> dict[str, dict[str, list[str]]]: ...

    def get_signature_runner(self, signature_key: str | None = None) -> SignatureRunner: ...
