"""Agents across sites: the routing state's queue members, plus what only AMI events tell."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from ccbridge.events import EventBus
from ccbridge.routing.state import LiveState, Member

# Device state numbers (ast_device_state) as words for the API.
DEVICE_STATES = (
    "unknown",
    "not_in_use",
    "in_use",
    "busy",
    "invalid",
    "unavailable",
    "ringing",
    "ring_in_use",
    "on_hold",
)


# The AMI events the mirror reads (see on_event): what it subscribes to.
EVENTS: Final = frozenset({"QueueMemberAdded", "QueueMemberPause", "QueueMemberStatus"})


class MemberExtra(NamedTuple):
    """Per (site, interface): what Bridge.state does not keep. (A named tuple: one is
    made per member event, and a tuple is built at C speed.)"""

    pause_reason: str = ""
    logged_in_at: float | None = None  # when QueueMemberAdded was seen (None: before start)
    changed_at: float | None = None


_NOTHING_YET = MemberExtra()
_tuple_new = tuple.__new__  # MemberExtra(...) without its __new__ in Python: once per event


class AgentMirror:
    """Subscribed to the AMI events in EVENTS, it keeps pause reasons and times.

    Membership, pause and device state come from Bridge.state.sites[*].members, which
    the routing reducer already maintains from the same events and resyncs.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.extra: dict[tuple[str, str], MemberExtra] = {}

    def subscribe(self, bus: EventBus) -> None:
        """One handler per event name (no test of the name on the event path)."""
        bus.subscribe("QueueMemberAdded", self._on_added)
        bus.subscribe("QueueMemberPause", self._on_pause)
        bus.subscribe("QueueMemberStatus", self._on_status)

    def on_event(self, site: str, event: Mapping[str, str]) -> None:
        """One AMI event from ``site``, for the names in EVENTS (others are ignored)."""
        name = event.get("Event")
        if name == "QueueMemberAdded":
            self._on_added(site, event)
        elif name == "QueueMemberPause":
            self._on_pause(site, event)
        elif name == "QueueMemberStatus":
            self._on_status(site, event)

    def _on_added(self, site: str, event: Mapping[str, str]) -> None:
        iface = event.get("Interface") or event.get("Location")
        if iface:
            key = (site, iface)
            old = self.extra.get(key, _NOTHING_YET)
            now = self._clock()
            self.extra[key] = MemberExtra(old.pause_reason, old.logged_in_at or now, now)

    def _on_pause(self, site: str, event: Mapping[str, str]) -> None:
        iface = event.get("Interface") or event.get("Location")
        if iface:
            key = (site, iface)
            old = self.extra.get(key, _NOTHING_YET)
            paused = event.get("Paused", "0").strip().lower() in ("1", "true", "yes")
            reason = event.get("PausedReason") or event.get("Reason") or ""
            self.extra[key] = MemberExtra(reason if paused else "", old.logged_in_at, self._clock())

    def _on_status(self, site: str, event: Mapping[str, str]) -> None:
        """QueueMemberStatus: the device changed state (three times a queue call)."""
        iface = event.get("Interface") or event.get("Location")
        if iface:
            key = (site, iface)
            extra = self.extra
            old = extra.get(key, _NOTHING_YET)
            extra[key] = _tuple_new(MemberExtra, (old[0], old[1], self._clock()))

    def forget(self, site: str, iface: str) -> None:
        self.extra.pop((site, iface), None)


def _member_json(queue: str, m: Member) -> dict[str, Any]:
    return {
        "queue": queue,
        "paused": m.paused,
        "in_call": m.in_call,
        "penalty": m.penalty,
        "logged_in": m.logged_in,
        "available": m.available,
        "device_state": DEVICE_STATES[m.status] if 0 <= m.status < 9 else str(m.status),
    }


def agents_view(state: LiveState, mirror: AgentMirror) -> list[dict[str, Any]]:
    """One entry per agent (member name), with each site it is a member at."""
    by_agent: dict[str, dict[str, dict[str, Any]]] = {}
    for site_name, site in sorted(state.sites.items()):
        for (queue, iface), m in sorted(site.members.items()):
            sites = by_agent.setdefault(m.name, {})
            entry = sites.get(site_name)
            if entry is None:
                extra = mirror.extra.get((site_name, iface), MemberExtra())
                entry = sites[site_name] = {
                    "site": site_name,
                    "interface": iface,
                    "site_up": site.up,
                    "pause_reason": extra.pause_reason,
                    "logged_in_at": extra.logged_in_at,
                    "changed_at": extra.changed_at,
                    "queues": [],
                }
            entry["queues"].append(_member_json(queue, m))
    out = []
    for agent, sites in sorted(by_agent.items()):
        memberships = [q for s in sites.values() for q in s["queues"]]
        out.append(
            {
                "id": agent,
                "logged_in": any(q["logged_in"] for q in memberships),
                "paused": bool(memberships) and all(q["paused"] for q in memberships),
                "available": any(q["available"] for q in memberships),
                "sites": list(sites.values()),
            }
        )
    return out


def memberships(state: LiveState, agent: str, site: str) -> dict[str, Member]:
    """Queue -> member for ``agent`` at ``site``, from the routing state."""
    s = state.sites.get(site)
    if s is None:
        return {}
    return {q: m for (q, _), m in s.members.items() if m.name == agent}
