"""The one "poll until a condition holds" helper of the unit and integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def until(
    predicate: Callable[[], bool],
    within: float,
    what: str = "condition",
    interval: float = 0.05,
) -> float:
    """Poll ``predicate`` every ``interval`` seconds until it holds; return the seconds it
    took. Fail the test (AssertionError naming ``what``) once ``within`` seconds passed."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - start


def until_sync(
    predicate: Callable[[], bool],
    within: float,
    what: str = "condition",
    interval: float = 0.05,
) -> float:
    """:func:`until` for synchronous fixtures: the same contract, blocking the thread."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


async def until_async(
    predicate: Callable[[], Awaitable[bool]],
    within: float,
    what: str = "condition",
    interval: float = 0.1,
) -> float:
    """:func:`until` for a predicate that awaits (an HTTP call made in a thread, so the
    test's own loop is never blocked by it): the same contract."""
    start = time.monotonic()
    while not await predicate():
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - start
