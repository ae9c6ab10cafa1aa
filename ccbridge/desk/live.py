"""Calls the desk can act on, and supervision sessions, kept from AMI events (no I/O).

A call is known by its call ID (``CCB_CALLID``, every channel event's ``ChanVariable``)
from the moment it queues somewhere: where its caller waits or talks, the caller's and
the agent's channels, and whether it ended. The desk acts only on what this says: a call
it never saw is unknown (404), one that ended says so (409), one whose site is down is
refused before anything is sent (503).

An ended call leaves ``calls`` at once and is remembered as ended only by its ID and end
instant, for the last ``max_ended`` calls: with records on, the store answers for older
ones (services/desk.py). Holding every ended call whole (20,000, ~470 bytes each) was
~9 MB of the bridge's RSS at 150 calls/s (BENCHMARKS.md §4).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ccbridge import variables as v
from ccbridge.events import EventBus

log = logging.getLogger("ccbridge.desk")

Event = Mapping[str, str]
_PREFIX: Final = v.CALLID + "="
MAX_CALLS: Final = 20_000  # live calls, ~0.5 KB each: at most ~10 MB; the oldest goes first
# Ended calls remembered (ID and end instant, ~0.2 KB each) when no store says which ended;
# with a store the bridge keeps ENDED_WITH_STORE (the last ~15 s at 150 calls/s: the
# store has their ends by then) and asks the store for the rest.
MAX_ENDED: Final = 20_000
ENDED_WITH_STORE: Final = 2_000
MAX_SESSIONS: Final = 2_000
ENDED_KEEP: Final = 3600.0  # seconds an ended call is still known as ended (then: unknown)
# The AMI events the desk reads (and, as a UserEvent, the dialplan's CcbIvr).
EVENTS: Final = frozenset(
    {
        "QueueCallerJoin",
        "QueueCallerAbandon",
        "AgentConnect",
        "AgentComplete",
        "ChanSpyStart",
        "ChanSpyStop",
        "OriginateResponse",
    }
)


class CallState(StrEnum):
    WAITING = "waiting"  # in a queue, no agent yet
    CONNECTED = "connected"  # talking with an agent (or in its desk room)
    MOVING = "moving"  # transferred: on its way to another queue
    ENDED = "ended"


class SpyState(StrEnum):
    RINGING = "ringing"  # the supervisor's phone is being called
    ACTIVE = "active"  # ChanSpy runs (ChanSpyStart seen)
    ENDED = "ended"


@dataclass(slots=True)
class LiveCall:
    call_id: str
    site: str  # where the caller waits or talks now
    state: CallState
    changed: float
    queue: str | None = None
    caller_channel: str | None = None  # the caller's channel at ``site``
    agent_channel: str | None = None
    agent: str | None = None
    ivr_path: tuple[str, ...] = ()  # most calls have none: no empty list each
    room: str | None = None  # the desk room (ConfBridge) once held or conferenced
    held: bool = False


@dataclass(slots=True)
class SpySession:
    """One supervisor listening to, whispering to or barging into one call."""

    id: str
    call_id: str
    site: str  # where the agent's leg is: the site that runs ChanSpy
    mode: str
    supervisor: str  # the supervisor's phone (a configured endpoint)
    supervisor_site: str
    channel_id: str  # the spy channel's uniqueid (Originate ChannelId)
    actor: str  # who asked (for the end's audit record)
    started: float
    state: SpyState = SpyState.RINGING
    spyer_channel: str | None = None
    ended_reason: str | None = None
    # the call ended while the supervisor's phone still rang: hang that phone up (ChanSpy
    # would otherwise wait for a channel that will never come back)
    cancel_ringing: bool = False


EndHandler = Callable[[SpySession], None]


class LiveCalls:
    """The desk's view of calls and supervision sessions, fed by the event bus."""

    def __init__(
        self, now: Callable[[], float], *, max_calls: int = MAX_CALLS, max_ended: int = MAX_ENDED
    ) -> None:
        self._now = now
        self._max = max_calls
        self._max_ended = max_ended
        self.calls: OrderedDict[str, LiveCall] = OrderedDict()  # not ended
        self.ended: OrderedDict[str, float] = OrderedDict()  # call ID -> when it ended
        self.sessions: OrderedDict[str, SpySession] = OrderedDict()
        self._by_channel: dict[str, str] = {}  # spy channel uniqueid -> session id
        self.on_session_end: EndHandler | None = None

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe("QueueCallerJoin", self._join)
        bus.subscribe("QueueCallerAbandon", self._abandon)
        bus.subscribe("AgentConnect", self._connect)
        bus.subscribe("AgentComplete", self._complete)
        bus.subscribe("ChanSpyStart", self._spy_start)
        bus.subscribe("ChanSpyStop", self._spy_stop)
        bus.subscribe("OriginateResponse", self._originate_response)
        bus.subscribe_user_event(v.EVENT_IVR, self._ivr)

    # -- lookups --------------------------------------------------------------------
    def get(self, call_id: str) -> LiveCall | None:
        """The call if it has not ended (an ended one: ``ended_at``)."""
        return self.calls.get(call_id)

    def ended_at(self, call_id: str) -> float | None:
        """When the call ended, if it is one of the last ``max_ended`` calls to end and
        ended less than ENDED_KEEP seconds ago; else None (never seen, or forgotten)."""
        at = self.ended.get(call_id)
        if at is not None and self._now() - at > ENDED_KEEP:
            del self.ended[call_id]
            return None
        return at

    def active_sessions(self, call_id: str | None = None) -> list[SpySession]:
        return [
            s
            for s in self.sessions.values()
            if s.state is not SpyState.ENDED and (call_id is None or s.call_id == call_id)
        ]

    def session_of_supervisor(self, supervisor: str) -> SpySession | None:
        return next((s for s in self.active_sessions() if s.supervisor == supervisor), None)

    def add_session(self, session: SpySession) -> None:
        self.sessions[session.id] = session
        self._by_channel[session.channel_id] = session.id
        while len(self.sessions) > MAX_SESSIONS:
            _, old = self.sessions.popitem(last=False)
            self._by_channel.pop(old.channel_id, None)

    def end_session(self, session: SpySession, reason: str) -> None:
        """Mark a session over (once) and tell ``on_session_end``."""
        if session.state is SpyState.ENDED:
            return
        session.state = SpyState.ENDED
        session.ended_reason = reason
        if self.on_session_end is not None:
            try:
                self.on_session_end(session)
            except Exception:
                log.exception("supervision end handler failed")

    # -- the events -------------------------------------------------------------------
    def _call(self, site: str, event: Event, state: CallState) -> LiveCall | None:
        cid = call_id_of(event)
        if cid is None:
            return None
        call = self.calls.get(cid)
        now = self._now()
        if call is None:
            call = self.calls[cid] = LiveCall(cid, site, state, now)
            self.ended.pop(cid, None)  # back after its end (a late event): live again
            while len(self.calls) > self._max:
                self.calls.popitem(last=False)
        else:
            self.calls.move_to_end(cid)
            call.site, call.state, call.changed = site, state, now
        return call

    def _join(self, site: str, event: Event) -> None:
        call = self._call(site, event, CallState.WAITING)
        if call is not None:
            call.queue = _short(event.get("Queue"))
            call.caller_channel = _short(event.get("Channel"))
            call.agent_channel = call.agent = None

    def _abandon(self, site: str, event: Event) -> None:
        cid = call_id_of(event)
        call = self.calls.get(cid or "")
        if call is not None and call.site == site and call.state is CallState.WAITING:
            self._ended(call)

    def _connect(self, site: str, event: Event) -> None:
        call = self._call(site, event, CallState.CONNECTED)
        if call is not None:
            call.queue = _short(event.get("Queue"))
            call.caller_channel = _short(event.get("Channel"))
            call.agent_channel = _short(event.get("DestChannel"))
            call.agent = _short(event.get("MemberName"))
            call.room, call.held = None, False

    def _complete(self, site: str, event: Event) -> None:
        cid = call_id_of(event)
        call = self.calls.get(cid or "")
        if call is None or call.site != site or call.state is not CallState.CONNECTED:
            return
        if call.room is not None:
            # In its desk room app_queue no longer follows the call: the room's own
            # end (the agent's h extension) is what ends it.
            return
        # A transfer moves the caller on (a new AgentConnect or QueueCallerJoin follows);
        # the caller or the agent hanging up ends the call.
        moved = event.get("Reason") == "transfer"
        call.agent_channel = None
        if moved:
            call.state, call.changed = CallState.MOVING, self._now()
        else:
            self._ended(call)
        for s in self.active_sessions(call.call_id):
            if s.site == site:
                s.cancel_ringing = s.state is SpyState.RINGING
                self.end_session(s, "call ended" if not moved else "call transferred")

    def has_calls(self, site: str) -> bool:
        return any(c.site == site for c in self.calls.values())

    def close_gone(self, site: str, channels: Collection[str]) -> int:
        """``site``'s AMI link is back and ``channels`` names its channels now
        (CoreShowChannels): its calls whose caller's channel is not there ended while the
        link was down. They end now; without this they stayed until 20,000 newer calls
        pushed them out (~0.5 KB each). A call whose events come again is live again."""
        gone = [
            c
            for c in self.calls.values()
            if c.site == site and c.caller_channel is not None and c.caller_channel not in channels
        ]
        for call in gone:
            self._ended(call)
            for s in self.active_sessions(call.call_id):
                self.end_session(s, "call ended")
        return len(gone)

    def _ended(self, call: LiveCall) -> None:
        """The call is over: out of ``calls``, its ID and end instant in ``ended``."""
        call.state, call.changed = CallState.ENDED, self._now()
        self.calls.pop(call.call_id, None)
        self.ended[call.call_id] = call.changed
        self.ended.move_to_end(call.call_id)
        while len(self.ended) > self._max_ended:
            self.ended.popitem(last=False)

    def _ivr(self, site: str, event: Event) -> None:
        cid = call_id_of(event)
        if cid is None:
            return
        call = self.calls.get(cid)
        if call is None:
            # IVR steps come before the call queues: keep them on a waiting entry.
            call = self._call(site, event, CallState.WAITING)
            if call is None:
                return
        menu, step = _short(event.get("Menu")), _short(event.get("Step"))
        if menu and step and len(call.ivr_path) < 20:
            call.ivr_path = (*call.ivr_path, f"{menu}:{step}")

    def _spy_start(self, site: str, event: Event) -> None:
        session = self._session_of(event.get("SpyerUniqueid"))
        if session is not None and session.state is SpyState.RINGING:
            session.state = SpyState.ACTIVE
            session.spyer_channel = _short(event.get("SpyerChannel"))

    def _spy_stop(self, site: str, event: Event) -> None:
        session = self._session_of(event.get("SpyerUniqueid"))
        if session is not None:
            self.end_session(session, "spy stopped")

    def _originate_response(self, site: str, event: Event) -> None:
        session = self._session_of(event.get("Uniqueid"))
        if session is not None and event.get("Response") == "Failure":
            self.end_session(session, f"supervisor's phone not answered ({event.get('Reason')})")

    def _session_of(self, uniqueid: str | None) -> SpySession | None:
        sid = self._by_channel.get(uniqueid or "")
        return self.sessions.get(sid) if sid is not None else None


def call_id_of(event: Event) -> str | None:
    """The event's CCB_CALLID (manager.conf channelvars), as written."""
    getall = getattr(event, "getall", None)
    items: Iterable[object]
    if getall is not None:
        items = getall("ChanVariable")
    else:
        one = event.get("ChanVariable")
        items = (one,) if one is not None else ()
    for item in items:
        if isinstance(item, str) and item.startswith(_PREFIX):
            value = item[len(_PREFIX) :]
            if 0 < len(value) <= 64 and value.isprintable() and value.isascii():
                return value
    return None


def _short(raw: str | None) -> str | None:
    if not raw or len(raw) > 128 or not raw.isprintable() or not raw.isascii():
        return None
    return raw
