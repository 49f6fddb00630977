"""`edgekit export`: the summary table of the files a run wrote."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from edgekit.cli.report.formats import _pct

if TYPE_CHECKING:
    from edgekit.workstation.export.tflite import ExportResult
    from edgekit.workstation.pipeline import PipelineResult


def _percent(x: float | None) -> str:
    return _pct(x) if x is None else _pct(x) + "%"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MB"


def export_table(export: ExportResult) -> Table:
    """One row per file: precision, size, gzipped size, zeros, accuracy, agreement with Keras;
    the files left out dimmed."""
    table = Table(title=f"edgekit export -> {export.output_dir}")
    cols = (
        "file",
        "precision",
        "size",
        "gzipped",
        "sparsity",
        "accuracy",
        "vs float (pts)",
        "agrees w/ Keras",
    )
    for col in cols:
        table.add_column(
            col, justify="left" if col in ("file", "precision") else "right", no_wrap=col == "file"
        )
    for row in export.rows():
        sparsity = row["weight_sparsity"]
        drop = row.get("accuracy_drop_points")
        table.add_row(
            row["file"] + ("  (recommended)" if row.get("recommended") else ""),
            row["precision"],
            _size(row["bytes"]),
            _size(row["gzip_bytes"]),
            "-" if sparsity is None else f"{sparsity:.1%}",
            _percent(row["accuracy"]),
            "-" if drop is None else f"{0.0 - drop + 0.0:+.2f}",
            _percent(row["agreement"]),
        )
    for r in export.rejected:
        table.add_row(
            f"[dim]{r.file} (not written)[/dim]",
            r.precision,
            _size(r.bytes),
            _size(r.gzip_bytes),
            "-",
            _percent(r.accuracy),
            "-" if r.accuracy_drop_points is None else f"{0.0 - r.accuracy_drop_points + 0.0:+.2f}",
            _percent(r.agreement),
        )
    return table


def print_export_summary(result: PipelineResult, console: Console | None = None) -> None:
    """The table, the Keras accuracies of each stage, the manifest path and the wall time of
    each stage."""
    export = result.export
    assert export is not None, "a run that wrote files"  # main prints a worker's own line
    console = console or Console()
    console.print(export_table(export))
    source = result.info.get("source_model") or {}
    if source.get("keras_version") == 3:
        k3 = source.get("keras3") or {}
        how = (
            f"rebuilt in tf_keras (max abs difference {k3['max_abs_difference']:.1e} on "
            f"{k3['samples']} test samples)"
            if k3.get("rebuilt_in_tf_keras")
            else "converted as it is (no tf_keras rebuild: no pruning, no folding in Keras)"
        )
        console.print(f"model: a Keras 3 file, {how}", highlight=False)
    elif source:
        console.print("model: a tf_keras (Keras 2) file", highlight=False)
    acc = result.accuracy
    parts = [f"{k.replace('_keras', '')} Keras {v:.2%}" for k, v in acc.items() if "keras" in k]
    console.print("test accuracy: " + ", ".join(parts))
    for r in export.rejected:
        console.print(f"not written: {r.file}: {r.reason}", highlight=False)
    for f in export.files:
        sparse = f.record.variant.get("sparse")
        if sparse:
            kernel = (sparse.get("kernel") or {}).get("summary", "")
            console.print(
                f"sparse: {f.file} runs {sparse['speedup_vs_dense']:.2f}x its dense "
                f"{sparse['dense_twin']} twin (p50 {sparse['p50_us']:.1f} vs "
                f"{sparse['dense_p50_us']:.1f} us, {sparse['threads']} thread, same run on this "
                f"CPU)" + (f"; {kernel}" if kernel else ""),
                highlight=False,
            )
        ops = f.record.variant.get("float_ops") or []
        if ops:
            more = f" and {len(ops) - 1} more" if len(ops) > 1 else ""
            console.print(
                f"note: {f.file} keeps {ops[0]}{more} in float between DEQUANTIZE and QUANTIZE "
                "(no int8 kernel, e.g. ELU): for an all-int8 file train with --activation relu, "
                "leaky_relu or selu",
                highlight=False,
            )
    budget = export.manifest.selection.get("max_accuracy_drop_points")
    if export.recommended:
        console.print(
            f"recommended: {export.recommended} (the smallest file within {budget:g} "
            "points of the float model)",
            highlight=False,
        )
    console.print(f"manifest: {export.manifest_path}", highlight=False)
    # One line however narrow the terminal: rich would break it at the console's width.
    console.print(stage_times_line(result.stage_seconds), highlight=False, soft_wrap=True)


def stage_times_line(stage_seconds: dict[str, float]) -> str:
    """The wall time of every stage, in the order they ran, on one line:
    `seconds: data 1.2, import tensorflow 4.8, train 31.0, ... (62 s in all)`."""
    total = sum(stage_seconds.values())
    parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in stage_seconds.items())
    return f"seconds: {parts} ({total:.0f} s in all)"
