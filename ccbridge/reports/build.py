"""The interval and agent reports: run the queries per site, merge quarter hours into the
site's local buckets, mark the buckets a coverage gap touches, and compute the figures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.base import Executable

from ccbridge.config.model import Config
from ccbridge.reports import agentroll, queries
from ccbridge.reports.figures import (
    AGENT_FIGURES,
    QUEUE_FIGURES,
    QueueSums,
    agent_row,
)
from ccbridge.reports.intervals import Bucket, SlotIndex, buckets, slot_size
from ccbridge.reports.query import ReportQuery
from ccbridge.reports.rollup import raw_ranges, site_sums, slot_spans

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
    """Indexes of the buckets a coverage gap overlaps as of ``now`` (an open gap runs
    until now; a gap that began at or after now is not there yet: a report made at an
    instant, as the API's ``now`` or a test's, reads the same later)."""
    out: set[int] = set()
    for row in gap_rows:
        g_start, g_end = row.started_at, row.ended_at or now
        if g_start >= now:
            continue
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


def _assemble_agents(
    site: str,
    items: list[Bucket],
    size: int,
    call_rows: Sequence[Any],
    ring_rows: Sequence[Any],
    roll_rows: Sequence[Any],
    spans: Iterable[tuple[str, list[agentroll.Span]]],
    incomplete: set[int],
) -> list[dict[str, Any]]:
    # The bucket of each slot of ``size`` seconds: a dict, ~100,000 lookups a month.
    bucket: dict[int, int] = {}
    for n, b in enumerate(items):
        a, z = int(b.start.timestamp()) // size, int(b.end.timestamp()) // size
        bucket.update(dict.fromkeys(range(a, z), n))
    acc = agentroll.Sums()
    for row in roll_rows:  # slot, agent, *AGENT_ROLL_COLUMNS (the bulk of a month)
        i = bucket.get(row[0])
        if i is None:
            continue
        key = (i, row[1])
        got = acc.get(key)
        if got is None:
            acc[key] = list(row[2:])
        else:
            for k, x in enumerate(row[2:]):
                got[k] += x
    bounds = [agentroll.us(b.start_utc) for b in items] + [agentroll.us(items[-1].end_utc)]
    agentroll.add_raw(acc, bucket.get, call_rows, ring_rows, spans, bounds)
    starts = [b.start.isoformat() for b in items]
    ends = [b.end.isoformat() for b in items]
    return [
        agent_row(site, starts[i], ends[i], agent, i in incomplete, acc[(i, agent)])
        for i, agent in sorted(acc)
    ]


async def agent_report(
    engine: AsyncEngine, config: Config, q: ReportQuery, now: datetime, *, rollup: bool = True
) -> Report:
    """The agent report: per site (in its zone), bucket and agent.

    The days rolled with the current config (and ended by ``now``) are read from
    agent_rollup, the rest from calls and agent_activity rows; ``rollup=False`` reads
    raw rows only. Login time runs until ``now``, never into the future."""
    dialect = engine.dialect.name
    rows: list[dict[str, Any]] = []
    for site in q.sites:
        sums = site_sums(config, site)
        start, end = q.period.utc(sums.zone)
        items = buckets(start, end, sums.zone, q.step)
        size = slot_size(items)
        until = min(end, max(start, now.astimezone(UTC)))
        first: list[Executable] = [queries.gaps(site, start, end)]
        if rollup:
            first.append(queries.rolled_days(site, start, until, sums.fingerprint))
        gap_rows, *day_rows = await _all(engine, first)
        days = [(r.start_at, r.end_at) for r in day_rows[0] if r.end_at <= until] if rollup else []
        rolled = slot_spans(days, start, end)
        raw = raw_ranges(rolled, start, end)
        stmts: list[Executable] = []
        for a, b in raw:
            stmts += [
                queries.agent_call_sums(dialect, site, a, b, q.agent, size),
                queries.agent_ring_counts(dialect, site, a, b, q.agent, size),
                queries.agent_states(site, a, b, q.agent),
            ]
        if rolled:
            stmts.append(queries.agent_rollup_sums(site, rolled, q.agent, size))
        got = await _all(engine, stmts)
        raw_got = [got[3 * k : 3 * k + 3] for k in range(len(raw))]
        roll_rows = got[-1] if rolled else []
        rows += await asyncio.to_thread(
            _agents_in_thread,
            site,
            items,
            size,
            raw,
            raw_got,
            roll_rows,
            _touched(items, gap_rows, now),
            until,
        )
    return Report(AGENT_COLUMNS, rows)


def _agents_in_thread(
    site: str,
    items: list[Bucket],
    size: int,
    raw: list[tuple[datetime, datetime]],
    raw_got: list[list[Sequence[Any]]],
    roll_rows: Sequence[Any],
    incomplete: set[int],
    until: datetime,
) -> list[dict[str, Any]]:
    """The spans of each raw range (clipped to ``until``), then the rows."""
    call_rows = [r for got in raw_got for r in got[0]]
    ring_rows = [r for got in raw_got for r in got[1]]
    spans: list[tuple[str, list[agentroll.Span]]] = []
    stop = agentroll.us(until)
    for (a, b), got in zip(raw, raw_got, strict=True):
        lo, hi = agentroll.us(a), min(agentroll.us(b), stop)
        if hi > lo:
            spans += agentroll.state_spans(got[2], lo, hi).items()
    return _assemble_agents(site, items, size, call_rows, ring_rows, roll_rows, spans, incomplete)
