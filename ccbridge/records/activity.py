"""Agent activity for the agent report: logins, pauses and rings, from app_queue's AMI events.

One ``agent_activity`` row per change (``ActivityKind``): QueueMemberAdded -> login (and
pause when the member is added paused), QueueMemberRemoved -> logout, QueueMemberPause ->
pause/unpause, AgentCalled -> called, AgentRingNoAnswer -> ring_no_answer. A ``QueueMember``
event (the answer to the QueueStatus resync the bridge sends on every connect) logs in a
member not seen yet: static members of queues.conf never send QueueMemberAdded.

The event's own ``Timestamp`` (manager.conf ``timestampevents``) dates the row, so two
bridges write the same key and the row is written once; without one, the bridge's clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from ccbridge.events import EventBus
from ccbridge.store.schema import ActivityKind

Put = Callable[[str, Mapping[str, Any]], bool]  # RecordWriter.put

EVENTS: Final = frozenset(
    {
        "QueueMemberAdded",
        "QueueMemberRemoved",
        "QueueMemberPause",
        "QueueMember",
        "AgentCalled",
        "AgentRingNoAnswer",
    }
)
_TRUE = ("1", "true", "yes")


def _stamp(event: Mapping[str, str], now: Callable[[], datetime]) -> datetime:
    raw = event.get("Timestamp")
    if raw:
        try:
            t = float(raw)
        except ValueError:
            t = math.nan
        if math.isfinite(t) and 0 < t < 32_503_680_000:  # before year 3000
            return datetime.fromtimestamp(t, UTC)
    return now()


class ActivityRecorder:
    """Subscribed to EVENTS, puts one agent_activity record per change; never raises."""

    def __init__(self, put: Put, now: Callable[[], datetime]) -> None:
        self._put = put
        self._now = now
        # (site, agent, queue) -> paused, for the members seen logged in
        self._members: dict[tuple[str, str, str], bool] = {}
        self.skipped = 0  # events without a queue or a member: nothing to record
        self.recorded = 0

    def subscribe(self, bus: EventBus) -> None:
        for name in sorted(EVENTS):
            bus.subscribe(name, self.on_event)

    def _row(
        self,
        site: str,
        agent: str,
        queue: str,
        kind: ActivityKind,
        at: datetime,
        reason: str | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "site": site,
            "agent": agent,
            "queue": queue,
            "kind": kind.value,
            "at": at,
        }
        if reason:
            values["reason"] = reason[:80]
        if self._put("agent_activity", values):
            self.recorded += 1

    def on_event(self, site: str, event: Mapping[str, str]) -> None:
        name = event.get("Event")
        queue = event.get("Queue") or ""
        agent = event.get("MemberName") or event.get("Interface") or ""
        if not queue or not agent or name not in EVENTS:
            self.skipped += 1
            return
        at = _stamp(event, self._now)
        key = (site, agent, queue)
        paused = event.get("Paused", "0").strip().lower() in _TRUE
        reason = event.get("PausedReason") or event.get("Reason")
        if name == "AgentCalled":
            self._row(site, agent, queue, ActivityKind.CALLED, at)
        elif name == "AgentRingNoAnswer":
            self._row(site, agent, queue, ActivityKind.RING_NO_ANSWER, at)
        elif name == "QueueMemberRemoved":
            self._members.pop(key, None)
            self._row(site, agent, queue, ActivityKind.LOGOUT, at)
        elif name == "QueueMemberAdded" or key not in self._members:
            # Added, or a member first seen in a resync or a pause (it was logged in
            # before the bridge watched): its login time counts from here.
            self._members[key] = paused
            self._row(site, agent, queue, ActivityKind.LOGIN, at)
            if paused:
                self._row(site, agent, queue, ActivityKind.PAUSE, at, reason)
        elif self._members[key] != paused:
            # QueueMemberPause, or a resync showing a change missed while disconnected
            self._members[key] = paused
            kind = ActivityKind.PAUSE if paused else ActivityKind.UNPAUSE
            self._row(site, agent, queue, kind, at, reason if paused else None)
