"""Which output of a loaded .tflite file is which: the MC-dropout outputs by name.

A file written by `edgekit.workstation.export.mc` has three outputs: `mc_mean` (mean class
probabilities), `mc_std` and `mc_entropy`. They are found by their signature output names (or
tensor names), never by position. Reads the interpreter's own details only: no TensorFlow, and
none of edgekit's runtime wrapper, so `runtime` and `mc` can both build on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekit.device.interpreter import Interpreter

MC_MEAN, MC_STD, MC_ENTROPY = "mc_mean", "mc_std", "mc_entropy"
MC_OUTPUTS = (MC_MEAN, MC_STD, MC_ENTROPY)


def _signature_outputs(interpreter: Interpreter) -> dict[str, int]:
    """Output name -> tensor index of the first signature naming all MC outputs, else {}."""
    try:
        signatures = interpreter.get_signature_list()
    except (AttributeError, RuntimeError, ValueError):  # old runtimes, files without signatures
        return {}
    for key, spec in signatures.items():
        if not set(MC_OUTPUTS) <= set(spec.get("outputs", ())):
            continue
        details = interpreter.get_signature_runner(key).get_output_details()
        return {name: int(details[name]["index"]) for name in MC_OUTPUTS}
    return {}


def mc_output_indices(interpreter: Interpreter) -> dict[str, int] | None:
    """Tensor index of `mc_mean`, `mc_std` and `mc_entropy`, or None for a file without them.

    Looked up by signature output name first, then by a tensor name containing the output name
    (files converted without a signature); never by position.
    """
    found = _signature_outputs(interpreter)
    if not found:
        by_tensor = {}
        for detail in interpreter.get_output_details():
            hits = [n for n in MC_OUTPUTS if n in str(detail["name"])]
            if len(hits) == 1:
                by_tensor[hits[0]] = int(detail["index"])
        found = by_tensor if set(by_tensor) == set(MC_OUTPUTS) else {}
    return found or None
