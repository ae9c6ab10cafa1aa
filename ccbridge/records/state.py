"""The record machine's per-call state (Leg, Call) and the packed form an ended call waits in.

An ended call stays ``linger`` seconds for a late site's events (RecordMachine.sweep).
Waiting, it is one ``bytes`` (``pack``: marshal of its fields, instants as microseconds)
instead of its objects: ~1,650 bytes an answered call as objects (tracemalloc, the Leg,
the decision's columns dict, the instants, the Call), a few hundred packed. A late event
unpacks it (``unpack``) into the same values, so what the event teaches is exactly what
it taught the objects. Anything ``pack`` cannot keep exactly (an instant not in UTC, a
column value marshal does not write) leaves the call as objects.
"""

from __future__ import annotations

import marshal
import struct
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, Final

from ccbridge.records import callid

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_ENDED: Final = struct.Struct("<q")  # a packed call starts with its end (us): the sweep's key


@dataclass(slots=True)
class Leg:
    """One site's part of a call (a ``legs`` row) and what its summary needs."""

    site: str
    linkedid: str
    call_id: str
    arrived_at: datetime
    queue: str | None = None
    queued_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    agent: str | None = None
    ring_no_answers: int = 0
    abandoned_at: datetime | None = None
    queue_status: str | None = None
    talk_end: datetime | None = None
    complete_reason: str | None = None
    hold_s: float = 0.0
    hold_since: datetime | None = None
    # The agent's channel (AgentConnect's DestUniqueid) until the first BridgeLeave
    # after the answer says who left first; then only the answer is kept (first_leave:
    # "agent" or "caller", or "" when the bridge could not tell): a call lingers after
    # its end, and 3,500 calls held at 150 calls/s are the machine's share of the RSS.
    agent_uniqueid: str | None = None
    first_leave: str | None = None
    # Its end came while the site's AMI link was down (close_gone): when it ended, and
    # so its talk and hold and who hung up, are not known.
    end_lost: bool = False
    base: str = ""  # the linkedid (segments after a transfer within the site: "L/2", ...)

    def __post_init__(self) -> None:
        if not self.base:
            self.base = self.linkedid

    def row(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "site": self.site,
            "linkedid": self.linkedid,
            "queue": self.queue,
            "arrived_at": self.arrived_at,
            "queued_at": self.queued_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "agent": self.agent,
            "ring_no_answers": self.ring_no_answers,
        }


@dataclass(slots=True)
class Call:
    """What is known of one call across its sites (the ``calls`` row's source)."""

    cid: callid.CallId
    legs: dict[tuple[str, str], Leg] = field(default_factory=dict)
    seen: datetime = field(default_factory=lambda: _EPOCH)  # the last event's instant
    ended: datetime | None = None  # every leg seen has ended (linger from here)
    # Seen from its start (the decision, or a first event that only a call's start
    # sends)? A call first seen mid-way (the bridge restarted, its link came back) gets
    # the facts its events teach but no outcome it could only guess.
    whole: bool = False
    entry_ended: bool = False
    did: str | None = None
    caller: str | None = None
    after_hours: str | None = None
    rejected: bool = False
    columns: dict[str, Any] = field(default_factory=dict)  # decision / dialplan facts
    # ``columns`` is one dict for every call with the same decision (never written to
    # then: RecordMachine._columns copies it first)
    shared_columns: bool = field(default=False, compare=False)
    ivr_path: tuple[str, ...] = ()  # most calls have none: no empty list each
    trunk_failovers: int = 0

    def key_columns(self) -> dict[str, Any]:
        return {
            "call_id": self.cid.text,
            "entry_site": self.cid.entry_site,
            "arrived_at": self.cid.arrived_at,
        }


class Unpackable(ValueError):
    """The call holds something ``pack`` cannot keep exactly: it stays as objects."""


_LEG_FIELDS: Final = tuple(f.name for f in fields(Leg))
_LEG_GET: Final = attrgetter(*_LEG_FIELDS)
_LEG_TIMES: Final = tuple(
    i for i, n in enumerate(_LEG_FIELDS) if n.endswith("_at") or n in ("talk_end", "hold_since")
)
_LEG_CALL_ID: Final = _LEG_FIELDS.index("call_id")  # the call's own ID: not packed again
_LEG_LINKEDID: Final = _LEG_FIELDS.index("linkedid")
_LEG_SITE: Final = _LEG_FIELDS.index("site")
_LEG_BASE: Final = _LEG_FIELDS.index("base")  # "" when the linkedid (Leg.__post_init__)
# The columns the machine sets (decision and dialplan facts), packed as their number
# here: a call's columns dict would otherwise carry each name's text.
_COLUMNS: Final = (
    "service",
    "language",
    "language_source",
    "target_site",
    "queue",
    "reasons",
    "static_fallback",
    "route_source",
    "after_hours_action",
    "lookup_outcome",
    "satisfaction",
)
_COLUMN_CODE: Final = {name: i for i, name in enumerate(_COLUMNS)}


def _us(at: datetime | None, since: int) -> int | None:
    """``at`` in microseconds after ``since`` (the call's arrival: small ints pack short)."""
    if at is None:
        return None
    if at.tzinfo is not UTC:
        raise Unpackable(f"instant not in UTC: {at!r}")
    return (at - _EPOCH) // _US - since


def _at(us: int | None, since: int) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us + since)


def pack(call: Call) -> bytes:
    """``call`` (ended) as bytes. Raises Unpackable."""
    cid = call.cid
    ended = call.ended
    if ended is None or cid.arrived_at.tzinfo is not UTC:
        raise Unpackable("the call has not ended, or its arrival is not in UTC")
    since = (cid.arrived_at - _EPOCH) // _US
    legs = []
    for (_, linkedid), leg in call.legs.items():
        values = list(_LEG_GET(leg))
        for i in _LEG_TIMES:
            values[i] = _us(values[i], since)
        values[_LEG_CALL_ID] = None
        if values[_LEG_BASE] == values[_LEG_LINKEDID]:
            values[_LEG_BASE] = ""
        # the key's linkedid, None when the leg's own (a segment's key is not)
        legs.append((None if linkedid == leg.linkedid else linkedid, tuple(values)))
    columns: list[Any] = []
    for name, value in call.columns.items():
        columns += (_COLUMN_CODE.get(name, name), value)
    state = (
        cid.text,
        _us(call.seen, since),
        call.whole,
        call.entry_ended,
        call.did,
        call.caller,
        call.after_hours,
        call.rejected,
        tuple(columns),
        call.ivr_path,
        call.trunk_failovers,
        tuple(legs),
    )
    try:
        body = marshal.dumps(state)
    except ValueError as exc:  # a column value marshal does not write
        raise Unpackable(str(exc)) from exc
    return _ENDED.pack((ended - _EPOCH) // _US) + body


def ended_of(packed: bytes) -> datetime:
    """When the packed call ended (without unpacking it)."""
    at = _at(_ENDED.unpack_from(packed)[0], 0)
    assert at is not None
    return at


def unpack(packed: bytes) -> Call:
    """The call ``pack`` was given, equal in every field."""
    (
        text,
        seen,
        whole,
        entry_ended,
        did,
        caller,
        after_hours,
        rejected,
        columns,
        ivr_path,
        trunk_failovers,
        legs,
    ) = marshal.loads(packed[_ENDED.size :])
    cid = callid.parse(text)
    assert cid is not None  # packed from a parsed call ID
    since = (cid.arrived_at - _EPOCH) // _US
    seen_at = _at(seen, since)
    assert seen_at is not None
    call = Call(
        cid,
        seen=seen_at,
        ended=ended_of(packed),
        whole=whole,
        entry_ended=entry_ended,
        did=did,
        caller=caller,
        after_hours=after_hours,
        rejected=rejected,
        columns={
            _COLUMNS[name] if isinstance(name, int) else name: value
            for name, value in zip(columns[::2], columns[1::2], strict=True)
        },
        ivr_path=ivr_path,
        trunk_failovers=trunk_failovers,
    )
    for linkedid, values in legs:
        values = list(values)
        for i in _LEG_TIMES:
            values[i] = _at(values[i], since)
        values[_LEG_CALL_ID] = text
        values[_LEG_SITE] = sys.intern(values[_LEG_SITE])  # the caller's, one a site
        leg = Leg(*values)
        call.legs[(leg.site, linkedid or leg.linkedid)] = leg
    return call


class CallTable(Mapping[str, Call]):
    """The machine's calls by call ID, in progress (objects) and ended (packed), as one
    mapping: reading a packed call unpacks it for good (the machine's own lookups do
    the same), so a call is one object however it is reached."""

    def __init__(
        self, live: dict[str, Call], packed: dict[str, bytes], revive: Callable[[str], Call]
    ) -> None:
        self._live = live
        self._packed = packed
        self._revive = revive

    def __getitem__(self, key: str) -> Call:
        call = self._live.get(key)
        if call is None:
            if key not in self._packed:
                raise KeyError(key)
            call = self._revive(key)
        return call

    def __contains__(self, key: object) -> bool:
        return key in self._live or key in self._packed

    def __iter__(self) -> Iterator[str]:
        # a copy: reading a packed call moves it between the two dicts
        return iter([*self._live, *self._packed])

    def __len__(self) -> int:
        return len(self._live) + len(self._packed)
