"""`edgekit sweep` results as a rich table, JSON, CSV, Markdown and a PNG of the frontier.

Measures nothing and never imports TensorFlow; matplotlib only when the plot is drawn.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from edgekit.cli.report.formats import _kb, _num, _pct, dumps_json
from edgekit.core.io.files import write_bytes_atomic, write_text_atomic

if TYPE_CHECKING:
    from edgekit.sweep.results import SweepResult, SweepRow

SWEEP_OUTPUT_NAMES = {
    "json": "sweep.json",
    "csv": "sweep.csv",
    "markdown": "sweep.md",
    "plot": "sweep.png",
}
CSV_COLUMNS = (
    "point",
    "label",
    "status",
    "error",
    "file",
    "precision",
    "accuracy",
    "accuracy_drop_points",
    "bytes",
    "gzip_bytes",
    "weight_sparsity",
    "p50_us",
    "p90_us",
    "seconds",
    "resumed",
    "frontier",
    "sha256",
)
# (key, title, justify)
_COLUMNS = (
    ("frontier", "", "left"),
    ("point", "Point", "left"),
    ("label", "Grid values", "left"),
    ("precision", "Prec", "left"),
    ("accuracy", "Acc %", "right"),
    ("size", "Size KB", "right"),
    ("gzip", "Gzip KB", "right"),
    ("p50", "p50 us", "right"),
    ("sparsity", "Zeros %", "right"),
    ("seconds", "Wall s", "right"),
)
FRONTIER_MARK = "*"


def _cells(row: SweepRow) -> dict[str, str]:
    seconds = _num(row.seconds, ".1f") + (" (kept)" if row.resumed else "")
    return {
        "frontier": FRONTIER_MARK if row.frontier else "",
        "point": row.point,
        "label": row.label,
        "precision": row.precision or "-",
        "accuracy": _pct(row.accuracy),
        "size": _kb(row.bytes),
        "gzip": _kb(row.gzip_bytes),
        "p50": _num(row.p50_us, ".2f"),
        "sparsity": _pct(row.weight_sparsity, 0),
        "seconds": seconds,
    }


def _engine_words(result: SweepResult) -> str:
    e = result.engine
    if e.get("ran") == 0:
        return "nothing run (every point was already done)"
    if e.get("name") == "ray":
        where = e.get("address", "local")
        where = "a local Ray" if where == "local" else f"Ray at {where}"
        return f"{where} (Ray {e.get('ray_version')}, {e.get('cluster_cpus')} CPUs)"
    return f"{e.get('workers')} local worker process(es)"


def sweep_table(result: SweepResult) -> Table:
    """One row per file (or failed point); the frontier marked with *."""
    table = Table(
        title=f"edgekit sweep: {len(result.points)} point(s) on {_engine_words(result)}; "
        f"{FRONTIER_MARK} = on the frontier of {', '.join(result.objectives)}",
        title_justify="left",
    )
    for key, title, justify in _COLUMNS:
        table.add_column(title, justify=justify, no_wrap=key in ("point", "label"))  # type: ignore[arg-type]
    for row in result.rows:
        cells = _cells(row)
        if not row.ok:
            cells = {k: "" for k in cells} | {
                "point": f"[red]{row.point}[/red]",
                "label": row.label,
                "precision": "[red]error[/red]",
                "seconds": cells["seconds"],
            }
        table.add_row(*(cells[k] for k, _, _ in _COLUMNS))
    return table


def print_sweep(result: SweepResult, console: Console | None = None) -> None:
    """The table, then each failed point's error."""
    console = console or Console()
    console.print(sweep_table(result))
    for row in result.failed:
        console.print(f"[red]{row.point} {row.label}: {row.error}[/red]", highlight=False)
    if result.bench is None:
        console.print("p50 not measured (--no-bench).", highlight=False)


def sweep_json(result: SweepResult) -> str:
    return dumps_json(result.to_dict())


def sweep_csv(result: SweepResult) -> str:
    """One line per file (or failed point), the grid values as columns after `point`."""
    keys = list(result.grid)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=[CSV_COLUMNS[0], *keys, *CSV_COLUMNS[1:]], lineterminator="\n"
    )
    writer.writeheader()
    for row in result.rows:
        flat = row.to_dict()
        flat |= {k: row.params.get(k) for k in keys}
        writer.writerow({k: "" if flat.get(k) is None else flat.get(k) for k in writer.fieldnames})
    return buf.getvalue()


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def sweep_markdown(result: SweepResult) -> str:
    """A Markdown report: how it ran, the table, the failed points."""
    m = result.machine
    counts = result.to_dict()["counts"]
    lines = [
        "# edgekit sweep",
        "",
        f"- Points: {counts['points']} ({counts['ok']} ok, {counts['failed']} failed, "
        f"{counts['resumed']} kept from an earlier run); engine: {_engine_words(result)}; "
        f"{result.engine.get('threads_per_point')} TensorFlow thread(s) per point",
        "- Grid: " + "; ".join(f"{k} = {', '.join(map(str, v))}" for k, v in result.grid.items()),
        f"- Machine: {m.get('cpu')} ({m.get('arch')}), {m.get('usable_cores')} usable cores; "
        f"edgekit {m.get('edgekit')}",
        f"- Frontier ({FRONTIER_MARK}): no other file is at least as good on "
        f"{', '.join(result.objectives)} and better on one",
        f"- Run: {result.started_at}, {result.duration_s:.1f} s",
    ]
    if result.bench is not None:
        cfg = result.bench["config"]
        lines.append(
            f"- p50: batch 1, {cfg['threads'][0]} thread, >= {cfg['min_runs']} runs and "
            f">= {cfg['min_time_s']:g} s per file in {cfg['rounds']} interleaved rounds, "
            f"{result.bench.get('runtime')}, after the points finished"
        )
    lines += ["", "| " + " | ".join(t or "F" for _, t, _ in _COLUMNS) + " |"]
    lines.append("| " + " | ".join("---:" if j == "right" else "---" for *_, j in _COLUMNS) + " |")
    for row in result.rows:
        cells = _cells(row)
        if not row.ok:
            cells = {k: "" for k in cells} | {
                "point": row.point,
                "label": row.label,
                "precision": "**error**",
            }
        lines.append("| " + " | ".join(_md(cells[k]) for k, _, _ in _COLUMNS) + " |")
    if result.failed:
        lines += ["", "## Failed", ""]
        lines += [f"- `{r.point}` {_md(r.label)}: {_md(r.error or '')}" for r in result.failed]
    return "\n".join(lines) + "\n"


def write_sweep_outputs(
    result: SweepResult, folder: str | os.PathLike[str], plot: bool = True
) -> list[Path]:
    """sweep.json, .csv, .md (and .png when `plot`) into `folder`, each atomically."""
    from edgekit.cli.report.sweep_plot import sweep_plot_png

    folder = Path(folder)
    written = []
    for key, text in (
        ("json", sweep_json(result)),
        ("csv", sweep_csv(result)),
        ("markdown", sweep_markdown(result)),
    ):
        path = folder / SWEEP_OUTPUT_NAMES[key]
        write_text_atomic(path, text)
        written.append(path)
    if plot:
        path = folder / SWEEP_OUTPUT_NAMES["plot"]
        write_bytes_atomic(path, sweep_plot_png(result))
        written.append(path)
    return written
