"""Boards: `edgekit bench --on` as one table (a row per file, p50/p90 per board), its JSON,
Markdown and PNG; `edgekit push` lines; the `edgekit devices check` table."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgekit.cli.report.formats import _num, _pct, dumps_json, write_report_files
from edgekit.cli.report.plot import require_matplotlib

if TYPE_CHECKING:
    from edgekit.fleet.bench import FleetResult
    from edgekit.fleet.provision import CheckOutcome

FLEET_OUTPUT_NAMES = {
    "json": "fleet.json",
    "csv": "fleet.csv",
    "markdown": "fleet.md",
    "plot": "fleet.png",
}
# fleet.csv: one line per (board, file, threads), long form for spreadsheets and pandas.
FLEET_CSV_COLUMNS = (
    "board",
    "emulated",
    "cpu",
    "cpu_flags",
    "runtime",
    "file",
    "precision",
    "threads",
    "status",
    "p50_us",
    "p90_us",
    "accuracy",
)
EMULATED_WORDS = "emulated: timings are not speeds"


def _board_title(b: dict[str, Any]) -> str:
    return f"{b['name']} (emulated)" if b["emulated"] else b["name"]


def _board_line(b: dict[str, Any]) -> str:
    if not b["ok"]:
        return f"{b['name']}: FAILED: {b['error']}"
    flags = ", ".join(b.get("cpu_flags") or []) or "none detected"
    words = [
        f"{b['name']}: {b.get('cpu')} ({b.get('arch')}), flags: {flags}",
        f"{b.get('runtime')}, Python {b.get('python')}, edgekit {b.get('edgekit')}",
    ]
    if b["pushed"]:
        words.append("build pushed")
    if b["failed_files"]:
        words.append(f"FAILED files: {', '.join(b['failed_files'])}")
    if b["emulated"]:
        words.append(f"EMULATED: {EMULATED_WORDS.removeprefix('emulated: ')}")
    return "; ".join(words)


def _columns(d: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]], bool]:
    boards = [b for b in d["boards"] if b["ok"]]
    with_acc = any(c.get("accuracy") is not None for r in d["rows"] for c in r["boards"].values())
    return [b["name"] for b in boards], boards, with_acc


def _cells(row: dict[str, Any], names: list[str], with_acc: bool) -> list[str]:
    out = []
    for name in names:
        c = row["boards"].get(name)
        if c is None:
            out += ["-", "-"] + (["-"] if with_acc else [])
        elif c["status"] != "ok":
            out += ["error", ""] + ([""] if with_acc else [])
        else:
            out += [_num(c["p50_us"]), _num(c["p90_us"])]
            if with_acc:
                out.append(_pct(c["accuracy"]))
    return out


def fleet_table(fleet: FleetResult) -> Table:
    d = fleet.to_dict()
    names, boards, with_acc = _columns(d)
    emulated = any(b["emulated"] for b in d["boards"])
    title = f"edgekit bench --on: {len(d['boards'])} board(s), {d['folder']}"
    if emulated:
        title += f" ({EMULATED_WORDS})"
    table = Table(title=title, title_justify="left")
    table.add_column("File", no_wrap=True)
    table.add_column("Prec")
    table.add_column("Thr", justify="right")
    for b in boards:
        t = _board_title(b)
        table.add_column(f"{t}\np50 us", justify="right")
        table.add_column(f"{t}\np90 us", justify="right")
        if with_acc:
            table.add_column(f"{t}\nAcc %", justify="right")
    for row in d["rows"]:
        table.add_row(
            escape(row["file"]),
            row["precision"] or "-",
            str(row["threads"]),
            *_cells(row, names, with_acc),
        )
    for b in d["boards"]:
        if not b["ok"]:
            table.add_row(f"[red]{escape(b['name'])}: {escape(str(b['error']))}[/red]")
    return table


def print_fleet(fleet: FleetResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(fleet_table(fleet))
    for b in fleet.to_dict()["boards"]:
        line = escape(_board_line(b))
        console.print(f"[red]{line}[/red]" if not b["ok"] else line, highlight=False)


def fleet_markdown(fleet: FleetResult) -> str:
    d = fleet.to_dict()
    names, boards, with_acc = _columns(d)
    lines = ["# edgekit bench --on", "", f"Build: `{d['folder']}`, {d['started_at']}", ""]
    if any(b["emulated"] for b in d["boards"]):
        lines += ["**Boards marked emulated ran under qemu: timings are not speeds.**", ""]
    lines += [f"- {_board_line(b)}" for b in d["boards"]]
    head = ["File", "Prec", "Thr"]
    for b in boards:
        head += [f"{_board_title(b)} p50 us", f"{_board_title(b)} p90 us"]
        if with_acc:
            head.append(f"{_board_title(b)} acc %")
    lines += ["", "| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * (len(head) - 2)]
    for row in d["rows"]:
        cells = [row["file"], row["precision"] or "-", str(row["threads"])]
        cells += _cells(row, names, with_acc)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for b in d["boards"]:
        if not b["ok"]:
            lines.append(f"| {b['name']}: {str(b['error']).replace('|', '/')} |" + " |" * 2)
    return "\n".join(lines) + "\n"


def fleet_csv(fleet: FleetResult) -> str:
    """One line per board and file (FLEET_CSV_COLUMNS); a board that failed is one line with its
    error as the status."""
    import csv

    d = fleet.to_dict()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FLEET_CSV_COLUMNS)
    for b in d["boards"]:
        board = [b["name"], b["emulated"], b.get("cpu") or "", " ".join(b.get("cpu_flags") or [])]
        board.append(b.get("runtime") or "")
        if not b["ok"]:
            w.writerow([*board, "", "", "", f"error: {b['error']}", "", "", ""])
            continue
        for row in d["rows"]:
            c = row["boards"].get(b["name"])
            if c is None:
                continue
            ok = c["status"] == "ok"
            w.writerow(
                [
                    *board,
                    row["file"],
                    row["precision"] or "",
                    row["threads"],
                    c["status"],
                    c.get("p50_us") if ok else "",
                    c.get("p90_us") if ok else "",
                    c.get("accuracy") if ok and c.get("accuracy") is not None else "",
                ]
            )
    return buf.getvalue()


def fleet_plot_png(fleet: FleetResult) -> bytes:
    """p50 per file (grouped bars, one colour per board, log scale); PNG bytes."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    d = fleet.to_dict()
    names, boards, _ = _columns(d)
    rows = d["rows"]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows) + 3), 4.5), dpi=120)
    try:
        width = 0.8 / max(len(names), 1)
        for i, b in enumerate(boards):
            xs, ys = [], []
            for j, row in enumerate(rows):
                c = row["boards"].get(b["name"])
                if c and c["status"] == "ok" and c["p50_us"]:
                    xs.append(j + (i - (len(names) - 1) / 2) * width)
                    ys.append(c["p50_us"])
            ax.bar(xs, ys, width, label=_board_title(b), hatch="//" if b["emulated"] else None)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(
            [f"{r['file'].removesuffix('.tflite')} @{r['threads']}t" for r in rows],
            fontsize=7,
            rotation=20,
            ha="right",
        )
        ax.set_yscale("log")
        ax.set_ylabel("p50 latency at batch 1 (us, log scale)")
        title = "edgekit bench --on"
        if any(b["emulated"] for b in boards):
            title += f" (hatched: {EMULATED_WORDS})"
        ax.set_title(title, fontsize=10)
        if names:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no board measured", ha="center", transform=ax.transAxes)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def write_fleet_outputs(
    fleet: FleetResult,
    folder: str | os.PathLike[str] | None = None,
    json_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    plot_path: str | os.PathLike[str] | None = None,
    plot_in_folder: bool = True,
    csv_path: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """bench.<board>.json per measured board and fleet.json/.csv/.md/.png into `folder`; and the
    fleet files where --json/--csv/--markdown/--plot say. Atomic; returns the paths written."""
    jobs: list[tuple[Any, Any]] = []
    if folder is not None:
        root = Path(folder)
        for b in fleet.boards:
            if b.result is not None:
                jobs.append((root / f"bench.{b.name}.json", lambda b=b: dumps_json(b.result)))
        jobs += [
            (root / FLEET_OUTPUT_NAMES["json"], lambda: dumps_json(fleet.to_dict())),
            (root / FLEET_OUTPUT_NAMES["csv"], lambda: fleet_csv(fleet)),
            (root / FLEET_OUTPUT_NAMES["markdown"], lambda: fleet_markdown(fleet)),
        ]
        if plot_in_folder:
            jobs.append((root / FLEET_OUTPUT_NAMES["plot"], lambda: fleet_plot_png(fleet)))
    jobs += [
        (json_path, lambda: dumps_json(fleet.to_dict())),
        (csv_path, lambda: fleet_csv(fleet)),
        (markdown_path, lambda: fleet_markdown(fleet)),
        (plot_path, lambda: fleet_plot_png(fleet)),
    ]
    return write_report_files(jobs)


def print_devices_check(outcomes: list[CheckOutcome], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="edgekit devices check", title_justify="left")
    for col in ("Board", "Reachable", "edgekit", "Runtime", "Python", "Arch", "CPU", "Flags"):
        table.add_column(col)
    for o in outcomes:
        i = o.info
        if i is None:
            table.add_row(escape(o.name), "[red]no[/red]", *[""] * 6)
            continue
        table.add_row(
            escape(o.name),
            "[green]yes[/green]",
            i.edgekit or "[red]missing[/red]",
            i.runtime or "[red]missing[/red]",
            i.python or "[red]missing[/red]",
            i.arch or "-",
            escape(i.cpu or "-") + (" (emulated)" if i.emulated else ""),
            ", ".join(i.cpu_flags) or "-",
        )
    console.print(table)
    for o in outcomes:
        if o.info is None:
            console.print(f"[red]{escape(o.name)}: {escape(str(o.error))}[/red]", highlight=False)
        else:
            for hint in o.info.hints():
                console.print(f"{escape(o.name)}: {escape(hint)}", highlight=False)
