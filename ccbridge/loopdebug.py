"""The event loop's slow-callback report: every callback over a threshold becomes a log line.

asyncio's debug mode times each callback and logs ``Executing <Handle ...> took 0.061
seconds`` on the ``asyncio`` logger. This rewrites that record into one recognisable
line, ``slow callback: <what> took 61 ms (limit 50 ms)``, counts it, and leaves every
other asyncio record alone. The integration tests run the bridge with it (50 ms, the
team's limit) and fail on any such line (tests/integration/conftest.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
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
    """Rewrites asyncio's slow-callback records and counts them."""

    def __init__(self, limit_ms: float) -> None:
        super().__init__()
        self.limit_ms = limit_ms
        self.count = 0
        self.lines: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _ASYNCIO_MSG and isinstance(record.args, tuple) and len(record.args) == 2:
            handle, seconds = record.args
            ms = seconds * 1000 if isinstance(seconds, float) else float("nan")
            record.msg = MARK + " %s took %.0f ms (limit %.0f ms)"
            record.args = (handle, ms, self.limit_ms)
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
    return found


def stop_reporting(loop: asyncio.AbstractEventLoop, found: SlowCallbackFilter) -> None:
    loop.set_debug(False)
    logging.getLogger("asyncio").removeFilter(found)
