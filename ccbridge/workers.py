"""The loop's worker threads (``asyncio.to_thread``'s pool), all started before the bridge
serves.

``ThreadPoolExecutor`` starts a thread on a submit that finds none idle, and
``Thread.start`` waits until the new thread runs: the event loop sleeps in that wait.
On a loaded machine a new thread waits for a CPU for tens of milliseconds (60-88 ms
steps of the records journal's fsync submit in a loaded CI rehearsal, the loop thread
itself never waiting for a CPU). Starting every worker once, at start, in a worker
thread, takes that wait off the loop for the bridge's whole life.

The same start sets the interpreter's switch interval to 1 ms (CPython's default is
5 ms). A worker computing in Python (a /metrics text, a report's CSV) holds the GIL;
the loop thread gives it up at every system call of its step (a socket write, a log
line) and waits up to one switch interval each time to get it back. A CI run's /metrics
scrape held the loop 72 ms with 7 ms of its own CPU, the formatting thread running 79
ms meanwhile (BENCHMARKS.md §13 measures the lateness at both intervals).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

# Python's own default for the pool (``ThreadPoolExecutor``'s max_workers).
DEFAULT_WORKERS = min(32, (os.cpu_count() or 1) + 4)
FILL_TIMEOUT = 10.0  # s a worker waits for the others at start: bounded, never a hang
SWITCH_INTERVAL = 0.001  # s: how long a thread waiting for the GIL waits before asking


def _fill(pool: ThreadPoolExecutor, workers: int) -> None:
    """Run in one of the pool's threads: submit a task for each other worker, all of
    them waiting at one barrier, so the pool starts every thread (from here, not from
    the loop). A barrier broken by the timeout leaves the rest to be started later."""
    met = threading.Barrier(workers)

    def wait() -> None:
        met.wait(FILL_TIMEOUT)

    others = [pool.submit(wait) for _ in range(workers - 1)]
    try:
        met.wait(FILL_TIMEOUT)
    except threading.BrokenBarrierError:
        return
    for f in others:
        f.result(FILL_TIMEOUT)


async def start_workers(workers: int = DEFAULT_WORKERS) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads, every one started, as the running loop's default
    executor (what ``asyncio.to_thread`` and ``run_in_executor(None, ...)`` use); the
    interpreter's switch interval at most ``SWITCH_INTERVAL`` from now on."""
    if workers < 1:
        raise ValueError(f"worker threads: {workers} (at least 1)")
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ccbridge-worker")
    loop = asyncio.get_running_loop()
    # The first submit starts the first thread from the loop: once, at start.
    await loop.run_in_executor(pool, _fill, pool, workers)
    loop.set_default_executor(pool)
    return pool
