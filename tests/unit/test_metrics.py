"""BridgeMetrics and its scrape-time collector: agents by state, trunks, decisions, failovers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from ccbridge.config import Config, load_config
from ccbridge.metrics import (
    BridgeMetrics,
    LinkSnapshot,
    TrunkSnapshot,
    agent_state,
    site_agent_states,
)
from ccbridge.routing.engine import Decision
from ccbridge.routing.reasons import Outcome, Reason, Skip
from ccbridge.routing.state import (
    BUSY,
    INUSE,
    NOT_INUSE,
    UNAVAILABLE,
    LiveState,
    Member,
    apply_event,
    initial_state,
    set_site_up,
    set_trunk_health,
)

REPO = Path(__file__).resolve().parents[2]
T0 = 1_736_150_000.0


def config() -> Config:
    return load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False)


def member_event(queue: str, agent: str, status: int, paused: bool = False) -> dict[str, str]:
    return {
        "Event": "QueueMemberAdded",
        "Queue": queue,
        "MemberName": agent,
        "Interface": f"PJSIP/{agent}",
        "Status": str(status),
        "Paused": "1" if paused else "0",
    }


def staffed_state() -> LiveState:
    st = set_site_up(initial_state(["bangalore", "dhaka", "manila"]), "bangalore", True, T0)
    for ev in (
        member_event("orders-en", "blr-agent1", INUSE),
        member_event("orders-hi", "blr-agent1", INUSE),
        member_event("orders-en", "blr-agent2", NOT_INUSE),
        member_event("orders-hi", "blr-agent2", NOT_INUSE, paused=True),
        member_event("returns-en", "blr-agent2", NOT_INUSE),
        member_event("returns-en", "blr-agent3", UNAVAILABLE),
    ):
        st = apply_event(st, "bangalore", ev, T0)
    return st


def metrics(state: LiveState, **kw: object) -> tuple[BridgeMetrics, CollectorRegistry]:
    reg = CollectorRegistry()
    links = [LinkSnapshot("bangalore", True, "UP", 3, 1, 0, 2, bad_input=5)]
    m = BridgeMetrics(reg, lambda: state, lambda: links, config=config(), **kw)  # type: ignore[arg-type]
    return m, reg


def test_agent_state_of_one_membership() -> None:
    assert agent_state(Member("a", "PJSIP/a", NOT_INUSE)) == "available"
    assert agent_state(Member("a", "PJSIP/a", BUSY)) == "busy"
    assert agent_state(Member("a", "PJSIP/a", INUSE, paused=True)) == "paused"
    assert agent_state(Member("a", "PJSIP/a", UNAVAILABLE, paused=True)) == "logged_out"


def test_an_agent_paused_in_one_queue_still_works_the_others() -> None:
    states = site_agent_states(
        [
            Member("b", "PJSIP/b", NOT_INUSE, paused=True),
            Member("b", "PJSIP/b", NOT_INUSE),
            Member("c", "PJSIP/c", NOT_INUSE, paused=True),
            Member("d", "PJSIP/d", UNAVAILABLE),
        ]
    )
    assert states == {"PJSIP/b": "available", "PJSIP/c": "paused", "PJSIP/d": "logged_out"}


def test_agents_by_state_and_occupancy_per_queue_and_site() -> None:
    _, reg = metrics(staffed_state())

    def q(queue: str, state: str) -> float | None:
        labels = {"site": "bangalore", "queue": queue, "state": state}
        return reg.get_sample_value("ccbridge_queue_agents", labels)

    assert (q("orders-hi", "busy"), q("orders-hi", "paused"), q("orders-hi", "available")) == (
        1.0,
        1.0,
        0.0,
    )
    assert q("returns-en", "logged_out") == 1.0
    assert (
        reg.get_sample_value(
            "ccbridge_queue_occupancy_ratio", {"site": "bangalore", "queue": "orders-en"}
        )
        == 0.5
    )

    def s(state: str) -> float | None:
        return reg.get_sample_value("ccbridge_site_agents", {"site": "bangalore", "state": state})

    # agent1 busy; agent2 available (paused only in orders-hi); agent3 logged out.
    assert (s("busy"), s("available"), s("paused"), s("logged_out")) == (1.0, 1.0, 0.0, 1.0)
    assert reg.get_sample_value("ccbridge_site_occupancy_ratio", {"site": "bangalore"}) == 0.5
    # Nobody ready at dhaka: occupancy is undefined there, not 0.
    assert reg.get_sample_value("ccbridge_site_occupancy_ratio", {"site": "dhaka"}) is None
    assert reg.get_sample_value("ccbridge_site_agents", {"site": "dhaka", "state": "busy"}) == 0.0


def test_trunks_default_to_config_and_unhealthy_set() -> None:
    state = set_trunk_health(staffed_state(), "blr-dac", False)
    _, reg = metrics(state)
    up = {"site": "bangalore", "trunk": "blr-dac", "kind": "intersite", "peer": "dhaka"}
    assert reg.get_sample_value("ccbridge_trunk_up", up) == 0.0
    pstn = {"site": "bangalore", "trunk": "blr-pstn1", "kind": "carrier", "peer": "none"}
    assert reg.get_sample_value("ccbridge_trunk_up", pstn) == 1.0
    breaker = {"site": "bangalore", "trunk": "blr-dac"}
    assert reg.get_sample_value("ccbridge_trunk_breaker_state", {**breaker, "state": "open"}) == 1.0
    assert (
        reg.get_sample_value("ccbridge_trunk_breaker_state", {**breaker, "state": "closed"}) == 0.0
    )


def test_a_trunk_health_component_replaces_the_trunk_source() -> None:
    m, reg = metrics(staffed_state())
    m.set_trunk_source(
        lambda: [TrunkSnapshot("blr-dac", "bangalore", "intersite", "dhaka", True, "half_open")]
    )
    labels = {"site": "bangalore", "trunk": "blr-dac", "state": "half_open"}
    assert reg.get_sample_value("ccbridge_trunk_breaker_state", labels) == 1.0
    # Only what the source reports is exported.
    assert reg.get_sample_value("ccbridge_trunk_up", {"trunk": "blr-mnl"}) is None


def test_failovers_start_at_zero_and_fold_unknown_values() -> None:
    m, reg = metrics(staffed_state())
    assert reg.get_sample_value("ccbridge_failovers_total", {"site": "dhaka", "kind": "site"}) == 0
    m.failover("dhaka", "trunk")
    m.failover("PJSIP/blr-dac-00000001", "weird")
    assert reg.get_sample_value("ccbridge_failovers_total", {"site": "dhaka", "kind": "trunk"}) == 1
    other = {"site": "other", "kind": "other"}
    assert reg.get_sample_value("ccbridge_failovers_total", other) == 1.0


def test_overflow_and_after_hours_are_counted_from_decisions() -> None:
    m, reg = metrics(staffed_state())
    overflow = Decision(
        "queue", "dhaka", "orders-bn", "orders", "bn", ("blr-dac",), ("caller", "overflow_ewt")
    )
    local = Decision("queue", "bangalore", "orders-hi", "orders", "hi", (), ("home_site_open",))
    closed = Decision(
        "after_hours", None, None, "returns", "hi", (), ("after_hours",), action="closed"
    )
    for d in (overflow, local, closed):
        m.record_decision("bangalore", d)
    labels = {"receiving_site": "bangalore", "service": "orders", "language": "bn"}
    got = reg.get_sample_value(
        "ccbridge_calls_overflowed_total", {**labels, "site": "dhaka", "queue": "orders-bn"}
    )
    assert got == 1.0
    assert (
        reg.get_sample_value(
            "ccbridge_calls_overflowed_total",
            {**labels, "site": "bangalore", "language": "hi", "queue": "orders-hi"},
        )
        is None
    )
    ah = {
        "receiving_site": "bangalore",
        "site": "none",
        "service": "returns",
        "language": "hi",
        "queue": "none",
        "action": "closed",
    }
    assert reg.get_sample_value("ccbridge_calls_after_hours_total", ah) == 1.0


def test_fastagi_outcomes_exist_before_any_session() -> None:
    m, reg = metrics(staffed_state())
    labels = {"route": "route", "outcome": "handler_error"}
    assert reg.get_sample_value("ccbridge_fastagi_sessions_total", labels) == 0.0
    m.agi_session_end("/etc/passwd", "not_found", 0.01)
    other = {"route": "other", "outcome": "not_found"}
    assert reg.get_sample_value("ccbridge_fastagi_sessions_total", other) == 1.0


def test_link_counters_are_exported_per_site() -> None:
    _, reg = metrics(staffed_state())
    site = {"site": "bangalore"}
    assert reg.get_sample_value("ccbridge_ami_reconnects_total", site) == 3.0
    assert reg.get_sample_value("ccbridge_ami_action_timeouts_total", site) == 1.0
    assert reg.get_sample_value("ccbridge_ami_bad_input_total", site) == 5.0


def test_unconfigured_queues_are_summed_under_other() -> None:
    st = staffed_state()
    for queue in ("+919812345678", "1736150500.20"):
        st = apply_event(st, "bangalore", {"Event": "QueueCallerJoin", "Queue": queue}, T0)
    _, reg = metrics(st)
    other = {"site": "bangalore", "queue": "other"}
    assert reg.get_sample_value("ccbridge_queue_callers_waiting", other) == 2.0
    # No expected wait for a sum of unrelated queues.
    assert reg.get_sample_value("ccbridge_queue_expected_wait_seconds", other) is None


def test_a_closed_or_down_home_is_no_overflow_and_skips_are_counted_per_site() -> None:
    m, reg = metrics(staffed_state())
    handed_over = Decision(
        Outcome.QUEUE,
        "dhaka",
        "orders-en",
        "orders",
        "en",
        ("blr-dac",),
        (Reason.CALLER_PREFIX, Reason.HOME_CLOSED, Reason.LEAST_LOADED),
        skipped=(("bangalore", Skip.CLOSED_HOURS), ("manila", Skip.SITE_DOWN)),
    )
    failover = replace(handed_over, reasons=(Reason.CALLER_PREFIX, Reason.HOME_DOWN))
    for d in (handed_over, failover):
        m.record_decision("bangalore", d)
    # Before, "overflow_ewt" came with these and both counted as load overflow.
    assert not [
        s
        for f in reg.collect()
        if f.name == "ccbridge_calls_overflowed"
        for s in f.samples
        if s.name.endswith("_total")
    ]
    skips = "ccbridge_route_skips_total"
    assert reg.get_sample_value(skips, {"site": "manila", "reason": "site_down"}) == 2.0
    assert reg.get_sample_value(skips, {"site": "bangalore", "reason": "closed_hours"}) == 2.0
