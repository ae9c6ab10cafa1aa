"""Arrivals history read from the records store: calls per queue and UTC quarter hour, gaps.

The interval report's own queries (ccbridge/reports/queries.py) per site and date range,
over ``calls (target_site, arrived_at)``: the database sums the offered calls (those that
queued), the answered ones and their handle seconds (talk + hold + wrap-up) per queue
and UTC quarter hour, and ``bucket_quarters`` turns those into local half hours (quarter
hours fit inside local half hours in every zone, so no time-zone support is needed in
SQL). So a slot's arrivals are the report's offered count for the same calls. Coverage
gaps come from ``coverage_gaps``: the slots they touch are incomplete, never zero demand.

A call counts where it queued: its ``target_site`` and ``queue`` (a call that entered at
bangalore and was answered at dhaka is demand for dhaka's queue), at its ``arrived_at``
(when it entered the first site), as Erlang C pairs arrivals with the site that takes
them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ccbridge.config.model import Config, QueueSettings, queue_name
from ccbridge.reports import queries
from ccbridge.staffing.bucket import QuarterSums, bucket_quarters
from ccbridge.staffing.history import MemoryHistory, Observation, QueueKey
from ccbridge.staffing.plan import Targets, offering_keys
from ccbridge.staffing.planning import PlanResult, check_weeks, holiday_days, make_plan
from ccbridge.staffing.slots import zone
from ccbridge.store.schema import calls

__all__ = [
    "HOLIDAY_LOOKBACK_DAYS",
    "StoreRead",
    "history_ranges",
    "plan_from_store",
    "read_store",
]

HOLIDAY_LOOKBACK_DAYS = 371  # past holidays are looked for over a year and a week
_DAY = timedelta(days=1)


def history_ranges(
    first: date, last: date, weeks: int, holiday_days: Iterable[date] = ()
) -> list[tuple[date, date]]:
    """The local date ranges a plan of ``first``..``last`` reads: the forecast window
    (``weeks`` weeks before ``first``), the planned days themselves (their recorded
    arrivals, shown beside the forecast), and each past holiday; merged."""
    spans = [(first - timedelta(days=7 * weeks), last)]
    spans += [(d, d) for d in holiday_days if d < first]
    spans.sort()
    out: list[tuple[date, date]] = []
    for a, b in spans:
        if out and a <= out[-1][1] + _DAY:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _utc_range(a: date, b: date) -> tuple[datetime, datetime]:
    """Instants covering local dates a..b in any zone (UTC-14..+14): a day's margin."""
    return (
        datetime.combine(a - _DAY, time(), UTC),
        datetime.combine(b + 2 * _DAY, time(), UTC),
    )


async def _spans(
    conn: AsyncConnection, keys: dict[tuple[str, str], QueueKey], tz: dict[str, str]
) -> dict[QueueKey, tuple[date, date]]:
    sites = sorted({s for s, _ in keys})
    rows = await conn.execute(
        select(
            calls.c.target_site,
            calls.c.queue,
            func.min(calls.c.arrived_at),
            func.max(calls.c.arrived_at),
        )
        .where(calls.c.target_site.in_(sites), calls.c.queued_at.is_not(None))
        .group_by(calls.c.target_site, calls.c.queue)
    )
    out: dict[QueueKey, tuple[date, date]] = {}
    row: Any
    for row in rows:
        site, queue, lo, hi = row
        key = keys.get((site, queue))
        if key is None or lo is None or hi is None:
            continue
        z = zone(tz[site])
        out[key] = (_as_utc(lo).astimezone(z).date(), _as_utc(hi).astimezone(z).date())
    return out


def _as_utc(t: datetime | str) -> datetime:
    # min()/max() over SQLite's text skip the column type's result processing
    v = datetime.fromisoformat(t) if isinstance(t, str) else t
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


async def _quarters(
    conn: AsyncConnection, site: str, start: datetime, end: datetime
) -> list[tuple[str, QuarterSums]]:
    """(queue, sums) per UTC quarter hour of the calls sent to ``site``: the interval
    report's own query (ccbridge/reports/queries.py), so a slot's arrivals are the
    report's offered calls (those that queued) and its handle time the report's AHT."""
    stmt = queries.queue_sums(
        conn.dialect.name, site, start, end, {}, QueueSettings().servicelevel, 0.0
    )
    out: list[tuple[str, QuarterSums]] = []
    row: Any
    for row in await conn.execute(stmt):
        m = row._mapping
        if m["queue"] is None or not m["offered"]:
            continue
        sums = QuarterSums(int(m["slot"]), int(m["offered"]), int(m["answered"]), m["handle_s"])
        out.append((m["queue"], sums))
    return out


async def _gaps(
    conn: AsyncConnection, site: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime | None]]:
    rows = await conn.execute(queries.gaps(site, start, end))
    return [(r[0], r[1]) for r in rows]


@dataclass(frozen=True, slots=True)
class StoreRead:
    """What the database gave for a set of queues and date ranges, before bucketing."""

    keys: dict[tuple[str, str], QueueKey]  # (site, queue) -> key
    tz: dict[str, str]
    spans: dict[QueueKey, tuple[date, date]]
    ranges: tuple[tuple[date, date], ...]
    quarters: tuple[dict[tuple[str, str], list[QuarterSums]], ...]  # per range
    gaps: tuple[dict[str, list[tuple[datetime, datetime | None]]], ...]  # per range

    def history(self, now: datetime) -> MemoryHistory:
        """The observations per local slot (pure: run it off the event loop for long
        ranges). Only keys with records get a span: an empty history is NoHistory."""
        rows: list[tuple[QueueKey, Observation]] = []
        for (a, b), per, gaps in zip(self.ranges, self.quarters, self.gaps, strict=True):
            for (site, queue), key in self.keys.items():
                obs = bucket_quarters(
                    self.tz[site], per.get((site, queue), ()), gaps.get(site, ()), a, b, now=now
                )
                rows += [(key, o) for o in obs]
        return MemoryHistory(rows, self.spans, only_spans=True)


async def read_store(
    engine: AsyncEngine,
    config: Config,
    keys: Iterable[QueueKey],
    ranges: Sequence[tuple[date, date]],
) -> StoreRead:
    """Read the sums of ``keys`` on the local dates of ``ranges`` (``history_ranges``)
    and each key's span (the first and last local dates it has records on)."""
    wanted = {(k.site, queue_name(k.service, k.language)): k for k in keys}
    names = {s for s, _ in wanted}
    tz = {s.name: s.timezone for s in config.sites if s.name in names}
    sites = sorted(tz)
    quarters: list[dict[tuple[str, str], list[QuarterSums]]] = []
    gaps: list[dict[str, list[tuple[datetime, datetime | None]]]] = []
    async with engine.connect() as conn:
        spans = await _spans(conn, wanted, tz)
        for a, b in ranges:
            start, end = _utc_range(a, b)
            per: dict[tuple[str, str], list[QuarterSums]] = {}
            site_gaps: dict[str, list[tuple[datetime, datetime | None]]] = {}
            for site in sites:
                for queue, qs in await _quarters(conn, site, start, end):
                    if (site, queue) in wanted:
                        per.setdefault((site, queue), []).append(qs)
                site_gaps[site] = await _gaps(conn, site, start, end)
            quarters.append(per)
            gaps.append(site_gaps)
    return StoreRead(wanted, tz, spans, tuple(ranges), tuple(quarters), tuple(gaps))


async def plan_from_store(
    engine: AsyncEngine,
    config: Config,
    days: list[date],
    targets: Targets,
    *,
    now: datetime,
    weeks: int = 8,
    staffed: Mapping[tuple[str, str], int] | None = None,
) -> PlanResult:
    """The plan of ``days`` from the records: the database is read on the event loop
    (asynchronously), the bucketing, forecast and Erlang C run in a thread, so a
    two-month plan never stalls the bridge. NoHistory: no records to plan from."""
    check_weeks(weeks)
    keys = offering_keys(config)
    # The holiday calendars of every country over the lookback are CPU work (about 50 ms
    # on the shared lab machine, which tripped the loop's 50 ms gate): a thread's.
    holidays = await asyncio.to_thread(holiday_days, config, days[0], HOLIDAY_LOOKBACK_DAYS)
    ranges = history_ranges(days[0], days[-1], weeks, holidays)
    read = await read_store(engine, config, keys, ranges)

    def compute() -> PlanResult:
        return make_plan(config, read.history(now), days, targets, weeks, staffed=staffed)

    return await asyncio.to_thread(compute)
