"""The call list (keyset pages, bounded) and one call with its legs and events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ccbridge.logs import mask_number
from ccbridge.reports.query import CallQuery, Cursor
from ccbridge.store.schema import call_events, calls, legs

CALL_COLUMNS: tuple[str, ...] = tuple(c.name for c in calls.columns)
LEG_COLUMNS: tuple[str, ...] = tuple(c.name for c in legs.columns if c.name != "id")
EVENT_COLUMNS: tuple[str, ...] = ("at", "site", "name", "fields")
MAX_EVENTS = 2000  # a call's event list is cut here (a normal call has a few dozen)
ERASED = "erased"  # what an erased caller number reads (ccbridge records erase)
# AMI fields that carry a phone number (masked like caller_number)
NUMBER_FIELDS = frozenset(
    {
        "calleridnum",
        "connectedlinenum",
        "destcalleridnum",
        "destconnectedlinenum",
        "exten",
        "destexten",
        "caller",
        "caller_number",
    }
)


def _value(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def call_json(row: Any, numbers: bool) -> dict[str, Any]:
    out = {k: _value(row[k]) for k in CALL_COLUMNS}
    if not numbers:
        out["caller_number"] = mask_number(out["caller_number"]) or out["caller_number"]
    return out


def mask_fields(fields: Any) -> Any:
    """An event's fields with the phone numbers masked."""
    if not isinstance(fields, dict):
        return fields
    return {
        k: mask_number(v) if isinstance(v, str) and k.lower() in NUMBER_FIELDS else v
        for k, v in fields.items()
    }


@dataclass(frozen=True, slots=True)
class CallScope:
    """The calls a caller may see: those that touched ``sites`` or that one of
    ``agents`` answered (an agent user's own calls)."""

    sites: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()

    def admits(self, call: Mapping[str, Any], leg_sites: Iterable[str]) -> bool:
        touched = {call["entry_site"], call["target_site"], *leg_sites}
        return bool(touched & set(self.sites)) or call["agent"] in self.agents


@dataclass(frozen=True, slots=True)
class CallPage:
    rows: list[dict[str, Any]]
    next: Cursor | None  # None: the last page


async def list_calls(
    conn: AsyncConnection, q: CallQuery, numbers: bool, scope: CallScope | None = None
) -> CallPage:
    """One page of calls in arrival order; at most ``q.limit`` rows are read; ``scope``:
    what the caller may see (None: everything)."""
    c = calls.c
    where = [c.arrived_at >= q.start, c.arrived_at < q.end]
    if scope is not None:
        where.append(
            or_(
                c.entry_site.in_(scope.sites),
                c.target_site.in_(scope.sites),
                c.agent.in_(scope.agents),
            )
        )
    if q.sites:
        where.append(or_(c.entry_site.in_(q.sites), c.target_site.in_(q.sites)))
    if q.queue is not None:
        where.append(c.queue == q.queue)
    if q.service is not None:
        where.append(c.service == q.service)
    if q.outcomes:
        where.append(c.outcome.in_([o.value for o in q.outcomes]))
    if q.agent is not None:
        where.append(c.agent == q.agent)
    if q.caller is not None:
        where.append(c.caller_number == q.caller)
    if q.after is not None:
        a = q.after
        where.append(
            or_(
                c.arrived_at > a.arrived_at,
                and_(c.arrived_at == a.arrived_at, c.call_id > a.call_id),
            )
        )
    stmt = select(calls).where(*where).order_by(c.arrived_at, c.call_id).limit(q.limit + 1)
    rows = (await conn.execute(stmt)).mappings().all()
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    nxt = Cursor(rows[-1]["arrived_at"], rows[-1]["call_id"]) if more else None
    return CallPage([call_json(r, numbers) for r in rows], nxt)


@dataclass(frozen=True, slots=True)
class CallDetail:
    call: dict[str, Any]
    legs: list[dict[str, Any]]
    events: list[dict[str, Any]]
    events_cut: bool  # more than MAX_EVENTS: the list stops there


async def get_call(conn: AsyncConnection, call_id: str, numbers: bool) -> CallDetail | None:
    row = (await conn.execute(select(calls).where(calls.c.call_id == call_id))).mappings().first()
    if row is None:
        return None
    leg_rows = (
        await conn.execute(
            select(legs).where(legs.c.call_id == call_id).order_by(legs.c.arrived_at, legs.c.id)
        )
    ).mappings()
    ev = call_events.c
    ev_rows = (
        (
            await conn.execute(
                select(ev.at, ev.site, ev.name, ev.fields)
                .where(ev.call_id == call_id)
                .order_by(ev.at, ev.id)
                .limit(MAX_EVENTS + 1)
            )
        )
        .mappings()
        .all()
    )
    events = [
        {
            "at": _value(e["at"]),
            "site": e["site"],
            "name": e["name"],
            "fields": e["fields"] if numbers else mask_fields(e["fields"]),
        }
        for e in ev_rows[:MAX_EVENTS]
    ]
    return CallDetail(
        call_json(row, numbers),
        [{k: _value(r[k]) for k in LEG_COLUMNS} for r in leg_rows],
        events,
        len(ev_rows) > MAX_EVENTS,
    )
