"""LivePlan: the bridge's few hours of the staffing plan, refreshed at once when a scrape
finds them over (a clock moved past them), not shown as no plan until the next refresh."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ccbridge.staffing.plan import IntervalPlan, QueueKey
from ccbridge.staffing.refresher import LivePlan
from tests.polling import until

MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)


def slot(start: datetime) -> IntervalPlan:
    return IntervalPlan(
        QueueKey("dhaka", "orders", "bn"), start.isoformat(), start, 1800, True,
        1.0, "history", 180.0, 1, 2, 0, 0.9, 0.0, "ok",
    )  # fmt: skip


def test_a_clock_past_the_kept_hours_refreshes_the_plan_at_once() -> None:
    async def run() -> None:
        clock = [MORNING]
        asked: list[datetime] = []

        async def compute(now: datetime) -> list[IntervalPlan]:
            asked.append(now)  # two hours of half-hour slots from now, as the bridge keeps
            return [slot(now + timedelta(minutes=30 * i)) for i in range(4)]

        plan = LivePlan(compute, lambda: clock[0], dict, refresh=900.0)
        await plan.start()
        try:
            await until(lambda: plan.refreshes == 1, 5, "the first plan")
            assert [r.utc_start for r in plan.current()] == [MORNING]
            clock[0] = MORNING + timedelta(hours=12)  # the evening: none of the kept slots
            assert plan.current() == []  # this scrape asks for the plan...
            await until(lambda: plan.refreshes == 2, 5, "a refresh before the 15-min one")
            assert [r.utc_start for r in plan.current()] == [clock[0]]  # ...the next has it
            assert asked == [MORNING, clock[0]]
        finally:
            await plan.stop()

    asyncio.run(run())
