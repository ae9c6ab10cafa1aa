"""The per-call state machine: AMI events and routing decisions in, store records out (pure).

No I/O, no clock: every instant comes from the event (``Timestamp``, manager.conf
``timestampevents``) or from the caller. ``feed`` returns the records an event teaches
(``calls``, ``legs``, ``call_events`` values) and never raises on bad input: an event it
cannot use is counted in ``skipped`` by reason and changes nothing.

A call is keyed by its call ID (``CCB_CALLID``, from each event's ``ChanVariable`` line,
manager.conf ``channelvars``); a leg by (site, linkedid): one per site the call passed
through. CEL ``LINKEDID_END`` carries no channel variables, so it finds its leg by
linkedid. Every ``calls`` record repeats the row's key and required columns (the entry
site and arrival instant read from the call ID), so records from any site, in any order,
build one row (store/write.py: a column given replaces, a column left out keeps).

When a leg ends the call's summary is computed again from every leg seen (outcome,
wait, talk, hold, wrap-up, agent, who hung up) and written: a call answered at dhaka
after entering at bangalore is one row whatever order the two sites' events arrive in.
An ended call stays in memory for ``linger`` seconds for a late leg's events, then goes;
meanwhile it is packed (records/state.py: ~600 bytes instead of ~1,650) and a late event
unpacks it to the same values.
"""

from __future__ import annotations

import heapq
import itertools
import sys
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ccbridge import variables as v
from ccbridge.config.model import Config, queue_name
from ccbridge.records import callid
from ccbridge.records.state import (
    Call,
    CallTable,
    Leg,
    Unpackable,
    ended_of,
    pack,
    unpack,
)
from ccbridge.routing.engine import CallRequest, Decision
from ccbridge.routing.reasons import Outcome as RouteOutcome
from ccbridge.routing.reasons import Reason
from ccbridge.store.schema import HungUpBy, Outcome, RouteSource

Out = tuple[str, dict[str, Any]]  # (table, column values) for RecordWriter.put
Event = Mapping[str, str]

CEL: Final = "CEL"
LINKEDID_END: Final = v.CEL_LINKEDID_END
QUEUE_EVENTS: Final = (
    "QueueCallerJoin",
    "QueueCallerLeave",
    "QueueCallerAbandon",
    "AgentCalled",
    "AgentConnect",
    "AgentComplete",
    "AgentRingNoAnswer",
)
HOLD_EVENTS: Final = ("Hold", "Unhold")
# Who hung up: the channel that leaves the answered call's bridge first. AgentComplete's
# Reason cannot say: on the lab's Asterisk 22 an agent channel hung up first still gave
# ``Reason: caller`` (tests/unit/fixtures/records/agent_hangup.json).
BRIDGE_EVENTS: Final = ("BridgeLeave",)
USER_EVENTS: Final = (
    v.EVENT_QUEUE_EXIT,
    v.EVENT_FALLBACK,
    v.EVENT_AFTER_HOURS,
    v.EVENT_REJECT,
    v.EVENT_TRUNK_RESULT,
    v.EVENT_IVR,
    v.EVENT_LOOKUP,
    v.EVENT_HELD_ROUTE,
    v.EVENT_SURVEY,
    v.EVENT_TRANSFER,
    v.EVENT_HOLD,
    v.EVENT_UNHOLD,
)
# Events that change the record but are no row of their own in call_events: what they
# say is in the calls and legs rows (who hung up, hold time, the answer) or in another
# event (QueueCallerLeave follows AgentConnect or QueueCallerAbandon). Fewer rows per
# call is what lets the writer keep up with 2,000 calls/s (BENCHMARKS.md §9).
_UNRECORDED: Final = frozenset({"QueueCallerLeave", "BridgeLeave", "Hold", "Unhold"})
# Events only the start of a call at its entry site sends (the decision counts too).
_STARTS: Final = frozenset(
    {
        "QueueCallerJoin",
        v.EVENT_FALLBACK,
        v.EVENT_HELD_ROUTE,
        v.EVENT_IVR,
        v.EVENT_AFTER_HOURS,
        v.EVENT_REJECT,
        v.EVENT_TRUNK_RESULT,
    }
)
FAILOVER_STATUSES: Final = frozenset({"CHANUNAVAIL", "CONGESTION"})
_AFTER_HOURS_OUTCOME: Final = {
    "voicemail": Outcome.AFTER_HOURS_VOICEMAIL,
    "callback": Outcome.AFTER_HOURS_CALLBACK,
    "closed": Outcome.CLOSED,
}
_LANGUAGE_SOURCE: Final = {
    Reason.IVR_LANGUAGE: "ivr",
    Reason.CALLER_PREFIX: "prefix",
    Reason.DID_COUNTRY: "country",
}
# The event fields a call_events row keeps: what the call's history needs, never a
# phone number or a channel name (erasure and masking stay in calls.caller_number).
_EVENT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "QueueCallerJoin": ("Queue", "Position"),
    "QueueCallerAbandon": ("Queue", "Position", "OriginalPosition", "HoldTime"),
    "AgentCalled": ("Queue", "MemberName"),
    "AgentConnect": ("Queue", "MemberName", "HoldTime", "RingTime"),
    "AgentComplete": ("Queue", "MemberName", "HoldTime", "TalkTime", "Reason"),
    "AgentRingNoAnswer": ("Queue", "MemberName", "RingTime"),
    v.EVENT_QUEUE_EXIT: ("Queue", "Status"),
    v.EVENT_FALLBACK: ("Did",),
    v.EVENT_AFTER_HOURS: ("Action",),
    v.EVENT_REJECT: ("Did",),
    v.EVENT_TRUNK_RESULT: ("Trunk", "DialStatus"),
    v.EVENT_IVR: ("Menu", "Step"),
    v.EVENT_LOOKUP: ("Lookup", "Result", "Answer"),
    v.EVENT_HELD_ROUTE: ("Did", "Lang", "Source"),
    v.EVENT_SURVEY: ("Score",),
    v.EVENT_TRANSFER: ("Kind", "Target"),
}
_FIELD_MAX = 80
# AgentComplete's Reason as the machine keeps it: these strings, not one per event
_COMPLETE_REASONS: Final = {r: r for r in ("caller", "agent", "transfer")}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# The call_events row close_gone writes: the call's history says its end went unseen.
END_UNSEEN: Final = "EndUnseen"
_IDLE_SCAN: Final = timedelta(seconds=60)
_DECISIONS_HELD: Final = 4096  # distinct decision columns shared at once (_shared)


@dataclass(frozen=True, slots=True)
class MachineSettings:
    """What the record needs from the config; ``from_config`` builds it."""

    sites: frozenset[str]
    wrapup: Mapping[tuple[str, str], float]  # (site, queue) -> wrapuptime (s)
    queues: Mapping[tuple[str, str], tuple[str, str]]  # (site, queue) -> (service, language)
    number_kind: Mapping[str, str]  # DID -> local / tollfree
    calling_codes: tuple[tuple[str, str], ...]  # (calling code, country), longest first
    short_abandon: float = 5.0  # seconds: an abandon before this is a short abandon
    # seconds an ended call waits for a late site's events (another AMI link's lag; a
    # survey score after the hang-up comes before the caller's leg ends)
    linger: float = 10.0
    idle: float = 4 * 3600.0  # seconds without events after which a call is dropped
    # calls held at once: ~1.6 KB each (tracemalloc, an answered call in progress), so at
    # most ~32 MB; beyond, the least recently active goes (counted in dropped_calls)
    max_calls: int = 20_000


class RecordMachine:
    """Per-call state over every site's events; ``feed`` and ``decision`` return records."""

    def __init__(self, settings: MachineSettings) -> None:
        self.settings = settings
        # Calls in progress (and ended ones a late event brought back) as objects, ended
        # calls packed (state.pack) while they linger; ``calls`` reads both as one.
        self._live: dict[str, Call] = {}
        self._packed: dict[str, bytes] = {}
        self.calls: Mapping[str, Call] = CallTable(self._live, self._packed, self._revive)
        # The live calls' legs: LINKEDID_END names a leg, not a call. A packed call's
        # legs have all ended, and Asterisk ends a linkedid once: a repeat (the same event
        # twice) would write its rows again as they are, so it is skipped (leg_unknown).
        self._legs: dict[tuple[str, str], Leg] = {}
        self.skipped: dict[str, int] = {}
        self.events = 0  # events that taught something
        self.dropped_calls = 0  # calls forgotten before they ended (idle or memory)
        self._ended: deque[tuple[datetime, str]] = deque()  # (ended at, call ID), in order
        self._idle_scan = _EPOCH
        self._decisions: dict[tuple[Any, ...], dict[str, Any]] = {}  # _shared
        self._handlers = {
            "QueueCallerJoin": self._join,
            "QueueCallerLeave": self._nothing,
            "QueueCallerAbandon": self._abandon,
            "AgentCalled": self._nothing,
            "AgentConnect": self._connect,
            "AgentComplete": self._complete,
            "AgentRingNoAnswer": self._ring_no_answer,
            "Hold": self._hold,
            "Unhold": self._unhold,
            "BridgeLeave": self._bridge_leave,
            v.EVENT_QUEUE_EXIT: self._queue_exit,
            v.EVENT_FALLBACK: self._fallback,
            v.EVENT_AFTER_HOURS: self._after_hours,
            v.EVENT_REJECT: self._reject,
            v.EVENT_TRUNK_RESULT: self._trunk_result,
            v.EVENT_IVR: self._ivr,
            v.EVENT_LOOKUP: self._lookup,
            v.EVENT_HELD_ROUTE: self._nothing,
            v.EVENT_SURVEY: self._survey,
            v.EVENT_TRANSFER: self._nothing,
            # the desk's hold (its room, ccb-room-hold): the same as a phone's hold
            v.EVENT_HOLD: self._hold,
            v.EVENT_UNHOLD: self._unhold,
        }

    # -- input ----------------------------------------------------------------------
    def feed(self, site: str, event: Event, received: datetime) -> list[Out]:
        """The records one AMI event teaches; [] (and a count in ``skipped``) for an
        event that names no call this machine can place, or has garbage fields."""
        name = event.get("Event")
        if name == "UserEvent":
            name = event.get("UserEvent")
        elif name == CEL:
            if event.get("EventName") != LINKEDID_END:
                return self._skip("cel_other")
            return self._linkedid_end(site, event, received)
        handler = self._handlers.get(name or "")
        if handler is None:
            return self._skip("unknown_event")
        assert name is not None
        at = _timestamp(event.get("Timestamp"), received)
        linkedid = event.get("Linkedid", "")
        text = _call_id_text(event, name)
        known = self._find(text) if text is not None else None
        cid = known.cid if known is not None else callid.parse(text) if text else None
        if cid is None:
            return self._skip("no_call_id")
        if not linkedid or len(linkedid) > 64 or not _clean(linkedid):
            return self._skip("bad_linkedid")
        call = self._call(cid, at, known)
        if not call.legs and name in _STARTS:
            call.whole = True
        leg = self._leg(call, site, linkedid, at)
        out: list[Out] = []
        if not handler(call, leg, event, at, out):
            return self._skip(f"bad_{name}")
        self.events += 1
        if site == cid.entry_site and call.columns.get("route_source") in _HELD_MAY_SET:
            held = _held_source(event)
            if held is not None:
                # What the PBX did wins over a decision it may never have received (the
                # bridge answered after the dialplan gave up on it).
                self._columns(call)["route_source"] = held
            elif name in _ROUTED and call.columns.get("route_source") is None:
                # A route step with no decision, no fallback event and no CCB_HELD before
                # it: the fresh held route ccb-inbound took (it sets no variable: each
                # variable set costs Asterisk a channel snapshot, BENCHMARKS §1e).
                self._columns(call)["route_source"] = RouteSource.HELD.value
        if site == cid.entry_site and call.caller is None:
            num = event.get("CallerIDNum", "")
            if num and num != "<unknown>" and len(num) <= 64 and _clean(num):
                call.caller = num  # written with the summary
        if name not in _UNRECORDED:
            out.append(("call_events", _event_row(site, name, event, cid.text, at)))
        if call.ended is not None:  # a late event of an ended call: packed again
            self._settle(call)
        return out

    def decision(self, call: CallRequest, decision: Decision, at: datetime) -> list[Out]:
        """The bridge's routing decision for a call (at FastAGI time): the calls row's
        number, caller, language, service and route columns."""
        cid = callid.parse(call.call_id) if call.call_id else None
        if cid is None:
            return self._skip("decision_no_call_id")
        state = self._call(cid, at)
        if not state.legs:
            state.whole = True
        site, uid = call.receiving_site, call.uniqueid
        if site in self.settings.sites and uid and len(uid) <= 64 and _clean(uid):
            # The caller's channel at the entry site: its linkedid names the entry leg, so
            # a caller who hangs up before any other event still closes the call.
            self._leg(state, site, uid, at)
        # the enum's own value strings, not a copy a call (str() copies a StrEnum's)
        reasons = [r.value for r in decision.reasons]
        source = next(
            (_LANGUAGE_SOURCE[r] for r in decision.reasons if r in _LANGUAGE_SOURCE), None
        )
        cols: dict[str, Any] = {
            "service": decision.service,
            "language": decision.language,
            "language_source": source or ("default" if decision.language else None),
            "target_site": decision.site,
            "queue": _interned(decision.queue),
            "reasons": reasons,
            "static_fallback": False,
        }
        if state.columns.get("route_source") is None:
            cols["route_source"] = RouteSource.BRIDGE.value
        if decision.outcome == RouteOutcome.AFTER_HOURS and decision.action in _AFTER_HOURS_OUTCOME:
            state.after_hours = decision.action
            cols["after_hours_action"] = decision.action
        if decision.outcome == RouteOutcome.REJECT:
            state.rejected = True
        given = {k: val for k, val in cols.items() if val is not None}
        if state.columns:
            self._columns(state).update(given)
        else:
            state.columns, state.shared_columns = self._shared(given), True
        if call.did and len(call.did) <= 32 and _clean(call.did):
            state.did = call.did
        if call.caller and len(call.caller) <= 64 and _clean(call.caller):
            state.caller = call.caller
        row = {**state.key_columns(), **cols, **self._caller_columns(state)}
        return [("calls", {k: val for k, val in row.items() if val is not None})]

    @property
    def packed(self) -> int:
        """Ended calls waiting packed for late events (of ``len(calls)``)."""
        return len(self._packed)

    def open_legs(self, site: str) -> bool:
        """Has ``site`` a leg not yet ended?"""
        return any(k[0] == site and lg.ended_at is None for k, lg in self._legs.items())

    def close_gone(self, site: str, alive: Collection[str], at: datetime) -> list[Out]:
        """After ``site``'s AMI link came back at ``at`` (its coverage gap's end): the
        site's open legs whose channels are gone (``gone``) end unseen (``end_unseen``)."""
        return self.end_unseen(site, self.gone(site, alive, at), at)

    def gone(self, site: str, alive: Collection[str], at: datetime) -> list[Leg]:
        """``site``'s open legs whose channels are gone: their linkedid is not in
        ``alive`` (the site's channels' linkedids and uniqueids from CoreShowChannels),
        one leg a call and linkedid. Calls that saw an event at or after ``at`` are left
        alone (their channels may be younger than the list)."""
        gone: dict[tuple[str, str], Leg] = {}
        for (leg_site, _), leg in self._legs.items():
            if leg_site != site or leg.ended_at is not None or leg.base in alive:
                continue
            call = self._live.get(leg.call_id)
            if call is not None and call.seen < at:
                gone.setdefault((leg.call_id, leg.base), leg)
        return list(gone.values())

    def end_unseen(self, site: str, legs: Iterable[Leg], at: datetime) -> list[Out]:
        """``legs`` (of ``gone``) ended unseen while the link was down: they end at ``at``
        and are marked (``end_lost``, an ``EndUnseen`` event): their talk, hold and who
        hung up are left out, and an unanswered call gets no outcome it could only
        guess. Without this they stayed in memory for ``idle`` (4 h) or until
        ``max_calls``: ~1.7 KB each, a reconnect storm's worth is 30 MB. A leg that has
        ended meanwhile, or whose call is gone or active since ``at``, is left alone."""
        out: list[Out] = []
        for leg in legs:
            if leg.ended_at is not None:  # (before the lookup: a packed call stays packed)
                continue
            call = self._find(leg.call_id)
            if call is None or call.seen >= at:
                continue
            ended = self._end_leg(call, site, leg.base, at, lost=True)
            out += [("legs", lg.row()) for lg in ended]
            out.append(("calls", self._summary(call)))
            row = {"Uniqueid": leg.base, "Timestamp": f"{at.timestamp():.6f}"}
            out.append(("call_events", _event_row(site, END_UNSEEN, row, call.cid.text, at)))
            self._settle(call)
        return out

    def sweep(self, now: datetime) -> int:
        """Forget calls that ended ``linger`` ago (in the order they ended: no scan of
        every call) and, at most once a minute, calls that saw nothing for ``idle``."""
        linger = timedelta(seconds=self.settings.linger)
        gone = 0
        while self._ended and now - self._ended[0][0] >= linger:
            _, key = self._ended.popleft()
            c = self._live.get(key)
            if c is not None:
                if c.ended is not None and now - c.ended >= linger:
                    self._forget(c)
                    gone += 1
                continue
            packed = self._packed.get(key)
            if packed is not None and now - ended_of(packed) >= linger:
                del self._packed[key]
                gone += 1
        if now - self._idle_scan >= _IDLE_SCAN:
            self._idle_scan = now
            idle = timedelta(seconds=self.settings.idle)
            for c in [c for c in self._live.values() if c.ended is None and now - c.seen >= idle]:
                self._forget(c)
                self.dropped_calls += 1
                gone += 1
        return gone

    def _forget(self, call: Call) -> None:
        del self._live[call.cid.text]
        for leg_key in call.legs:
            self._legs.pop(leg_key, None)

    # -- ended calls packed -------------------------------------------------------------
    def _settle(self, call: Call) -> None:
        """An ended call waits for late events packed (state.pack): a few hundred bytes
        instead of ~1,650 as objects. Kept as objects when it cannot be packed exactly."""
        if call.ended is None:
            return
        try:
            packed = pack(call)
        except Unpackable:
            return
        self._forget(call)
        self._packed[call.cid.text] = packed

    def _revive(self, text: str) -> Call:
        """The packed call ``text`` as objects again (a late event, or a reader)."""
        call = self._live[text] = unpack(self._packed.pop(text))
        for key, leg in call.legs.items():
            if key[1] == leg.base:  # not an earlier segment's key (_segment)
                self._legs.setdefault(key, leg)
        return call

    def _find(self, text: str) -> Call | None:
        call = self._live.get(text)
        if call is None and text in self._packed:
            call = self._revive(text)
        return call

    # -- state --------------------------------------------------------------------------
    def _shared(self, columns: dict[str, Any]) -> dict[str, Any]:
        """One dict for every call given the same decision columns (a deployment has a
        few hundred distinct decisions, not one a call: ~280 bytes a call in progress);
        a call writing to its columns copies them first (``_columns``)."""
        # (reasons: a list, unhashable)
        key = (*columns, *[tuple(x) if type(x) is list else x for x in columns.values()])
        shared = self._decisions.get(key)
        if shared is None:
            if len(self._decisions) >= _DECISIONS_HELD:
                self._decisions.clear()  # calls keep theirs; new ones start a new set
            shared = self._decisions[key] = columns
        return shared

    def _columns(self, call: Call) -> dict[str, Any]:
        """The call's own columns, to write to (shared ones are copied first)."""
        if call.shared_columns:
            call.columns = dict(call.columns)
            call.shared_columns = False
        return call.columns

    def _skip(self, why: str) -> list[Out]:
        self.skipped[why] = self.skipped.get(why, 0) + 1
        return []

    def _call(self, cid: callid.CallId, at: datetime, known: Call | None = None) -> Call:
        call = known or self._find(cid.text)  # known: found by the caller already
        if call is None:
            if len(self._live) + len(self._packed) >= self.settings.max_calls:
                self._evict()
            call = self._live[cid.text] = Call(cid)
        if at > call.seen:
            call.seen = at
        return call

    def _evict(self) -> None:
        # A tenth at once: one scan per thousands of new calls, not one per call. Ended
        # (packed) calls first, earliest ended first: their rows are written, only a late
        # event of theirs is lost; then the live calls seen least recently.
        n = max(1, (len(self._live) + len(self._packed)) // 10)
        for text in list(itertools.islice(self._packed, n)):
            del self._packed[text]
            self.dropped_calls += 1
            n -= 1
        for c in heapq.nsmallest(n, self._live.values(), key=lambda c: c.seen):
            self._forget(c)
            self.dropped_calls += 1

    def _leg(self, call: Call, site: str, linkedid: str, at: datetime) -> Leg:
        key = (site, linkedid)
        leg = call.legs.get(key)
        if leg is None:
            leg = call.legs[key] = Leg(site, linkedid, call.cid.text, at)
            self._legs[key] = leg
            call.ended = None  # a new leg: the call goes on
        return leg

    def _segment(self, call: Call, leg: Leg, at: datetime) -> Leg:
        """A new segment of ``leg`` (same site and linkedid) for the next agent: the old
        one keeps its answer and talk; LINKEDID_END ends them all."""
        n = sum(1 for lg in call.legs.values() if lg.site == leg.site and lg.base == leg.base)
        key = (leg.site, leg.linkedid)
        call.legs[(leg.site, f"{leg.base}/{n}")] = leg
        new = Leg(leg.site, f"{leg.base}/{n + 1}"[:64], call.cid.text, at, base=leg.base)
        call.legs[key] = self._legs[key] = new
        return new

    # -- app_queue ----------------------------------------------------------------------
    def _nothing(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        return True

    def _join(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        queue = _name(ev.get("Queue"))
        if queue is None:
            return False
        if leg.answered_at is not None and leg.complete_reason == "transfer":
            leg = self._segment(call, leg, at)  # the caller queues again after a transfer
        leg.queue = queue
        if leg.queued_at is None:
            leg.queued_at = at
        return True

    def _abandon(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        if leg.abandoned_at is None:
            leg.abandoned_at = at
        return True

    def _connect(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        agent = _name(ev.get("MemberName"))
        queue = _name(ev.get("Queue"))
        if agent is None or queue is None:
            return False
        if leg.answered_at is not None and leg.complete_reason == "transfer":
            # Transferred within the site (same linkedid): the next agent's answer is a
            # leg segment of its own, or its talk would run from the first agent's answer
            # (the Local-channel talk-time trap's cousin).
            leg = self._segment(call, leg, at)
        leg.agent, leg.queue = agent, queue
        if leg.answered_at is None:
            leg.answered_at = at
            leg.agent_uniqueid = ev.get("DestUniqueid") or None
        return True

    def _complete(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        reason = _COMPLETE_REASONS.get(ev.get("Reason", ""))
        if reason is None:
            return False
        leg.talk_end = at
        leg.complete_reason = reason
        if leg.agent is None:
            leg.agent = _name(ev.get("MemberName"))
        return True

    def _ring_no_answer(
        self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]
    ) -> bool:
        leg.ring_no_answers += 1
        return True

    def _hold(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        if leg.answered_at is not None and leg.hold_since is None:
            leg.hold_since = at
        return True

    def _unhold(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        if leg.hold_since is not None:
            leg.hold_s += max(0.0, (at - leg.hold_since).total_seconds())
            leg.hold_since = None
        return True

    def _bridge_leave(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        if leg.answered_at is not None and leg.first_leave is None:
            uid = ev.get("Uniqueid")
            if uid:
                agent = leg.agent_uniqueid
                leg.first_leave = "" if agent is None else "agent" if uid == agent else "caller"
                leg.agent_uniqueid = None  # what it was kept for is settled
        return True

    # -- the dialplan's UserEvents ---------------------------------------------------
    def _queue_exit(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        status = ev.get("Status", "")
        if not status:
            return True  # Queue() returned without a status (a hang-up): nothing to add
        if not status.isalpha() or len(status) > 16:
            return False
        leg.queue_status = sys.intern(status.upper())
        return True

    def _fallback(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        columns = self._columns(call)
        columns["static_fallback"] = True
        columns["route_source"] = RouteSource.STATIC.value
        did = ev.get("Did", "")
        if did and len(did) <= 32 and _clean(did):
            call.did = did
        out.append(
            ("calls", {**call.key_columns(), "static_fallback": True, **self._caller_columns(call)})
        )
        return True

    def _after_hours(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        action = ev.get("Action", "")
        if action not in _AFTER_HOURS_OUTCOME:
            return False
        call.after_hours = action
        self._columns(call)["after_hours_action"] = action
        return True

    def _reject(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        call.rejected = True
        return True

    def _trunk_result(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        status = ev.get("DialStatus", "")
        if not status.isalpha():
            return False
        if status.upper() in FAILOVER_STATUSES:
            call.trunk_failovers += 1
        return True

    def _ivr(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        menu, step = _name(ev.get("Menu")), _name(ev.get("Step"))
        if menu is None or step is None or len(call.ivr_path) >= 50:
            return menu is not None and step is not None
        call.ivr_path = (*call.ivr_path, sys.intern(f"{menu}:{step}"))
        return True

    def _lookup(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        result = ev.get("Result", "")
        outcome = result if result in (v.LOOKUP_OK, v.LOOKUP_FAILED) else "unavailable"
        self._columns(call)["lookup_outcome"] = outcome
        return True

    def _survey(self, call: Call, leg: Leg, ev: Event, at: datetime, out: list[Out]) -> bool:
        score = ev.get("Score", "")
        if len(score) != 1 or score not in "12345":
            return False
        self._columns(call)["satisfaction"] = int(score)
        out.append(("calls", {**call.key_columns(), "satisfaction": int(score)}))
        return True

    # -- CEL: a site's leg is over ----------------------------------------------------
    def _linkedid_end(self, site: str, ev: Event, received: datetime) -> list[Out]:
        linkedid = ev.get("LinkedID", "")
        leg = self._legs.get((site, linkedid))
        if leg is None:
            # A call without CCB_CALLID (an outbound call, a probe), one whose events all
            # came before this bridge started, or a repeat of an ended call's end: nothing
            # to close.
            return self._skip("leg_unknown")
        call = self._live.get(leg.call_id)
        if call is None:  # pragma: no cover - legs go with their call
            return self._skip("leg_unknown")
        at = _timestamp(ev.get("Timestamp"), received)
        if at > call.seen:
            call.seen = at
        ended = self._end_leg(call, site, leg.base, at, lost=False)
        self.events += 1
        out: list[Out] = [
            *(("legs", lg.row()) for lg in ended),
            ("calls", self._summary(call)),
            ("call_events", _event_row(site, f"{CEL}:{LINKEDID_END}", ev, leg.call_id, at)),
        ]
        self._settle(call)
        return out

    def _end_leg(self, call: Call, site: str, base: str, at: datetime, lost: bool) -> list[Leg]:
        """The leg ``base`` at ``site`` and its earlier segments (agents before a transfer
        within the site) end at ``at``; the call too once every leg has. ``lost``: the
        end went unseen (close_gone), so a hold running then is not counted."""
        ended = [lg for lg in call.legs.values() if lg.site == site and lg.base == base]
        for lg in ended:
            if lg.ended_at is None:
                lg.ended_at = at
                lg.end_lost = lost
            if lg.hold_since is not None:
                if not lost:
                    lg.hold_s += max(0.0, (at - lg.hold_since).total_seconds())
                lg.hold_since = None
        if site == call.cid.entry_site:
            call.entry_ended = True
        if all(lg.ended_at is not None for lg in call.legs.values()):
            call.ended = at
            self._ended.append((at, call.cid.text))
        return ended

    # -- the summary ---------------------------------------------------------------------
    def _caller_columns(self, call: Call) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if call.did is not None:
            out["did"] = call.did
            kind = self.settings.number_kind.get(call.did)
            if kind is not None:
                out["number_kind"] = kind
        if call.caller is not None:
            out["caller_number"] = call.caller
            country = _country(call.caller, self.settings.calling_codes)
            if country is not None:
                out["caller_country"] = country
        return out

    def _summary(self, call: Call) -> dict[str, Any]:
        """The calls row as every leg seen so far tells it."""
        legs = sorted(call.legs.values(), key=lambda lg: lg.arrived_at)
        answered = sorted(
            (lg for lg in legs if lg.answered_at is not None),
            key=lambda lg: lg.answered_at or lg.arrived_at,
        )
        queued = [lg.queued_at for lg in legs if lg.queued_at is not None]
        ends = [lg.ended_at for lg in legs if lg.ended_at is not None]
        row: dict[str, Any] = {**call.key_columns(), **call.columns}
        row.update(self._caller_columns(call))
        queued_at = min(queued) if queued else None
        row["queued_at"] = queued_at
        if call.trunk_failovers:
            row["trunk_failovers"] = call.trunk_failovers
        if call.ivr_path:
            row["ivr_path"] = list(call.ivr_path)
        if answered:
            leg = answered[0]
            assert leg.answered_at is not None
            row["answered_at"] = leg.answered_at
            row["agent"] = leg.agent
            row["target_site"] = leg.site
            if leg.queue is not None:
                row["queue"] = leg.queue
            if queued_at is not None:
                row["wait_s"] = _seconds(queued_at, leg.answered_at)
            end = leg.talk_end or (None if leg.end_lost else leg.ended_at)
            if end is not None:
                row["hold_s"] = leg.hold_s
                row["talk_s"] = max(0.0, _seconds(leg.answered_at, end) - leg.hold_s)
                row["wrapup_s"] = float(self.settings.wrapup.get((leg.site, leg.queue or ""), 0))
                row["outcome"] = Outcome.ANSWERED.value
                by = _hung_up_by(leg)
                if by is not None:
                    row["hung_up_by"] = by.value
            elif leg.end_lost:
                row["outcome"] = Outcome.ANSWERED.value  # certain; its talk is not known
        if "target_site" not in row:
            # No decision seen (a held or static route took the call): where it queued.
            queued_legs = [lg for lg in legs if lg.queue is not None]
            if queued_legs:
                leg = queued_legs[-1]
                row["target_site"], row["queue"] = leg.site, leg.queue
        meta = self.settings.queues.get((row.get("target_site", ""), row.get("queue", "")))
        if meta is not None:
            row.setdefault("service", meta[0])
            row.setdefault("language", meta[1])
        if not call.entry_ended or not ends:
            return {k: val for k, val in row.items() if val is not None}
        # The entry site's leg is over: so is the call for the caller.
        row["ended_at"] = max(ends)
        if not answered and call.whole:
            self._unanswered(call, legs, queued_at, row, lost=any(lg.end_lost for lg in legs))
        return {k: val for k, val in row.items() if val is not None}

    def _unanswered(
        self,
        call: Call,
        legs: list[Leg],
        queued_at: datetime | None,
        row: dict[str, Any],
        lost: bool = False,
    ) -> None:
        abandoned = [lg.abandoned_at for lg in legs if lg.abandoned_at is not None]
        statuses = {lg.queue_status for lg in legs if lg.queue_status is not None}
        end: datetime = row["ended_at"]
        known = abandoned or "TIMEOUT" in statuses or call.after_hours or call.rejected
        if lost and not known:
            # Its end went unseen (close_gone): how it ended, and its wait, are not known.
            return
        if queued_at is not None and (abandoned or not lost):
            row["wait_s"] = _seconds(queued_at, abandoned[0] if abandoned else end)
        if abandoned:
            short = row.get("wait_s", 0.0) < self.settings.short_abandon
            row["outcome"] = (Outcome.SHORT_ABANDON if short else Outcome.ABANDONED).value
            row["hung_up_by"] = HungUpBy.CALLER.value
        elif "TIMEOUT" in statuses:
            row["outcome"] = Outcome.TIMEOUT.value
            row["hung_up_by"] = HungUpBy.SYSTEM.value
        elif call.after_hours is not None:
            row["outcome"] = _AFTER_HOURS_OUTCOME[call.after_hours].value
        elif call.rejected:
            row["outcome"] = Outcome.REJECTED.value
            row["hung_up_by"] = HungUpBy.SYSTEM.value
        elif queued_at is not None and not statuses:
            # Left the queue with no abandon event and no exit status: the caller hung up
            # on a leg app_queue did not see end (e.g. the far site's trunk dropped).
            row["outcome"] = Outcome.ABANDONED.value
            row["hung_up_by"] = HungUpBy.CALLER.value
        else:
            row["outcome"] = Outcome.FAILED.value


def _hung_up_by(leg: Leg) -> HungUpBy | None:
    if leg.first_leave:
        return HungUpBy.AGENT if leg.first_leave == "agent" else HungUpBy.CALLER
    # No bridge event seen (a restart mid-call): app_queue's word, right when the caller
    # hung up; "transfer" means the agent moved the call on.
    return {"caller": HungUpBy.CALLER, "agent": HungUpBy.AGENT, "transfer": HungUpBy.AGENT}.get(
        leg.complete_reason or ""
    )


# -- field helpers -----------------------------------------------------------------------
def _timestamp(raw: str | None, fallback: datetime) -> datetime:
    """The event's own instant (``Timestamp: 1795888704.144284``), or ``fallback``."""
    if raw:
        try:
            value = float(raw)
            if 0 < value < 1e11:
                return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):
            pass
    return fallback


def _chan_variables(event: Event) -> Iterable[str]:
    getall = getattr(event, "getall", None)
    if getall is not None:
        values: list[str] = getall("ChanVariable")
        return values
    one = event.get("ChanVariable")
    return (one,) if one is not None else ()


_PREFIX: Final = v.CALLID + "="
_HELD_PREFIX: Final = v.HELD_SOURCE + "="
# CCB_HELD as the dialplan sets it (manager.conf channelvars carries it in every event)
_HELD_SOURCES: Final = {
    v.HELD_FRESH: RouteSource.HELD.value,
    v.HELD_FALLBACK: RouteSource.FALLBACK.value,
}
_HELD_MAY_SET: Final = (None, RouteSource.BRIDGE.value)  # static, held, fallback stay
# The events of a route taken at the entry site (a queue joined, a trunk tried, after
# hours, a reject): none of them comes before the route step of a call.
_ROUTED: Final = frozenset(
    ("QueueCallerJoin", v.EVENT_TRUNK_RESULT, v.EVENT_AFTER_HOURS, v.EVENT_REJECT)
)


def _held_source(event: Event) -> str | None:
    """The route source the event's CCB_HELD channel variable names, else None."""
    for item in _chan_variables(event):
        if isinstance(item, str) and item.startswith(_HELD_PREFIX):
            return _HELD_SOURCES.get(item[len(_HELD_PREFIX) :])
    return None


def _call_id_text(event: Event, name: str) -> str | None:
    """The event's CCB_CALLID as written (parsed once per call, by the caller)."""
    if name == v.EVENT_SURVEY:
        given = event.get("CallID")
        if given:
            return given
    for item in _chan_variables(event):
        if isinstance(item, str) and item.startswith(_PREFIX):
            return item[len(_PREFIX) :]
    return None


def _clean(text: str) -> bool:
    return text.isprintable() and text.isascii()


def _name(raw: str | None) -> str | None:
    """A queue, agent, menu or step name: short printable text, else None. Interned: a
    config's few hundred names, held by thousands of calls, once each (CPython frees an
    interned string no one holds, so garbage names do not pile up)."""
    if not raw or len(raw) > 64 or not _clean(raw):
        return None
    return sys.intern(raw)


def _interned(text: str | None) -> str | None:
    return None if text is None else sys.intern(text)


def _seconds(a: datetime, b: datetime) -> float:
    return max(0.0, (b - a).total_seconds())


def _country(number: str, codes: tuple[tuple[str, str], ...]) -> str | None:
    digits = number[1:] if number.startswith("+") else number[2:] if number.startswith("00") else ""
    if not digits.isdigit():
        return None
    for code, country in codes:
        if digits.startswith(code) and len(digits) > len(code):
            return country
    return None


def _event_row(site: str, name: str, ev: Event, call_id: str, at: datetime) -> dict[str, Any]:
    uid = ev.get("Uniqueid") or ev.get("UniqueID") or ""
    dest = ev.get("DestUniqueid", "")
    key = f"{uid}/{dest}/{name}/{ev.get('Timestamp', at.timestamp())}"[:160]
    if not _clean(key):
        key = f"{call_id}/{name}/{at.timestamp()}"
    fields = {
        k: val[:_FIELD_MAX]
        for k in _EVENT_FIELDS.get(name, ())
        if (val := ev.get(k)) is not None and _clean(val)
    }
    return {
        "site": site,
        "event_key": key,
        "call_id": call_id,
        "at": at,
        "name": name[:64],
        "fields": fields,
    }


def settings_from_config(config: Config, **limits: Any) -> MachineSettings:
    """The machine's settings for a deployment: sites, wrap-up per queue, number kinds."""
    wrapup = {
        (s.name, queue_name(o.service, lang)): float(o.queue.wrapuptime)
        for s in config.sites
        for o in s.offerings
        for lang in o.languages
    }
    codes = sorted(
        ((c.calling_code.lstrip("+"), c.code) for c in config.countries if len(c.code) == 2),
        key=lambda item: -len(item[0]),
    )
    queues = {
        (s.name, queue_name(o.service, lang)): (o.service, lang)
        for s in config.sites
        for o in s.offerings
        for lang in o.languages
    }
    return MachineSettings(
        sites=frozenset(s.name for s in config.sites),
        wrapup=wrapup,
        queues=queues,
        number_kind={n.did: n.kind.value for n in config.numbers},
        calling_codes=tuple(codes),
        # the same threshold the reports split abandons by (records.short_abandon_s)
        **{"short_abandon": config.records.short_abandon_s, **limits},
    )
