"""The agent report's time figures: login and pause spans from the state changes, in whole
microseconds, spread over buckets; and a rolled day's sums per UTC quarter hour and agent
(the rows of agent_rollup, migration 0008)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ccbridge.reports import queries
from ccbridge.reports.figures import agent_zero
from ccbridge.reports.intervals import SLOT_S
from ccbridge.store.schema import ActivityKind, agent_rollup

US = 1_000_000  # login and pause time are kept in whole microseconds: sums are exact
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_ORDER = {
    ActivityKind.LOGIN.value: 0,
    ActivityKind.UNPAUSE.value: 1,
    ActivityKind.PAUSE.value: 2,
    ActivityKind.LOGOUT.value: 3,
}

Span = tuple[int, int, bool]  # [from, to) in epoch microseconds, paused


def us(at: datetime) -> int:
    """An instant as whole epoch microseconds (exact, unlike a float timestamp)."""
    return (at - _EPOCH) // _ONE_US


def state_spans(states: Iterable[Any], start: int, end: int) -> dict[str, list[Span]]:
    """Per agent, the spans within [start, end) (epoch microseconds) it was logged in to
    some queue, each with whether it was paused (paused in every queue it was logged in
    to). ``states``: queries.agent_states' rows for a range starting at ``start``: the
    last change of each kind before it, then every change inside it.

    The changes before ``start`` are replayed in their own time order (then clipped to
    ``start``): an agent who logged out yesterday and in again this morning is logged in
    at ``start``, whatever order the kinds sort in."""
    by_agent: dict[str, list[tuple[int, int, int, str, str]]] = {}
    for r in states:
        at = us(r.at)
        t = max(at, start)
        by_agent.setdefault(r.agent, []).append((t, at, _ORDER.get(r.kind, 9), r.queue, r.kind))
    login, logout, pause = (
        ActivityKind.LOGIN.value,
        ActivityKind.LOGOUT.value,
        ActivityKind.PAUSE.value,
    )
    out: dict[str, list[Span]] = {}
    for agent, evs in by_agent.items():
        evs.sort()
        member: dict[str, bool] = {}  # queue -> paused
        spans: list[Span] = []
        t_prev = start
        for t, _, _, queue, kind in evs:
            if t > t_prev and member:
                spans.append((t_prev, min(t, end), all(member.values())))
            t_prev = max(t_prev, t)
            if t_prev >= end:
                break
            if kind == login:
                member[queue] = False
            elif kind == logout:
                member.pop(queue, None)
            elif queue in member:
                member[queue] = kind == pause
        if member and end > t_prev:
            spans.append((t_prev, end, all(member.values())))
        out[agent] = spans
    return out


def spread(lo: int, hi: int, bounds: Sequence[int]) -> Iterable[tuple[int, int]]:
    """(bucket index, microseconds) of the span [lo, hi) over buckets bounded by
    ``bounds`` (ascending; bucket i is [bounds[i], bounds[i + 1]))."""
    i = max(0, bisect_right(bounds, lo) - 1)
    last = len(bounds) - 1
    while i < last and bounds[i] < hi:
        part = min(hi, bounds[i + 1]) - max(lo, bounds[i])
        if part > 0:
            yield i, part
        i += 1


ROLL_COLUMNS = queries.AGENT_ROLL_COLUMNS


class Sums(dict[tuple[int, str], list[Any]]):
    """The sums of each (bucket index, agent), made (agent_zero) on first use."""

    def __missing__(self, key: tuple[int, str]) -> list[Any]:
        got = self[key] = agent_zero()
        return got


def add_raw(
    sums: Sums,
    bucket: Callable[[int], int | None],
    call_rows: Iterable[Any],
    ring_rows: Iterable[Any],
    spans: Iterable[tuple[str, list[Span]]],
    bounds: Sequence[int],
) -> None:
    """Add raw rows to ``sums``: queries.agent_call_sums' and agent_ring_counts' rows,
    their slot placed
    by ``bucket`` (None: outside), and login spans spread over buckets bounded by
    ``bounds`` (epoch microseconds)."""
    for r in call_rows:  # slot, agent, answered, talk, hold, wrap-up, score sum, scores
        i = bucket(int(r[0]))
        if i is None:
            continue
        v = sums[(i, r[1])]
        v[1] += int(r[2])
        v[3] += float(r[3])
        v[4] += float(r[4])
        v[5] += float(r[5])
        v[8] += int(r[6])
        v[9] += int(r[7])
    called = ActivityKind.CALLED.value
    for r in ring_rows:  # slot, agent, kind, n
        i = bucket(int(r[0]))
        if i is not None:
            sums[(i, r[1])][0 if r[2] == called else 2] += int(r[3])
    for agent, agent_spans in spans:
        for lo, hi, paused in agent_spans:
            for i, part in spread(lo, hi, bounds):
                v = sums[(i, agent)]
                v[6] += part
                if paused:
                    v[7] += part


def slot_rows(
    site: str,
    call_rows: Iterable[Any],
    ring_rows: Iterable[Any],
    state_rows: Iterable[Any],
    start: datetime,
    end: datetime,
) -> list[dict[str, Any]]:
    """agent_rollup's rows for a site's [start, end) (whole quarter hours): one per
    (quarter hour, agent) with anything in it, from the report's own queries' rows
    (queries.agent_call_sums and agent_ring_counts by quarter hour, agent_states)."""
    per = Sums()
    s0, e0 = us(start), us(end)
    first = s0 // (SLOT_S * US)
    n = (e0 - s0) // (SLOT_S * US)

    def bucket(slot: int) -> int | None:  # quarter hour i of the range
        return slot - first if 0 <= slot - first < n else None

    bounds = list(range(s0, e0 + 1, SLOT_S * US))
    spans = state_spans(state_rows, s0, e0).items()
    add_raw(per, bucket, call_rows, ring_rows, spans, bounds)
    return [
        {"site": site, "slot": first + i, "agent": agent, **dict(zip(ROLL_COLUMNS, v, strict=True))}
        for (i, agent), v in sorted(per.items())
    ]


async def roll_agents(conn: AsyncConnection, site: str, start: datetime, end: datetime) -> int:
    """Replace agent_rollup's rows of a site's [start, end) (a local day) by its sums, on
    ``conn`` (the roll's transaction); the rows written."""
    d = conn.dialect.name
    call_rows = (await conn.execute(queries.agent_call_sums(d, site, start, end, None))).all()
    ring_rows = (await conn.execute(queries.agent_ring_counts(d, site, start, end, None))).all()
    state_rows = (await conn.execute(queries.agent_states(site, start, end, None))).all()
    rows = slot_rows(site, call_rows, ring_rows, state_rows, start, end)
    r = agent_rollup.c
    await conn.execute(
        delete(agent_rollup).where(
            r.site == site,
            r.slot >= int(start.timestamp()) // SLOT_S,
            r.slot < int(end.timestamp()) // SLOT_S,
        )
    )
    if rows:
        await conn.execute(insert(agent_rollup), rows)
    return len(rows)
