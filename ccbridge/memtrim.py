"""Give the kernel back the heap that bursts left free: glibc's ``malloc_trim``, off the loop.

Bursts (a spike of AMI events, the record writer catching up, 1,000 FastAGI sessions
opening at once) grow the C heap; glibc keeps what they free for later and RSS stays at
the burst's high-water mark. ``malloc_trim(0)`` returns the free pages (the top of each
arena, and whole free pages inside it): measured on the bench with records on at 150
calls/s, see BENCHMARKS.md §4. It runs every ``every`` seconds in a thread; elsewhere
than glibc (musl, macOS) it is a no-op.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from ccbridge.lifecycle import cancel_and_wait

log = logging.getLogger("ccbridge.memtrim")

EVERY = 30.0  # seconds between trims


def malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)`` as a callable (1: memory was released), or None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


class HeapTrim:
    """A task that trims the C heap every ``every`` seconds (nothing without glibc)."""

    def __init__(self, every: float = EVERY) -> None:
        self.every = every
        self.trims = 0
        self._trim = malloc_trim()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._trim is not None:
            self._task = asyncio.create_task(self._loop(), name="heap-trim")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _loop(self) -> None:
        assert self._trim is not None
        while True:
            await asyncio.sleep(self.every)
            # In a thread: it walks every arena's free chunks (milliseconds), and the
            # loop's own allocations are pymalloc's, which never wait on it.
            await asyncio.to_thread(self._trim)
            self.trims += 1
