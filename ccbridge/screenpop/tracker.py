"""What a screen pop says about a call, gathered per call ID from decisions and AMI events (pure).

No I/O and no clock: instants come from the events (``Timestamp``) or the caller. The
routing decision (or a held route's) gives the number dialled, the service and language;
the dialplan's ``CcbIvr`` and ``CcbLookup`` UserEvents the IVR path and the self-service
answer; ``QueueCallerJoin`` when the caller started waiting. ``AgentCalled`` (the agent's
phone rings) and ``AgentConnect`` (the agent answered) each make a :class:`Pop`. A call
that crossed sites is one entry: every site's events carry the same ``CCB_CALLID``.
A call's facts are forgotten when it ends (``AgentComplete`` other than a transfer, or
``QueueCallerAbandon``): no pop follows, and the bridge holds only calls in progress
(5,000 ended calls were ~2 MB of its RSS at 150 calls/s, BENCHMARKS.md §4).
Garbage fields are dropped, never raised on: the AMI stream is an input surface.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

from ccbridge import variables as v
from ccbridge.records import callid

RINGING: Final = "agent_ringing"
ANSWERED: Final = "agent_answered"
KINDS: Final = (RINGING, ANSWERED)
EVENTS: Final = (
    "QueueCallerJoin",
    "AgentCalled",
    "AgentConnect",
    "AgentComplete",
    "QueueCallerAbandon",
)
USER_EVENTS: Final = (v.EVENT_IVR, v.EVENT_LOOKUP)
_FED: Final = frozenset(EVENTS + USER_EVENTS)
_MAX_TEXT = 64
_MAX_PATH = 20


@dataclass(slots=True)
class CallFacts:
    """What is known of one call so far."""

    call_id: str
    did: str | None = None
    did_kind: str | None = None
    caller: str | None = None
    service: str | None = None
    language: str | None = None
    ivr_path: tuple[str, ...] = ()  # most calls have none: no empty list each
    lookup_result: str | None = None
    lookup_answer: str | None = None
    queued_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Pop:
    """One screen pop: the agent's phone rings (``agent_ringing``) or was answered."""

    kind: str
    at: datetime
    call_id: str
    site: str
    queue: str
    agent: str
    caller: str | None
    did: str | None
    did_kind: str | None
    service: str | None
    language: str | None
    ivr_path: tuple[str, ...]
    lookup_result: str | None
    lookup_answer: str | None
    waiting_s: float | None
    channel: str | None = None  # the caller's channel at ``site`` (not published)


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    number_kind: Mapping[str, str]  # DID -> local / tollfree
    queues: Mapping[tuple[str, str], tuple[str, str]]  # (site, queue) -> (service, language)
    max_calls: int = 5000  # calls remembered at once; the oldest go first


class PopTracker:
    """Per-call facts (bounded: the oldest calls are forgotten first) and the pops."""

    def __init__(self, settings: TrackerSettings) -> None:
        self.settings = settings
        self.calls: OrderedDict[str, CallFacts] = OrderedDict()
        self.skipped = 0  # events with no usable call ID or garbage fields

    def decision(
        self, call_id: str, did: str, caller: str, service: str | None, language: str | None
    ) -> None:
        """The routing decision (FastAGI or a held route) for ``call_id``."""
        facts = self._facts(call_id)
        if facts is None:
            return
        facts.did = _text(did) or facts.did
        if facts.did is not None:
            facts.did_kind = self.settings.number_kind.get(facts.did)
        facts.caller = _text(caller) or facts.caller
        facts.service = _text(service) or facts.service
        facts.language = _text(language) or facts.language

    def feed(self, site: str, event: Mapping[str, str], received: datetime) -> Pop | None:
        """One AMI event; a Pop for AgentCalled and AgentConnect, else None."""
        name = event.get("Event")
        if name == "UserEvent":
            name = event.get("UserEvent")
        if name not in _FED:  # not one the bus gives it: no facts made for it
            self.skipped += 1
            return None
        text = callid.of_event(event)
        if name in ("AgentComplete", "QueueCallerAbandon"):
            if text and (name == "QueueCallerAbandon" or event.get("Reason") != "transfer"):
                self.calls.pop(text, None)  # the call is over: no pop follows
            return None
        facts = self._facts(text) if text else None
        if facts is None:
            self.skipped += 1
            return None
        at = _timestamp(event.get("Timestamp"), received)
        if name == v.EVENT_IVR:
            menu, step = _text(event.get("Menu")), _text(event.get("Step"))
            if menu and step and len(facts.ivr_path) < _MAX_PATH:
                facts.ivr_path = (*facts.ivr_path, f"{menu}:{step}")
        elif name == v.EVENT_LOOKUP:
            facts.lookup_result = _text(event.get("Result"))
            facts.lookup_answer = _text(event.get("Answer"))
        elif name == "QueueCallerJoin":
            if facts.queued_at is None:
                facts.queued_at = at
            self._caller(facts, event)
        elif name in ("AgentCalled", "AgentConnect"):
            return self._pop(facts, site, name, event, at)
        return None

    def with_did(self, pop: Pop, did: str | None) -> Pop:
        """``pop`` with the number dialled as the caller's channel tells it (``CCB_DID``,
        read when no decision gave it: a held route), remembered for the call's next pop."""
        did = _text(did)
        if did is None:
            return pop
        kind = self.settings.number_kind.get(did)
        facts = self.calls.get(pop.call_id)
        if facts is not None:
            facts.did, facts.did_kind = did, kind
        return replace(pop, did=did, did_kind=kind)

    def forget(self, call_id: str) -> None:
        self.calls.pop(call_id, None)

    def _pop(
        self, facts: CallFacts, site: str, name: str, event: Mapping[str, str], at: datetime
    ) -> Pop | None:
        queue, agent = _text(event.get("Queue")), _text(event.get("MemberName"))
        if queue is None or agent is None:
            self.skipped += 1
            return None
        self._caller(facts, event)
        service, language = facts.service, facts.language
        meta = self.settings.queues.get((site, queue))
        if meta is not None:  # where the call is now says it best (a held or static route)
            service, language = meta
        waiting = None
        if name == "AgentConnect":
            waiting = _seconds(event.get("HoldTime"))
        if waiting is None and facts.queued_at is not None:
            waiting = max(0.0, round((at - facts.queued_at).total_seconds(), 3))
        return Pop(
            kind=RINGING if name == "AgentCalled" else ANSWERED,
            at=at,
            call_id=facts.call_id,
            site=site,
            queue=queue,
            agent=agent,
            caller=facts.caller,
            did=facts.did,
            did_kind=facts.did_kind,
            service=service,
            language=language,
            ivr_path=facts.ivr_path,
            lookup_result=facts.lookup_result,
            lookup_answer=facts.lookup_answer,
            waiting_s=waiting,
            channel=_text(event.get("Channel")),
        )

    def _caller(self, facts: CallFacts, event: Mapping[str, str]) -> None:
        if facts.caller is None:
            num = _text(event.get("CallerIDNum"))
            if num is not None and num != "<unknown>":
                facts.caller = num

    def _facts(self, text: str) -> CallFacts | None:
        facts = self.calls.get(text)
        if facts is not None:
            self.calls.move_to_end(text)
            return facts
        if callid.parse(text) is None:
            return None
        if len(self.calls) >= self.settings.max_calls:
            self.calls.popitem(last=False)
        facts = self.calls[text] = CallFacts(text)
        return facts


def _text(raw: str | None) -> str | None:
    """A short printable ASCII field, else None (a garbage field is not shown)."""
    if not raw or len(raw) > _MAX_TEXT or not raw.isascii() or not raw.isprintable():
        return None
    return raw


def _seconds(raw: str | None) -> float | None:
    try:
        value = float(raw or "")
    except ValueError:
        return None
    return value if 0 <= value < 86_400 * 7 else None


def _timestamp(raw: str | None, fallback: datetime) -> datetime:
    try:
        value = float(raw or "")
    except ValueError:
        return fallback
    if not 0 < value < 1e11:
        return fallback
    return datetime.fromtimestamp(value, UTC)
