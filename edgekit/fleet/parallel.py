"""Boards in parallel: one thread per board (each waits on its own ssh processes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from edgekit.fleet.devices import Device
from edgekit.fleet.ssh import kill_all

T = TypeVar("T")
MAX_PARALLEL_BOARDS = 16


def on_boards(devices: Sequence[Device], work: Callable[[Device], T]) -> list[T]:
    """`work(device)` for every board at once; results in the boards' order.

    `work` reports a board's failure in its result; an exception here is a bug or Ctrl-C,
    which stops every ssh session still running before it propagates.
    """
    if len(devices) == 1:
        try:
            return [work(devices[0])]
        except BaseException:
            kill_all()
            raise
    pool = ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_BOARDS, len(devices)))
    try:
        futures = [pool.submit(work, d) for d in devices]
        return [f.result() for f in futures]
    except BaseException:
        kill_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
