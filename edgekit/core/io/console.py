"""Progress lines on stderr: the one callback type every stage takes."""

from __future__ import annotations

import sys
from collections.abc import Callable

Progress = Callable[[str], None]


def stderr_progress(quiet: bool = False, indent: str = "") -> Progress:
    """A progress callback printing each line to stderr after `indent` (nothing when quiet)."""

    def say(msg: str) -> None:
        if not quiet:
            print(f"{indent}{msg}", file=sys.stderr, flush=True)

    return say
