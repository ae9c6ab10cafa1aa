"""Follow-the-sun and load-aware overflow on the real lab, with the bridge's clock fixed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from ccbridge.lab.sipp import Agent, place_calls
from ccbridge.lab.sites import Lab
from tests.integration.conftest import AmiRecorder, BridgeFactory, fresh_queue_stats

ORDERS_IN = "+918000000001"  # received at bangalore, home bangalore
ENGLISH = "+447700900123"
# Wednesday 10:30 in Bangalore: the home site is open.
WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
# Monday 23:30 in Bangalore (closed), 00:00 Tuesday in Dhaka (its Monday night shift).
MONDAY_NIGHT = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def _joined(ami: AmiRecorder, since: int = 0) -> list[tuple[str, str]]:
    return [
        (site, e.get("Queue", ""))
        for site, e in ami.events[since:]
        if e.get("Event") == "QueueCallerJoin"
    ]


def _connects(ami: AmiRecorder, site: str) -> list[str]:
    return [
        e.get("MemberName", "")
        for s, e in ami.events
        if s == site and e.get("Event") == "AgentConnect"
    ]


async def _call(n: int = 1, duration_ms: int = 300, port: int = 6300, rate: float = 2) -> None:
    result = await asyncio.to_thread(
        place_calls,
        "127.0.1.1:5060",
        ORDERS_IN,
        caller=ENGLISH,
        calls=n,
        rate=rate,
        duration_ms=duration_ms,
        max_seconds=30,
        local_port=port,
    )
    assert result.ok, result.output[-1500:]


async def test_same_number_lands_where_the_schedule_says_at_two_instants(
    lab: Lab, agents: dict[str, Agent], ami: AmiRecorder, bridge_at: BridgeFactory
) -> None:
    async with bridge_at(WEDNESDAY_MORNING):
        mark = len(ami.events)
        await _call()
        await ami.wait_for(lambda: len(_joined(ami, mark)) >= 1, what="a queue join")
        assert _joined(ami, mark) == [("bangalore", "orders-en")]
    async with bridge_at(MONDAY_NIGHT):
        mark = len(ami.events)
        await _call(port=6310)
        await ami.wait_for(lambda: len(_joined(ami, mark)) >= 1, what="a queue join")
        assert _joined(ami, mark) == [("dhaka", "orders-en")]


async def test_busy_home_site_overflows_and_takes_calls_back_when_load_drops(
    lab: Lab, agents: dict[str, Agent], ami: AmiRecorder, bridge_at: BridgeFactory
) -> None:
    await fresh_queue_stats(lab, "bangalore")
    async with bridge_at(WEDNESDAY_MORNING) as bridge:
        # Both of bangalore's English agents take a long call: its expected wait passes
        # the home threshold (60 s) and new calls overflow to another open site.
        # One after the other: a second caller arriving while the first still waits in
        # the queue would itself overflow (expected wait counts waiting callers).
        first = asyncio.create_task(_call(1, duration_ms=9000, port=6320))
        await ami.wait_for(
            lambda: len(_connects(ami, "bangalore")) >= 1, within=10, what="agent 1 busy"
        )
        second = asyncio.create_task(_call(1, duration_ms=9000, port=6325))
        await ami.wait_for(
            lambda: len(_connects(ami, "bangalore")) >= 2, within=10, what="agent 2 busy"
        )
        # The member-status events that follow AgentConnect reach the bridge's state.
        await ami.wait_for(
            lambda: bridge.state.sites["bangalore"].queues["orders-en"].available == 0,
            within=5,
            what="bangalore's English agents both busy in the bridge's state",
        )
        mark = len(ami.events)
        await _call(2, port=6330)
        await ami.wait_for(lambda: len(_joined(ami, mark)) >= 2, what="two queue joins")
        overflowed = _joined(ami, mark)
        assert len(overflowed) == 2 and all(site != "bangalore" for site, _ in overflowed)
        await first
        await second
        await ami.wait_for(
            lambda: bridge.state.sites["bangalore"].queues["orders-en"].available == 2,
            within=10,
            what="bangalore agents free again",
        )
        mark = len(ami.events)
        await _call(1, port=6340)
        await ami.wait_for(lambda: len(_joined(ami, mark)) >= 1, what="a queue join")
        assert _joined(ami, mark) == [("bangalore", "orders-en")]
