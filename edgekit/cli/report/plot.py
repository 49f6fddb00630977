"""The bench plot: accuracy against p50 latency, marker area by file size (PNG).

matplotlib is optional (the `plot` extra); it is imported only when a plot is drawn.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

from edgekit.cli.report.formats import _kb
from edgekit.core.errors import EdgekitError

if TYPE_CHECKING:
    from edgekit.device.bench.records import BenchResult, BenchRow

PRECISION_COLORS = {
    "float32": "tab:blue",
    "float16": "tab:green",
    "int8": "tab:red",
    "uint8": "tab:orange",
    "dynamic": "tab:purple",
    "int16": "tab:brown",
    "int16x8": "tab:olive",
    "keras": "tab:gray",
}


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
