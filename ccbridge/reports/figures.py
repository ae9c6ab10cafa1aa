"""The report figures: sums the database gives per quarter hour, merged into buckets, and
the formulas that turn them into rates and averages (the same formulas docs/reports.md
writes out)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ccbridge.store.schema import RouteSource

# The interval report's route-source columns, one per RouteSource value: the calls of the
# interval whose calls.route_source is that value (docs/reports.md).
ROUTE_COLUMNS: tuple[str, ...] = tuple(f"routed_{s.value}" for s in RouteSource)


def _ratio(num: float, den: float) -> float | None:
    """num / den, or None when there is nothing to divide by (not zero: "no calls" is
    not "0 % service level")."""
    return num / den if den else None


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


@dataclass(slots=True)
class QueueSums:
    """Additive sums for one (interval, site, service, language, queue)."""

    offered: int = 0
    answered: int = 0
    answered_within_sl: int = 0
    abandoned: int = 0  # every caller who hung up waiting, short ones included
    short_abandons: int = 0
    abandoned_within_sl: int = 0  # long abandons within the queue's threshold
    timed_out: int = 0
    answered_wait_s: float = 0.0
    handle_s: float = 0.0  # talk + hold + wrap-up of the answered calls
    longest_wait_s: float | None = None
    overflowed_in: int = 0
    overflowed_out: int = 0
    after_hours: int = 0
    fallback_routed: int = 0
    satisfaction_sum: int = 0
    satisfaction_count: int = 0
    # Calls per calls.route_source, in RouteSource order (ROUTE_COLUMNS).
    routed: list[int] = field(default_factory=lambda: [0] * len(ROUTE_COLUMNS))

    def add(self, o: QueueSums) -> None:
        # Written out: this runs once per database row (tens of thousands a report).
        self.offered += o.offered
        self.answered += o.answered
        self.answered_within_sl += o.answered_within_sl
        self.abandoned += o.abandoned
        self.short_abandons += o.short_abandons
        self.abandoned_within_sl += o.abandoned_within_sl
        self.timed_out += o.timed_out
        self.answered_wait_s += o.answered_wait_s
        self.handle_s += o.handle_s
        self.longest_wait_s = _max(self.longest_wait_s, o.longest_wait_s)
        self.overflowed_in += o.overflowed_in
        self.overflowed_out += o.overflowed_out
        self.after_hours += o.after_hours
        self.fallback_routed += o.fallback_routed
        self.satisfaction_sum += o.satisfaction_sum
        self.satisfaction_count += o.satisfaction_count
        for i, n in enumerate(o.routed):
            self.routed[i] += n

    def add_row(self, v: Sequence[Any]) -> None:
        """Add one database row's sums, in queries.SUM_COLUMNS order."""
        self.offered += int(v[0])
        self.answered += int(v[1])
        self.answered_within_sl += int(v[2])
        self.abandoned += int(v[3])
        self.short_abandons += int(v[4])
        self.abandoned_within_sl += int(v[5])
        self.timed_out += int(v[6])
        self.answered_wait_s += float(v[7])
        self.handle_s += float(v[8])
        if v[9] is not None:
            self.longest_wait_s = _max(self.longest_wait_s, float(v[9]))
        self.overflowed_in += int(v[10])
        self.after_hours += int(v[11])
        self.fallback_routed += int(v[12])
        self.satisfaction_sum += int(v[13])
        self.satisfaction_count += int(v[14])
        routed = self.routed
        for i in range(len(routed)):
            routed[i] += int(v[15 + i])

    def figures(self) -> dict[str, Any]:
        """The report's columns for these sums (docs/reports.md, "Interval report")."""
        long_abandons = self.abandoned - self.short_abandons
        return {
            "offered": self.offered,
            "answered": self.answered,
            "answered_within_sl": self.answered_within_sl,
            "abandoned": long_abandons,
            "short_abandons": self.short_abandons,
            "abandoned_within_sl": self.abandoned_within_sl,
            "timed_out": self.timed_out,
            "abandon_rate": _ratio(long_abandons, self.offered - self.short_abandons),
            "service_level": _ratio(self.answered_within_sl, self.answered),
            "service_level_with_abandons": _ratio(
                self.answered_within_sl + self.abandoned_within_sl, self.answered + long_abandons
            ),
            "asa_s": _ratio(self.answered_wait_s, self.answered),
            "aht_s": _ratio(self.handle_s, self.answered),
            "longest_wait_s": self.longest_wait_s,
            "overflowed_in": self.overflowed_in,
            "overflowed_out": self.overflowed_out,
            "after_hours": self.after_hours,
            "fallback_routed": self.fallback_routed,
            "satisfaction_avg": _ratio(self.satisfaction_sum, self.satisfaction_count),
            "satisfaction_count": self.satisfaction_count,
            **dict(zip(ROUTE_COLUMNS, self.routed, strict=True)),
        }


QUEUE_FIGURES: tuple[str, ...] = tuple(QueueSums().figures())


@dataclass(slots=True)
class AgentSums:
    """Additive sums for one (interval, site, agent)."""

    offered: int = 0  # times a queue call rang the agent (AgentCalled)
    answered: int = 0
    ring_no_answer: int = 0
    talk_s: float = 0.0
    hold_s: float = 0.0
    wrapup_s: float = 0.0
    login_us: int = 0  # whole microseconds: a rolled day's quarter hours re-add exactly
    pause_us: int = 0
    satisfaction_sum: int = 0
    satisfaction_count: int = 0

    def add(self, other: AgentSums) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def add_row(self, v: Sequence[Any]) -> None:
        """Add one agent_rollup row's sums (queries.AGENT_ROLL_COLUMNS order)."""
        self.offered += int(v[0])
        self.answered += int(v[1])
        self.ring_no_answer += int(v[2])
        self.talk_s += float(v[3])
        self.hold_s += float(v[4])
        self.wrapup_s += float(v[5])
        self.login_us += int(v[6])
        self.pause_us += int(v[7])
        self.satisfaction_sum += int(v[8])
        self.satisfaction_count += int(v[9])

    def figures(self) -> dict[str, Any]:
        """The agent report's columns (docs/reports.md, "Agent report")."""
        handle = self.talk_s + self.hold_s + self.wrapup_s
        return {
            "offered": self.offered,
            "answered": self.answered,
            "ring_no_answer": self.ring_no_answer,
            "talk_s": self.talk_s,
            "hold_s": self.hold_s,
            "wrapup_s": self.wrapup_s,
            "login_s": self.login_us / 1e6,
            "pause_s": self.pause_us / 1e6,
            "occupancy": _ratio(handle, (self.login_us - self.pause_us) / 1e6),
            "aht_s": _ratio(handle, self.answered),
            "satisfaction_avg": _ratio(self.satisfaction_sum, self.satisfaction_count),
            "satisfaction_count": self.satisfaction_count,
        }


AGENT_FIGURES: tuple[str, ...] = tuple(AgentSums().figures())
