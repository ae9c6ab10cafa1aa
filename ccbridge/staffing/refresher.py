"""The bridge's staffing plan around now, for the gauges: recomputed off the hot path.

Every ``refresh`` seconds (and at start) a task asks for the plan of yesterday, today and
tomorrow (UTC dates: every site's current local half hour is in them) from the records;
the database is read asynchronously and the forecast and Erlang C run in a thread
(``storehistory.plan_from_store``). A scrape only picks the current slot's rows out of the
cached plan and reads the live staffing: no query, no Erlang C on the scrape. Bounded:
at most 3 days x 48 slots per configured queue are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime

from ccbridge.lifecycle import cancel_and_wait
from ccbridge.staffing.gauges import current
from ccbridge.staffing.plan import IntervalPlan

__all__ = ["LivePlan"]

log = logging.getLogger("ccbridge.staffing")

Compute = Callable[[datetime], Awaitable[list[IntervalPlan]]]


class LivePlan:
    """The cached plan, its refresh task, and the current rows with live staffing."""

    def __init__(
        self,
        compute: Compute,
        now: Callable[[], datetime],
        staffed: Callable[[], Mapping[tuple[str, str], int]],
        *,
        refresh: float = 900.0,
        retry: float = 60.0,
    ) -> None:
        self._compute = compute
        self._now = now
        self._staffed = staffed
        self.refresh = refresh
        self.retry = retry
        self.rows: list[IntervalPlan] = []
        self.error: str | None = None  # why the last refresh gave no plan
        self.refreshes = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # a scrape found the kept plan over: refresh now

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="staffing-plan")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def refresh_once(self) -> bool:
        """Recompute the plan; False (the reason in ``error``, the rows emptied) when the
        records cannot give one: no history yet, or the store unreadable."""
        try:
            self.rows = await self._compute(self._now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a gauge must never take the bridge down
            if str(exc) != self.error:
                # A store without past weeks (a new deployment) is normal, not a fault.
                quiet = getattr(exc, "error_id", None) == "no-history"
                log.log(
                    logging.INFO if quiet else logging.WARNING, "staffing gauges: no plan: %s", exc
                )
            self.error = str(exc)
            self.rows = []
            return False
        self.error = None
        self.refreshes += 1
        return True

    async def _loop(self) -> None:
        while True:
            ok = await self.refresh_once()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh if ok else self.retry):
                    await self._wake.wait()

    def current(self) -> list[IntervalPlan]:
        """Each queue's row for the slot holding now, staffed by the agents logged in
        and not paused (what the gauges show)."""
        now = self._now()
        rows = current(self.rows, now)
        if self.rows and not rows and self.error is None:
            # The bridge keeps a few hours of the plan (services/staffing.PLAN_AHEAD):
            # a clock that moved on past them (or a late refresh) is asked for now, not
            # shown as no plan until the next refresh.
            self._wake.set()
        live = self._staffed()
        return [replace(r, staffed=live.get((r.key.site, r.key.queue), 0)) for r in rows]
