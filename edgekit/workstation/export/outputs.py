"""Output 0 of every written file is the class probabilities: `mc_mean` first in MC files.

Apps on Android, iOS and C++, the TFLite Task Library and `benchmark_model` read output 0. The
converter orders a model's outputs by their sorted signature keys, so an MC-dropout file came out
as mc_entropy / mc_mean / mc_std in the signature and std, entropy, mean in the subgraph
(`get_output_details()[0]` was mc_std). `order_outputs` rewrites the subgraph's output list of a
`schema.ModelT` into `MC_OUTPUTS` order; the signature's tensor map keeps naming each tensor,
so lookups by name (edgekit's own, the signature runner) are unchanged. No TensorFlow.
"""

from __future__ import annotations

from typing import Any

from edgekit.core.errors import ExportError
from edgekit.device.outputs import MC_OUTPUTS
from edgekit.workstation.export.flatbuffer import pack_model, unpack_model


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def output_names(model: Any) -> list[str]:
    """The name of each output of subgraph 0, in its order: the signature's output name where a
    signature maps it, else the tensor's name."""
    sub = model.subgraphs[0]
    by_index: dict[int, str] = {}
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == 0:
            by_index |= {int(t.tensorIndex): _name(t.name) for t in sig.outputs or []}
    return [by_index.get(int(i)) or _name(sub.tensors[int(i)].name) for i in sub.outputs]


def order_outputs(model: Any) -> list[str]:
    """Put subgraph 0's outputs in `MC_OUTPUTS` order (other outputs after them, as they were).

    Changes `model` (a `schema.ModelT`) in place and returns the output names in their new
    order. A file without MC outputs is left as it is.

    Raises:
        ExportError: the file has no subgraph, or only some of the MC outputs.
    """
    if not model.subgraphs:
        raise ExportError("the converted file holds no subgraph")
    sub = model.subgraphs[0]
    names = output_names(model)
    found = [n for n in MC_OUTPUTS if n in names]
    if not found:
        return names
    if len(found) != len(MC_OUTPUTS) or len(set(names)) != len(names):
        raise ExportError(
            f"the MC-dropout file's outputs {names} do not name each of {', '.join(MC_OUTPUTS)} "
            "once: rebuild it with build_mc_model"
        )
    order = [names.index(n) for n in MC_OUTPUTS]
    order += [i for i in range(len(names)) if i not in order]
    sub.outputs = [int(sub.outputs[i]) for i in order]
    return [names[i] for i in order]


def probabilities_first(data: bytes) -> bytes:
    """.tflite bytes with the class probabilities as output 0 (see `order_outputs`)."""
    model = unpack_model(data)
    before = output_names(model)
    after = order_outputs(model)
    return data if after == before else pack_model(model)
