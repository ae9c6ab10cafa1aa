"""Held routes on the real lab: the bridge keeps them in each site's dialplan globals; the
dialplan routes from them without FastAGI while the bridge lives, from the last ones for a
bounded time when it does not answer, across a schedule boundary, and refuses garbage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ccbridge import variables as v
from ccbridge.app import Bridge
from ccbridge.config import Config
from ccbridge.config.model import HeldRouteSettings
from ccbridge.lab.dtmf import ivr_call
from ccbridge.lab.sipp import Agent, CallResult, place_calls
from ccbridge.lab.sites import Lab
from ccbridge.routing.engine import CallRequest
from ccbridge.routing.held import Decoded, HeldRoute, decode, held_key, held_service_key, route_of
from tests.integration.conftest import AmiRecorder, BridgeFactory
from tests.polling import until, until_async

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # every site open
BLR_CLOSE = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # 21:00 in Bangalore: orders closes
ORDERS_IN = "+918000000001"  # received at bangalore
BENGALI = "+8801712345678"  # the bridge sends it to dhaka orders-bn; static: bangalore orders-hi
HINDI = "+919812345678"
# Short bounds so a test sees every stage: fresh 2 s, held 20 s after the last heartbeat.
HELD = HeldRouteSettings(
    use_without_bridge=True, fresh_age=2, max_age=20, refresh=0.5, min_interval=0.1
)


@pytest.fixture(scope="module")
def held_config(lab: Lab, lab_config: Config) -> Iterator[Config]:
    config = replace(lab_config, routing=replace(lab_config.routing, held_routes=HELD))
    lab.reconfigure(config)
    try:
        yield config
    finally:
        lab.reconfigure(lab_config)


async def _cli(lab: Lab, site: str, command: str) -> str:
    return await asyncio.to_thread(lab.cli, lab.config.site(site), command)


async def _get(lab: Lab, site: str, name: str) -> str:
    """A global of the site's dialplan, as Asterisk holds it now."""
    out = await _cli(lab, site, f"dialplan eval function GLOBAL({name})")
    return out.split("Result:", 1)[1].strip() if "Result:" in out else ""


async def _fresh_ahead(lab: Lab, site: str) -> bool:
    """The site's fresh deadline is after the instant the read began."""
    began = time.time()
    value = await _get(lab, site, v.HELD_FRESH_UNTIL)
    return value.isdigit() and int(value) > began


async def _held(lab: Lab, site: str, did: str, lang: str) -> Decoded:
    return decode(await _get(lab, site, held_key(did, lang)), site)


async def _published(bridge: Bridge) -> None:
    await until(lambda: all(n >= 2 for n in bridge.held.passes.values()), 10, "tables written")


async def _calls(caller: str, n: int = 1, port: int = 6300) -> CallResult:
    return await asyncio.to_thread(
        place_calls,
        "127.0.1.1:5060",
        ORDERS_IN,
        caller=caller,
        calls=n,
        rate=2,
        duration_ms=400,
        max_seconds=20,
        local_port=port,
    )


def _joins(ami: AmiRecorder, site: str, queue: str) -> int:
    return sum(1 for e in ami.named("QueueCallerJoin", site) if e.get("Queue") == queue)


def _user(ami: AmiRecorder, name: str, **fields: str) -> list[dict[str, str]]:
    return [
        e
        for e in ami.named("UserEvent", "bangalore")
        if e.get("UserEvent") == name and all(e.get(k) == x for k, x in fields.items())
    ]


def _metric(bridge: Bridge, name: str, **labels: str) -> float:
    return bridge.registry.get_sample_value(name, labels) or 0.0


async def test_held_routes_appear_in_the_globals_as_the_engine_decides(
    lab: Lab, held_config: Config, bridge_at: BridgeFactory
) -> None:
    async with bridge_at(WEDNESDAY_MORNING, held_config) as bridge:
        await _published(bridge)
        held = await _held(lab, "bangalore", ORDERS_IN, "bn")
        call = CallRequest(ORDERS_IN, "", "bangalore", ivr_language="bn")
        now = bridge.router.decide(call, bridge.state, bridge.clock.now())
        assert held.now == route_of(now, "bangalore")
        dhaka_trunks = tuple(t.name for t in held_config.trunks_between("bangalore", "dhaka"))
        assert held.now == HeldRoute(v.ROUTE_REMOTE, "dhaka", "orders-bn", trunks=dhaka_trunks)
        assert held.service == "orders"
        # Times are the PBX's wall clock, not the bridge's shifted one.
        assert abs(held.computed - time.time()) < 10
        # The next boundary: Dhaka closes at 18:00 (12:00 UTC); then its Bengali callers
        # go to the after-hours site, manila, in English.
        closes = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp() - bridge.clock.offset
        assert abs(held.until - closes) <= 2
        assert held.next == HeldRoute(v.ROUTE_REMOTE, "manila", "orders-en", trunks=("blr-mnl",))
        heartbeat = int(await _get(lab, "bangalore", v.HELD_HEARTBEAT))
        assert time.time() - heartbeat <= 2
        fresh = int(await _get(lab, "bangalore", v.HELD_FRESH_UNTIL))
        assert fresh - heartbeat == HELD.fresh_age
        dhaka = await _held(lab, "dhaka", "+8809600000001", "bn")
        assert dhaka.now == HeldRoute(v.ROUTE_QUEUE, "dhaka", "orders-bn")


async def test_a_fresh_held_route_routes_without_asking_the_bridge(
    lab: Lab,
    held_config: Config,
    agents: dict[str, Agent],
    ami: AmiRecorder,
    bridge_at: BridgeFactory,
) -> None:
    async with bridge_at(WEDNESDAY_MORNING, held_config) as bridge:
        await _published(bridge)
        # Route sessions only: a FastAGI guard's health checks also connect (no request).
        routed = {"route": "route", "outcome": "ok"}
        sessions = _metric(bridge, "ccbridge_fastagi_sessions_total", **routed)
        result = await _calls(BENGALI, 2, port=6301)
        assert result.ok, result.output[-2000:]
        # Where the bridge would have sent them: dhaka's Bengali queue, over the trunk.
        await ami.wait_for(lambda: _joins(ami, "dhaka", "orders-bn") >= 2, what="dhaka joins")
        assert _joins(ami, "bangalore", "orders-hi") == 0
        # no FastAGI route session at all
        assert _metric(bridge, "ccbridge_fastagi_sessions_total", **routed) == sessions
        # Nor an event per call: it would cost Asterisk as much as the held path adds
        # (BENCHMARKS.md §1); the bridge counts calls it routes or hears of after a failure.
        assert _user(ami, v.EVENT_HELD_ROUTE) == []
        assert _user(ami, v.EVENT_HELD_REJECTED) == []


@pytest.mark.parametrize(
    ("value", "reason", "refusals"),
    [
        # No time to trust: the fallback refuses it.
        ("garbage", v.HELD_REJECT_INVALID, 1),
        # Well formed, but dhaka's queue as a local route at bangalore (no such queue
        # here): refused by ccb-held-last's `i`.
        ("orders-bn/reject/9999999999/9999999999/orders/0", v.HELD_REJECT_INVALID, 1),
        # Goto's separators (comma, colon, question mark) are filtered out: no such route.
        ("a,b:c?d/reject/9999999999/9999999999/orders/0", v.HELD_REJECT_INVALID, 1),
        ("remote.dhaka.orders-bn.blr-dac/reject/1/2/orders/0", v.HELD_REJECT_EXPIRED, 1),
    ],
)
async def test_garbage_written_by_hand_goes_static_and_is_counted(
    lab: Lab,
    held_config: Config,
    agents: dict[str, Agent],
    ami: AmiRecorder,
    bridge_at: BridgeFactory,
    value: str,
    reason: str,
    refusals: int,
) -> None:
    async with bridge_at(WEDNESDAY_MORNING, held_config) as bridge:
        await _published(bridge)
        # The bridge answers no route and writes nothing; its fresh deadline is put in the
        # past by hand: the call asks, gets nothing, and reads the held value (the fresh
        # path reads no value: the bridge wrote the route into ccb-inbound itself).
        await bridge.agi.stop()
        await bridge.held.stop()
        await _cli(lab, "bangalore", f"dialplan set global {v.HELD_FRESH_UNTIL} 0")
        key = held_key(ORDERS_IN, "bn")
        await _cli(lab, "bangalore", f"dialplan set global {key} {value}")
        assert await _get(lab, "bangalore", key) == value
        result = await _calls(BENGALI, 1, port=6302)
        assert result.ok, result.output[-2000:]
        await ami.wait_for(lambda: _joins(ami, "bangalore", "orders-hi") >= 1, what="static")
        assert _joins(ami, "dhaka", "orders-bn") == 0
        assert len(_user(ami, v.EVENT_HELD_REJECTED, Reason=reason, Did=ORDERS_IN)) == refusals
        await until(
            lambda: (
                _metric(
                    bridge, "ccbridge_held_route_rejected_total", site="bangalore", reason=reason
                )
                == refusals
            ),
            5,
            "the bridge to count the refusals",
        )
        # The bridge writes the key again: the hand edit is undone.
        await bridge.held.start()
        got: list[str] = []

        async def rewritten() -> bool:
            got[:] = [await _get(lab, "bangalore", key)]
            return got[0] != value

        for _ in range(40):
            if await rewritten():
                break
            await asyncio.sleep(0.1)
        assert decode(got[0], "bangalore").now.site == "dhaka"


@pytest.mark.parametrize(
    "deadline",
    [
        "garbage",  # `0garbage` compares as text, below any epoch: ask the bridge
        "1|1",  # an expression of its own: true, the route the bridge wrote
        "9999999999,x)?ccb-fallback",  # stays inside $[...]: a syntax error, ask
    ],
)
async def test_a_hand_written_fresh_deadline_never_sends_a_call_nowhere(
    lab: Lab,
    held_config: Config,
    agents: dict[str, Agent],
    ami: AmiRecorder,
    bridge_at: BridgeFactory,
    deadline: str,
) -> None:
    """The one hand-writable value the fresh path reads: whatever it holds, the call
    takes the route the bridge wrote, or asks and takes the held fallback (the bridge
    answers no route here): dhaka's Bengali queue either way, never static or nowhere."""
    async with bridge_at(WEDNESDAY_MORNING, held_config) as bridge:
        await _published(bridge)
        shown = await _cli(lab, "bangalore", "dialplan show ccb-inbound")
        assert "ccb-held,remote.dhaka.orders-bn" in shown and "CCB_HELD_FRESH" in shown
        await bridge.agi.stop()
        await bridge.held.stop()
        await _cli(lab, "bangalore", f"dialplan set global {v.HELD_FRESH_UNTIL} {deadline}")
        result = await _calls(BENGALI, 1, port=6307)
        assert result.ok, result.output[-2000:]
        await ami.wait_for(lambda: _joins(ami, "dhaka", "orders-bn") >= 1, what="held route")
        assert _joins(ami, "bangalore", "orders-hi") == 0
        assert _user(ami, v.EVENT_FALLBACK) == []


async def test_a_dialplan_reload_empties_the_globals_and_the_bridge_writes_them_again(
    lab: Lab, held_config: Config, bridge_at: BridgeFactory
) -> None:
    async with bridge_at(WEDNESDAY_MORNING, held_config) as bridge:
        await _published(bridge)
        key = held_key(ORDERS_IN, "bn")
        assert await _get(lab, "bangalore", key)
        assert "reloaded" in (await _cli(lab, "bangalore", "dialplan reload")).lower()
        passes = bridge.held.passes["bangalore"]
        # clearglobalvars=yes: gone at once (calls then ask the bridge), back within a pass.
        await until(lambda: bridge.held.passes["bangalore"] >= passes + 2, 10, "two passes")
        assert decode(await _get(lab, "bangalore", key), "bangalore").now.site == "dhaka"
        # The fresh deadline is back too, ahead of the clock. Polled: it may stand at the
        # first instant a route changes (a trunk's or a schedule's), which the pass after
        # it moves on, and a read through the CLI takes up to a second on a slow host
        # (compared with the clock after the read, it once lost that race).
        await until_async(
            lambda: _fresh_ahead(lab, "bangalore"), 5, "a fresh deadline ahead of the clock"
        )
        # and the routes written into ccb-inbound: the rendered step was back meanwhile
        shown = await _cli(lab, "bangalore", "dialplan show ccb-inbound")
        assert "ccb-held,remote.dhaka.orders-bn" in shown


async def test_bridge_gone_held_route_then_static_after_the_bound(
    lab: Lab,
    held_config: Config,
    agents: dict[str, Agent],
    ami: AmiRecorder,
    bridge_at: BridgeFactory,
) -> None:
    async with bridge_at(WEDNESDAY_MORNING, held_config) as bridge:
        await _published(bridge)
    # The bridge is gone (FastAGI refused, no heartbeat): past the fresh bound the dialplan
    # asks, fails, and takes the last held route.
    heartbeat = int(await _get(lab, "bangalore", v.HELD_HEARTBEAT))
    await until(lambda: time.time() > heartbeat + HELD.fresh_age + 1, 10, "stale heartbeat")
    result = await _calls(BENGALI, 1, port=6303)
    assert result.ok, result.output[-2000:]
    await ami.wait_for(lambda: _joins(ami, "dhaka", "orders-bn") >= 1, what="held route")
    assert len(_user(ami, v.EVENT_HELD_ROUTE, Source=v.HELD_FALLBACK)) == 1
    # Past max_age the held table is too old to trust: the static route.
    await until(lambda: time.time() > heartbeat + HELD.max_age + 1, 30, "expired heartbeat")
    result = await _calls(BENGALI, 1, port=6304)
    assert result.ok, result.output[-2000:]
    await ami.wait_for(lambda: _joins(ami, "bangalore", "orders-hi") >= 1, what="static route")
    assert len(_user(ami, v.EVENT_HELD_ROUTE)) == 1
    assert _joins(ami, "dhaka", "orders-bn") == 1


async def test_held_route_switches_at_closing_time_without_the_bridge(
    lab: Lab,
    held_config: Config,
    agents: dict[str, Agent],
    ami: AmiRecorder,
    bridge_at: BridgeFactory,
) -> None:
    # 10 s before Bangalore's orders close: Hindi callers stay at bangalore until 21:00 IST,
    # then go to the after-hours site (manila, in English) with no bridge to tell them.
    async with bridge_at(BLR_CLOSE - timedelta(seconds=10), held_config) as bridge:
        await _published(bridge)
        offset = bridge.clock.offset
    held = await _held(lab, "bangalore", ORDERS_IN, "hi")
    assert held.now == HeldRoute(v.ROUTE_QUEUE, "bangalore", "orders-hi")
    assert held.next == HeldRoute(v.ROUTE_REMOTE, "manila", "orders-en", trunks=("blr-mnl",))
    assert abs(held.until - (BLR_CLOSE.timestamp() - offset)) <= 1
    result = await _calls(HINDI, 1, port=6305)
    assert result.ok, result.output[-2000:]
    await ami.wait_for(lambda: _joins(ami, "bangalore", "orders-hi") >= 1, what="before 21:00")
    await until(lambda: time.time() >= held.until, 15, "21:00 in Bangalore")
    result = await _calls(HINDI, 1, port=6306)
    assert result.ok, result.output[-2000:]
    await ami.wait_for(lambda: _joins(ami, "manila", "orders-en") >= 1, what="after 21:00")
    assert _joins(ami, "bangalore", "orders-hi") == 1


IVR_IN = "+918000000003"  # answered by the language menu, then the main menu
RETURNS_EN = held_service_key(IVR_IN, "returns", "en")


async def _ivr_returns_en(port: int) -> None:
    """1 = English in the language menu, then 2 = returns (not the number's own service)."""
    result = await asyncio.to_thread(
        ivr_call,
        "127.0.1.1:5060",
        IVR_IN,
        [(1200, "1", "rfc2833"), (1500, "2")],
        caller=HINDI,
        hold_ms=3000,
        local_port=port,
    )
    assert result.ok, result.output[-2000:]


def _joined(ami: AmiRecorder, route: HeldRoute) -> int:
    return _joins(ami, route.site or "bangalore", route.queue)


async def test_an_ivr_caller_picking_another_service_takes_the_route_held_for_it(
    lab: Lab,
    held_config: Config,
    agents: dict[str, Agent],
    ami: AmiRecorder,
    bridge_at: BridgeFactory,
) -> None:
    async with bridge_at(WEDNESDAY_MORNING, held_config) as bridge:
        await _published(bridge)
        held = decode(await _get(lab, "bangalore", RETURNS_EN), "bangalore")
        call = CallRequest(IVR_IN, "", "bangalore", ivr_language="en", service="returns")
        assert held.service == "returns"
        assert held.now == route_of(
            bridge.router.decide(call, bridge.state, bridge.clock.now()), "bangalore"
        )
        assert held.now.kind in (v.ROUTE_QUEUE, v.ROUTE_REMOTE) and held.now.queue == "returns-en"
        # Bridge alive, table fresh: the service's held route, no FastAGI route session.
        routed = {"route": "route", "outcome": "ok"}
        sessions = _metric(bridge, "ccbridge_fastagi_sessions_total", **routed)
        await _ivr_returns_en(6310)
        await ami.wait_for(lambda: _joined(ami, held.now) >= 1, what="held returns-en")
        assert _metric(bridge, "ccbridge_fastagi_sessions_total", **routed) == sessions
        assert _user(ami, v.EVENT_FALLBACK) == []
        # Garbage in the service's key (by hand) with the bridge answering no route: the
        # fresh step passes it by, the fallback refuses it and takes the static route.
        await bridge.agi.stop()
        await _cli(lab, "bangalore", f"dialplan set global {RETURNS_EN} garbage")
        await _ivr_returns_en(6311)
        await ami.wait_for(lambda: len(_user(ami, v.EVENT_FALLBACK)) >= 1, what="static")
        refused = _user(ami, v.EVENT_HELD_REJECTED, Reason=v.HELD_REJECT_INVALID)
        assert [(e["Did"], e["IvrService"], e["Lang"]) for e in refused] == [
            (IVR_IN, "returns", "en")
        ]
        labels = {"site": "bangalore", "reason": v.HELD_REJECT_INVALID}
        await until(
            lambda: _metric(bridge, "ccbridge_held_route_rejected_total", **labels) == 1,
            5,
            "the refusal counted",
        )
        # The refusal names the service's key: the bridge writes that one again.
        await until(lambda: bridge.held.passes["bangalore"] >= 4, 10, "passes")

        async def restored() -> bool:
            return (await _get(lab, "bangalore", RETURNS_EN)) != "garbage"

        for _ in range(40):
            if await restored():
                break
            await asyncio.sleep(0.1)
        assert decode(await _get(lab, "bangalore", RETURNS_EN), "bangalore").now == held.now
    # The bridge is gone: FastAGI refused, the heartbeat stops. The IVR caller still
    # takes the route held for the service picked (the fallback path, reported).
    heartbeat = int(await _get(lab, "bangalore", v.HELD_HEARTBEAT))
    await until(lambda: time.time() > heartbeat + HELD.fresh_age + 1, 10, "stale heartbeat")
    joins = _joined(ami, held.now)
    await _ivr_returns_en(6312)
    await ami.wait_for(lambda: _joined(ami, held.now) > joins, what="held route, no bridge")
    used = _user(ami, v.EVENT_HELD_ROUTE, Source=v.HELD_FALLBACK, IvrService="returns")
    assert len(used) == 1 and used[0]["Lang"] == "en"
    assert len(_user(ami, v.EVENT_FALLBACK)) == 1  # only the garbage call went static
