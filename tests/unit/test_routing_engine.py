"""The routing decision over a three-site, lab-shaped config."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ccbridge.routing.engine import CallRequest, Decision, decide, remember
from ccbridge.routing.state import LiveState, QueueLoad
from tests.unit.routing_factories import (
    BD_ORDERS,
    IN_ORDERS,
    IN_RETURNS,
    LAB_QUEUES,
    PH_ORDERS,
    after_hours,
    lab,
    live,
    load,
)

EN_CALLER, HI_CALLER, BN_CALLER, UR_CALLER = (
    "+447700900123",
    "+919812345678",
    "+8801712345678",
    "+923001234567",
)


ROUTER = lab()
QUEUES = LAB_QUEUES
# Wednesday 2025-01-08 10:00 in Bangalore: 10:30 in Dhaka, 12:30 in Manila.
WED = datetime(2025, 1, 8, 4, 30, tzinfo=UTC)


def everyone(**per_site: dict[str, QueueLoad]) -> dict[str, dict[str, QueueLoad]]:
    """Every queue at every site lightly loaded, with per-site overrides."""
    base = {s: {q: load() for q in QUEUES} for s in ("blr", "dac", "mnl")}
    for s, queues in per_site.items():
        base[s] = base[s] | queues
    return base


CALM = live(everyone())


def call(did: str = IN_ORDERS, caller: str = HI_CALLER, at: str = "blr", **kw: str) -> CallRequest:
    return CallRequest(did, caller, at, **kw)


def test_unknown_did_is_rejected_not_raised() -> None:
    d = ROUTER.decide(call(did="+10000000000"), CALM, WED)
    assert d == Decision("reject", None, None, None, None, reasons=("unknown_did",))


def test_unknown_service_and_site_rejected() -> None:
    assert ROUTER.decide(call(service="billing"), CALM, WED).reasons == ("unknown_service",)
    assert ROUTER.decide(call(at="nowhere"), CALM, WED).reasons == ("unknown_site",)


def test_home_site_open_takes_the_call_locally() -> None:
    d = ROUTER.decide(call(), CALM, WED)
    assert (d.outcome, d.site, d.queue, d.language) == ("queue", "blr", "orders-hi", "hi")
    assert d.reasons == ("caller_prefix", "home_site_open")
    assert d.trunks == ()
    assert d.ewt == 0.0


def test_call_received_elsewhere_gets_trunks_in_order() -> None:
    d = ROUTER.decide(call(at="dac"), CALM, WED)
    assert d.site == "blr"
    assert d.trunks == ("dac-blr-1", "dac-blr-2")


def test_unhealthy_trunks_are_skipped_unless_all_are() -> None:
    one = live(everyone(), unhealthy=["dac-blr-1"])
    assert ROUTER.decide(call(at="dac"), one, WED).trunks == ("dac-blr-2",)
    both = live(everyone(), unhealthy=["dac-blr-1", "dac-blr-2"])
    assert ROUTER.decide(call(at="dac"), both, WED).trunks == ("dac-blr-1", "dac-blr-2")


def test_language_reasons() -> None:
    assert ROUTER.decide(call(ivr_language="en"), CALM, WED).reasons[0] == "ivr_language"
    d = ROUTER.decide(call(caller="0801234567"), CALM, WED)
    assert (d.language, d.reasons[0]) == ("hi", "did_country")


def test_unserved_language_falls_back_to_did_country() -> None:
    d = ROUTER.decide(call(caller=UR_CALLER), CALM, WED)
    assert (d.site, d.queue) == ("blr", "orders-hi")
    assert d.reasons[:2] == ("caller_prefix", "language_unserved")


def test_service_override() -> None:
    d = ROUTER.decide(call(service="returns"), CALM, WED)
    assert (d.site, d.queue, d.service) == ("blr", "returns-hi", "returns")


BUSY = load(logged_in=2, available=0, waiting=6, talk=120)  # EWT 7*120/2 = 420 s


def test_busy_home_overflows_to_lowest_score() -> None:
    state = live(
        everyone(
            blr={"orders-en": BUSY},
            dac={"orders-en": load(logged_in=2, available=0, waiting=1, talk=60)},  # 60+5=65
            mnl={"orders-en": load(logged_in=4, available=0, waiting=2, talk=60)},  # 45+10=55
        )
    )
    d = ROUTER.decide(call(caller=EN_CALLER), state, WED)
    assert (d.site, d.queue) == ("mnl", "orders-en")
    assert d.reasons == ("caller_prefix", "home_site_busy", "overflow_ewt")
    assert d.trunks == ("blr-mnl-1", "blr-mnl-2")
    assert d.ewt == 45.0


@pytest.mark.parametrize(
    ("sticky", "mnl_waiting", "expected", "reason"),
    [
        ("dac", 2, "dac", "sticky"),  # dac 65 vs mnl 55: within 15 s, keep dac
        ("dac", 0, "mnl", "overflow_ewt"),  # mnl 15 beats dac 65 by 50: switch
        ("mnl", 2, "mnl", "overflow_ewt"),  # the sticky site is also the best
    ],
)
def test_hysteresis(sticky: str, mnl_waiting: int, expected: str, reason: str) -> None:
    state = live(
        everyone(
            blr={"orders-en": BUSY},
            dac={"orders-en": load(logged_in=2, available=0, waiting=1, talk=60)},
            mnl={"orders-en": load(logged_in=4, available=0, waiting=mnl_waiting, talk=60)},
        ),
        sticky={("orders", "en"): sticky},
    )
    d = ROUTER.decide(call(caller=EN_CALLER), state, WED)
    assert (d.site, d.reasons[-1]) == (expected, reason)


def test_home_chosen_by_score_when_all_are_busy() -> None:
    state = live(
        everyone(blr={"orders-en": BUSY}, dac={"orders-en": BUSY}, mnl={"orders-en": BUSY})
    )
    d = ROUTER.decide(call(caller=EN_CALLER), state, WED)
    assert d.site == "blr"  # equal scores: config order
    assert d.reasons == ("caller_prefix", "home_site_busy", "overflow_ewt")


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (live(everyone(), down=["blr"]), "site_down"),
        (live(everyone(), drained=["blr"]), "drained"),
        (live(everyone(blr={"orders-en": load(logged_in=0, available=0)})), "unstaffed"),
    ],
)
def test_home_unusable_overflows(state: LiveState, reason: str) -> None:
    d = ROUTER.decide(call(caller=EN_CALLER), state, WED)
    assert d.outcome == "queue" and d.site in {"dac", "mnl"}
    assert d.reasons[1] == reason
    assert ("blr", reason) in d.skipped


def test_missing_queue_counts_as_unstaffed() -> None:
    queues = everyone()
    del queues["blr"]["orders-en"]
    d = ROUTER.decide(call(caller=EN_CALLER), live(queues), WED)
    assert d.site != "blr" and ("blr", "unstaffed") in d.skipped


def test_recovered_site_waits_out_the_holdoff() -> None:
    now_ts = WED.timestamp()
    state = live(everyone(), up_since=now_ts - 5)
    d = ROUTER.decide(call(), state, WED)
    assert d.outcome == "after_hours"
    assert "site_holdoff" in d.reasons
    later = live(everyone(), up_since=now_ts - 10)
    assert ROUTER.decide(call(), later, WED).site == "blr"


def test_unsynced_state_routes_by_schedule_alone() -> None:
    state = live(everyone(blr={"orders-hi": load(logged_in=0, available=0)}), synced=False)
    d = ROUTER.decide(call(), state, WED)
    assert (d.site, d.ewt) == ("blr", None)
    assert d.reasons == ("caller_prefix", "home_site_open", "schedule_only")


def test_unsynced_overflow_keeps_sticky() -> None:
    state = live(everyone(), synced=False, down=["blr"], sticky={("orders", "en"): "mnl"})
    d = ROUTER.decide(call(caller=EN_CALLER), state, WED)
    assert d.site == "mnl" and d.reasons[-1] == "schedule_only"


def test_closed_home_overflows_to_open_site() -> None:
    sunday = datetime(2025, 1, 12, 4, 30, tzinfo=UTC)  # blr orders is closed on Sundays
    d = ROUTER.decide(call(caller=EN_CALLER), CALM, sunday)
    assert d.site == "dac"  # dac works Sun-Thu; equal load, config order beats mnl
    assert d.reasons == ("caller_prefix", "closed_hours", "overflow_ewt")


def test_national_holiday_at_home() -> None:
    republic_day = datetime(2026, 1, 26, 4, 30, tzinfo=UTC)  # a Monday, 10:00 IST
    d = ROUTER.decide(call(caller=EN_CALLER), CALM, republic_day)
    assert d.reasons[1] == "holiday"
    assert d.site == "dac"


def test_overnight_shift_serves_tuesday_early_morning() -> None:
    tue_3am_dhaka = datetime(2025, 1, 7, 3, 0, tzinfo=ZoneInfo("Asia/Dhaka"))
    d = ROUTER.decide(call(did=BD_ORDERS, caller=BN_CALLER, at="dac"), CALM, tue_3am_dhaka)
    assert (d.site, d.queue, d.reasons) == ("dac", "orders-bn", ("caller_prefix", "home_site_open"))


def test_no_home_site_uses_score_only() -> None:
    d = ROUTER.decide(call(did=PH_ORDERS, caller=EN_CALLER, at="mnl"), CALM, WED)
    assert d.site == "blr"  # all equal: the first site in config order
    assert d.reasons == ("caller_prefix", "overflow_ewt")


SATURDAY = datetime(2025, 1, 11, 4, 30, tzinfo=UTC)  # returns is closed everywhere


def test_after_hours_routes_to_designated_site_regardless_of_hours() -> None:
    d = ROUTER.decide(call(did=IN_RETURNS, caller=EN_CALLER), CALM, SATURDAY)
    assert (d.outcome, d.action, d.site, d.queue) == ("after_hours", "site", "mnl", "returns-en")
    assert d.trunks == ("blr-mnl-1", "blr-mnl-2")
    assert d.reasons[-1] == "after_hours" and "closed_hours" in d.reasons


def test_after_hours_designated_site_lacks_the_language() -> None:
    d = ROUTER.decide(call(did=IN_RETURNS), CALM, SATURDAY)
    assert (d.site, d.queue, d.language) == ("mnl", "returns-en", "en")
    assert d.reasons[-1] == "language_unserved"


def test_after_hours_designated_site_down_means_closed() -> None:
    d = ROUTER.decide(call(did=IN_RETURNS), live(everyone(), down=["mnl"]), SATURDAY)
    assert (d.outcome, d.action, d.site, d.queue) == ("after_hours", "closed", None, None)
    assert d.reasons[-2:] == ("after_hours", "after_hours_site_down")


@pytest.mark.parametrize("action", ["voicemail", "callback", "closed"])
def test_after_hours_actions(action: str) -> None:
    router = lab(after_hours=after_hours(action))
    d = router.decide(call(did=IN_RETURNS), CALM, SATURDAY)
    assert (d.outcome, d.action, d.site, d.queue, d.service) == (
        "after_hours",
        action,
        None,
        None,
        "returns",
    )


def test_decision_serialises() -> None:
    d = ROUTER.decide(call(at="dac"), CALM, WED)
    data = json.loads(d.to_json())
    assert data == d.as_dict()
    assert data["trunks"] == ["dac-blr-1", "dac-blr-2"]
    assert data["skipped"] == []
    inf = replace(d, ewt=float("inf"), skipped=(("mnl", "site_down"),))
    assert json.loads(inf.to_json())["ewt"] is None
    assert inf.as_dict()["skipped"] == [{"site": "mnl", "reason": "site_down"}]


def test_module_decide_matches_router_and_remember_sets_sticky() -> None:
    cfg = ROUTER.config
    d = decide(call(caller=EN_CALLER), cfg, CALM, WED)
    assert d == ROUTER.decide(call(caller=EN_CALLER), CALM, WED)
    st = remember(CALM, d)
    assert st.sticky == {("orders", "en"): "blr"}
    rejected = decide(call(did="+1"), cfg, CALM, WED)
    assert remember(st, rejected) is st


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        ROUTER.decide(call(), CALM, datetime(2025, 1, 8, 10, 0))
