"""The report figures: sums the database gives per quarter hour, merged into buckets, and
the formulas that turn them into rates and averages (the same formulas docs/reports.md
writes out)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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


# The agent report's additive sums for one (interval, site, agent) are a list in
# queries.AGENT_ROLL_COLUMNS order: offered (times a queue call rang the agent,
# AgentCalled), answered, ring_no_answer, talk_s, hold_s, wrapup_s, login_us, pause_us
# (whole microseconds: a rolled day's quarter hours re-add exactly), satisfaction_sum,
# satisfaction_count. A list, not a dataclass: a month by quarter hour makes ~100,000.
def agent_zero() -> list[Any]:
    return [0, 0, 0, 0.0, 0.0, 0.0, 0, 0, 0, 0]


def agent_row(
    site: str, start: str, end: str, agent: str, incomplete: bool, v: Sequence[Any]
) -> dict[str, Any]:
    """One row of the agent report from its sums ``v`` (docs/reports.md, "Agent
    report"); the ratios written out (this runs once per row)."""
    talk, hold, wrapup = v[3], v[4], v[5]
    handle = talk + hold + wrapup
    available = v[6] - v[7]
    return {
        "site": site,
        "interval_start": start,
        "interval_end": end,
        "agent": agent,
        "incomplete": incomplete,
        "offered": v[0],
        "answered": v[1],
        "ring_no_answer": v[2],
        "talk_s": talk,
        "hold_s": hold,
        "wrapup_s": wrapup,
        "login_s": v[6] / 1e6,
        "pause_s": v[7] / 1e6,
        "occupancy": handle / (available / 1e6) if available else None,
        "aht_s": handle / v[1] if v[1] else None,
        "satisfaction_avg": v[8] / v[9] if v[9] else None,
        "satisfaction_count": v[9],
    }


AGENT_FIGURES: tuple[str, ...] = tuple(agent_row("", "", "", "", False, agent_zero()))[5:]
