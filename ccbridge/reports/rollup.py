"""The interval report's quarter-hour rollup: the sums of every closed local day of a site,
kept so a month's report reads ~3,000 rows a site-day fewer than ~6,000 calls each time.

A day is rolled once it is closed: its local midnight is ``records.rollup_grace`` past
and no coverage gap of the site is still open (its calls may still come in). Rolling is
one INSERT ... SELECT per (site, day) with the report's own sums (queries.rollup_select),
in one transaction that first deletes whatever the day had: rolling again is
idempotent. Each day row records the config fingerprint its sums depend on (the site's
zone, every queue's service-level threshold, ``short_abandon_s``); a report uses the
rollup of the days whose fingerprint is today's and raw rows for everything else, so it
gives the same figures as raw rows alone.

Exact under late records: a trigger on ``calls`` (migration 0007) deletes the day row of
every rolled day a written call arrived in, so a report reads that day raw until the
next roll. The roll itself holds off those writes while it reads: PostgreSQL by a
SHARE ROW EXCLUSIVE lock on report_rollup_days (the trigger's DELETE waits for it, then
deletes the fresh row), SQLite because its first statement is a write (one writer at a
time); so no call written during a roll is both missed by it and left marked rolled.

The agent report's rollup (agent_rollup, ccbridge/reports/agentroll.py) is rolled in
the same transaction, for the same days: per UTC quarter hour and agent, the answered
calls by their answer, the rings, and the login and pause time clipped to the quarter
hour (a closed day's spans are clippable: the state at its start is the last change
before it). Its triggers (migration 0008) make the day of a late call's answer raw, and
for a late login, logout, pause or unpause every later rolled day of the site too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Executable, bindparam, delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.config.model import Config, QueueSettings
from ccbridge.queueindex import queue_index
from ccbridge.reports import queries
from ccbridge.reports.agentroll import roll_agents
from ccbridge.reports.intervals import SLOT_S, day_range, local_midnight
from ccbridge.store.schema import (
    UtcDateTime,
    coverage_gaps,
    report_rollup,
    report_rollup_days,
)

log = logging.getLogger("ccbridge.reports.rollup")

JOB_NAME = "rollup"  # its name among the once-only jobs (store/cluster.py run_once)
# Bumped when what a rollup row holds changes: every day is then rolled again.
# 2: the agent rollup (migration 0008) rolls with the interval rollup.
VERSION = 2
MAX_DAYS_BACK = 400  # with records kept for ever, days further back stay raw
PER_ROUND = 200  # site-days one round rolls (the newest first): a round stays short


@dataclass(frozen=True, slots=True)
class SiteSums:
    """What a site's interval sums depend on besides the calls."""

    site: str
    zone: ZoneInfo
    thresholds: dict[str, int]  # queue -> service-level threshold (seconds)
    default_threshold: int
    short_abandon_s: float

    @property
    def fingerprint(self) -> str:
        doc = {
            "v": VERSION,
            "zone": self.zone.key,
            "sl": sorted(self.thresholds.items()),
            "default_sl": self.default_threshold,
            "short": self.short_abandon_s,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def site_sums(config: Config, site: str) -> SiteSums:
    index = queue_index(config)
    return SiteSums(
        site,
        ZoneInfo(config.site(site).timezone),
        {qn: info.servicelevel for (s, qn), info in index.items() if s == site},
        QueueSettings().servicelevel,
        config.records.short_abandon_s,
    )


def slot_spans(
    days: Iterable[tuple[datetime, datetime]], start: datetime, end: datetime
) -> list[tuple[int, int]]:
    """The rolled days clipped to [start, end), merged, as UTC quarter-hour numbers [a, b)."""
    lo, hi = int(start.timestamp()) // SLOT_S, int(end.timestamp()) // SLOT_S
    spans = sorted(
        (max(lo, int(a.timestamp()) // SLOT_S), min(hi, int(b.timestamp()) // SLOT_S))
        for a, b in days
    )
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if a >= b:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def raw_ranges(
    spans: list[tuple[int, int]], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """[start, end) less the rolled spans: what a report still sums from calls rows."""
    out: list[tuple[datetime, datetime]] = []
    at = start
    for a, b in spans:
        a_t = datetime.fromtimestamp(a * SLOT_S, UTC)
        if a_t > at:
            out.append((at, a_t))
        at = max(at, datetime.fromtimestamp(b * SLOT_S, UTC))
    if at < end:
        out.append((at, end))
    return out


def rollup_insert(dialect: str, sums: SiteSums) -> Executable:
    """INSERT INTO report_rollup SELECT the sums of a site's calls in [:lo, :hi).
    Built once a round per site: building the sums' expressions costs more than running
    them on a day's calls."""
    stmt = queries.rollup_select(
        dialect,
        sums.site,
        bindparam("lo", type_=UtcDateTime),
        bindparam("hi", type_=UtcDateTime),
        sums.thresholds,
        sums.default_threshold,
        sums.short_abandon_s,
    )
    return insert(report_rollup).from_select(queries.ROLLUP_COLUMNS, stmt)


async def roll_day(
    engine: AsyncEngine,
    sums: SiteSums,
    day: date,
    now: datetime,
    stmt: Executable | None = None,
) -> None:
    """Roll one local day of a site (again): one transaction, idempotent. ``stmt``:
    rollup_insert's statement for the site, if the caller built it already."""
    start, end = day_range(day, day, sums.zone)
    d, r = report_rollup_days.c, report_rollup.c
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # The calls trigger's DELETE waits for this lock: no call written while this
            # day is read is lost (see the module's docstring).
            await conn.execute(text("LOCK TABLE report_rollup_days IN SHARE ROW EXCLUSIVE MODE"))
        # Every day row this day's span overlaps goes (a day of another zone too: its
        # rows in the span are replaced below), the first statement a write (SQLite).
        await conn.execute(
            delete(report_rollup_days).where(
                d.site == sums.site, d.start_at < end, d.end_at > start
            )
        )
        await conn.execute(
            delete(report_rollup).where(
                r.site == sums.site,
                r.slot >= int(start.timestamp()) // SLOT_S,
                r.slot < int(end.timestamp()) // SLOT_S,
            )
        )
        if stmt is None:
            stmt = rollup_insert(conn.dialect.name, sums)
        await conn.execute(stmt, {"lo": start, "hi": end})
        await roll_agents(conn, sums.site, start, end)
        await conn.execute(
            insert(report_rollup_days).values(
                site=sums.site,
                day=day.isoformat(),
                zone=sums.zone.key,
                start_at=start,
                end_at=end,
                fingerprint=sums.fingerprint,
                rolled_at=now,
            )
        )


def last_closed(zone: ZoneInfo, now: datetime, grace: float) -> date:
    """The newest local day that ended at least ``grace`` seconds before ``now``."""
    day = now.astimezone(zone).date()
    while local_midnight(day + timedelta(days=1), zone) + timedelta(seconds=grace) > now:
        day -= timedelta(days=1)
    return day


@dataclass(slots=True)
class Rolled:
    """One round: the site-days rolled, and those left for the next round."""

    days: dict[str, int] = field(default_factory=dict)  # site -> days rolled
    left: int = 0

    @property
    def total(self) -> int:
        return sum(self.days.values())


async def _todo(engine: AsyncEngine, sums: SiteSums, first: date, last: date) -> list[date]:
    """The days of [first, last] not rolled with today's fingerprint and not touched by
    an open coverage gap, newest first."""
    d, g = report_rollup_days.c, coverage_gaps.c
    async with engine.connect() as conn:
        done: set[str] = set(
            (
                await conn.execute(
                    select(d.day).where(
                        d.site == sums.site,
                        d.fingerprint == sums.fingerprint,
                        d.day >= first.isoformat(),
                        d.day <= last.isoformat(),
                    )
                )
            )
            .scalars()
            .all()
        )
        open_since = (
            await conn.execute(
                select(g.started_at)
                .where(g.site == sums.site, g.ended_at.is_(None))
                .order_by(g.started_at)
                .limit(1)
            )
        ).scalar()
    out: list[date] = []
    day = last
    while day >= first:
        if day.isoformat() not in done:
            _, end = day_range(day, day, sums.zone)
            if open_since is None or end <= open_since:
                out.append(day)
        day -= timedelta(days=1)
    return out


async def roll(
    engine: AsyncEngine,
    config: Config,
    now: datetime,
    *,
    limit: int | None = PER_ROUND,
    sites: Iterable[str] | None = None,
    since: date | None = None,
) -> Rolled:
    """The roll job's one entry point: roll the closed days not yet rolled (or rolled
    with another fingerprint) of every site (or of ``sites``), the newest first, at most
    ``limit``, none before the local date ``since`` nor the retention cutoff."""
    keep = config.records.retention_days
    back = min(keep, MAX_DAYS_BACK) if keep > 0 else MAX_DAYS_BACK
    grace = config.records.rollup_grace
    todo: list[tuple[date, SiteSums]] = []
    for name in sites if sites is not None else [s.name for s in config.sites]:
        sums = site_sums(config, name)
        last = last_closed(sums.zone, now, grace)
        first = last - timedelta(days=back - 1)
        if keep > 0:
            # A day that began before the retention cutoff is partly purged: left raw.
            cutoff = (now - timedelta(days=keep)).astimezone(sums.zone).date()
            first = max(first, cutoff + timedelta(days=1))
        if since is not None:
            first = max(first, since)
        todo += [(day, sums) for day in await _todo(engine, sums, first, last)]
    todo.sort(key=lambda t: t[0], reverse=True)
    chosen = todo if limit is None else todo[:limit]
    out = Rolled(left=len(todo) - len(chosen))
    stmts: dict[str, Executable] = {}
    for day, sums in chosen:
        stmt = stmts.get(sums.site)
        if stmt is None:
            stmt = stmts[sums.site] = rollup_insert(engine.dialect.name, sums)
        await roll_day(engine, sums, day, now, stmt)
        out.days[sums.site] = out.days.get(sums.site, 0) + 1
    return out


@dataclass(frozen=True, slots=True)
class Round:
    """What one round of the roll job did: ``ran`` False when another bridge held the
    job's lock or rolled less than half an interval ago."""

    ran: bool
    rolled: Rolled


async def roll_round(
    engine: AsyncEngine,
    config: Config,
    now: datetime,
    bridge: str,
    every: float,
    limit: int | None = PER_ROUND,
) -> Round:
    """One round as the bridge and ``ccbridge records rollup`` run it: through
    store/cluster.py run_once (on PostgreSQL an advisory lock: N bridges roll once), on
    a schema this code knows."""
    from ccbridge.cluster import wall_now
    from ccbridge.store.cluster import run_once
    from ccbridge.store.readcheck import ensure_current

    await ensure_current(engine)
    ran, got = await run_once(
        engine, JOB_NAME, every, wall_now, bridge, lambda: roll(engine, config, now, limit=limit)
    )
    return Round(ran, got if got is not None else Rolled())
