"""Figures as PNG bytes: the one place matplotlib is set up, and what the plots share.

matplotlib is optional (the `plot` extra); it is imported only when a figure is drawn.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgekit.core.errors import EdgekitError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def label_slots(points: list[tuple[float, float]]) -> list[int]:
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


def figure_png(draw: Callable[[Figure], None], figsize: tuple[float, float], dpi: int) -> bytes:
    """PNG bytes of a figure that `draw` fills (off screen, laid out tight, then closed).

    Raises:
        EdgekitError: matplotlib is not installed.
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize, dpi=dpi)
    try:
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
