"""GET /api/v1/staffing/coverage over a real aiohttp server and a Bridge fed AMI events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.routing.state import set_site_up

# Reads need a token too (issue 13): the config's bootstrap admin token.
ADMIN = {"Authorization": "Bearer the-token"}

REPO = Path(__file__).resolve().parents[2]
# Monday 2026-12-07 05:00 UTC: 10:30 in Bangalore, 11:00 in Dhaka, 13:00 in Manila
NOW = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[TestClient, Bridge]]:  # type: ignore[type-arg]
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    bridge = Bridge(load_config(REPO / "examples" / "lab.yaml"), Clock(NOW))
    async with TestClient(TestServer(bridge.http_app()), headers=ADMIN) as c:
        yield c, bridge


def member(queue: str, iface: str, paused: bool = False) -> dict[str, str]:
    return {
        "Event": "QueueMemberAdded",
        "Queue": queue,
        "Interface": iface,
        "MemberName": iface,
        "Status": "1",
        "Paused": "1" if paused else "0",
    }


async def test_the_day_and_now(client: tuple[TestClient, Bridge]) -> None:  # type: ignore[type-arg]
    c, bridge = client
    # dhaka is up with one Bengali agent logged in and one paused; the others are down
    bridge.state = set_site_up(bridge.state, "dhaka", True, 0.0)
    bridge.bus.dispatch("dhaka", member("orders-bn", "PJSIP/dac-agent1"))
    bridge.bus.dispatch("dhaka", member("returns-bn", "PJSIP/dac-agent2", paused=True))
    r = await c.get("/api/v1/staffing/coverage", params={"language": "bn"})
    assert r.status == 200
    body = await r.json()
    assert body["day"] == "2026-12-07"
    bn = body["languages"]["bn"]
    assert list(body["languages"]) == ["bn"]
    assert len(bn["steps"]) == 24
    assert bn["steps"][5] == {
        "start": "2026-12-07T05:00:00Z",
        "end": "2026-12-07T06:00:00Z",
        "open": ["dhaka"],
        "staffed": ["dhaka"],
        "gap": None,
    }
    assert bn["gaps"] == [
        {"start": "2026-12-07T00:00:00Z", "end": "2026-12-07T03:00:00Z", "kind": "closed"},
        {"start": "2026-12-07T12:00:00Z", "end": "2026-12-07T16:00:00Z", "kind": "closed"},
    ]
    # now: dhaka is open and has one Bengali agent logged in and not paused
    assert body["now"]["at"] == "2026-12-07T05:00:00Z"
    # the paused agent does not count; with only it logged in the queue is unstaffed
    assert body["now"]["bn"] == {
        "start": "2026-12-07T05:00:00Z",
        "open": ["dhaka"],
        "staffed": ["dhaka"],
        "gap": None,
    }
    # the one free agent pauses: open, nobody to take a call
    bridge.bus.dispatch(
        "dhaka", {**member("orders-bn", "PJSIP/dac-agent1", True), "Event": "QueueMemberPause"}
    )
    body = await (await c.get("/api/v1/staffing/coverage", params={"language": "bn"})).json()
    assert (body["now"]["bn"]["staffed"], body["now"]["bn"]["gap"]) == ([], "unstaffed")
    # the day view is by configured agents: unchanged
    assert body["languages"]["bn"]["steps"][5]["staffed"] == ["dhaka"]


async def test_now_with_nobody_logged_in_is_an_unstaffed_gap(
    client: tuple[TestClient, Bridge],  # type: ignore[type-arg]
) -> None:
    c, _ = client
    r = await c.get("/api/v1/staffing/coverage", params={"day": "2026-12-08", "step": "30"})
    body = await r.json()
    assert r.status == 200 and body["day"] == "2026-12-08"
    assert len(body["languages"]["en"]["steps"]) == 48
    # no site is up: open by the schedule, but nobody can take a call right now
    assert body["now"]["hi"]["open"] == ["bangalore"]
    assert body["now"]["hi"]["staffed"] == []
    assert body["now"]["hi"]["gap"] == "unstaffed"
    assert body["now"]["ur"]["gap"] == "closed"


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"day": "tomorrow"}, "day", "'day' is not YYYY-MM-DD"),
        ({"day": "2026-02-30"}, "day", "'day' is not YYYY-MM-DD"),
        ({"step": "7"}, "step", "'step' must be 15, 30 or 60"),
        ({"step": "60.0"}, "step", "'step' must be 15, 30 or 60"),
        ({"language": "xx"}, "language", "no language 'xx' in the config"),
        ({"service": "x" * 5000}, "service", "no service"),
    ],
)
async def test_bad_queries_are_400(
    client: tuple[TestClient, Bridge],  # type: ignore[type-arg]
    params: dict[str, str],
    field: str,
    message: str,
) -> None:
    c, _ = client
    r = await c.get("/api/v1/staffing/coverage", params=params)
    assert r.status == 400
    body = await r.json()
    assert body["error"] == "invalid-field"
    assert body["details"]["field"] == field
    assert body["message"].startswith(message)
