"""The KPI tracker, fed with recorded AMI event sequences."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from ccbridge.config import Config, load_config
from ccbridge.kpi import KpiTracker, queue_index

REPO = Path(__file__).resolve().parents[2]
FIXTURES = yaml.safe_load(
    (Path(__file__).parent / "fixtures" / "ami_queue_events.yaml").read_text(encoding="utf-8")
)
HI = {"site": "bangalore", "service": "orders", "language": "hi", "queue": "orders-hi"}
EN = {"site": "bangalore", "service": "orders", "language": "en", "queue": "orders-en"}


def config() -> Config:
    return load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False)


def events(name: str) -> list[Mapping[str, str]]:
    return [{k: str(v) for k, v in ev.items()} for ev in FIXTURES[name]]


def tracker() -> tuple[KpiTracker, CollectorRegistry]:
    reg = CollectorRegistry()
    return KpiTracker(config(), reg), reg


def value(reg: CollectorRegistry, name: str, labels: Mapping[str, str]) -> float | None:
    return reg.get_sample_value(name, dict(labels))


def feed(t: KpiTracker, site: str, evs: list[Mapping[str, str]]) -> None:
    for ev in evs:
        t.on_event(site, ev)


def test_every_configured_queue_starts_at_zero() -> None:
    _, reg = tracker()
    assert value(reg, "ccbridge_calls_offered_total", HI) == 0.0
    assert value(reg, "ccbridge_calls_abandoned_total", EN) == 0.0
    assert value(reg, "ccbridge_queue_wait_seconds_count", {**HI, "outcome": "answered"}) == 0.0
    dhaka_bn = {"site": "dhaka", "service": "orders", "language": "bn", "queue": "orders-bn"}
    assert value(reg, "ccbridge_queue_talk_seconds_count", dhaka_bn) == 0.0
    assert value(reg, "ccbridge_queue_service_level_threshold_seconds", dhaka_bn) == 20.0
    # A queue a site does not offer is not invented.
    assert value(reg, "ccbridge_calls_offered_total", {**HI, "site": "manila"}) is None


def test_answered_call_counts_offer_answer_wait_and_talk() -> None:
    t, reg = tracker()
    # The fixture's answered call: join orders-hi, AgentConnect HoldTime 12, TalkTime 200.
    feed(t, "bangalore", events("answered_call"))
    assert value(reg, "ccbridge_calls_offered_total", HI) == 1.0
    assert value(reg, "ccbridge_calls_answered_total", HI) == 1.0
    # 12 s <= the default 20 s threshold.
    assert value(reg, "ccbridge_calls_answered_within_sl_total", HI) == 1.0
    wait = {**HI, "outcome": "answered"}
    assert value(reg, "ccbridge_queue_wait_seconds_sum", wait) == 12.0
    assert value(reg, "ccbridge_queue_wait_seconds_bucket", {**wait, "le": "10.0"}) == 0.0
    assert value(reg, "ccbridge_queue_wait_seconds_bucket", {**wait, "le": "15.0"}) == 1.0
    assert value(reg, "ccbridge_queue_talk_seconds_sum", HI) == 200.0
    assert value(reg, "ccbridge_queue_talk_seconds_count", HI) == 1.0
    assert value(reg, "ccbridge_calls_abandoned_total", HI) == 0.0


def test_abandoned_call_counts_abandon_and_its_wait() -> None:
    t, reg = tracker()
    feed(t, "bangalore", events("abandoned_call"))
    assert value(reg, "ccbridge_calls_offered_total", EN) == 2.0
    assert value(reg, "ccbridge_calls_abandoned_total", EN) == 1.0
    assert value(reg, "ccbridge_calls_answered_total", EN) == 0.0
    abandoned = {**EN, "outcome": "abandoned"}
    assert value(reg, "ccbridge_queue_wait_seconds_sum", abandoned) == 30.0
    assert value(reg, "ccbridge_queue_wait_seconds_count", {**EN, "outcome": "answered"}) == 0.0


def test_answer_after_the_threshold_is_not_within_service_level() -> None:
    t, reg = tracker()
    slow = {"Event": "AgentConnect", "Queue": "orders-hi", "HoldTime": "21", "RingTime": "2"}
    on_time = {**slow, "HoldTime": "20"}  # app_queue counts <= threshold as within
    feed(t, "bangalore", [slow, on_time])
    assert value(reg, "ccbridge_calls_answered_total", HI) == 2.0
    assert value(reg, "ccbridge_calls_answered_within_sl_total", HI) == 1.0


def test_unknown_queue_and_site_fold_into_other() -> None:
    t, reg = tracker()
    feed(t, "bangalore", [{"Event": "QueueCallerJoin", "Queue": "+919812345678"}])
    feed(t, "nowhere", [{"Event": "QueueCallerJoin", "Queue": "orders-hi"}])
    other = {"service": "other", "language": "other", "queue": "other"}
    assert value(reg, "ccbridge_calls_offered_total", {"site": "bangalore", **other}) == 1.0
    assert value(reg, "ccbridge_calls_offered_total", {"site": "other", **other}) == 1.0


def test_malformed_times_count_the_call_but_observe_nothing() -> None:
    t, reg = tracker()
    feed(
        t,
        "bangalore",
        [
            {"Event": "AgentConnect", "Queue": "orders-hi", "HoldTime": "soon"},
            {"Event": "AgentComplete", "Queue": "orders-hi", "TalkTime": "-3"},
            {"Event": "QueueCallerAbandon", "Queue": "orders-hi"},
        ],
    )
    assert value(reg, "ccbridge_calls_answered_total", HI) == 1.0
    assert value(reg, "ccbridge_calls_answered_within_sl_total", HI) == 0.0
    assert value(reg, "ccbridge_calls_abandoned_total", HI) == 1.0
    assert value(reg, "ccbridge_queue_talk_seconds_count", HI) == 0.0
    assert value(reg, "ccbridge_queue_wait_seconds_count", {**HI, "outcome": "abandoned"}) == 0.0


def test_queue_index_maps_every_offering_to_service_language_threshold() -> None:
    cfg = config()
    idx = queue_index(cfg)
    assert idx[("dhaka", "returns-bn")].service == "returns"
    assert idx[("dhaka", "returns-bn")].language == "bn"
    assert ("bangalore", "returns-bn") not in idx
    assert len(idx) == sum(len(o.languages) for s in cfg.sites for o in s.offerings)
    assert idx[("manila", "orders-tl")].servicelevel == 20
