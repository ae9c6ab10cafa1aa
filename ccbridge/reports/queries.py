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
    CompoundSelect,
    Integer,
    Interval,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.types import SmallInteger, String

from ccbridge.reports.figures import ROUTE_COLUMNS
from ccbridge.reports.intervals import SLOT_S
from ccbridge.store.schema import (
    ENTRY_AWAY,
    ROLLUP_HANDLED,
    ROLLUP_NOWHERE,
    ROLLUP_SENT_AWAY,
    STATE_CHANGES,
    ActivityKind,
    Outcome,
    RouteSource,
    agent_activity,
    agent_rollup,
    calls,
    coverage_gaps,
    report_rollup,
    report_rollup_days,
)

ABANDONS = (Outcome.ABANDONED.value, Outcome.SHORT_ABANDON.value)
AFTER_HOURS = (
    Outcome.AFTER_HOURS_VOICEMAIL.value,
    Outcome.AFTER_HOURS_CALLBACK.value,
    Outcome.CLOSED.value,
)
# An agent's call is found by its arrival (the index), counted at its answer: the agent
# report counts the calls answered at most this long after they arrived (a row-by-row
# rule, so a rolled day and a range read raw count the same calls).
ANSWER_LOOKBACK = timedelta(hours=2)


def slot(dialect: str, col: Any, size: int = SLOT_S) -> ColumnElement[int]:
    """The UTC slot of ``size`` seconds (a multiple of a quarter hour) of a timestamp
    column, as an integer, on either engine."""
    if dialect == "sqlite":
        # UtcDateTime keeps UTC text on SQLite: strftime('%s') reads it as UTC.
        return cast(func.strftime("%s", col), Integer).op("/")(size)  # integer division
    # date_part is float8 arithmetic, a third faster per row than EXTRACT's numeric
    # (measured); a double holds an epoch to the microsecond, so only an instant within
    # a microsecond of a boundary could round across it.
    return cast(func.floor(func.date_part("epoch", col) / size), BigInteger)


def _count(cond: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _z(col: Any) -> ColumnElement[Any]:
    return func.coalesce(col, 0.0)


# The columns of queue_sums after (slot, service, language, queue[, flag]): QueueSums'
# fields in order, without overflowed_out (counted by the entry-site query).
SUM_COLUMNS = (
    "offered",
    "answered",
    "answered_within_sl",
    "abandoned",
    "short_abandons",
    "abandoned_within_sl",
    "timed_out",
    "answered_wait_s",
    "handle_s",
    "longest_wait_s",
    "overflowed_in",
    "after_hours",
    "fallback_routed",
    "satisfaction_sum",
    "satisfaction_count",
    *ROUTE_COLUMNS,
)


def _sums(
    site: str, thresholds: Mapping[str, int], default_threshold: int, short_abandon_s: float
) -> list[ColumnElement[Any]]:
    c = calls.c
    sl: ColumnElement[Any] = (
        case(dict(thresholds), value=c.queue, else_=default_threshold)
        if thresholds
        else literal(default_threshold)
    )
    wait = _z(c.wait_s)
    answered = c.outcome == Outcome.ANSWERED.value
    abandoned = c.outcome.in_(ABANDONS)
    queued = c.queued_at.is_not(None)
    cols = [
        _count(queued),
        _count(answered),
        _count(and_(answered, wait <= sl)),
        _count(abandoned),
        _count(and_(abandoned, wait < short_abandon_s)),
        _count(and_(abandoned, wait >= short_abandon_s, wait <= sl)),
        _count(c.outcome == Outcome.TIMEOUT.value),
        func.coalesce(func.sum(case((answered, wait), else_=0.0)), 0.0),
        func.coalesce(
            func.sum(case((answered, _z(c.talk_s) + _z(c.hold_s) + _z(c.wrapup_s)), else_=0.0)),
            0.0,
        ),
        func.max(case((queued, c.wait_s), else_=None)),
        _count(c.entry_site != site),
        _count(or_(c.outcome.in_(AFTER_HOURS), c.after_hours_action.is_not(None))),
        _count(c.static_fallback.is_(True)),
        func.coalesce(func.sum(c.satisfaction), 0),
        func.count(c.satisfaction),
        *(_count(c.route_source == s.value) for s in RouteSource),
    ]
    return [col.label(name) for col, name in zip(cols, SUM_COLUMNS, strict=True)]


def _filters(
    service: str | None, language: str | None, queue: str | None, c: Any = calls.c
) -> list[Any]:
    """The report's service/language/queue filters over ``c`` (calls or report_rollup)."""
    out: list[Any] = []
    if service is not None:
        out.append(c.service == service)
    if language is not None:
        out.append(c.language == language)
    if queue is not None:
        out.append(c.queue == queue)
    return out


def queue_sums(
    dialect: str,
    site: str,
    start: datetime,
    end: datetime,
    thresholds: Mapping[str, int],
    default_threshold: int,
    short_abandon_s: float,
    *,
    size: int = SLOT_S,
    service: str | None = None,
    language: str | None = None,
    queue: str | None = None,
) -> Select[Any]:
    """Sums per (slot, service, language, queue) of the calls sent to a site
    (index calls(target_site, arrived_at))."""
    c = calls.c
    s = slot(dialect, c.arrived_at, size).label("slot")
    return (
        select(
            s,
            c.service,
            c.language,
            c.queue,
            *_sums(site, thresholds, default_threshold, short_abandon_s),
        )
        .where(
            c.target_site == site,
            c.arrived_at >= start,
            c.arrived_at < end,
            *_filters(service, language, queue),
        )
        .group_by(s, c.service, c.language, c.queue)
    )


def entry_sums(
    dialect: str,
    site: str,
    start: datetime,
    end: datetime,
    thresholds: Mapping[str, int],
    default_threshold: int,
    short_abandon_s: float,
    *,
    size: int = SLOT_S,
    service: str | None = None,
    language: str | None = None,
    queue: str | None = None,
) -> Select[Any]:
    """Of the calls that entered at a site and were not sent to it (one pass over the
    partial index ix_calls_entry_site_away): per (slot, service, language, queue, sent_away), the
    same sums; ``sent_away`` rows went to another site (the site's overflow out, their
    ``offered`` is what counts), the others went nowhere (after hours, closed, rejected)
    and are the site's own."""
    c = calls.c
    s = slot(dialect, c.arrived_at, size).label("slot")
    away = case((c.target_site.is_(None), 0), else_=1).label("sent_away")
    return (
        select(
            s,
            c.service,
            c.language,
            c.queue,
            away,
            func.count().label("n"),
            *_sums(site, thresholds, default_threshold, short_abandon_s),
        )
        .where(
            c.entry_site == site,
            c.arrived_at >= start,
            c.arrived_at < end,
            text(f"({ENTRY_AWAY})"),  # as in the partial index ix_calls_entry_site_away
            *_filters(service, language, queue),
        )
        .group_by(s, c.service, c.language, c.queue, away)
    )


# -- the quarter-hour rollup (ccbridge/reports/rollup.py) ----------------------------

ROLLUP_COLUMNS = ("site", "kind", "slot", "service", "language", "queue", "n", *SUM_COLUMNS)


def rollup_select(
    dialect: str,
    site: str,
    start: datetime | ColumnElement[Any],
    end: datetime | ColumnElement[Any],
    thresholds: Mapping[str, int],
    default_threshold: int,
    short_abandon_s: float,
) -> CompoundSelect[Any]:
    """The rows of report_rollup (ROLLUP_COLUMNS) for a site's calls that arrived in
    [start, end): per UTC quarter hour, the same sums as queue_sums (kind handled) and
    entry_sums (kind nowhere or sent away), over the same indexes. ``start`` and ``end``
    may be bind parameters: the statement is then built once and run for many days."""
    c = calls.c
    s = slot(dialect, c.arrived_at).label("slot")
    name = cast(literal(site), String(64)).label("site")
    sums = _sums(site, thresholds, default_threshold, short_abandon_s)
    group = (s, c.service, c.language, c.queue)
    handled = (
        select(
            name,
            cast(literal(ROLLUP_HANDLED), SmallInteger).label("kind"),
            *group,
            func.count().label("n"),
            *sums,
        )
        .where(c.target_site == site, c.arrived_at >= start, c.arrived_at < end)
        .group_by(*group)
    )
    kind = case((c.target_site.is_(None), ROLLUP_NOWHERE), else_=ROLLUP_SENT_AWAY).label("kind")
    entered = (
        select(name, kind, *group, func.count().label("n"), *sums)
        .where(
            c.entry_site == site,
            c.arrived_at >= start,
            c.arrived_at < end,
            text(f"({ENTRY_AWAY})"),  # as in the partial index ix_calls_entry_site_away
        )
        .group_by(*group, kind)
    )
    return union_all(handled, entered)


def rolled_days(site: str, start: datetime, end: datetime, fingerprint: str) -> Select[Any]:
    """The days of a site rolled with this fingerprint that overlap [start, end) (index
    report_rollup_days(site, start_at))."""
    d = report_rollup_days.c
    return select(d.start_at, d.end_at).where(
        d.site == site, d.start_at < end, d.end_at > start, d.fingerprint == fingerprint
    )


def rollup_sums(
    site: str,
    spans: list[tuple[int, int]],
    *,
    size: int = SLOT_S,
    service: str | None = None,
    language: str | None = None,
    queue: str | None = None,
) -> Select[Any]:
    """The rollup's rows in the shape of entry_sums (slot of ``size`` seconds, service,
    language, queue, sent_away, n, *SUM_COLUMNS), for the UTC quarter-hour spans
    [a, b) given (index report_rollup(site, slot)). Handled and sent-nowhere rows both
    read as not sent away: the report adds both to the site's own figures."""
    r = report_rollup.c
    per = size // SLOT_S
    away = case((r.kind == ROLLUP_SENT_AWAY, 1), else_=0).label("sent_away")
    where: list[Any] = [
        r.site == site,
        or_(*(and_(r.slot >= a, r.slot < b) for a, b in spans)),
        *_filters(service, language, queue, r),
    ]
    if per == 1:
        # Quarter hours: the rows as stored (the report adds rows of one key anyway);
        # grouping them again would only cost the sorter.
        plain = [r[n] for n in SUM_COLUMNS]
        return select(r.slot, r.service, r.language, r.queue, away, r.n, *plain).where(*where)
    s = r.slot.op("/")(per).label("slot")
    cols: list[ColumnElement[Any]] = [
        (func.max(r[n]) if n == "longest_wait_s" else func.sum(r[n])).label(n) for n in SUM_COLUMNS
    ]
    return (
        select(s, r.service, r.language, r.queue, away, func.sum(r.n).label("n"), *cols)
        .where(*where)
        .group_by(s, r.service, r.language, r.queue, away)
    )


def gaps(site: str, start: datetime, end: datetime) -> Select[Any]:
    """The coverage gaps of a site that overlap [start, end) (index coverage_gaps(site,
    started_at), the unique key)."""
    g = coverage_gaps.c
    return select(g.started_at, g.ended_at).where(
        g.site == site, g.started_at < end, or_(g.ended_at.is_(None), g.ended_at > start)
    )


def _answered_soon(dialect: str) -> ColumnElement[bool]:
    """The call was answered at most ANSWER_LOOKBACK after it arrived."""
    c = calls.c
    if dialect == "sqlite":
        # UtcDateTime's UTC text against strftime's (milliseconds): the same text order.
        back = f"-{int(ANSWER_LOOKBACK.total_seconds())} seconds"
        return c.arrived_at >= func.strftime("%Y-%m-%d %H:%M:%f", c.answered_at, back)
    return c.arrived_at >= c.answered_at - literal(ANSWER_LOOKBACK, Interval())


def agent_call_sums(
    dialect: str,
    site: str,
    start: datetime,
    end: datetime,
    agent: str | None,
    size: int = SLOT_S,
) -> Select[Any]:
    """Per (slot of the answer, agent): answered calls, talk, hold, wrap-up and scores of
    the calls a site's agents answered in [start, end) (index calls(target_site,
    arrived_at): the arrival bounds the scan, the answer places the call; a call answered
    more than ANSWER_LOOKBACK after it arrived is not counted)."""
    c = calls.c
    where = [
        c.target_site == site,
        c.arrived_at >= start - ANSWER_LOOKBACK,
        c.arrived_at < end,
        c.answered_at >= start,
        c.answered_at < end,
        c.agent.is_not(None),
        _answered_soon(dialect),
    ]
    if agent is not None:
        where.append(c.agent == agent)
    s = slot(dialect, c.answered_at, size).label("slot")
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
    dialect: str,
    site: str,
    start: datetime,
    end: datetime,
    agent: str | None,
    size: int = SLOT_S,
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
    s = slot(dialect, a.at, size).label("slot")
    return (
        select(s, a.agent, a.kind, func.count().label("n"))
        .where(*where)
        .group_by(s, a.agent, a.kind)
    )


def agent_states(site: str, start: datetime, end: datetime, agent: str | None) -> Select[Any]:
    """Every login/logout/pause/unpause in [start, end), and per (agent, queue, kind) the
    last one before ``start`` (the state the range opens with).

    The "last before" part groups on the partial index ix_agent_activity_states (site,
    agent, queue, kind, at): the state changes alone."""
    a = agent_activity.c
    # As in the partial index ix_agent_activity_states, written out: an engine uses it
    # only for a query that says the same (bound parameters would not).
    states = text(f"({STATE_CHANGES})")
    cond: list[Any] = [a.site == site, states]
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


# agent_rollup's figure columns, in the order the roll writes and the report reads them.
AGENT_ROLL_COLUMNS = (
    "offered",
    "answered",
    "ring_no_answer",
    "talk_s",
    "hold_s",
    "wrapup_s",
    "login_us",
    "pause_us",
    "satisfaction_sum",
    "satisfaction_count",
)


def agent_rollup_sums(
    site: str, spans: list[tuple[int, int]], agent: str | None, size: int = SLOT_S
) -> Select[Any]:
    """agent_rollup's rows (slot of ``size`` seconds, agent, *AGENT_ROLL_COLUMNS)
    for the UTC quarter-hour spans [a, b) given (index agent_rollup(site, slot))."""
    r = agent_rollup.c
    where: list[Any] = [r.site == site, or_(*(and_(r.slot >= a, r.slot < b) for a, b in spans))]
    if agent is not None:
        where.append(r.agent == agent)
    per = size // SLOT_S
    if per == 1:
        # One row per (quarter hour, agent) already: grouping again would only sort.
        return select(r.slot, r.agent, *(r[n] for n in AGENT_ROLL_COLUMNS)).where(*where)
    s = r.slot.op("/")(per).label("slot")
    return (
        # Each sum cast to its column's type: PostgreSQL sums a bigint as numeric.
        select(s, r.agent, *(cast(func.sum(r[n]), r[n].type).label(n) for n in AGENT_ROLL_COLUMNS))
        .where(*where)
        .group_by(s, r.agent)
    )
