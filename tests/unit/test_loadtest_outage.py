"""A bridge outage across Bangalore's closing: calls routed as the bridge would have, or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ccbridge.config import Config, load_config
from ccbridge.lab.demo import BridgeProcess
from ccbridge.lab.sites import Lab
from ccbridge.loadtest.options import CallerGroup
from ccbridge.loadtest.outage import outage_routing
from ccbridge.loadtest.queuelog import QueueStay
from ccbridge.loadtest.timeline import FaultKind, parse_fault

REPO = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 25, 15, 28, tzinfo=UTC)  # 2 min before 21:00 in Bangalore
HINDI = CallerGroup("+918000000001", "+919812345678", 1, "bangalore")
OUTAGE = parse_fault("30s:stop-bridge:2m")


@pytest.fixture(scope="module")
def config() -> Config:
    mp = pytest.MonkeyPatch()
    mp.setenv("CCBRIDGE_AMI_SECRET", "s")
    mp.setenv("CCBRIDGE_API_TOKEN", "t")
    try:
        return load_config(REPO / "examples" / "lab.yaml")
    finally:
        mp.undo()


def _stay(site: str, queue: str, t: float) -> QueueStay:
    return QueueStay(site, queue, HINDI.caller, f"u{t}", t, t + 1, "connect")


def test_stop_bridge_is_an_outage_of_two_minutes_by_default() -> None:
    f = parse_fault("30s:stop-bridge")
    assert (f.kind, f.at, f.duration) == (FaultKind.STOP_BRIDGE, 30.0, 120.0)


def test_share_counts_calls_that_followed_the_closing_and_those_that_did_not(
    config: Config,
) -> None:
    # One Hindi call a second from 30 s to 150 s; Bangalore closes at t=120 s: before,
    # its orders-hi queue; after, the after-hours site manila in English.
    placed = {0: dict.fromkeys(range(0, 180), 1)}
    held = [_stay("bangalore", "orders-hi", t) for t in range(30, 120)]
    held += [_stay("manila", "orders-en", t + 0.5) for t in range(120, 150)]
    static = [_stay("bangalore", "orders-hi", t) for t in range(30, 150)]
    [with_held] = outage_routing(config, [HINDI], placed, AT, [OUTAGE], held)
    [without] = outage_routing(config, [HINDI], placed, AT, [OUTAGE], static)
    assert (with_held["calls"], with_held["as_bridge_would"], with_held["share"]) == (120, 120, 1)
    assert (without["calls"], without["as_bridge_would"], without["share"]) == (120, 90, 0.75)
    rows = {(r["site"], r["queue"]): r for r in without["rows"]}  # type: ignore[union-attr]
    assert rows[("manila", "orders-en")] == {
        "caller": HINDI.caller,
        "site": "manila",
        "queue": "orders-en",
        "predicted": 30,
        "observed": 0,
    }


def test_other_faults_are_no_outage(config: Config) -> None:
    restart = parse_fault("30s:restart-bridge")
    assert outage_routing(config, [HINDI], {0: {40: 1}}, AT, [restart], []) == []


def test_a_restarted_bridge_keeps_its_clock_running(config: Config, tmp_path: Path) -> None:
    bridge = BridgeProcess(Lab(config, tmp_path), AT)
    assert bridge.clock_at(1000.0) == AT  # nothing spawned yet: the clock starts now
    bridge.first_start = 1000.0
    assert bridge.clock_at(1150.5) == AT + timedelta(seconds=150.5)
