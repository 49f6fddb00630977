"""The bench plot: accuracy against p50 latency, marker area by file size (PNG)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekit.cli.report.formats import _kb
from edgekit.cli.report.plot import PRECISION_COLORS, figure_png, label_slots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from edgekit.device.bench.records import BenchResult, BenchRow


def _plot_label(row: BenchRow, many_models: bool) -> str:
    if row.kind == "keras":
        return f"Keras, {row.threads}t"
    name = f"{row.model}: " if many_models else ""
    return f"{name}{row.precision}, {row.threads}t, {_kb(row.bytes)} KB"


def bench_plot_png(result: BenchResult) -> bytes:
    """Accuracy against p50 latency (log), marker area by file size; PNG bytes."""
    rows = [r for r in result.rows if r.ok and r.latency is not None]
    with_acc = [r for r in rows if r.accuracy is not None]
    many_models = len({r.model for r in with_acc if r.kind == "tflite"}) > 1

    def draw(fig: Figure) -> None:
        from matplotlib.ticker import FuncFormatter

        ax = fig.subplots()
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
        for r, xy, slot in zip(with_acc, points, label_slots(points), strict=True):
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

    return figure_png(draw, figsize=(8, 5.5), dpi=120)
