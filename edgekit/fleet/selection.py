"""Export's recommendation, per board: each board's p50 for the written files, and the
smallest file within a board's latency budget (`--max-latency-ms BOARD=MS`), in manifest.json.

Every written file already passed the accuracy budget; a latency budget narrows the choice on
one board to the files fast enough there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgekit.core.errors import DeviceError
from edgekit.core.io.files import write_json_atomic
from edgekit.core.io.lock import lock_output_dir
from edgekit.device.manifest import MANIFEST_NAME, Manifest, read_manifest
from edgekit.fleet.bench import FleetResult


def parse_latency_budgets(values: Iterable[str]) -> dict[str, float]:
    """['pi4=2.5', 'pi5=1'] -> {'pi4': 2.5, 'pi5': 1.0}.

    Raises:
        DeviceError: not BOARD=MS with a positive number.
    """
    out = {}
    for text in values:
        name, sep, ms = text.partition("=")
        try:
            value = float(ms)
        except ValueError:
            value = float("nan")
        if not sep or not name.strip() or not value > 0:
            raise DeviceError(
                f"--max-latency-ms {text!r}: expected BOARD=MILLISECONDS, e.g. pi4=2.5"
            )
        out[name.strip()] = value
    return out


def board_selection(
    manifest: Manifest, fleet: FleetResult, budgets_ms: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Per board: CPU, runtime, p50 (us, the first thread count) per written file, the budget
    and the recommended file (the smallest within it; export's choice when there is none)."""
    unknown = sorted(set(budgets_ms) - {b.name for b in fleet.boards})
    if unknown:
        raise DeviceError(
            f"--max-latency-ms names board(s) not measured: {', '.join(unknown)}; add them to --on"
        )
    by_size = sorted(manifest.files, key=lambda f: (f.bytes, f.file))
    out: dict[str, dict[str, Any]] = {}
    for board in fleet.boards:
        s = board.summary()
        entry: dict[str, Any] = {
            "cpu": s["cpu"],
            "arch": s["arch"],
            "cpu_flags": s["cpu_flags"],
            "runtime": s["runtime"],
            "emulated": board.emulated,
        }
        if not board.ok or board.result is None:
            out[board.name] = entry | {"error": board.error}
            continue
        threads = (
            min(int(r["threads"]) for r in board.result["rows"]) if board.result["rows"] else 1
        )
        p50 = {
            r["file"]: (r.get("latency") or {}).get("p50_us")
            for r in board.result["rows"]
            if int(r["threads"]) == threads and r.get("status") == "ok"
        }
        entry |= {"threads": threads, "p50_us": p50}
        budget = budgets_ms.get(board.name)
        if budget is None:
            entry["recommended"] = manifest.recommended
        else:
            fits = [f.file for f in by_size if (p50.get(f.file) or float("inf")) <= budget * 1000]
            entry["max_latency_ms"] = budget
            entry["recommended"] = fits[0] if fits else None
            if not fits:
                fastest = min((v, k) for k, v in p50.items() if v is not None) if p50 else None
                entry["note"] = f"no file within {budget:g} ms" + (
                    f" (fastest: {fastest[1]}, {fastest[0] / 1000:.3g} ms)" if fastest else ""
                )
        out[board.name] = entry
    return out


def record_boards(
    folder: str | os.PathLike[str], fleet: FleetResult, budgets_ms: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Write the boards' p50 and recommendations into the manifest's `selection.boards`."""
    root = Path(folder)
    with lock_output_dir(root):
        manifest = read_manifest(root)
        boards = board_selection(manifest, fleet, budgets_ms)
        d = manifest.to_dict()
        d["selection"] = {**manifest.selection, "boards": boards}
        Manifest.from_dict(d, str(root / MANIFEST_NAME))  # still a valid manifest
        write_json_atomic(root / MANIFEST_NAME, d)
    return boards
