"""Formatting of results: rich tables, JSON, CSV, Markdown and plots. Does no measuring.

matplotlib is optional (the `plot` extra); it is imported only when a plot is written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from edgekit.errors import EdgekitError
from edgekit.io import write_bytes_atomic, write_text_atomic

if TYPE_CHECKING:
    from edgekit.bench import BenchResult, BenchRow
    from edgekit.tflite_file import ModelFile
    from edgekit.verify import VerifyResult

BENCH_OUTPUT_NAMES = {
    "json": "bench.json",
    "csv": "bench.csv",
    "markdown": "bench.md",
    "plot": "bench.png",
}
CSV_COLUMNS = (
    "id", "file", "path", "kind", "model", "precision", "threads", "status", "error",
    "bytes", "gzip_bytes", "weight_sparsity", "load_ms", "first_inference_us",
    "mean_us", "std_us", "min_us", "p50_us", "p90_us", "p99_us", "runs", "round_spread",
    "peak_memory_bytes", "accuracy", "accuracy_samples", "reference", "top1_agreement",
    "max_abs_diff", "accuracy_delta_pp", "speedup_vs_float32", "speedup_vs_keras",
    "manifest_accuracy", "runtime", "verdict",
)  # fmt: skip
PRECISION_COLORS = {
    "float32": "tab:blue", "float16": "tab:green", "int8": "tab:red", "uint8": "tab:orange",
    "dynamic": "tab:purple", "int16": "tab:brown", "keras": "tab:gray",
}  # fmt: skip


# ---- small formatters ----------------------------------------------------------------------


def _num(value: float | None, fmt: str = ".1f", missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, fmt)


def _kb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:,.1f}"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.1f}"


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x * 100:.{digits}f}"


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _json_safe(obj: Any) -> Any:
    """NaN and infinity become null, so the JSON is valid everywhere."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def dumps_json(obj: Any, indent: int = 2) -> str:
    """Indented JSON where lists of numbers stay on one line (raw samples stay compact)."""

    def dump(o: Any, level: int) -> str:
        pad, inner = " " * (indent * level), " " * (indent * (level + 1))
        if isinstance(o, dict) and o:
            items = [f"{inner}{json.dumps(k)}: {dump(v, level + 1)}" for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list) and o and any(isinstance(v, (dict, list)) for v in o):
            return "[\n" + ",\n".join(inner + dump(v, level + 1) for v in o) + "\n" + pad + "]"
        return json.dumps(
            o, allow_nan=False, separators=(",", ":") if isinstance(o, list) else None
        )

    return dump(_json_safe(obj), 0) + "\n"


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
    ("file", "File", "left"), ("precision", "Prec", "left"), ("threads", "Thr", "right"),
    ("p50", "p50 us", "right"), ("p90", "p90 us", "right"), ("p99", "p99 us", "right"),
    ("mean", "mean ± std us", "right"), ("load", "Load ms", "right"),
    ("accuracy", "Acc %", "right"), ("delta", "Δ pp", "right"), ("agree", "Agree %", "right"),
    ("size", "Size KB", "right"), ("gzip", "Gzip KB", "right"),
    ("sparsity", "Zeros %", "right"), ("memory", "Mem MB", "right"),
    ("vs_fp32", "x fp32", "right"), ("vs_keras", "x Keras", "right"),
)  # fmt: skip


def bench_table(result: BenchResult) -> Table:
    """The results as a rich table, one row per file and thread count."""
    machine = result.machine
    table = Table(
        title=f"edgekit bench: {machine.get('cpu')} ({machine.get('usable_cores')} cores), "
        f"{machine.get('runtime')}, XNNPACK {'on' if result.config.xnnpack else 'off'}",
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
                f"[red]{row.file}[/red]", row.precision, str(row.threads),
                "[red]error[/red]", *([""] * (len(show) - 4)),
            )  # fmt: skip
            continue
        cells = _row_cells(row)
        table.add_row(*(cells[key] for key, _, _ in show))
    return table


def print_bench(result: BenchResult, console: Console | None = None) -> None:
    """The table, then the verdict and each file's error, in plain words."""
    console = console or Console()
    console.print(bench_table(result))
    flags = ", ".join(result.machine.get("cpu_flags", [])) or "none detected"
    console.print(f"CPU flags: {flags}", highlight=False)
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
        f"{m.get('cores')} cores; flags: {', '.join(m.get('cpu_flags', [])) or 'none detected'}",
        f"- Runtime: {m.get('runtime')}, XNNPACK {'on' if cfg.xnnpack else 'off'}; "
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


def require_matplotlib() -> None:
    """Raise a clear error when matplotlib (the `plot` extra) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise EdgekitError(
            "a plot needs matplotlib, which is not installed: "
            "`pip install 'edgekit[plot]'` (or matplotlib), or drop --plot"
        ) from None


def _plot_label(row: BenchRow, many_models: bool) -> str:
    if row.kind == "keras":
        return f"Keras, {row.threads}t"
    name = f"{row.model}: " if many_models else ""
    return f"{name}{row.precision}, {row.threads}t, {_kb(row.bytes)} KB"


def _label_slots(points: list[tuple[float, float]]) -> list[int]:
    """For each point, how many earlier points sit close enough for their labels to collide."""
    if not points:
        return []
    xs = [math.log10(max(x, 1e-9)) for x, _ in points]
    ys = [y for _, y in points]
    x_span = (max(xs) - min(xs)) or 1.0
    y_span = (max(ys) - min(ys)) or 1.0
    slots = []
    for i in range(len(points)):
        near = sum(
            1
            for j in range(i)
            if abs(xs[i] - xs[j]) < 0.25 * x_span and abs(ys[i] - ys[j]) < 0.06 * y_span
        )
        slots.append(near)
    return slots


def bench_plot_png(result: BenchResult) -> bytes:
    """Accuracy against p50 latency (log), marker area by file size; PNG bytes."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = [r for r in result.rows if r.ok and r.latency is not None]
    with_acc = [r for r in rows if r.accuracy is not None]
    many_models = len({r.model for r in with_acc if r.kind == "tflite"}) > 1
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    try:
        biggest = max([r.bytes or 0 for r in with_acc] + [1])
        for precision in dict.fromkeys(r.precision for r in with_acc):
            group = [r for r in with_acc if r.precision == precision]
            ax.scatter(
                [r.latency.p50_us for r in group if r.latency],
                [100 * (r.accuracy or 0) for r in group],
                s=[40 + 900 * (r.bytes or 0) / biggest for r in group],
                alpha=0.6,
                color=PRECISION_COLORS.get(precision, "black"),
                edgecolors="black",
                linewidths=0.5,
                label=precision,
            )
        points = [
            (r.latency.p50_us if r.latency else 1.0, 100 * (r.accuracy or 0)) for r in with_acc
        ]
        # Labels of points close together are stacked, not drawn over each other.
        for r, xy, slot in zip(with_acc, points, _label_slots(points), strict=True):
            ax.annotate(
                _plot_label(r, many_models),
                xy,
                textcoords="offset points",
                xytext=(9, 4 - 10 * slot),
                fontsize=7,
            )
        if not with_acc:
            ax.text(0.5, 0.5, "no accuracy measured", ha="center", transform=ax.transAxes)
        else:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            # Minor ticks labelled at 2 and 5 only, so a wide range stays legible.
            ax.xaxis.set_minor_formatter(
                FuncFormatter(lambda v, _pos: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
            )
            ax.tick_params(axis="x", which="minor", labelsize=7)
            legend = ax.legend(title="precision (area = file size)", fontsize=8, title_fontsize=8)
            for handle in legend.legend_handles:
                handle.set_sizes([40])  # type: ignore[union-attr]
            ax.margins(x=0.25, y=0.2)
        ax.set_xlabel("p50 latency at batch 1 (microseconds, log scale)")
        ax.set_ylabel(f"accuracy on {result.data.get('name') or 'test data'} (%)")
        m = result.machine
        xnn = "XNNPACK" if result.config.xnnpack else "no XNNPACK"
        ax.set_title(f"{m.get('cpu')} - {m.get('runtime')}, {xnn}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def write_bench_outputs(
    result: BenchResult,
    json_path: str | os.PathLike[str] | None = None,
    csv_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    plot_path: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write the requested files atomically; returns the paths written."""
    written: list[Path] = []
    jobs: Sequence[tuple[str | os.PathLike[str] | None, Any]] = (
        (json_path, lambda: bench_json(result)),
        (csv_path, lambda: bench_csv(result)),
        (markdown_path, lambda: bench_markdown(result)),
        (plot_path, lambda: bench_plot_png(result)),
    )
    for path, make in jobs:
        if path is None:
            continue
        content = make()
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                write_bytes_atomic(target, content)
            else:
                write_text_atomic(target, content)
        except OSError as e:
            raise EdgekitError(
                f"cannot write {target}: {e.strerror or e}; pass a writable path"
            ) from None
        written.append(target)
    return written


# ---- inspect -------------------------------------------------------------------------------


def _quant(scale: Sequence[float], zero_point: Sequence[int]) -> str:
    if not scale:
        return "-"
    if len(scale) == 1:
        return f"scale {scale[0]:.6g}, zero point {zero_point[0] if zero_point else 0}"
    return f"per-channel ({len(scale)} scales, {min(scale):.3g}..{max(scale):.3g})"


def inspect_dict(model: ModelFile) -> dict[str, Any]:
    """What `edgekit inspect --json` prints."""

    def tensor(t: Any) -> dict[str, Any]:
        return {
            "name": t.name,
            "shape": list(t.shape),
            "dtype": t.dtype,
            "quantization": {"scale": list(t.scale), "zero_point": list(t.zero_point)}
            if t.scale else None,
        }  # fmt: skip

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
    for col, j in (("Name", "left"), ("Shape", "left"), ("Dtype", "left"),
                   ("Elements", "right"), ("Zeros %", "right")):  # fmt: skip
        weights.add_column(col, justify=j)  # type: ignore[arg-type]
    for w in model.weights:
        enc = " (sparse-encoded)" if w.sparse_encoded else ""
        weights.add_row(
            w.name, str(list(w.shape)), w.dtype + enc, f"{w.elements:,}", f"{w.sparsity:.1%}"
        )
    console.print(weights)


# ---- verify --------------------------------------------------------------------------------


def print_verify(result: VerifyResult, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"edgekit verify {result.folder}", title_justify="left")
    for col in ("File", "Status", "Problems"):
        table.add_column(col)
    for f in result.files:
        style = "green" if f.ok else "red"
        table.add_row(f.file, f"[{style}]{f.status}[/{style}]", "; ".join(f.problems) or "-")
    console.print(table)
    bad = [f for f in result.files if not f.ok]
    if bad:
        console.print(
            f"[bold red]{len(bad)} of {len(result.files)} file(s) failed verification[/bold red]"
        )
    else:
        ran = " (.tflite files loaded and run once)" if result.ran else ""
        console.print(
            f"[green]all {len(result.files)} file(s) match the manifest{ran}[/green]",
            highlight=False,
        )
