"""Trunk health: qualify reachability plus a circuit breaker over dial outcomes; time passed in.

A trunk is left out of a route's trunk list while its contact is known Unreachable or
its breaker is open. The breaker opens after ``failures`` CHANUNAVAIL/CONGESTION
outcomes within ``window`` seconds, lets calls probe it again (half-open) after
``cooldown`` seconds, and closes on the first success. BUSY and NOANSWER are the far
end's answer and never count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

FAILOVER_STATUSES = frozenset({"CHANUNAVAIL", "CONGESTION"})


class Breaker(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 3
    window: float = 30.0
    cooldown: float = 10.0


@dataclass(frozen=True, slots=True)
class TrunkHealth:
    name: str
    reachable: bool | None = None  # None: no qualify result yet
    breaker: Breaker = Breaker.CLOSED
    recent_failures: tuple[float, ...] = ()
    opened_at: float | None = None
    failed_total: int = 0
    answered_total: int = 0


def at(h: TrunkHealth, now: float, policy: BreakerPolicy) -> TrunkHealth:
    """The breaker as of ``now``: an open breaker turns half-open after the cool-down."""
    if (
        h.breaker is Breaker.OPEN
        and h.opened_at is not None
        and now - h.opened_at >= policy.cooldown
    ):
        return replace(h, breaker=Breaker.HALF_OPEN)
    return h


def record_dial(h: TrunkHealth, status: str, now: float, policy: BreakerPolicy) -> TrunkHealth:
    """Apply one Dial outcome (DIALSTATUS) on this trunk."""
    h = at(h, now, policy)
    status = status.upper()
    if status in FAILOVER_STATUSES:
        recent = (*(t for t in h.recent_failures if now - t < policy.window), now)
        h = replace(h, recent_failures=recent, failed_total=h.failed_total + 1)
        if h.breaker is Breaker.HALF_OPEN or len(recent) >= policy.failures:
            return replace(h, breaker=Breaker.OPEN, opened_at=now)
        return h
    if status == "ANSWER":
        return replace(
            h,
            breaker=Breaker.CLOSED,
            recent_failures=(),
            opened_at=None,
            answered_total=h.answered_total + 1,
        )
    return h


def record_contact(h: TrunkHealth, contact_status: str) -> TrunkHealth:
    """Apply a PJSIP ContactStatus (Reachable, Unreachable, Created, Removed, Unknown...)."""
    status = contact_status.lower()
    if status == "reachable":
        return replace(h, reachable=True)
    if status in ("unreachable", "removed"):
        return replace(h, reachable=False)
    return h


def usable(h: TrunkHealth, now: float, policy: BreakerPolicy) -> bool:
    return h.reachable is not False and at(h, now, policy).breaker is not Breaker.OPEN


def unhealthy(health: dict[str, TrunkHealth], now: float, policy: BreakerPolicy) -> frozenset[str]:
    return frozenset(name for name, h in health.items() if not usable(h, now, policy))
