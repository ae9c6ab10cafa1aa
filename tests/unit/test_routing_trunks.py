"""Trunk health: reachability and the circuit breaker, with time passed in."""

from __future__ import annotations

import pytest

from ccbridge.routing.trunks import (
    Breaker,
    BreakerPolicy,
    TrunkHealth,
    at,
    record_contact,
    record_dial,
    unhealthy,
    usable,
)

POLICY = BreakerPolicy(failures=3, window=30.0, cooldown=10.0)


def fail(h: TrunkHealth, *times: float, status: str = "CHANUNAVAIL") -> TrunkHealth:
    for t in times:
        h = record_dial(h, status, t, POLICY)
    return h


def test_breaker_opens_after_n_failures_within_the_window() -> None:
    h = fail(TrunkHealth("t1"), 0.0, 1.0)
    assert h.breaker is Breaker.CLOSED and usable(h, 1.0, POLICY)
    h = fail(h, 2.0, status="CONGESTION")
    assert h.breaker is Breaker.OPEN and not usable(h, 2.0, POLICY)


def test_failures_outside_the_window_do_not_add_up() -> None:
    h = fail(TrunkHealth("t1"), 0.0, 40.0, 80.0)
    assert h.breaker is Breaker.CLOSED
    assert h.failed_total == 3


@pytest.mark.parametrize("status", ["BUSY", "NOANSWER", "CANCEL", "busy"])
def test_the_callees_answer_never_counts_against_the_trunk(status: str) -> None:
    h = fail(TrunkHealth("t1"), 0.0, 1.0, 2.0, 3.0, status=status)
    assert h.breaker is Breaker.CLOSED and h.failed_total == 0


def test_half_open_after_cooldown_then_closed_on_success() -> None:
    h = fail(TrunkHealth("t1"), 0.0, 1.0, 2.0)
    assert at(h, 11.9, POLICY).breaker is Breaker.OPEN
    assert at(h, 12.0, POLICY).breaker is Breaker.HALF_OPEN
    assert usable(h, 12.0, POLICY)
    h = record_dial(h, "ANSWER", 13.0, POLICY)
    assert h.breaker is Breaker.CLOSED and h.recent_failures == () and h.answered_total == 1


def test_a_failed_probe_reopens_at_once() -> None:
    h = fail(TrunkHealth("t1"), 0.0, 1.0, 2.0)
    h = record_dial(h, "CHANUNAVAIL", 12.5, POLICY)
    assert h.breaker is Breaker.OPEN and h.opened_at == 12.5
    assert not usable(h, 20.0, POLICY) and usable(h, 22.5, POLICY)


def test_unreachable_contact_makes_the_trunk_unusable_until_reachable() -> None:
    h = record_contact(TrunkHealth("t1"), "Unreachable")
    assert not usable(h, 0.0, POLICY)
    assert unhealthy({"t1": h, "t2": TrunkHealth("t2")}, 0.0, POLICY) == frozenset({"t1"})
    h = record_contact(h, "Reachable")
    assert usable(h, 0.0, POLICY)
    assert record_contact(h, "Created").reachable is True  # unknown statuses change nothing
