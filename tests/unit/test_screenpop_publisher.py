"""Screen pops through the bus (ccbridge/screenpop/publisher.py): the number dialled read from
the caller's channel when no decision gave it, pops without history when nobody listens or
too many wait, and webhook bodies that are the stream's events."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from ccbridge.config import load_config
from ccbridge.events import EventBus
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.screenpop.publisher import ScreenPop
from ccbridge.screenpop.stream import Subscriber
from tests.polling import until

FIXTURES = Path(__file__).parent / "fixtures" / "records"
LAB = Path(__file__).resolve().parents[2] / "examples" / "lab.yaml"


def recorded() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads((FIXTURES / "answered.json").read_text())
    return items


def make(
    channel_var: Any = None, query: Any = None, **kw: Any
) -> tuple[ScreenPop, EventBus, CollectorRegistry]:
    ensure_lab_secrets()
    from datetime import UTC, datetime

    reg = CollectorRegistry()
    pop = ScreenPop(
        load_config(LAB), reg, lambda: datetime.now(UTC), query, channel_var=channel_var, **kw
    )
    bus = EventBus()
    pop.subscribe(bus)
    return pop, bus, reg


def replay(bus: EventBus) -> None:
    for item in recorded():
        bus.dispatch(item["site"], item["event"])


def listen(pop: ScreenPop) -> Subscriber:
    sub = pop.hub.subscribe(lambda e: True, numbers=True)
    assert sub is not None
    return sub


async def drain(sub: Subscriber, n: int) -> list[dict[str, Any]]:
    await until(lambda: sub.queue.qsize() >= n, 5, f"{n} pops")
    return [dict(sub.queue.get_nowait()) for _ in range(n)]


async def test_a_held_route_call_gets_its_number_from_the_channel_once() -> None:
    asked: list[tuple[str, str, str]] = []

    async def channel_var(site: str, channel: str, name: str) -> str | None:
        asked.append((site, channel, name))
        return "+918000000001"

    pop, bus, _ = make(channel_var)
    sub = listen(pop)
    events = recorded()  # no decision: the dialplan took a held route
    for item in events[:2]:  # QueueCallerJoin, AgentCalled
        bus.dispatch(item["site"], item["event"])
    [ringing] = await drain(sub, 1)
    for item in events[2:]:  # the agent answers later: the number is known by then
        bus.dispatch(item["site"], item["event"])
    [answered] = await drain(sub, 1)
    for event in (ringing, answered):
        assert (event["did"], event["did_kind"]) == ("+918000000001", "tollfree")
    assert asked == [("bangalore", "PJSIP/carrier-in-00000002", "CCB_DID")]
    assert "channel" not in ringing  # the channel name is never published
    await pop.stop()


async def test_a_fresh_held_queue_call_gets_its_number_from_the_dnid() -> None:
    """ccb-inbound's fresh route to a queue sets no CCB_DID: the channel's DNID (the
    number the carrier sent to this, the entry site) is the number dialled."""
    asked: list[str] = []
    channel = {"CALLERID(dnid)": "+918000000001"}

    async def channel_var(site: str, chan: str, name: str) -> str | None:
        asked.append(name)
        return channel.get(name)

    pop, bus, _ = make(channel_var)
    sub = listen(pop)
    replay(bus)
    ringing, _ = await drain(sub, 2)
    assert (ringing["did"], ringing["did_kind"]) == ("+918000000001", "tollfree")
    assert asked[:2] == ["CCB_DID", "CALLERID(dnid)"]
    await pop.stop()


async def test_a_channel_that_cannot_be_read_leaves_the_number_out() -> None:
    async def gone(site: str, channel: str, name: str) -> str | None:
        return None

    pop, bus, _ = make(gone)
    sub = listen(pop)
    replay(bus)
    ringing, _ = await drain(sub, 2)
    assert ringing["did"] is None and ringing["did_kind"] is None
    await pop.stop()


async def test_with_nobody_listening_no_history_is_asked() -> None:
    asked: list[str] = []

    async def query(number: str, since: Any, call_id: str) -> Any:
        asked.append(number)
        return 0, None, None, None

    pop, bus, reg = make(query=query)
    replay(bus)
    await asyncio.sleep(0)
    assert asked == []
    got = reg.get_sample_value
    assert got("ccbridge_screen_pops_total", {"kind": "agent_ringing", "history": "no"}) == 1
    await pop.stop()


async def test_beyond_max_pending_pops_go_out_at_once_without_history() -> None:
    release = asyncio.Event()

    async def slow(number: str, since: Any, call_id: str) -> Any:
        await release.wait()
        return 1, "answered", "x", None

    pop, bus, _ = make(query=slow, max_pending=1)
    pop.history.timeout = 5.0
    sub = listen(pop)
    replay(bus)  # ringing waits for the history; answered finds one pop pending
    [answered] = await drain(sub, 1)
    assert answered["type"] == "agent_answered"
    assert answered["history"] == {"available": False, "days": 30, "why": "busy"}
    release.set()
    [ringing] = await drain(sub, 1)
    assert ringing["type"] == "agent_ringing" and ringing["history"]["count"] == 1
    await pop.stop()
