"""A caller's previous contacts from the call record: bounded in time, cached briefly, off the loop.

The query runs on the store's async engine (aiosqlite's thread, asyncpg's socket), so
the event loop only awaits it. It reads ``calls (caller_number)``'s index: the rows of
one number, newest first. A pop never waits longer than ``timeout``: a slow or absent
store gives a history marked unavailable, and the query goes on to fill the cache for
the next pop of that number. Concurrent asks for one number share one query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger("ccbridge.screenpop")

# (number, since, call ID to leave out) -> (count, last outcome, last agent, last at)
Found = tuple[int, str | None, str | None, datetime | None]
Query = Callable[[str, datetime, str], Awaitable[Found]]


@dataclass(frozen=True, slots=True)
class History:
    """The caller's contacts over the last ``days`` days, this call left out."""

    available: bool
    days: int
    count: int | None = None
    last_outcome: str | None = None
    last_agent: str | None = None
    last_at: datetime | None = None
    why: str | None = None  # unavailable: "no-store", "timeout", "error", "no-number"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"available": self.available, "days": self.days}
        if self.available:
            out.update(
                count=self.count,
                last_outcome=self.last_outcome,
                last_agent=self.last_agent,
                last_at=self.last_at.isoformat().replace("+00:00", "Z") if self.last_at else None,
            )
        else:
            out["why"] = self.why
        return out


class ContactHistory:
    """``await lookup(number, call_id, now)``: never longer than ``timeout`` seconds."""

    def __init__(
        self,
        query: Query | None,
        *,
        days: int,
        timeout: float,
        ttl: float,
        max_entries: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._query = query
        self.days = days
        self.timeout = timeout
        self.ttl = ttl
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._cache: OrderedDict[str, tuple[float, History]] = OrderedDict()
        self._running: dict[str, asyncio.Task[History]] = {}
        self.queries = 0  # store queries started (the cache's misses)

    async def lookup(self, number: str | None, call_id: str, now: datetime) -> History:
        if self._query is None:
            return History(False, self.days, why="no-store")
        if not number:
            return History(False, self.days, why="no-number")
        hit = self._cache.get(number)
        if hit is not None and self._monotonic() - hit[0] < self.ttl:
            return hit[1]
        task = self._running.get(number)
        if task is None:
            task = asyncio.create_task(self._ask(number, call_id, now))
            self._running[number] = task
        try:
            # shield: a pop that stops waiting leaves the query to fill the cache
            return await asyncio.wait_for(asyncio.shield(task), self.timeout)
        except TimeoutError:
            return History(False, self.days, why="timeout")

    async def _ask(self, number: str, call_id: str, now: datetime) -> History:
        assert self._query is not None
        self.queries += 1
        try:
            count, outcome, agent, at = await self._query(
                number, now - timedelta(days=self.days), call_id
            )
            found = History(True, self.days, count, outcome, agent, at)
        except Exception as exc:  # a store fault is a pop without history, never a crash
            log.warning("caller history unavailable: %s", type(exc).__name__)
            found = History(False, self.days, why="error")
        finally:
            self._running.pop(number, None)
        if found.available and self.ttl > 0:
            self._cache[number] = (self._monotonic(), found)
            self._cache.move_to_end(number)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return found

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._running.clear()


def store_query(read: Callable[[], Any]) -> Query:
    """The history query over a records reader's ``read()`` (services/recordsread.py)."""

    async def query(number: str, since: datetime, call_id: str) -> Found:
        from sqlalchemy import func, select

        from ccbridge.store.schema import calls

        where = (
            (calls.c.caller_number == number)
            & (calls.c.arrived_at >= since)
            & (calls.c.call_id != call_id)
        )
        async with read() as engine, engine.connect() as conn:
            count = (await conn.execute(select(func.count()).where(where))).scalar_one()
            last = (
                await conn.execute(
                    select(calls.c.outcome, calls.c.agent, calls.c.arrived_at)
                    .where(where)
                    .order_by(calls.c.arrived_at.desc())
                    .limit(1)
                )
            ).first()
        if last is None:
            return int(count), None, None, None
        return int(count), last.outcome, last.agent, last.arrived_at

    return query
