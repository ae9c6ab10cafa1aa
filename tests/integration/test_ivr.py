"""IVR on the real lab: SIPp callers key RFC 2833 DTMF; menus, lookups and fallbacks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from aiohttp import web

from ccbridge.config import Config
from ccbridge.config.model import HostPort
from ccbridge.lab.dtmf import Step, ivr_call
from ccbridge.lab.sipp import Agent
from ccbridge.lab.sites import Lab
from ccbridge.render import render_site
from tests.integration.conftest import AmiRecorder, BridgeFactory, clear_held_routes

# Wednesday 25 Nov 2026, 10:30 in Bangalore and 11:00 in Dhaka: both open, no holiday.
WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
IVR_IN = "+918000000003"  # answered by the `language` menu at bangalore
HINDI_CALLER = "+919812345678"
BANGALORE = "127.0.1.1:5060"


def _steps(ami: AmiRecorder, menu: str) -> list[str]:
    return [
        e.get("Step", "")
        for e in ami.named("UserEvent")
        if e.get("UserEvent") == "CcbIvr" and e.get("Menu") == menu
    ]


def _lookups(ami: AmiRecorder) -> list[dict[str, str]]:
    return [e for e in ami.named("UserEvent") if e.get("UserEvent") == "CcbLookup"]


def _count(ami: AmiRecorder, event: str, site: str, queue: str) -> int:
    return sum(1 for e in ami.named(event, site) if e.get("Queue") == queue)


async def _call(did: str, steps: list[Step], hold_ms: int, port: int) -> None:
    result = await asyncio.to_thread(
        ivr_call, BANGALORE, did, steps, caller=HINDI_CALLER, hold_ms=hold_ms, local_port=port
    )
    assert result.ok, result.output[-2000:]


async def test_bengali_then_orders_lands_in_the_bengali_orders_queue_at_dhaka(
    lab: Lab, agents: dict[str, Agent], ami: AmiRecorder, bridge_at: BridgeFactory
) -> None:
    async with bridge_at(WEDNESDAY_MORNING) as bridge:
        # 2 = Bengali in the language menu, then 1 = orders in the main menu.
        await _call(IVR_IN, [(1200, "2", "rfc2833"), (1500, "1")], hold_ms=4000, port=6141)
        await ami.wait_for(
            lambda: _count(ami, "AgentConnect", "dhaka", "orders-bn") >= 1, what="dhaka agent"
        )
        assert _steps(ami, "language") == ["2"]
        assert _steps(ami, "main") == ["1"]
        # Bangalore serves no Bengali: the schedule and load send the call to Dhaka.
        assert ami.named("QueueCallerJoin", "bangalore") == []
        routed = bridge.metrics.registry.get_sample_value(
            "ccbridge_route_decisions_total",
            {
                "receiving_site": "bangalore",
                "site": "dhaka",
                "outcome": "queue",
                "service": "orders",
                "language": "bn",
            },
        )
        assert routed == 1.0


async def test_invalid_twice_then_nothing_reaches_the_final_destination(
    lab: Lab, agents: dict[str, Agent], ami: AmiRecorder, bridge_at: BridgeFactory
) -> None:
    async with bridge_at(WEDNESDAY_MORNING):
        # 9 is no option; the second 9 lands during the replayed menu; then silence.
        await _call(IVR_IN, [(1000, "9"), (3000, "9")], hold_ms=11000, port=6142)
        await ami.wait_for(
            lambda: _count(ami, "AgentConnect", "bangalore", "orders-en") >= 1,
            what="final destination: orders in English at bangalore",
        )
        assert _steps(ami, "language") == ["invalid", "invalid", "timeout", "final"]


@pytest.fixture
async def backend() -> AsyncIterator[list[dict[str, str]]]:
    """The self-service backend of examples/lab.yaml on 127.0.0.1:8099."""
    seen: list[dict[str, str]] = []

    async def lookup(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        return web.json_response({"answer": "shipped", "say": "42"})

    app = web.Application()
    app.router.add_post("/lookup", lookup)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 8099).start()
    try:
        yield seen
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def bangalore_lookups_over_a_list(lab: Lab, config: Config) -> Iterator[None]:
    """Bangalore's ivr.conf as a deployment of several bridges without a guard renders it
    (issue 15): a dead first bridge (a refused port), then the test's bridge; the lab's
    own ivr.conf again after."""
    servers = (HostPort("127.0.0.1", 1), HostPort("127.0.0.1", 4573))
    listed = replace(
        config,
        bridge=replace(
            config.bridge,
            agi_guard=None,
            cluster=replace(config.bridge.cluster, servers=servers),
        ),
    )
    site = config.site("bangalore")
    ivr = lab.dirs(site).host("etc") / "ivr.conf"
    original = ivr.read_text(encoding="utf-8")
    ivr.write_text(render_site(listed, site)["ivr.conf"], encoding="utf-8")
    try:
        assert "reloaded" in lab.cli(site, "dialplan reload").lower()
        yield
    finally:
        ivr.write_text(original, encoding="utf-8")
        lab.cli(site, "dialplan reload")


async def test_order_status_lookup_reads_the_answer_back(
    lab: Lab,
    lab_config: Config,
    agents: dict[str, Agent],
    ami: AmiRecorder,
    bridge_at: BridgeFactory,
    backend: list[dict[str, str]],
) -> None:
    """Through a list of two bridges whose first is dead: the lookup asks the second."""
    with bangalore_lookups_over_a_list(lab, lab_config):
        async with bridge_at(WEDNESDAY_MORNING):
            # English, then 3 = order status, then the order number and #.
            await _call(
                IVR_IN, [(1000, "1"), (1500, "3"), (1500, "1234#")], hold_ms=4000, port=6143
            )
            await ami.wait_for(lambda: len(_lookups(ami)) >= 1, what="CcbLookup")
    assert backend == [{"lookup": "order-status", "digits": "1234", "site": "bangalore"}]
    ev = _lookups(ami)[0]
    assert (ev["Result"], ev["Answer"], ev["AgiStatus"]) == ("ok", "shipped", "SUCCESS")


async def test_backend_down_offers_an_agent(
    lab: Lab, agents: dict[str, Agent], ami: AmiRecorder, bridge_at: BridgeFactory
) -> None:
    async with bridge_at(WEDNESDAY_MORNING) as bridge:
        await _call(IVR_IN, [(1000, "1"), (1500, "3"), (1500, "1234#")], hold_ms=8000, port=6144)
        await ami.wait_for(
            lambda: _count(ami, "AgentConnect", "bangalore", "orders-en") >= 1,
            what="an English orders agent after the failed lookup",
        )
        ev = _lookups(ami)[0]
        assert ev["Result"] == "failed"
        assert bridge.selfservice is not None
        assert bridge.selfservice.breaker.state(0) is not None  # the client was used


async def test_menus_work_and_reach_a_queue_with_the_bridge_stopped(
    lab: Lab, agents: dict[str, Agent], ami: AmiRecorder
) -> None:
    # No bridge (and no held routes): the menu is pure dialplan; AGISTATUS=FAILURE sends
    # the choice (orders in Bengali) to its static route: the trunk to Dhaka.
    clear_held_routes(lab)
    await _call(IVR_IN, [(1200, "2"), (1500, "1")], hold_ms=5000, port=6145)
    await ami.wait_for(
        lambda: _count(ami, "AgentConnect", "dhaka", "orders-bn") >= 1, what="fallback to dhaka"
    )
    assert _steps(ami, "main") == ["1"]
    assert json.dumps(ami.named("QueueCallerJoin", "bangalore")) == "[]"
