"""/metrics over HTTP: a scrape filtered by name[] returns what the full scrape has for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from ccbridge.agi.server import SessionOutcome
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.routing.engine import CallRequest

REPO = Path(__file__).resolve().parents[2]
Sample = tuple[str, tuple[tuple[str, str], ...], float]


def by_name(text: str) -> dict[str, set[Sample]]:
    """sample name -> its samples (labels sorted) in a text exposition."""
    out: dict[str, set[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, set()).add((s.name, tuple(sorted(s.labels.items())), s.value))
    return out


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    bridge = Bridge(
        load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False),
        Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)),
    )
    # Series in every kind of family: live state, KPIs, decisions, FastAGI sessions.
    for ev in (
        {"Event": "QueueMemberAdded", "Queue": "orders-bn", "MemberName": "dac-agent1",
         "Interface": "PJSIP/dac-agent1", "Status": "1", "Paused": "0"},
        {"Event": "QueueCallerJoin", "Queue": "orders-bn", "Uniqueid": "1.1", "Position": "1"},
        {"Event": "AgentConnect", "Queue": "orders-bn", "Uniqueid": "1.1", "HoldTime": "3"},
        {"Event": "AgentComplete", "Queue": "orders-bn", "Uniqueid": "1.1", "TalkTime": "40"},
    ):  # fmt: skip
        bridge.bus.dispatch("dhaka", ev)
    call = CallRequest("+918000000001", "+8801712345678", "bangalore")
    bridge._on_decision(call, bridge.decide(call))
    bridge._on_agi_session_end("route", SessionOutcome.OK, 0.002)
    async with TestClient(TestServer(bridge.http_app())) as c:
        yield c


async def scrape(client: TestClient, *names: str) -> str:  # type: ignore[type-arg]
    resp = await client.get("/metrics", params=[("name[]", n) for n in names])
    assert resp.status == 200
    return await resp.text()


async def test_a_filtered_scrape_returns_the_full_scrapes_series_for_every_name(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    full = by_name(await scrape(client))
    # Every family the bridge exports, the scrape-time collector's among them.
    for family in (
        "ccbridge_site_up",
        "ccbridge_queue_agents",
        "ccbridge_trunk_up",
        "ccbridge_route_decisions_total",
        "ccbridge_calls_offered_total",
        "ccbridge_fastagi_session_seconds_bucket",
    ):
        assert full.get(family), family
    missing = []
    for name, samples in sorted(full.items()):
        got = by_name(await scrape(client, name))
        if got != {name: samples}:
            missing.append(name)
    assert missing == []


async def test_site_up_alone(client: TestClient) -> None:  # type: ignore[type-arg]
    # The defect as reported: this returned an empty body.
    got = by_name(await scrape(client, "ccbridge_site_up"))
    assert {labels for _, labels, _ in got["ccbridge_site_up"]} == {
        (("site", s),) for s in ("bangalore", "dhaka", "manila")
    }
    assert set(got) == {"ccbridge_site_up"}


async def test_several_names_in_one_scrape(client: TestClient) -> None:  # type: ignore[type-arg]
    names = (
        "ccbridge_site_drained",
        "ccbridge_trunk_breaker_state",
        "ccbridge_route_reasons_total",
    )
    full = by_name(await scrape(client))
    got = by_name(await scrape(client, *names))
    assert got == {n: full[n] for n in names}
