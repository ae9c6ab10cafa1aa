"""Calls sent over a trunk whose far end is one of the run's SIPp carriers end there.

The soak puts a SIPp carrier that answers at the far end of `blr-dac-a`, the first
bangalore->dhaka trunk: Bangla callers of the bangalore number are routed to dhaka
orders-bn, leave over that trunk and are answered by SIPp without joining any queue. In
the 30-minute soak that was the "dhaka orders-bn predicted 464, observed 311" row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccbridge.config import Config, load_config
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.loadtest.options import CallerGroup
from ccbridge.loadtest.predict import NO_QUEUE, carrier_key, predict
from ccbridge.loadtest.run import QueueJoins
from ccbridge.loadtest.timeline import parse_fault
from ccbridge.variables import EVENT_TRUNK_RESULT
from tests.bench.bench_soak import soak_config

WEDNESDAY = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
BD_TO_BANGALORE = CallerGroup("+918000000001", "+8801712345678", 1, "bangalore")
BD_TO_DHAKA = CallerGroup("+8809600000001", "+8801712345678", 1, "dhaka")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    ensure_lab_secrets()
    return load_config(soak_config(Path(tmp_path_factory.mktemp("soak"))))


def test_a_call_over_an_answering_carrier_is_predicted_there(config: Config) -> None:
    placed = {0: {100: 3}, 1: {100: 2}}
    carriers = {"blr-dac-a": "answer"}
    got = predict(config, [BD_TO_BANGALORE, BD_TO_DHAKA], placed, WEDNESDAY, (), carriers)
    assert got == {carrier_key("blr-dac-a"): 3, ("dhaka", "orders-bn"): 2}
    # without the harness carrier the same decision reaches dhaka's queue
    assert predict(config, [BD_TO_BANGALORE], {0: {100: 3}}, WEDNESDAY) == {
        ("dhaka", "orders-bn"): 3
    }


def test_a_dead_or_rejecting_carrier_passes_the_call_to_the_next_trunk(config: Config) -> None:
    kill = parse_fault("240s:kill-carrier:blr-dac-a:20s")
    placed = {0: {100: 1, 250: 2, 270: 4}}
    got = predict(config, [BD_TO_BANGALORE], placed, WEDNESDAY, [kill], {"blr-dac-a": "answer"})
    assert got == {carrier_key("blr-dac-a"): 5, ("dhaka", "orders-bn"): 2}
    rejecting = predict(config, [BD_TO_BANGALORE], placed, WEDNESDAY, (), {"blr-dac-a": "503"})
    assert rejecting == {("dhaka", "orders-bn"): 7}
    busy = predict(config, [BD_TO_BANGALORE], placed, WEDNESDAY, (), {"blr-dac-a": "486"})
    assert busy == {NO_QUEUE: 7}


def test_the_observer_counts_calls_the_carrier_answered(config: Config) -> None:
    joins = QueueJoins(config, carrier_trunks=["blr-dac-a"])

    def trunk_result(trunk: str, status: str) -> dict[str, str]:
        return {
            "Event": "UserEvent",
            "UserEvent": EVENT_TRUNK_RESULT,
            "Trunk": trunk,
            "DialStatus": status,
            "Site": "bangalore",
        }

    joins._on_event("bangalore", trunk_result("blr-dac-a", "ANSWER"))
    joins._on_event("bangalore", trunk_result("blr-dac-a", "CHANUNAVAIL"))  # failed over
    joins._on_event("bangalore", trunk_result("blr-dac", "ANSWER"))  # a real site: its join
    joins._on_event("dhaka", {"Event": "QueueCallerJoin", "Queue": "orders-bn"})
    assert joins.joins == {carrier_key("blr-dac-a"): 1, ("dhaka", "orders-bn"): 1}
