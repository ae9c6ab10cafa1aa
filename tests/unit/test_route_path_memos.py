"""The route path's shortcuts agree with doing the work in full: the schedule-boundary
memo (held routes) and the set of trunks a decision looks at again."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ccbridge import variables
from ccbridge.app import CONTACT_STATUS, Bridge
from ccbridge.clock import Clock
from ccbridge.config import Config, load_config
from ccbridge.loadtest.predict import rest_state
from ccbridge.routing.held import Boundaries

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday: openings and closings ahead


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    return load_config(REPO / "examples" / "lab.yaml")


def test_memoised_boundaries_agree_with_fresh_ones_as_a_pass_asks_them(config: Config) -> None:
    """Over four days, in the order a held-routes pass asks (now, then the first change,
    time going back and forth between the two), with irregular steps: every answer is
    the one a Boundaries with no memo gives."""
    memo = Boundaries(config)
    state = rest_state(config, START.timestamp(), set(), set())
    rng = random.Random(12)
    now = START
    checked = 0
    while now < START + timedelta(days=4):
        until = memo.next(state, now)
        assert until == Boundaries(config).next(state, now), now
        assert memo.next(state, until) == Boundaries(config).next(state, until), until
        assert memo.next(state, now) == until  # asked again: the same answer
        back = now - timedelta(seconds=rng.choice((1, 300, 5_000)))  # another site's pass
        assert memo.next(state, back) == Boundaries(config).next(state, back), back
        checked += 1
        now += timedelta(seconds=rng.choice((1, 59, 600, 3_599, 7_200)))
    assert checked > 100


def test_a_trunk_leaves_the_unhealthy_set_once_it_recovers(config: Config) -> None:
    bridge = Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))

    def result(trunk: str, status: str) -> None:
        bridge.bus.dispatch(
            "bangalore",
            {
                "Event": "UserEvent",
                "UserEvent": variables.EVENT_TRUNK_RESULT,
                "Trunk": trunk,
                "DialStatus": status,
            },
        )

    def contact(aor: str, status: str) -> None:
        bridge.bus.dispatch(
            "bangalore", {"Event": CONTACT_STATUS, "AOR": aor, "ContactStatus": status}
        )

    for _ in range(3):
        result("blr-dac", "CONGESTION")
    contact("blr-mnl", "Unreachable")
    assert bridge.state.unhealthy_trunks == {"blr-dac", "blr-mnl"}
    result("blr-dac", "ANSWER")  # the breaker closes on a success
    contact("blr-mnl", "Reachable")
    assert bridge.state.unhealthy_trunks == frozenset()
    # An open breaker turns half-open by time alone: usable again without any event.
    for _ in range(3):
        result("blr-dac-2", "CHANUNAVAIL")
    assert "blr-dac-2" in bridge.state.unhealthy_trunks
    bridge.clock = Clock(datetime(2026, 11, 25, 5, 1, tzinfo=UTC))  # past the cool-down
    assert bridge.held_state().unhealthy_trunks == frozenset()
    assert bridge.bus.handler_errors == 0
