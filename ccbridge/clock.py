"""The bridge's clock: real time, or real time shifted to start at a chosen instant (tests)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime


class Clock:
    """POSIX seconds and aware datetimes; a fixed start shifts the clock, it does not stop it.

    A shifted clock keeps running, so hold-offs and expected waits still elapse while a
    test places calls "at" 2026-12-25T03:00Z.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("the clock's start needs a time zone offset")
        self.offset = 0.0 if start is None else start.timestamp() - time.time()
        self.fixed = start is not None

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    @classmethod
    def from_settings(cls, configured: datetime | None) -> Clock:
        """CCBRIDGE_CLOCK (ISO 8601 with offset) overrides the config's bridge.clock."""
        env = os.environ.get("CCBRIDGE_CLOCK")
        if env:
            start = datetime.fromisoformat(env)
            if start.tzinfo is None:
                raise ValueError(f"CCBRIDGE_CLOCK needs an offset or Z: {env!r}")
            return cls(start)
        return cls(configured)
