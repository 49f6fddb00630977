"""Small formatters shared by the reports, and JSON that stays valid and compact."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# A report file to write: its path (None: not asked for) and what makes its text or bytes.
ReportJob = tuple[str | os.PathLike[str] | None, Callable[[], str | bytes]]


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


def write_report_files(jobs: Iterable[ReportJob]) -> list[Path]:
    """Write each (path, make-content) pair whose path is given, atomically; the paths written.

    `make()` returns str (text) or bytes. Raises EdgekitError for a path that cannot be written.
    """
    from edgekit.core.errors import EdgekitError
    from edgekit.core.io.files import write_bytes_atomic, write_text_atomic

    written = []
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
