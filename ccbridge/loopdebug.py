"""The event loop's slow-callback report: every callback over a threshold becomes a log line.

asyncio's debug mode times each callback and logs ``Executing <Handle ...> took 0.061
seconds`` on the ``asyncio`` logger. This rewrites that record into one recognisable
line, ``slow callback: <what> took 61 ms (limit 50 ms)``, counts it, and leaves every
other asyncio record alone. The integration tests run the bridge with it (50 ms, the
team's limit) and fail on any such line (tests/integration/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections import deque
from typing import Final

MARK: Final = "slow callback:"
ENV: Final = "CCBRIDGE_LOOP_DEBUG_MS"  # e.g. 50: what ``ccbridge run`` reads by default

_ASYNCIO_MSG = "Executing %s took %.3f seconds"  # asyncio.base_events._run_once


def env_threshold_ms() -> float | None:
    """The threshold from CCBRIDGE_LOOP_DEBUG_MS, None when unset or empty."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{ENV} must be a positive number of milliseconds, not {raw!r}")
    return value


class SlowCallbackFilter(logging.Filter):
    """Rewrites asyncio's slow-callback records and counts them.

    It also times the garbage collector (``gc.callbacks``): a callback that was slow
    because a collection ran inside it says so (``gc 70 ms``), since the fix is then
    about what the process keeps alive, not about that callback's code.
    """

    def __init__(self, limit_ms: float) -> None:
        super().__init__()
        self.limit_ms = limit_ms
        self.count = 0
        self.lines: list[str] = []
        self._gc_started = 0.0
        self._gcs: deque[tuple[float, float]] = deque(maxlen=64)  # (ended, seconds)

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
        elif self._gc_started:
            self._gcs.append((now, now - self._gc_started))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _ASYNCIO_MSG and isinstance(record.args, tuple) and len(record.args) == 2:
            handle, seconds = record.args
            ms = seconds * 1000 if isinstance(seconds, float) else float("nan")
            # asyncio logs right after the callback returned: collections that ended
            # within its duration ran inside it.
            since = time.perf_counter() - ms / 1000 - 0.001
            gc_ms = 1000 * sum(took for ended, took in self._gcs if ended >= since)
            during = f"; gc {gc_ms:.0f} ms during it" if gc_ms >= 1 else ""
            record.msg = MARK + " %s took %.0f ms (limit %.0f ms%s)"
            record.args = (handle, ms, self.limit_ms, during)
            self.count += 1
            self.lines.append(record.getMessage())
        return True


def report_slow_callbacks(loop: asyncio.AbstractEventLoop, limit_ms: float) -> SlowCallbackFilter:
    """Turn on ``loop``'s debug mode with ``slow_callback_duration = limit_ms``; return
    the filter that rewrites and counts the reports (remove it with ``stop_reporting``)."""
    loop.set_debug(True)
    loop.slow_callback_duration = limit_ms / 1000
    found = SlowCallbackFilter(limit_ms)
    logging.getLogger("asyncio").addFilter(found)
    gc.callbacks.append(found.on_gc)
    return found


def stop_reporting(loop: asyncio.AbstractEventLoop, found: SlowCallbackFilter) -> None:
    loop.set_debug(False)
    logging.getLogger("asyncio").removeFilter(found)
    with contextlib.suppress(ValueError):
        gc.callbacks.remove(found.on_gc)
