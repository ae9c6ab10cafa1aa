"""Held routes: the pure table (now, and after the next schedule boundary) and its value."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ccbridge import variables as v
from ccbridge.config import Config, load_config
from ccbridge.loadtest.predict import rest_state
from ccbridge.routing.engine import CallRequest, Router
from ccbridge.routing.held import (
    Boundaries,
    HeldEntry,
    HeldRoute,
    accepts,
    decode,
    encode,
    held_entries,
    held_key,
    held_service_key,
    languages_for,
    menu_services,
    next_change,
    parse_route_id,
    route_id,
    route_of,
    routes_at,
    same_routes,
    valid_routes,
)

REPO = Path(__file__).resolve().parents[2]
# Wednesday 2026-11-25 15:29 UTC = 20:59 in Bangalore, a minute before orders closes there.
BEFORE_CLOSE = datetime(2026, 11, 25, 15, 29, tzinfo=UTC)
BLR_CLOSE = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def config() -> Config:
    mp = pytest.MonkeyPatch()
    mp.setenv("CCBRIDGE_AMI_SECRET", "s3cret-ami")
    mp.setenv("CCBRIDGE_API_TOKEN", "tok")
    try:
        return load_config(REPO / "examples" / "lab.yaml")
    finally:
        mp.undo()


def _table(config: Config, site: str, now: datetime) -> dict[str, HeldEntry]:
    router = Router(config)
    state = rest_state(config, now.timestamp(), set(), set())
    entries = held_entries(router, Boundaries(config), config.site(site), state, now)
    return {e.key: e for e in entries}


def test_next_change_is_the_closing_minute_in_the_sites_zone(config: Config) -> None:
    orders = config.site("bangalore").offering("orders")
    assert orders is not None
    assert next_change(orders.schedule, "Asia/Kolkata", BEFORE_CLOSE) == BLR_CLOSE
    # Closed from 21:00: it opens again at 09:00 IST (03:30 UTC) the next day.
    assert next_change(orders.schedule, "Asia/Kolkata", BLR_CLOSE) == datetime(
        2026, 11, 26, 3, 30, tzinfo=UTC
    )


def test_always_open_has_no_change_within_the_scan() -> None:
    from tests.unit.routing_factories import schedule

    assert next_change(schedule(always=True), "Asia/Manila", BEFORE_CLOSE) is None


def test_held_table_switches_at_the_sites_closing(config: Config) -> None:
    table = _table(config, "bangalore", BEFORE_CLOSE)
    e = table[held_key("+918000000001", "hi")]
    assert e.now == HeldRoute(v.ROUTE_QUEUE, "bangalore", "orders-hi")
    assert e.until == BLR_CLOSE.timestamp()
    # After 21:00 IST only the after-hours site (manila) takes orders, in English.
    assert e.next == HeldRoute(v.ROUTE_REMOTE, "manila", "orders-en", trunks=("blr-mnl",))
    # Each half is exactly what the engine decides at that instant on the same state.
    router = Router(config)
    state = rest_state(config, BEFORE_CLOSE.timestamp(), set(), set())
    call = CallRequest("+918000000001", "", "bangalore", ivr_language="hi")
    assert route_of(router.decide(call, state, BLR_CLOSE), "bangalore") == e.next
    assert e.next_until > e.until


def test_held_table_covers_every_number_and_reachable_language(config: Config) -> None:
    table = _table(config, "bangalore", BEFORE_CLOSE)
    dids = {n.did for n in config.numbers if n.site == "bangalore"}
    assert {e.did for e in table.values() if not e.ivr_service} == dids
    number = config.number("+918000000001")
    assert number is not None
    # Every configured language is some country's or the IVR's in the lab config.
    assert languages_for(config, number) == config.languages
    assert all(e.until == BLR_CLOSE.timestamp() for e in table.values())


def test_a_site_in_hold_off_is_a_boundary(config: Config) -> None:
    now = BEFORE_CLOSE - timedelta(minutes=10)
    state = rest_state(config, now.timestamp(), set(), set())
    dhaka = replace(state.sites["dhaka"], up_since=now.timestamp() - 4)
    state = replace(state, sites={**state.sites, "dhaka": dhaka})
    b = Boundaries(config)
    holdoff = config.routing.site_holdoff
    assert b.next(state, now).timestamp() == pytest.approx(now.timestamp() - 4 + holdoff)


def test_value_round_trips_and_passes_the_dialplans_check(config: Config) -> None:
    blr = config.site("bangalore")
    for e in _table(config, "bangalore", BEFORE_CLOSE).values():
        text = encode(e, BEFORE_CLOSE.timestamp(), wall_offset=100.0)
        assert accepts(config, blr, text), text
        d = decode(text, "bangalore")
        assert (d.now, d.next, d.service) == (e.now, e.next, e.service)
        assert d.until == int(e.until - 100) and d.computed == int(BEFORE_CLOSE.timestamp() - 100)


def test_a_value_is_route_ids_then_times_then_service(config: Config) -> None:
    e = _table(config, "bangalore", BEFORE_CLOSE)[held_key("+918000000001", "hi")]
    until, later = int(BLR_CLOSE.timestamp()), int(e.next_until)
    # A local queue's id is its name (ccb-held includes ccb-queue); the dialplan reads
    # field 1 (the route now) and field 3 (until) on its fresh path.
    assert encode(e, 7.0) == f"orders-hi/remote.manila.orders-en.blr-mnl/{until}/{later}/orders/7"


def test_until_is_rounded_up_never_early(config: Config) -> None:
    e = next(iter(_table(config, "bangalore", BEFORE_CLOSE).values()))
    d = decode(encode(replace(e, until=e.until + 0.2), 0.0), "bangalore")
    assert d.until == int(e.until) + 1


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "orders-hi/reject/1/2/orders",  # five fields
        "orders-hi/reject/1/2/orders/3/4",  # seven
        "orders-bn/reject/1/2/orders/3",  # not a queue here
        "queue.bangalore.orders-hi/reject/1/2/orders/3",  # not an id this format writes
        "remote.manila.orders-en.dac-mnl/reject/1/2/orders/3",  # dhaka's trunk
        "remote.manila.orders-en/reject/1/2/orders/3",  # no trunk
        "after_hours.party.orders/reject/1/2/orders/3",
        "after_hours.voicemail.sales/reject/1/2/orders/3",
        "reject/reject/x/2/orders/3",
        "reject/reject/1/2/sales/3",
        "reject/reject/1/2/orders/3\n",
        "remote.dhaka.orders-bn.blr-dac-2.blr-dac/reject/1/2/orders/3",  # order
        "remote.manila.orders-bn.blr-mnl/reject/1/2/orders/3",  # not at manila
        "reject/reject/1 /2/orders/3",
        "orders-hi,1/reject/1/2/orders/3",
    ],
)
def test_the_check_refuses_what_the_bridge_never_writes(config: Config, value: str) -> None:
    assert not accepts(config, config.site("bangalore"), value)


def test_same_routes_ignores_only_the_computed_time(config: Config) -> None:
    e = next(iter(_table(config, "bangalore", BEFORE_CLOSE).values()))
    assert same_routes(encode(e, 10.0), encode(e, 20.0))
    assert not same_routes(encode(e, 10.0), encode(replace(e, until=e.until + 60), 10.0))


def test_valid_routes_cover_every_held_route_and_every_trunk_order(config: Config) -> None:
    blr = config.site("bangalore")
    ids = {r.id for r in routes_at(config, blr)}
    for e in _table(config, "bangalore", BEFORE_CLOSE).values():
        assert route_id(e.now, e.service) in ids and route_id(e.next, e.service) in ids
        assert e.now in valid_routes(config, blr)
    # Either trunk to dhaka alone (the other unhealthy), or both in configured order.
    assert {
        "remote.dhaka.orders-bn.blr-dac",
        "remote.dhaka.orders-bn.blr-dac-2",
        "remote.dhaka.orders-bn.blr-dac.blr-dac-2",
    } <= ids
    # Every id parses back to its route; ids are names and dots only (FILTER keeps them).
    for r in routes_at(config, blr):
        assert parse_route_id(r.id, "bangalore")[0] == r.route
        assert set(r.id) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-.")


def test_a_number_with_a_menu_holds_a_route_per_service_its_callers_can_pick(
    config: Config,
) -> None:
    ivr, plain = config.number("+918000000003"), config.number("+918000000001")
    assert ivr is not None and plain is not None
    # orders (its own, and the operator's), returns (menu main); care is on no menu; the
    # lookup order-status is a per-call FastAGI step whose way back is a menu.
    assert menu_services(config, ivr) == ("orders", "returns")
    assert menu_services(config, plain) == ()
    table = _table(config, "bangalore", BEFORE_CLOSE)
    router = Router(config)
    state = rest_state(config, BEFORE_CLOSE.timestamp(), set(), set())
    for svc in ("orders", "returns"):
        for lang in languages_for(config, ivr):
            e = table[held_service_key(ivr.did, svc, lang)]
            assert (e.ivr_service, e.service, e.key) == (svc, svc, f"CCB_HS_{ivr.did}_{svc}_{lang}")
            call = CallRequest(ivr.did, "", "bangalore", ivr_language=lang, service=svc)
            # What the engine decides for that IVR caller, now and after the boundary.
            assert e.now == route_of(router.decide(call, state, BEFORE_CLOSE), "bangalore")
            assert e.next == route_of(router.decide(call, state, BLR_CLOSE), "bangalore")
            assert accepts(config, config.site("bangalore"), encode(e, 0.0))
    returns_hi = table[held_service_key(ivr.did, "returns", "hi")]
    assert returns_hi.now.queue.startswith("returns-")
    assert not any(k.startswith(held_service_key(plain.did, "", "")) for k in table)
