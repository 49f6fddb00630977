"""The sweep plot (PNG): accuracy against gzipped size and against p50 latency, the frontier
marked and labelled. matplotlib (the `plot` extra) is imported only here, when it is drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edgekit.cli.report.plot import PRECISION_COLORS, figure_png, label_slots

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from edgekit.sweep.results import SweepResult, SweepRow


def _panel(ax: Axes, rows: list[SweepRow], x_of: Callable[[SweepRow], float], xlabel: str) -> None:
    from matplotlib.ticker import FuncFormatter

    for precision in dict.fromkeys(r.precision for r in rows):
        group = [r for r in rows if r.precision == precision]
        for on_front in (False, True):
            pts = [r for r in group if r.frontier is on_front]
            if not pts:
                continue
            ax.scatter(
                [x_of(r) for r in pts],
                [100 * (r.accuracy or 0) for r in pts],
                s=90 if on_front else 30,
                alpha=0.9 if on_front else 0.45,
                color=PRECISION_COLORS.get(precision or "", "black"),
                edgecolors="black" if on_front else "none",
                linewidths=1.2,
                marker="*" if on_front else "o",
                label=f"{precision}{' (frontier)' if on_front else ''}",
            )
    front = [r for r in rows if r.frontier]
    points = [(x_of(r), 100 * (r.accuracy or 0)) for r in front]
    for r, xy, slot in zip(front, points, label_slots(points), strict=True):
        label = r.label if "precision" in r.params else f"{r.label} {r.precision}"
        ax.annotate(label, xy, textcoords="offset points", xytext=(7, 3 - 9 * slot), fontsize=6)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_xlabel(xlabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.15, y=0.15)


def sweep_plot_png(result: SweepResult) -> bytes:
    """Accuracy against gzipped size (and p50 when measured), frontier starred; PNG bytes."""
    rows = [r for r in result.rows if r.ok and r.accuracy is not None and r.gzip_bytes]
    timed = [r for r in rows if r.p50_us is not None]
    panels = 2 if timed else 1

    def draw(fig: Figure) -> None:
        axes = fig.subplots(1, panels, squeeze=False)
        _panel(
            axes[0][0],
            rows,
            lambda r: (r.gzip_bytes or 0) / 1024,
            "gzipped file size (KB, log scale)",
        )
        axes[0][0].set_ylabel("test accuracy (%)")
        if timed:
            _panel(
                axes[0][1],
                timed,
                lambda r: r.p50_us or 0.0,
                "p50 latency, batch 1, 1 thread (microseconds, log scale)",
            )
        if rows:
            axes[0][0].legend(fontsize=7, title="precision", title_fontsize=7)
        else:
            axes[0][0].text(
                0.5, 0.5, "no point finished", ha="center", transform=axes[0][0].transAxes
            )
        m = result.machine
        fig.suptitle(
            f"edgekit sweep: {len(result.points)} points, frontier of "
            f"{', '.join(result.objectives)} starred - {m.get('cpu')}",
            fontsize=9,
        )

    return figure_png(draw, figsize=(6.5 * panels, 5), dpi=120)
