"""`edgekit bench` results as a rich table, JSON, CSV and Markdown (the plot: bench_plot.py)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from edgekit.cli.report.bench_plot import bench_plot_png
from edgekit.cli.report.formats import (
    ReportJob,
    _kb,
    _mb,
    _num,
    _pct,
    _times,
    dumps_json,
    write_report_files,
)

if TYPE_CHECKING:
    from edgekit.device.bench.records import BenchResult, BenchRow

BENCH_OUTPUT_NAMES = {
    "json": "bench.json",
    "csv": "bench.csv",
    "markdown": "bench.md",
    "plot": "bench.png",
}
CSV_COLUMNS = (
    "id",
    "file",
    "path",
    "kind",
    "model",
    "precision",
    "threads",
    "status",
    "error",
    "bytes",
    "gzip_bytes",
    "weight_sparsity",
    "load_ms",
    "first_inference_us",
    "mean_us",
    "std_us",
    "min_us",
    "p50_us",
    "p90_us",
    "p99_us",
    "runs",
    "round_spread",
    "peak_memory_bytes",
    "accuracy",
    "accuracy_samples",
    "reference",
    "top1_agreement",
    "max_abs_diff",
    "accuracy_delta_pp",
    "speedup_vs_float32",
    "speedup_vs_keras",
    "manifest_accuracy",
    "runtime",
    "verdict",
)


# ---- bench ---------------------------------------------------------------------------------


def _row_cells(row: BenchRow) -> dict[str, str]:
    lat = row.latency
    return {
        "file": row.file,
        "precision": row.precision,
        "threads": str(row.threads),
        "p50": _num(lat.p50_us if lat else None),
        "p90": _num(lat.p90_us if lat else None),
        "p99": _num(lat.p99_us if lat else None),
        "mean": f"{lat.mean_us:.1f} ± {lat.std_us:.1f}" if lat else "-",
        "runs": str(lat.runs) if lat else "-",
        "load": _num(row.load_ms, ".1f"),
        "accuracy": _pct(row.accuracy),
        "delta": _num(row.accuracy_delta_pp, "+.2f"),
        "agree": _pct(row.top1_agreement, 1),
        "maxdiff": _num(row.max_abs_diff, ".3g"),
        "size": _kb(row.bytes),
        "gzip": _kb(row.gzip_bytes),
        "sparsity": _pct(row.weight_sparsity, 0),
        "memory": _mb(row.peak_memory_bytes),
        "vs_fp32": _times(row.speedup_vs_float32),
        "vs_keras": _times(row.speedup_vs_keras),
    }


_TABLE_COLUMNS = (
    ("file", "File", "left"),
    ("precision", "Prec", "left"),
    ("threads", "Thr", "right"),
    ("p50", "p50 us", "right"),
    ("p90", "p90 us", "right"),
    ("p99", "p99 us", "right"),
    ("mean", "mean ± std us", "right"),
    ("load", "Load ms", "right"),
    ("accuracy", "Acc %", "right"),
    ("delta", "Δ pp", "right"),
    ("agree", "Agree %", "right"),
    ("size", "Size KB", "right"),
    ("gzip", "Gzip KB", "right"),
    ("sparsity", "Zeros %", "right"),
    ("memory", "Mem MB", "right"),
    ("vs_fp32", "x fp32", "right"),
    ("vs_keras", "x Keras", "right"),
)


def xnnpack_words(result: BenchResult) -> str:
    """XNNPACK on/off; tflite-runtime 2.14 runs builtin kernels even when XNNPACK is asked for
    (its armv7l wheel has no XNNPACK; its x86 int8 results equal the builtin kernels')."""
    if not result.config.xnnpack:
        return "XNNPACK off"
    if "tflite-runtime" in str(result.machine.get("runtime")):
        return "XNNPACK requested (tflite-runtime may run its builtin kernels)"
    return "XNNPACK on"


def bench_table(result: BenchResult) -> Table:
    """The results as a rich table, one row per file and thread count."""
    machine = result.machine
    table = Table(
        title=f"edgekit bench: {machine.get('cpu')} ({machine.get('usable_cores')} cores), "
        f"{machine.get('runtime')}, {xnnpack_words(result)}",
        title_justify="left",
    )
    show = (
        [c for c in _TABLE_COLUMNS if c[0] != "vs_keras"]
        if not any(r.speedup_vs_keras for r in result.rows)
        else list(_TABLE_COLUMNS)
    )
    for _key, title, justify in show:
        table.add_column(title, justify=justify, no_wrap=_key == "file")  # type: ignore[arg-type]
    for row in result.rows:
        if not row.ok:
            table.add_row(
                f"[red]{row.file}[/red]",
                row.precision,
                str(row.threads),
                "[red]error[/red]",
                *([""] * (len(show) - 4)),
            )
            continue
        cells = _row_cells(row)
        table.add_row(*(cells[key] for key, _, _ in show))
    return table


def print_bench(result: BenchResult, console: Console | None = None) -> None:
    """The table, then the verdict and each file's error, in plain words."""
    console = console or Console()
    console.print(bench_table(result))
    flags = ", ".join(result.machine.get("cpu_flags", [])) or "none detected"
    cls = result.machine.get("cpu_class")
    console.print(f"CPU: {cls + '; ' if cls else ''}flags: {flags}", highlight=False)
    data = result.data
    if data.get("name"):
        console.print(
            f"Accuracy on {data['samples']} test samples of {data['name']}.", highlight=False
        )
    for row in result.rows:
        if not row.ok:
            console.print(f"[red]{row.label}: {row.error}[/red]", highlight=False)
    for line in result.verdict:
        style = "bold red" if line.startswith(("WARNING", "FAILED")) else ""
        console.print(f"[{style}]{line}[/{style}]" if style else line, highlight=False)


def bench_json(result: BenchResult) -> str:
    return dumps_json(result.to_dict())


def bench_csv(result: BenchResult) -> str:
    """One line per file and thread count; raw samples are in the JSON only."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        flat = row.summary()
        lat = flat.pop("latency") or {}
        flat.update(lat)
        writer.writerow({k: "" if flat.get(k) is None else flat.get(k) for k in CSV_COLUMNS})
    return buf.getvalue()


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def bench_markdown(result: BenchResult) -> str:
    """A Markdown report: machine, table, verdict, what was timed."""
    m = result.machine
    cfg = result.config
    lines = [
        "# edgekit bench",
        "",
        f"- CPU: {m.get('cpu')} ({m.get('arch')}), {m.get('usable_cores')} usable of "
        f"{m.get('cores')} cores, {m.get('cpu_class', 'class unknown')}; "
        f"flags: {', '.join(m.get('cpu_flags', [])) or 'none detected'}",
        f"- Runtime: {m.get('runtime')}, {xnnpack_words(result)}; "
        f"{m.get('os')}, Python {m.get('python')}, NumPy {m.get('numpy')}, "
        f"edgekit {m.get('edgekit')}",
        f"- Timed: `invoke()` at batch 1, input set once per round; >= {cfg.min_runs} runs and "
        f">= {cfg.min_time_s:g} s per file and thread count, in {cfg.rounds} interleaved rounds "
        f"after {cfg.warmup_runs} warm-up runs each",
    ]
    if result.data.get("name"):
        lines.append(f"- Accuracy: {result.data['samples']} test samples of {result.data['name']}")
    lines.append(f"- Run: {result.started_at}, {result.duration_s:.1f} s")
    lines.append("")
    keys = [k for k, _, _ in _TABLE_COLUMNS]
    titles = [t for _, t, _ in _TABLE_COLUMNS]
    lines.append("| " + " | ".join(titles) + " |")
    lines.append(
        "| " + " | ".join("---:" if j == "right" else "---" for _, _, j in _TABLE_COLUMNS) + " |"
    )
    for row in result.rows:
        if row.ok:
            cells = _row_cells(row)
            vals = [cells[k] for k in keys]
        else:
            vals = [row.file, row.precision, str(row.threads), "**error**"] + [""] * (len(keys) - 4)
        lines.append("| " + " | ".join(_md_escape(v) for v in vals) + " |")
    lines += ["", "## Verdict", ""]
    lines += [f"- {_md_escape(v)}" for v in result.verdict]
    per_file = [r for r in result.rows if r.verdict]
    if per_file:
        lines += ["", "## Per file", ""]
        lines += [f"- `{r.label}`: {_md_escape(r.verdict)}" for r in per_file]
    return "\n".join(lines) + "\n"


def write_bench_outputs(
    result: BenchResult,
    json_path: str | os.PathLike[str] | None = None,
    csv_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    plot_path: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write the requested files atomically; returns the paths written."""
    jobs: Sequence[ReportJob] = (
        (json_path, lambda: bench_json(result)),
        (csv_path, lambda: bench_csv(result)),
        (markdown_path, lambda: bench_markdown(result)),
        (plot_path, lambda: bench_plot_png(result)),
    )
    return write_report_files(jobs)
