"""The reports' SQL (SQLAlchemy Core): sums per UTC quarter hour, read over the indexes.

Each statement names the index it is written for (see ccbridge/store/schema.py); the
bench (tests/bench/bench_reports.py) prints the engines' query plans to prove it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    or_,
    select,
    union_all,
)

from ccbridge.reports.intervals import SLOT_S
from ccbridge.store.schema import ActivityKind, Outcome, agent_activity, calls, coverage_gaps

ABANDONS = (Outcome.ABANDONED.value, Outcome.SHORT_ABANDON.value)
AFTER_HOURS = (
    Outcome.AFTER_HOURS_VOICEMAIL.value,
    Outcome.AFTER_HOURS_CALLBACK.value,
    Outcome.CLOSED.value,
)
STATE_KINDS = (
    ActivityKind.LOGIN.value,
    ActivityKind.LOGOUT.value,
    ActivityKind.PAUSE.value,
    ActivityKind.UNPAUSE.value,
)
# An agent's call is found by its arrival (the index), counted at its answer: a call
# answered inside the range arrived at most this long before it.
ANSWER_LOOKBACK = timedelta(hours=2)


def slot(dialect: str, col: Any) -> ColumnElement[int]:
    """The UTC quarter hour of a timestamp column, as an integer, on either engine."""
    if dialect == "sqlite":
        # UtcDateTime keeps UTC text on SQLite: strftime('%s') reads it as UTC.
        return cast(func.strftime("%s", col), Integer).op("/")(SLOT_S)  # integer division
    return cast(func.floor(extract("epoch", col) / SLOT_S), BigInteger)


def _count(cond: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _z(col: Any) -> ColumnElement[Any]:
    return func.coalesce(col, 0.0)


def queue_sums(
    dialect: str,
    site: str,
    start: datetime,
    end: datetime,
    thresholds: Mapping[str, int],
    default_threshold: int,
    short_abandon_s: float,
    *,
    service: str | None = None,
    language: str | None = None,
    queue: str | None = None,
) -> Select[Any]:
    """Sums per (slot, service, language, queue) of the calls a site handled: sent to it
    (``target_site``; index calls(target_site, arrived_at)) or, with no target (closed,
    rejected), entered at it (index calls(entry_site, arrived_at))."""
    c = calls.c
    ranged = [c.arrived_at >= start, c.arrived_at < end]
    if service is not None:
        ranged.append(c.service == service)
    if language is not None:
        ranged.append(c.language == language)
    if queue is not None:
        ranged.append(c.queue == queue)
    cols = [
        c.entry_site,
        c.target_site,
        c.service,
        c.language,
        c.queue,
        c.arrived_at,
        c.queued_at,
        c.outcome,
        c.wait_s,
        c.talk_s,
        c.hold_s,
        c.wrapup_s,
        c.after_hours_action,
        c.static_fallback,
        c.satisfaction,
    ]
    handled = union_all(
        select(*cols).where(c.target_site == site, *ranged),
        select(*cols).where(c.target_site.is_(None), c.entry_site == site, *ranged),
    ).subquery("handled")
    h = handled.c
    sl: ColumnElement[Any] = (
        case(dict(thresholds), value=h.queue, else_=default_threshold)
        if thresholds
        else literal(default_threshold)
    )
    wait = _z(h.wait_s)
    answered = h.outcome == Outcome.ANSWERED.value
    abandoned = h.outcome.in_(ABANDONS)
    queued = h.queued_at.is_not(None)
    s = slot(dialect, h.arrived_at).label("slot")
    return select(
        s,
        h.service,
        h.language,
        h.queue,
        _count(queued).label("offered"),
        _count(answered).label("answered"),
        _count(and_(answered, wait <= sl)).label("answered_within_sl"),
        _count(abandoned).label("abandoned"),
        _count(and_(abandoned, wait < short_abandon_s)).label("short_abandons"),
        _count(and_(abandoned, wait >= short_abandon_s, wait <= sl)).label("abandoned_within_sl"),
        _count(h.outcome == Outcome.TIMEOUT.value).label("timed_out"),
        func.coalesce(func.sum(case((answered, wait), else_=0.0)), 0.0).label("answered_wait_s"),
        func.coalesce(
            func.sum(case((answered, _z(h.talk_s) + _z(h.hold_s) + _z(h.wrapup_s)), else_=0.0)),
            0.0,
        ).label("handle_s"),
        func.max(case((queued, h.wait_s), else_=None)).label("longest_wait_s"),
        _count(and_(h.target_site == site, h.entry_site != site)).label("overflowed_in"),
        _count(or_(h.outcome.in_(AFTER_HOURS), h.after_hours_action.is_not(None))).label(
            "after_hours"
        ),
        _count(h.static_fallback.is_(True)).label("fallback_routed"),
        func.coalesce(func.sum(h.satisfaction), 0).label("satisfaction_sum"),
        func.count(h.satisfaction).label("satisfaction_count"),
    ).group_by(s, h.service, h.language, h.queue)


def overflow_out(
    dialect: str,
    site: str,
    start: datetime,
    end: datetime,
    *,
    service: str | None = None,
    language: str | None = None,
    queue: str | None = None,
) -> Select[Any]:
    """Calls that entered at ``site`` and were sent to another site, per slot and queue
    (index calls(entry_site, arrived_at))."""
    c = calls.c
    where = [
        c.entry_site == site,
        c.arrived_at >= start,
        c.arrived_at < end,
        c.target_site.is_not(None),
        c.target_site != site,
    ]
    if service is not None:
        where.append(c.service == service)
    if language is not None:
        where.append(c.language == language)
    if queue is not None:
        where.append(c.queue == queue)
    s = slot(dialect, c.arrived_at).label("slot")
    return (
        select(s, c.service, c.language, c.queue, func.count().label("n"))
        .where(*where)
        .group_by(s, c.service, c.language, c.queue)
    )


def gaps(site: str, start: datetime, end: datetime) -> Select[Any]:
    """The coverage gaps of a site that overlap [start, end) (index coverage_gaps(site,
    started_at), the unique key)."""
    g = coverage_gaps.c
    return select(g.started_at, g.ended_at).where(
        g.site == site, g.started_at < end, or_(g.ended_at.is_(None), g.ended_at > start)
    )


def agent_call_sums(
    dialect: str, site: str, start: datetime, end: datetime, agent: str | None
) -> Select[Any]:
    """Per (slot of the answer, agent): answered calls, talk, hold, wrap-up and scores of
    the calls a site's agents answered in [start, end) (index calls(target_site,
    arrived_at): the arrival bounds the scan, the answer places the call)."""
    c = calls.c
    where = [
        c.target_site == site,
        c.arrived_at >= start - ANSWER_LOOKBACK,
        c.arrived_at < end,
        c.answered_at >= start,
        c.answered_at < end,
        c.agent.is_not(None),
    ]
    if agent is not None:
        where.append(c.agent == agent)
    s = slot(dialect, c.answered_at).label("slot")
    return (
        select(
            s,
            c.agent,
            func.count().label("answered"),
            func.coalesce(func.sum(c.talk_s), 0.0).label("talk_s"),
            func.coalesce(func.sum(c.hold_s), 0.0).label("hold_s"),
            func.coalesce(func.sum(c.wrapup_s), 0.0).label("wrapup_s"),
            func.coalesce(func.sum(c.satisfaction), 0).label("satisfaction_sum"),
            func.count(c.satisfaction).label("satisfaction_count"),
        )
        .where(*where)
        .group_by(s, c.agent)
    )


def agent_ring_counts(
    dialect: str, site: str, start: datetime, end: datetime, agent: str | None
) -> Select[Any]:
    """Per (slot, agent, kind): the rings and rings not answered (index
    agent_activity(site, at))."""
    a = agent_activity.c
    where = [
        a.site == site,
        a.at >= start,
        a.at < end,
        a.kind.in_((ActivityKind.CALLED.value, ActivityKind.RING_NO_ANSWER.value)),
    ]
    if agent is not None:
        where.append(a.agent == agent)
    s = slot(dialect, a.at).label("slot")
    return (
        select(s, a.agent, a.kind, func.count().label("n"))
        .where(*where)
        .group_by(s, a.agent, a.kind)
    )


def agent_states(site: str, start: datetime, end: datetime, agent: str | None) -> Select[Any]:
    """Every login/logout/pause/unpause in [start, end), and per (agent, queue, kind) the
    last one before ``start`` (the state the range opens with), in time order.

    The "last before" part groups on the unique key (site, agent, queue, kind, at)."""
    a = agent_activity.c
    cond = [a.site == site, a.kind.in_(STATE_KINDS)]
    if agent is not None:
        cond.append(a.agent == agent)
    before = (
        select(a.agent, a.queue, a.kind, func.max(a.at).label("at"))
        .where(*cond, a.at < start)
        .group_by(a.agent, a.queue, a.kind)
    )
    inside = select(a.agent, a.queue, a.kind, a.at).where(*cond, a.at >= start, a.at < end)
    both = union_all(before, inside).subquery("states")
    return select(both.c.agent, both.c.queue, both.c.kind, both.c.at)
