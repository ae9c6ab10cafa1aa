"""The heap trim (ccbridge/memtrim.py): glibc's malloc_trim found and run off the loop."""

from __future__ import annotations

import asyncio

from ccbridge.memtrim import HeapTrim, malloc_trim
from tests.polling import until


async def test_the_trim_runs_in_a_thread_every_interval_and_stops() -> None:
    trim = malloc_trim()
    assert trim is not None  # the lab and CI run on glibc (Debian)
    assert trim() in (0, 1)
    heap = HeapTrim(every=0.01)
    await heap.start()
    try:
        await until(lambda: heap.trims >= 3, 5, "three trims")
    finally:
        await heap.stop()
    done = heap.trims
    await asyncio.sleep(0.05)
    assert heap.trims == done  # stopped: no more trims
