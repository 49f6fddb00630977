"""Wall times of the named steps of a run, in the order they ran."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Clock:
    """Times named steps: `with clock.time("convert int8"): ...`; `seconds` maps each name to
    its wall time (added up when a name runs more than once), in the order first run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())
