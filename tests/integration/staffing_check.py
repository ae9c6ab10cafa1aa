"""Issue 16 on the lab: the staffing plan read from real records counts, per local half
hour, exactly the calls the interval report offers (the scripted day calls this)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.config import Config
from ccbridge.reports.build import interval_report
from ccbridge.reports.intervals import Step
from ccbridge.reports.query import Period, ReportQuery
from ccbridge.staffing.plan import Targets
from ccbridge.staffing.planning import plan_days
from ccbridge.staffing.storehistory import plan_from_store


def _utc(v: Any) -> datetime:
    t = datetime.fromisoformat(v) if isinstance(v, str) else v
    assert isinstance(t, datetime) and t.tzinfo is not None, v
    return t.astimezone(UTC)


async def assert_staffing_arrivals_equal_offered(
    engine: AsyncEngine, config: Config, start: datetime, now: datetime
) -> dict[tuple[str, str, datetime], int]:
    """The plan of the dates around the run (what `ccbridge staffing` and GET
    /api/v1/staffing compute) against the 30-minute interval report of the same records:
    per (site, queue, half hour) the recorded arrivals equal the offered calls, and no
    half hour of the run touched a coverage gap. Returns the counts compared."""
    day = now.date()
    result = await plan_from_store(
        engine, config, plan_days(day - timedelta(days=1), day + timedelta(days=1)), Targets(),
        now=now,
    )  # fmt: skip
    arrivals = {
        (r.key.site, r.key.queue, r.utc_start): r.recorded
        for r in result.rows
        if r.recorded and r.utc_start is not None
    }
    assert all(r.recorded_complete for r in result.rows if r.recorded), "a gap in the run"
    sites = tuple(s.name for s in config.sites)
    query = ReportQuery(
        Period(start=start - timedelta(minutes=31), end=now + timedelta(minutes=31)),
        sites,
        Step.M30,
    )
    report = await interval_report(engine, config, query, now)
    offered = {
        (r["site"], r["queue"], _utc(r["interval_start"])): r["offered"]
        for r in report.rows
        if r["offered"]
    }
    assert arrivals == offered, (arrivals, offered)
    assert arrivals, "the run recorded no offered call"
    return arrivals
