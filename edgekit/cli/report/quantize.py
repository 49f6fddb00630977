"""The per-layer int8 error report: a rich table, JSON, Markdown and a bar chart (PNG).

Takes the dicts of `edgekit.workstation.export.layer_debug.LayerError.to_dict()` (worst first),
so it needs no TensorFlow. matplotlib (the `plot` extra) is imported only when a plot is drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from edgekit.cli.report.formats import _num, dumps_json, write_report_files
from edgekit.cli.report.plot import figure_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# rmse/scale of plain rounding noise (uniform over one quantization step): 1/sqrt(12).
ROUNDING_NOISE = 1 / math.sqrt(12)
# Above this many times the rounding noise a node is flagged as quantizing badly.
BAD_FACTOR = 3.0
PLOT_MAX_NODES = 30
_COLUMNS = (
    ("rank", "#", "right"),
    ("name", "Node (name to keep float)", "left"),
    ("op", "Op", "left"),
    ("layer", "Keras layer", "left"),
    ("weights", "Weights", "right"),
    ("rmse_scale", "rmse/scale", "right"),
    ("mean_abs_error", "Mean abs err", "right"),
    ("mean_squared_error", "MSE", "right"),
    ("scale", "Scale", "right"),
)
NOTE = (
    "rmse/scale is a node's int8 error in units of its own quantization step, measured on its "
    "float input: about 0.29 (1/sqrt(12)) is plain rounding. It cannot see a step that is too "
    "coarse for the values that matter (SELU's EXP looks fine, the MUL after it does not), and "
    "one node kept float is rounded again right after: keep a layer's chain float."
)


def _bad(row: Mapping[str, Any]) -> bool:
    v = row.get("rmse_scale")
    return (
        v is not None
        and not (isinstance(v, float) and math.isnan(v))
        and (float(v) > BAD_FACTOR * ROUNDING_NOISE)
    )


def _cells(rank: int, row: Mapping[str, Any]) -> dict[str, str]:
    return {
        "rank": str(rank),
        "name": str(row.get("name", "")),
        "op": str(row.get("op", "")),
        "layer": str(row.get("layer") or "-"),
        "weights": f"{int(row.get('weights') or 0):,}",
        "rmse_scale": _num(row.get("rmse_scale"), ".3g"),
        "mean_abs_error": _num(row.get("mean_abs_error"), ".3g"),
        "mean_squared_error": _num(row.get("mean_squared_error"), ".3g"),
        "scale": _num(row.get("scale"), ".3g"),
    }


def quantize_table(errors: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    """The nodes as a rich table, in the given order (worst first); bad ones in red."""
    table = Table(title=title or "int8 error per node (worst first)", title_justify="left")
    for _key, head, justify in _COLUMNS:
        table.add_column(head, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for i, row in enumerate(errors, 1):
        cells = _cells(i, row)
        style = "red" if _bad(row) else None
        table.add_row(*(cells[k] for k, _, _ in _COLUMNS), style=style)
    return table


def print_quantize_report(
    errors: Sequence[Mapping[str, Any]], console: Console | None = None, title: str | None = None
) -> None:
    """The table, then how to read it and which nodes quantize badly."""
    console = console or Console()
    console.print(quantize_table(errors, title))
    bad = [str(r.get("name")) for r in errors if _bad(r)]
    console.print(NOTE, highlight=False)
    if bad:
        console.print(
            f"{len(bad)} node(s) above {BAD_FACTOR:g}x rounding noise: {', '.join(bad[:5])}"
            f"{', ...' if len(bad) > 5 else ''}",
            highlight=False,
        )
    else:
        console.print("No node is above rounding noise by much: int8 suits this model.")


def quantize_json(
    errors: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None = None
) -> str:
    """{"meta": ..., "rounding_noise": 0.289, "layers": [...]} as indented JSON."""
    return dumps_json(
        {"meta": dict(meta or {}), "rounding_noise": ROUNDING_NOISE, "layers": list(errors)}
    )


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def quantize_markdown(
    errors: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None = None
) -> str:
    """A Markdown report: what was measured, the table, how to read it."""
    lines = ["# edgekit quantize-report", ""]
    if meta:
        lines += [f"- {_md(str(k))}: {_md(str(v))}" for k, v in meta.items()] + [""]
    lines.append("| " + " | ".join(_md(h) for _, h, _ in _COLUMNS) + " |")
    lines.append("| " + " | ".join("---:" if j == "right" else "---" for *_, j in _COLUMNS) + " |")
    for i, row in enumerate(errors, 1):
        cells = _cells(i, row)
        vals = [f"`{cells[k]}`" if k == "name" else cells[k] for k, _, _ in _COLUMNS]
        lines.append("| " + " | ".join(_md(v) for v in vals) + " |")
    lines += ["", _md(NOTE)]
    return "\n".join(lines) + "\n"


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def quantize_plot_png(
    errors: Sequence[Mapping[str, Any]], max_nodes: int = PLOT_MAX_NODES
) -> bytes:
    """A horizontal bar per node (worst at the top) of rmse/scale, log scale; PNG bytes."""
    rows = [r for r in errors if r.get("rmse_scale") is not None][:max_nodes]
    values = [max(float(r["rmse_scale"]), 1e-3) for r in rows]  # log axis: no zeros
    labels = [
        f"{_short(str(r.get('name', '')))} ({r.get('op', '')}"
        f"{', ' + str(r['layer']) if r.get('layer') else ''})"
        for r in rows
    ]

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        y = list(range(len(rows)))[::-1]  # worst at the top
        colors = ["tab:red" if _bad(r) else "tab:blue" for r in rows]
        ax.barh(y, values, color=colors)
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_xscale("log")
        ax.axvline(ROUNDING_NOISE, color="black", linestyle="--", linewidth=0.8)
        ax.text(ROUNDING_NOISE, len(rows) - 0.4, " rounding noise (0.29)", fontsize=7)
        if not rows:
            ax.text(0.5, 0.5, "no quantized node", ha="center", transform=ax.transAxes)
        ax.set_xlabel("rmse / scale (int8 error in quantization steps, log scale)")
        more = f", worst {len(rows)} of {len(errors)}" if len(errors) > len(rows) else ""
        ax.set_title(f"int8 error per node{more}", fontsize=10)
        ax.grid(True, axis="x", which="both", alpha=0.3)

    return figure_png(draw, figsize=(9, 1.5 + 0.3 * max(len(rows), 1)), dpi=110)


def write_quantize_outputs(
    errors: Sequence[Mapping[str, Any]],
    json_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    plot_path: str | os.PathLike[str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write the requested files atomically; returns the paths written."""
    jobs = (
        (json_path, lambda: quantize_json(errors, meta)),
        (markdown_path, lambda: quantize_markdown(errors, meta)),
        (plot_path, lambda: quantize_plot_png(errors)),
    )
    return write_report_files(jobs)
