"""`edgekit inspect`: a .tflite file's operators, tensors, quantization, sparsity, metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from edgekit.device.metadata import FileMetadata
from edgekit.device.modelfile import ModelFile, TensorSummary


def _quant(scale: Sequence[float], zero_point: Sequence[int]) -> str:
    if not scale:
        return "-"
    if len(scale) == 1:
        return f"scale {scale[0]:.6g}, zero point {zero_point[0] if zero_point else 0}"
    return f"per-channel ({len(scale)} scales, {min(scale):.3g}..{max(scale):.3g})"


def inspect_dict(model: ModelFile) -> dict[str, Any]:
    """What `edgekit inspect --json` prints (with the file's TFLite Model Metadata)."""

    def tensor(t: TensorSummary) -> dict[str, Any]:
        return {
            "name": t.name,
            "shape": list(t.shape),
            "dtype": t.dtype,
            "quantization": {"scale": list(t.scale), "zero_point": list(t.zero_point)}
            if t.scale
            else None,
        }

    return {
        "file": model.path,
        "bytes": model.bytes,
        "gzip_bytes": model.gzip_bytes,
        "sha256": model.sha256,
        "operators": model.operators,
        "inputs": [tensor(t) for t in model.inputs],
        "outputs": [tensor(t) for t in model.outputs],
        "weight_elements": model.weight_elements,
        "weight_sparsity": model.weight_sparsity,
        "weights": [
            {
                "name": w.name,
                "shape": list(w.shape),
                "dtype": w.dtype,
                "elements": w.elements,
                "zeros": w.zeros,
                "sparsity": w.sparsity,
                "sparse_encoded": w.sparse_encoded,
            }
            for w in model.weights
        ],
        "tensors": len(model.tensors),
        "metadata": model.metadata.to_dict() if model.metadata is not None else None,
    }


def print_inspect(model: ModelFile, console: Console | None = None) -> None:
    console = console or Console()
    console.print(
        f"[bold]{model.path}[/bold]: {model.bytes:,} bytes ({model.gzip_bytes:,} gzipped), "
        f"{len(model.tensors)} tensors, weight sparsity {model.weight_sparsity:.1%}",
        highlight=False,
    )
    console.print(f"sha256 {model.sha256}", highlight=False)
    io_table = Table(title="Inputs and outputs", title_justify="left")
    for col in ("", "Name", "Shape", "Dtype", "Quantization"):
        io_table.add_column(col)
    for kind, tensors in (("input", model.inputs), ("output", model.outputs)):
        for t in tensors:
            io_table.add_row(
                kind, t.name, str(list(t.shape)), t.dtype, _quant(t.scale, t.zero_point)
            )
    console.print(io_table)
    ops = Table(title="Operators", title_justify="left")
    ops.add_column("Operator")
    ops.add_column("Count", justify="right")
    for name, count in model.operators.items():
        ops.add_row(name, str(count))
    console.print(ops)
    weights = Table(title="Weights (constant tensors of rank >= 2)", title_justify="left")
    for col, j in (
        ("Name", "left"),
        ("Shape", "left"),
        ("Dtype", "left"),
        ("Elements", "right"),
        ("Zeros %", "right"),
    ):
        weights.add_column(col, justify=j)  # type: ignore[arg-type]
    for w in model.weights:
        enc = " (sparse-encoded)" if w.sparse_encoded else ""
        weights.add_row(
            w.name, str(list(w.shape)), w.dtype + enc, f"{w.elements:,}", f"{w.sparsity:.1%}"
        )
    console.print(weights)
    print_metadata(model.metadata, console)


def print_metadata(metadata: FileMetadata | None, console: Console) -> None:
    """The file's TFLite Model Metadata: name, description, labels, normalization, outputs."""
    if metadata is None:
        console.print("TFLite metadata: none (apps must be told the labels and normalization)")
        return
    console.print(f"[bold]TFLite metadata[/bold]: {metadata.name}", highlight=False)
    if metadata.description:
        console.print(f"  {metadata.description}", highlight=False, soft_wrap=True)
    table = Table(title="Metadata of the inputs and outputs", title_justify="left")
    for col in ("", "#", "Name", "Content", "Normalization", "Range", "Files"):
        table.add_column(col)
    for kind, tensors in (("input", metadata.inputs), ("output", metadata.outputs)):
        for i, t in enumerate(tensors):
            norm = f"(x - {_nums(t.mean)}) / {_nums(t.std)}" if t.mean and t.std else "-"
            rng = t.value_range
            shown = (
                f"{rng[0]:g}..{rng[1]:g}"
                if rng
                else (f"{_nums(t.min)}..{_nums(t.max)}" if t.min and t.max else "-")
            )
            table.add_row(kind, str(i), t.name, t.content or "-", norm, shown, ", ".join(t.files))
    console.print(table)
    if metadata.labels:
        console.print(
            f"labels ({len(metadata.labels)}, output 0's classes in order): "
            + ", ".join(metadata.labels),
            highlight=False,
            soft_wrap=True,
        )


def _nums(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)
