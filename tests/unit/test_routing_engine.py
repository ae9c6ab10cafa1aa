"""The routing decision over a three-site, lab-shaped config."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ccbridge.config.model import Schedule
from ccbridge.routing.engine import CallRequest, Decision, Router, decide, remember
from ccbridge.routing.reasons import Outcome, Reason, Skip
from ccbridge.routing.state import LiveState, QueueLoad
from tests.unit.routing_factories import (
    BD_ORDERS,
    IN_ORDERS,
    IN_RETURNS,
    LAB_QUEUES,
    PH_ORDERS,
    after_hours,
    config,
    full_mesh,
    lab,
    live,
    load,
    number,
    offering,
    schedule,
    site,
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
    assert d == Decision(Outcome.REJECT, None, None, None, None, reasons=(Reason.UNKNOWN_DID,))


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
        ("blr", 2, "mnl", "overflow_ewt"),  # sticky home: 420 s is far off mnl's 55
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
    # Left the busy home: load overflow, whether the best or the sticky site took it.
    assert d.reasons[1:3] == ("home_site_busy", "overflow_ewt")


def test_home_chosen_by_score_when_all_are_busy() -> None:
    state = live(
        everyone(blr={"orders-en": BUSY}, dac={"orders-en": BUSY}, mnl={"orders-en": BUSY})
    )
    d = ROUTER.decide(call(caller=EN_CALLER), state, WED)
    assert d.site == "blr"  # equal scores: config order
    # Busy, but still the best: the call stays home, which is no overflow.
    assert d.reasons == ("caller_prefix", "home_site_busy", "least_loaded")


@pytest.mark.parametrize(
    ("state", "home_reason", "skip"),
    [
        (live(everyone(), down=["blr"]), "home_down", "site_down"),
        (live(everyone(), drained=["blr"]), "home_drained", "drained"),
        (
            live(everyone(blr={"orders-en": load(logged_in=0, available=0)})),
            "home_unstaffed",
            "unstaffed",
        ),
    ],
)
def test_home_unusable_hands_over_without_overflow(
    state: LiveState, home_reason: str, skip: str
) -> None:
    d = ROUTER.decide(call(caller=EN_CALLER), state, WED)
    assert d.outcome == "queue" and d.site in {"dac", "mnl"}
    assert d.reasons == ("caller_prefix", home_reason, "least_loaded")
    assert ("blr", skip) in d.skipped


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
    # Every site came back 5 s ago: the home (the only one with Hindi) and mnl, the
    # after-hours site, each give their own reason.
    assert d.reasons == ("caller_prefix", "home_holdoff", "after_hours", "after_hours_site_holdoff")
    assert d.skipped == (("blr", "site_holdoff"),)
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
    assert d.reasons == ("caller_prefix", "home_closed", "least_loaded")
    assert d.skipped == (("blr", "closed_hours"),)


def test_national_holiday_at_home() -> None:
    republic_day = datetime(2026, 1, 26, 4, 30, tzinfo=UTC)  # a Monday, 10:00 IST
    d = ROUTER.decide(call(caller=EN_CALLER), CALM, republic_day)
    assert d.reasons == ("caller_prefix", "home_holiday", "least_loaded")
    assert d.skipped == (("blr", "holiday"),)
    assert d.site == "dac"


def test_overnight_shift_serves_tuesday_early_morning() -> None:
    tue_3am_dhaka = datetime(2025, 1, 7, 3, 0, tzinfo=ZoneInfo("Asia/Dhaka"))
    d = ROUTER.decide(call(did=BD_ORDERS, caller=BN_CALLER, at="dac"), CALM, tue_3am_dhaka)
    assert (d.site, d.queue, d.reasons) == ("dac", "orders-bn", ("caller_prefix", "home_site_open"))


def test_no_home_site_uses_score_only() -> None:
    d = ROUTER.decide(call(did=PH_ORDERS, caller=EN_CALLER, at="mnl"), CALM, WED)
    assert d.site == "blr"  # all equal: the first site in config order
    assert d.reasons == ("caller_prefix", "least_loaded")


SATURDAY = datetime(2025, 1, 11, 4, 30, tzinfo=UTC)  # returns is closed everywhere


def test_after_hours_routes_to_designated_site_regardless_of_hours() -> None:
    d = ROUTER.decide(call(did=IN_RETURNS, caller=EN_CALLER), CALM, SATURDAY)
    assert (d.outcome, d.action, d.site, d.queue) == ("after_hours", "site", "mnl", "returns-en")
    assert d.trunks == ("blr-mnl-1", "blr-mnl-2")
    assert d.reasons == ("caller_prefix", "home_closed", "after_hours")
    assert d.skipped == (("blr", "closed_hours"), ("mnl", "closed_hours"))


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
    inf = replace(d, ewt=float("inf"), skipped=(("mnl", Skip.SITE_DOWN),))
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


# --- one reason per cause: load overflow, failover and schedule hand-over apart ------------


def two_sites(home_schedule: Schedule, *, trunks: bool = True) -> Router:
    """blr (home of IN_ORDERS, English) and mnl (always open); dac receives, no agents."""
    sites = [
        site("blr", [offering("orders", ["en"], home_schedule)], tz="Asia/Kolkata", n=1),
        site("dac", [], tz="Asia/Dhaka", country="BD", n=2),
        site("mnl", [offering("orders", ["en"])], tz="Asia/Manila", country="PH", n=3),
    ]
    mesh = full_mesh(["blr", "dac", "mnl"])
    # Without trunks: dac reaches mnl only, so a call received at dac cannot reach blr.
    kept = mesh if trunks else tuple(t for t in mesh if "blr" not in (t.site, t.peer_site))
    return Router(config(sites, [number(IN_ORDERS, "orders", "dac", home="blr")], trunks=kept))


def en_state(**kw: object) -> LiveState:
    return live({s: {"orders-en": load()} for s in ("blr", "dac", "mnl")}, **kw)  # type: ignore[arg-type]


def recovered(state: LiveState, name: str, since: float) -> LiveState:
    """``state`` with site ``name`` back up since ``since`` (the others up for an hour)."""
    sites = dict(state.sites)
    sites[name] = replace(sites[name], up_since=since)
    return replace(state, sites=sites)


@pytest.mark.parametrize(
    ("router", "state", "at", "home_reason", "skip"),
    [
        (two_sites(schedule(always=True)), en_state(down=["blr"]), WED, "home_down", "site_down"),
        (
            two_sites(schedule(always=True)),
            en_state(drained=["blr"]),
            WED,
            "home_drained",
            "drained",
        ),
        (
            two_sites(schedule(always=True)),
            recovered(en_state(), "blr", WED.timestamp() - 5),
            WED,
            "home_holdoff",
            "site_holdoff",
        ),
        (
            two_sites(schedule(always=True), trunks=False),
            en_state(),
            WED,
            "home_no_trunk",
            "no_trunk",
        ),
        (
            two_sites(schedule({"mon-sat": "09:00-17:00"})),
            en_state(),
            SATURDAY.replace(hour=13),
            "home_closed",
            "closed_hours",
        ),
        (
            two_sites(schedule(always=True, country="IN")),
            en_state(),
            datetime(2026, 1, 26, 4, 30, tzinfo=UTC),  # Republic Day
            "home_holiday",
            "holiday",
        ),
        (
            two_sites(schedule(always=True, closed=[WED.date()])),
            en_state(),
            WED,
            "home_closed_date",
            "closed_date",
        ),
        (
            two_sites(schedule(always=True)),
            live(
                {"blr": {"orders-en": load(logged_in=0)}, "dac": {}, "mnl": {"orders-en": load()}}
            ),
            WED,
            "home_unstaffed",
            "unstaffed",
        ),
    ],
)
def test_each_home_cause_has_its_own_reason_and_is_no_overflow(
    router: Router, state: LiveState, at: datetime, home_reason: str, skip: str
) -> None:
    d = router.decide(CallRequest(IN_ORDERS, EN_CALLER, "dac"), state, at)
    assert (d.outcome, d.site) == ("queue", "mnl")
    assert d.reasons == ("caller_prefix", home_reason, "least_loaded")
    assert "overflow_ewt" not in d.reasons
    assert d.skipped[0] == ("blr", skip)


def test_busy_home_is_the_only_load_overflow() -> None:
    router = two_sites(schedule(always=True))
    state = live({"blr": {"orders-en": BUSY}, "dac": {}, "mnl": {"orders-en": load()}})
    d = router.decide(CallRequest(IN_ORDERS, EN_CALLER, "dac"), state, WED)
    assert (d.site, d.reasons) == ("mnl", ("caller_prefix", "home_site_busy", "overflow_ewt"))
    assert d.skipped == ()


def test_other_sites_skip_reasons_stay_out_of_the_reasons() -> None:
    # Home busy, dac down, mnl drained: before, "site_down" and "drained" joined the
    # reasons and read as the home's own state.
    state = live(everyone(blr={"orders-en": BUSY}), down=["dac"], drained=["mnl"], sticky=None)
    d = ROUTER.decide(call(caller=EN_CALLER), state, WED)
    assert d.site == "blr"
    assert d.reasons == ("caller_prefix", "home_site_busy", "least_loaded")
    assert set(d.skipped) == {("dac", "site_down"), ("mnl", "drained")}


def test_reasons_and_skips_are_enum_members() -> None:
    state = live(everyone(blr={"orders-en": BUSY}), down=["dac"])
    d = ROUTER.decide(call(caller=EN_CALLER), state, WED)
    assert isinstance(d.outcome, Outcome)
    assert all(isinstance(r, Reason) for r in d.reasons)
    assert all(isinstance(why, Skip) for _, why in d.skipped)
    # Closed by the schedule (Sunday at blr, holiday, closed date): a Skip as well.
    for at, r in (
        (datetime(2025, 1, 12, 4, 30, tzinfo=UTC), two_sites(schedule({"mon-sat": "09:00-17:00"}))),
        (datetime(2026, 1, 26, 4, 30, tzinfo=UTC), two_sites(schedule(always=True, country="IN"))),
        (WED, two_sites(schedule(always=True, closed=[WED.date()]))),
    ):
        closed = r.decide(CallRequest(IN_ORDERS, EN_CALLER, "dac"), en_state(), at)
        assert [type(why) for _, why in closed.skipped] == [Skip]
    assert json.loads(d.to_json())["reasons"] == [str(r) for r in d.reasons]
