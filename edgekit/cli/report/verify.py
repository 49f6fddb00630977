"""`edgekit verify`: the verdict on each file of a folder, as a table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from edgekit.device.verify import VerifyResult


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
