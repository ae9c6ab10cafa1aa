"""No label value may be a phone number, a uniqueid or a channel name: labels stay bounded."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ccbridge.agi.server import SessionOutcome
from ccbridge.app import Bridge
from ccbridge.config import load_config
from ccbridge.metrics import BridgeMetrics, LinkSnapshot
from ccbridge.routing.engine import CallRequest
from ccbridge.routing.state import initial_state

REPO = Path(__file__).resolve().parents[2]
T0 = 1_736_150_000.0

PHONE = re.compile(r"\+?\d{6,}")
UNIQUEID = re.compile(r"\d+\.\d+")
CHANNEL = re.compile(r"^[A-Za-z]+/.+-[0-9a-f]{6,}(;\d)?$|^(PJSIP|SIP|IAX2|Local|DAHDI)/")
# Bucket bounds and quantiles are numbers by design: "0.005" is not a uniqueid.
NUMERIC_LABELS = frozenset({"le", "quantile"})


def bad_labels(exposition: str) -> list[str]:
    """Every `metric{label="value"}` in a text exposition whose value looks unbounded."""
    found = []
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label in NUMERIC_LABELS:
                    continue
                if PHONE.search(value) or UNIQUEID.search(value) or CHANNEL.search(value):
                    found.append(f"{sample.name}{{{label}={value!r}}}")
    return found


def samples(exposition: str) -> Iterable[str]:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            yield sample.name


def test_the_checker_catches_numbers_uniqueids_and_channels() -> None:
    text = "\n".join(
        [
            "# TYPE x counter",
            'x_total{caller="+919812345678"} 1',
            'x_total{id="1736150500.20"} 1',
            'x_total{chan="PJSIP/carrier-00000020"} 1',
            'x_total{site="bangalore",queue="orders-hi"} 1',
            "",
        ]
    )
    assert len(bad_labels(text)) == 3


def test_a_busy_bridge_exports_only_bounded_labels() -> None:
    bridge = Bridge(load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False))
    caller = "+8801712345678"
    channel = "PJSIP/carrier-00000020"
    uid = "1736150500.20"
    call_events = [
        {"Event": "QueueCallerJoin", "Queue": "orders-bn", "Channel": channel, "Uniqueid": uid,
         "CallerIDNum": caller, "Position": "1", "Count": "1"},
        {"Event": "QueueMemberAdded", "Queue": "orders-bn", "MemberName": "dac-agent1",
         "Interface": "PJSIP/dac-agent1", "Status": "2", "Paused": "0"},
        {"Event": "AgentConnect", "Queue": "orders-bn", "Channel": channel, "Uniqueid": uid,
         "CallerIDNum": caller, "HoldTime": "3", "RingTime": "1",
         "DestChannel": "PJSIP/dac-agent1-00000021"},
        {"Event": "AgentComplete", "Queue": "orders-bn", "Uniqueid": uid, "HoldTime": "3",
         "TalkTime": "40", "Reason": "caller"},
        # A queue name nobody configured, e.g. from a hand-edited dialplan.
        {"Event": "QueueCallerJoin", "Queue": caller, "Uniqueid": uid},
        {"Event": "QueueCallerAbandon", "Queue": uid, "HoldTime": "9"},
    ]  # fmt: skip
    for ev in call_events:
        bridge.bus.dispatch("dhaka", ev)
    for did in ("+918000000001", "+919999999999"):
        call = CallRequest(did=did, caller=caller, receiving_site="bangalore")
        bridge._on_decision(call, bridge.decide(call))
    bridge._on_agi_session_end("route?caller=" + caller, SessionOutcome.OK, 0.002)
    text = generate_latest(bridge.registry).decode()
    names = set(samples(text))
    # The scrape covers every kind of metric the bridge exports.
    for expected in (
        "ccbridge_calls_offered_total",
        "ccbridge_calls_answered_total",
        "ccbridge_queue_wait_seconds_bucket",
        "ccbridge_queue_talk_seconds_sum",
        "ccbridge_queue_agents",
        "ccbridge_route_decisions_total",
        "ccbridge_route_reasons_total",
        "ccbridge_trunk_up",
        "ccbridge_fastagi_sessions_total",
        "ccbridge_site_up",
    ):
        assert expected in names
    assert bad_labels(text) == []


def test_link_metrics_have_only_site_labels() -> None:
    reg = CollectorRegistry()
    link = LinkSnapshot("dhaka", False, "CONNECTING", 12, 3, 1, 4)
    state = initial_state(["dhaka"])
    BridgeMetrics(reg, lambda: state, lambda: [link])
    text = generate_latest(reg).decode()
    assert "ccbridge_ami_reconnects_total" in set(samples(text))
    assert bad_labels(text) == []
