"""A caller dials a DID at one site; the bridge routes; an agent at the chosen site answers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from ccbridge.lab.sipp import Agent, place_calls
from ccbridge.lab.sites import Lab
from tests.integration.conftest import AmiRecorder, BridgeFactory, clear_held_routes

# Wednesday 25 Nov 2026, 10:30 in Bangalore and 11:00 in Dhaka: both open, no holiday.
WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
BENGALI_CALLER = "+8801712345678"
HINDI_CALLER = "+919812345678"
ORDERS_IN = "+918000000001"  # received at bangalore


def _joined(ami: AmiRecorder, site: str, queue: str) -> int:
    return sum(1 for e in ami.named("QueueCallerJoin", site) if e.get("Queue") == queue)


def _connected(ami: AmiRecorder, site: str, queue: str) -> int:
    return sum(1 for e in ami.named("AgentConnect", site) if e.get("Queue") == queue)


async def test_bengali_caller_on_indian_number_reaches_dhaka_agent(
    lab: Lab, agents: dict[str, Agent], ami: AmiRecorder, bridge_at: BridgeFactory
) -> None:
    async with bridge_at(WEDNESDAY_MORNING) as bridge:
        result = await asyncio.to_thread(
            place_calls,
            "127.0.1.1:5060",
            ORDERS_IN,
            caller=BENGALI_CALLER,
            calls=2,
            rate=2,
            duration_ms=800,
            max_seconds=20,
        )
        assert result.ok, result.output[-2000:]
        await ami.wait_for(
            lambda: _connected(ami, "dhaka", "orders-bn") >= 2, what="2 agents at dhaka"
        )
        assert _joined(ami, "dhaka", "orders-bn") == 2
        # The call crossed the inter-site trunk: no queue at the receiving site saw it.
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
        assert routed == 2.0


async def test_hindi_caller_stays_at_bangalore(
    lab: Lab, agents: dict[str, Agent], ami: AmiRecorder, bridge_at: BridgeFactory
) -> None:
    async with bridge_at(WEDNESDAY_MORNING):
        result = await asyncio.to_thread(
            place_calls,
            "127.0.1.1:5060",
            ORDERS_IN,
            caller=HINDI_CALLER,
            calls=1,
            duration_ms=500,
            max_seconds=20,
        )
        assert result.ok, result.output[-2000:]
        await ami.wait_for(
            lambda: _connected(ami, "bangalore", "orders-hi") >= 1, what="agent at bangalore"
        )
        assert ami.named("QueueCallerJoin", "dhaka") == []
        assert ami.named("QueueCallerJoin", "manila") == []


async def test_calls_take_the_static_fallback_when_the_bridge_is_down(
    lab: Lab, agents: dict[str, Agent], ami: AmiRecorder
) -> None:
    # No bridge, and none ever ran (no held routes): Asterisk cannot connect to FastAGI,
    # AGISTATUS=FAILURE, fallback route.
    clear_held_routes(lab)
    result = await asyncio.to_thread(
        place_calls,
        "127.0.1.1:5060",
        ORDERS_IN,
        caller=BENGALI_CALLER,
        calls=2,
        rate=2,
        duration_ms=500,
        max_seconds=20,
        local_port=6120,
    )
    assert result.ok, result.output[-2000:]
    # The fallback for an Indian number at bangalore is its local queue in Hindi.
    await ami.wait_for(
        lambda: _connected(ami, "bangalore", "orders-hi") >= 2, what="fallback agents"
    )
    assert ami.named("QueueCallerJoin", "dhaka") == []
