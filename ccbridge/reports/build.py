"""The interval and agent reports: run the queries per site, merge quarter hours into the
site's local buckets, mark the buckets a coverage gap touches, and compute the figures."""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.base import Executable

from ccbridge.config.model import Config
from ccbridge.reports import queries
from ccbridge.reports.figures import AGENT_FIGURES, QUEUE_FIGURES, AgentSums, QueueSums
from ccbridge.reports.intervals import Bucket, SlotIndex, buckets, slot_size
from ccbridge.reports.query import ReportQuery
from ccbridge.reports.rollup import raw_ranges, site_sums, slot_spans
from ccbridge.store.schema import ActivityKind

INTERVAL_COLUMNS: tuple[str, ...] = (
    "site",
    "interval_start",
    "interval_end",
    "service",
    "language",
    "queue",
    "incomplete",
    *QUEUE_FIGURES,
)
AGENT_COLUMNS: tuple[str, ...] = (
    "site",
    "interval_start",
    "interval_end",
    "agent",
    "incomplete",
    *AGENT_FIGURES,
)


@dataclass(frozen=True, slots=True)
class Report:
    """A report as rows of named columns: the JSON rows and the CSV lines alike."""

    columns: tuple[str, ...]
    rows: list[dict[str, Any]]


Group = tuple[str | None, str | None, str | None]  # service, language, queue


async def _all(engine: AsyncEngine, statements: Sequence[Executable]) -> list[Sequence[Any]]:
    """Every statement's rows, each on its own connection at once: the engine (SQLite's
    reader threads, PostgreSQL's backends) runs them on as many cores as it has."""

    async def one(stmt: Executable) -> Sequence[Any]:
        async with engine.connect() as conn:
            return (await conn.execute(stmt)).all()

    return list(await asyncio.gather(*(one(s) for s in statements)))


def _halves(items: list[Bucket], start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at the bucket boundary nearest its middle (one piece if a single
    bucket): the big grouped query runs as two at once."""
    if len(items) < 2:
        return [(start, end)]
    mid = items[len(items) // 2].start_utc
    return [(start, mid), (mid, end)]


def _touched(items: Sequence[Bucket], gap_rows: Iterable[Any], now: datetime) -> set[int]:
    """Indexes of the buckets a coverage gap overlaps (an open gap runs until now)."""
    out: set[int] = set()
    for row in gap_rows:
        g_start, g_end = row.started_at, row.ended_at or now
        for i, b in enumerate(items):
            if g_start < b.end_utc and g_end > b.start_utc:
                out.add(i)
    return out


def _assemble_queue(
    site: str,
    items: list[Bucket],
    size: int,
    sums_rows: Sequence[Any],
    entry_rows: Sequence[Any],
    incomplete: set[int],
    by_site: bool,
) -> list[dict[str, Any]]:
    index = SlotIndex(items, size)
    per: list[dict[Group, QueueSums]] = [{} for _ in items]
    everything: Group = (None, None, None)
    for row in sums_rows:  # slot, service, language, queue, *SUM_COLUMNS
        i = index(int(row[0]))
        if i is None:
            continue
        key: Group = everything if by_site else (row[1], row[2], row[3])
        got = per[i].get(key)
        if got is None:
            got = per[i][key] = QueueSums()
        got.add_row(row[4:])
    for row in entry_rows:  # slot, service, language, queue, sent_away, n, *SUM_COLUMNS
        i = index(int(row[0]))
        if i is None:
            continue
        key = everything if by_site else (row[1], row[2], row[3])
        got = per[i].get(key)
        if got is None:
            got = per[i][key] = QueueSums()
        if row[4]:
            got.overflowed_out += int(row[5])
        else:
            got.add_row(row[6:])
    out: list[dict[str, Any]] = []
    unknown = dict.fromkeys(QUEUE_FIGURES)
    for i, b in enumerate(items):
        start, end, gap = b.start.isoformat(), b.end.isoformat(), i in incomplete
        groups = per[i]
        if not groups:
            # No call seen: zeros when the site was watched, unknown during a gap.
            figures = unknown if gap else QueueSums().figures()
            groups_out: list[tuple[Group, dict[str, Any]]] = [(everything, figures)]
        else:
            groups_out = [
                (k, groups[k].figures())
                for k in sorted(groups, key=lambda k: (k[0] or "", k[1] or "", k[2] or ""))
            ]
        for (service, language, queue), figures in groups_out:
            row_out = {
                "site": site,
                "interval_start": start,
                "interval_end": end,
                "service": service,
                "language": language,
                "queue": queue,
                "incomplete": gap,
            }
            row_out.update(figures)
            out.append(row_out)
    return out


async def interval_report(
    engine: AsyncEngine, config: Config, q: ReportQuery, now: datetime, *, rollup: bool = True
) -> Report:
    """The interval report: per site (in its zone), bucket, service, language and queue.

    The days rolled up with the current config (ccbridge/reports/rollup.py) are read
    from the rollup, the rest from calls rows; ``rollup=False`` reads raw rows only."""
    dialect = engine.dialect.name
    rows: list[dict[str, Any]] = []
    for site in q.sites:
        sums = site_sums(config, site)
        start, end = q.period.utc(sums.zone)
        items = buckets(start, end, sums.zone, q.step)  # IntervalError: the caller says 400
        size = slot_size(items)
        kw: dict[str, Any] = {
            "size": size,
            "service": q.service,
            "language": q.language,
            "queue": q.queue,
        }
        first: list[Executable] = [queries.gaps(site, start, end)]
        if rollup:
            first.append(queries.rolled_days(site, start, end, sums.fingerprint))
        gap_rows, *day_rows = await _all(engine, first)
        spans = (
            slot_spans(((r.start_at, r.end_at) for r in day_rows[0]), start, end) if rollup else []
        )
        raw = raw_ranges(spans, start, end)
        # The big grouped query of an unrolled range runs as two halves at once.
        pieces = _halves(items, start, end) if raw == [(start, end)] else raw
        args = (sums.thresholds, sums.default_threshold, sums.short_abandon_s)
        stmts: list[Executable] = [
            queries.queue_sums(dialect, site, a, b, *args, **kw) for a, b in pieces
        ]
        stmts += [queries.entry_sums(dialect, site, a, b, *args, **kw) for a, b in raw]
        if spans:
            stmts.append(queries.rollup_sums(site, spans, **kw))
        got = await _all(engine, stmts)
        sums_rows = [r for part in got[: len(pieces)] for r in part]
        entry_rows = [r for part in got[len(pieces) :] for r in part]
        incomplete = _touched(items, gap_rows, now)
        rows += await asyncio.to_thread(
            _assemble_queue, site, items, size, sums_rows, entry_rows, incomplete, q.by == "site"
        )
    return Report(INTERVAL_COLUMNS, rows)


# -- agents ------------------------------------------------------------------------

_ORDER = {
    ActivityKind.LOGIN.value: 0,
    ActivityKind.UNPAUSE.value: 1,
    ActivityKind.PAUSE.value: 2,
    ActivityKind.LOGOUT.value: 3,
}


def _spans(
    states: Sequence[Any], start: datetime, end: datetime
) -> dict[str, list[tuple[float, float, bool]]]:
    """Per agent, the spans [from, to) (epoch seconds) it was logged in to some queue,
    each with whether it was paused (paused in every queue it was logged in to)."""
    by_agent: dict[str, list[tuple[float, int, str, str]]] = {}
    s0 = start.timestamp()
    for r in states:
        t = max(r.at.timestamp(), s0)  # the last state before the range opens it
        by_agent.setdefault(r.agent, []).append((t, _ORDER.get(r.kind, 9), r.queue, r.kind))
    e = end.timestamp()
    out: dict[str, list[tuple[float, float, bool]]] = {}
    for agent, evs in by_agent.items():
        evs.sort()
        member: dict[str, bool] = {}  # queue -> paused
        spans: list[tuple[float, float, bool]] = []
        t_prev = s0
        for t, _, queue, kind in evs:
            if t > t_prev and member:
                spans.append((t_prev, t, all(member.values())))
            t_prev = max(t_prev, t)
            if kind == ActivityKind.LOGIN.value:
                member[queue] = False
            elif kind == ActivityKind.LOGOUT.value:
                member.pop(queue, None)
            elif queue in member:
                member[queue] = kind == ActivityKind.PAUSE.value
        if member and e > t_prev:
            spans.append((t_prev, e, all(member.values())))
        out[agent] = spans
    return out


def _spread(lo: float, hi: float, bounds: list[float]) -> Iterable[tuple[int, float]]:
    """(bucket index, seconds) of the span [lo, hi) over buckets bounded by ``bounds``."""
    i = max(0, bisect_right(bounds, lo) - 1)
    while i < len(bounds) - 1 and bounds[i] < hi:
        seconds = min(hi, bounds[i + 1]) - max(lo, bounds[i])
        if seconds > 0:
            yield i, seconds
        i += 1


def _assemble_agents(
    site: str,
    items: list[Bucket],
    size: int,
    call_rows: Sequence[Any],
    ring_rows: Sequence[Any],
    state_rows: Sequence[Any],
    incomplete: set[int],
    start: datetime,
    until: datetime,
) -> list[dict[str, Any]]:
    index = SlotIndex(items, size)
    per: list[dict[str, AgentSums]] = [{} for _ in items]
    for row in call_rows:  # slot, agent, answered, talk, hold, wrap-up, score sum, scores
        i = index(int(row[0]))
        if i is None:
            continue
        s = per[i].get(row[1])
        if s is None:
            s = per[i][row[1]] = AgentSums()
        s.answered += int(row[2])
        s.talk_s += float(row[3])
        s.hold_s += float(row[4])
        s.wrapup_s += float(row[5])
        s.satisfaction_sum += int(row[6])
        s.satisfaction_count += int(row[7])
    called = ActivityKind.CALLED.value
    for row in ring_rows:  # slot, agent, kind, n
        i = index(int(row[0]))
        if i is None:
            continue
        s = per[i].get(row[1])
        if s is None:
            s = per[i][row[1]] = AgentSums()
        if row[2] == called:
            s.offered += int(row[3])
        else:
            s.ring_no_answer += int(row[3])
    bounds = [b.start_utc.timestamp() for b in items] + [items[-1].end_utc.timestamp()]
    for agent, spans in _spans(state_rows, start, until).items():
        for lo, hi, paused in spans:
            for i, seconds in _spread(lo, hi, bounds):
                s = per[i].setdefault(agent, AgentSums())
                s.login_s += seconds
                if paused:
                    s.pause_s += seconds
    out: list[dict[str, Any]] = []
    for i, b in enumerate(items):
        for agent in sorted(per[i]):
            out.append(
                {
                    "site": site,
                    "interval_start": b.start.isoformat(),
                    "interval_end": b.end.isoformat(),
                    "agent": agent,
                    "incomplete": i in incomplete,
                    **per[i][agent].figures(),
                }
            )
    return out


async def agent_report(
    engine: AsyncEngine, config: Config, q: ReportQuery, now: datetime
) -> Report:
    """The agent report: per site (in its zone), bucket and agent."""
    dialect = engine.dialect.name
    rows: list[dict[str, Any]] = []
    for site in q.sites:
        zone = ZoneInfo(config.site(site).timezone)
        start, end = q.period.utc(zone)
        items = buckets(start, end, zone, q.step)
        size = slot_size(items)
        call_rows, ring_rows, state_rows, gap_rows = await _all(
            engine,
            [
                queries.agent_call_sums(dialect, site, start, end, q.agent, size),
                queries.agent_ring_counts(dialect, site, start, end, q.agent, size),
                queries.agent_states(site, start, end, q.agent),
                queries.gaps(site, start, end),
            ],
        )
        incomplete = _touched(items, gap_rows, now)
        # Login time runs until now, never into the future.
        until = min(end, max(start, now.astimezone(UTC)))
        rows += await asyncio.to_thread(
            _assemble_agents,
            site,
            items,
            size,
            call_rows,
            ring_rows,
            state_rows,
            incomplete,
            start,
            until,
        )
    return Report(AGENT_COLUMNS, rows)
