"""Agents API with a fake AMI link: validation, the AMI actions sent, the mirrored view."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ccbridge.ami.client import AmiActionError, LinkState, SiteDownError
from ccbridge.ami.codec import AmiMessage
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "Bearer the-token"}


class FakeLink:
    """Records actions; answers like Asterisk would, feeding the bridge the events."""

    def __init__(self, bridge: Bridge, site: str, error: str | None = None) -> None:
        self.bridge, self.site, self.error = bridge, site, error
        self.actions: list[tuple[str, dict[str, str]]] = []
        self.down = False

    @property
    def connected(self) -> bool:
        return not self.down

    @property
    def state(self) -> LinkState:
        return LinkState.DOWN if self.down else LinkState.UP

    async def action(self, name: str, fields: Mapping[str, str], *, as_list: bool) -> Any:
        assert as_list is False  # panoramisk 1.4 hangs on QueueAdd otherwise
        if self.down:
            raise SiteDownError(self.site)
        self.actions.append((name, dict(fields)))
        if self.error:
            raise AmiActionError(name, _msg({"Response": "Error", "Message": self.error}))
        event = {
            "QueueAdd": "QueueMemberAdded",
            "QueueRemove": "QueueMemberRemoved",
            "QueuePause": "QueueMemberPause",
        }[name]
        queues = [fields["Queue"]] if "Queue" in fields else ["care-en"]
        for q in queues:
            ev = {
                "Event": event,
                "Queue": q,
                "Interface": fields["Interface"],
                "MemberName": fields.get("MemberName", "roam1"),
                "Status": "1",
                "Paused": "1" if fields.get("Paused") == "true" else "0",
                "PausedReason": fields.get("Reason", ""),
            }
            self.bridge.bus.dispatch(self.site, ev)
        return _msg({"Response": "Success"})


def _msg(fields: dict[str, str]) -> AmiMessage:
    return AmiMessage(fields.items())


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[TestClient, Bridge]]:  # type: ignore[type-arg]
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    config = load_config(REPO / "examples" / "lab.yaml")
    bridge = Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    for s in config.sites:
        bridge.links[s.name] = FakeLink(bridge, s.name)  # type: ignore[assignment]
    async with TestClient(TestServer(bridge.http_app())) as c:
        yield c, bridge


async def test_login_pause_and_logout_send_the_right_actions(
    setup: tuple[TestClient, Bridge],  # type: ignore[type-arg]
) -> None:
    client, bridge = setup
    r = await client.post(
        "/api/v1/agents/roam1/login",
        json={"site": "dhaka", "queues": ["care-en"], "penalty": 2},
        headers=AUTH,
    )
    assert r.status == 200, await r.json()
    link: FakeLink = bridge.links["dhaka"]  # type: ignore[assignment]
    assert link.actions == [
        (
            "QueueAdd",
            {
                "Queue": "care-en",
                "Interface": "PJSIP/roam1",
                "MemberName": "roam1",
                "Penalty": "2",
                "Paused": "false",
            },
        )
    ]
    assert bridge.state.sites["dhaka"].queues["care-en"].logged_in == 1
    # Without 'site', the API finds the one site the agent is at.
    r = await client.post("/api/v1/agents/roam1/pause", json={"reason": "lunch"}, headers=AUTH)
    assert r.status == 200
    assert link.actions[-1] == (
        "QueuePause",
        {"Interface": "PJSIP/roam1", "Paused": "true", "Reason": "lunch"},
    )
    (agent,) = (await (await client.get("/api/v1/agents", headers=AUTH)).json())["agents"]
    assert agent["id"] == "roam1" and agent["paused"] and not agent["available"]
    assert agent["sites"][0]["site"] == "dhaka" and agent["sites"][0]["pause_reason"] == "lunch"
    r = await client.post("/api/v1/agents/roam1/logout", json={}, headers=AUTH)
    assert r.status == 200 and (await r.json())["queues"] == ["care-en"]
    assert link.actions[-1] == ("QueueRemove", {"Queue": "care-en", "Interface": "PJSIP/roam1"})
    assert (await (await client.get("/api/v1/agents", headers=AUTH)).json())["agents"] == []


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("roam1/login", {"queues": ["care-en"]}, 400, "missing-field"),
        ("roam1/login", {"site": "dhaka"}, 400, "missing-field"),
        ("roam1/login", {"site": "dhaka", "queues": "care-en"}, 400, "invalid-field"),
        ("roam1/login", {"site": "dhaka", "queues": ["orders-hi"]}, 400, "no-such-queue"),
        ("roam1/login", {"site": "pune", "queues": ["care-en"]}, 404, "no-such-site"),
        ("nobody/login", {"site": "dhaka", "queues": ["care-en"]}, 404, "no-such-agent"),
        (
            "roam1/login",
            {"site": "dhaka", "queues": ["care-en"], "penalty": -1},
            400,
            "invalid-field",
        ),
        ("roam1/pause", {}, 400, "site-required"),
        # An agent no site knows: no such agent, whether or not a site was given.
        ("nobody/pause", {}, 404, "no-such-agent"),
        ("nobody/unpause", {"reason": "x"}, 404, "no-such-agent"),
        ("nobody/logout", {}, 404, "no-such-agent"),
        ("roam1/logout", {"site": 5}, 400, "invalid-field"),
        (
            "roam1/login",
            {"site": "dhaka", "queues": ["care-en"], "penalty": True},
            400,
            "invalid-field",
        ),
        ("roam1/pause", {"site": "dhaka", "reason": "a\nb"}, 400, "invalid-field"),
    ],
)
async def test_bad_requests_get_clear_errors(
    setup: tuple[TestClient, Bridge],  # type: ignore[type-arg]
    path: str,
    body: dict[str, Any],
    status: int,
    error: str,
) -> None:
    client, _ = setup
    r = await client.post(f"/api/v1/agents/{path}", json=body, headers=AUTH)
    assert (r.status, (await r.json())["error"]) == (status, error)


async def test_mutations_need_the_token(setup: tuple[TestClient, Bridge]) -> None:  # type: ignore[type-arg]
    client, _ = setup
    r = await client.post(
        "/api/v1/agents/roam1/login", json={"site": "dhaka", "queues": ["care-en"]}
    )
    assert r.status == 401


async def test_ami_failures_become_statuses(setup: tuple[TestClient, Bridge]) -> None:  # type: ignore[type-arg]
    client, bridge = setup
    link: FakeLink = bridge.links["dhaka"]  # type: ignore[assignment]
    body = {"site": "dhaka", "queues": ["care-en"]}
    link.down = True
    r = await client.post("/api/v1/agents/roam1/login", json=body, headers=AUTH)
    assert (r.status, (await r.json())["error"]) == (503, "site-down")
    link.down, link.error = False, "Unable to add interface: Already there"
    assert (await client.post("/api/v1/agents/roam1/login", json=body, headers=AUTH)).status == 200
    link.error = "Unable to remove interface: Not Dynamic"
    r = await client.post("/api/v1/agents/roam1/logout", json=body, headers=AUTH)
    assert (r.status, (await r.json())["error"]) == (409, "static-member")


async def test_every_change_at_a_down_site_is_refused_alike(
    setup: tuple[TestClient, Bridge],  # type: ignore[type-arg]
) -> None:
    """Logout used to answer 200 (and forget the agent) when its site was down and the
    bridge knew no queue of it there; login and pause answered 503."""
    client, bridge = setup
    link: FakeLink = bridge.links["dhaka"]  # type: ignore[assignment]
    link.down = True
    for path, body in [
        ("login", {"site": "dhaka", "queues": ["care-en"]}),
        ("logout", {"site": "dhaka"}),
        ("logout", {"site": "dhaka", "queues": ["care-en"]}),
        ("pause", {"site": "dhaka"}),
        ("unpause", {"site": "dhaka"}),
    ]:
        r = await client.post(f"/api/v1/agents/roam1/{path}", json=body, headers=AUTH)
        assert (r.status, (await r.json())["error"]) == (503, "site-down"), (path, body)
    assert link.actions == []


async def test_logout_at_a_down_site_keeps_what_the_bridge_knows(
    setup: tuple[TestClient, Bridge],  # type: ignore[type-arg]
) -> None:
    client, bridge = setup
    link: FakeLink = bridge.links["dhaka"]  # type: ignore[assignment]
    r = await client.post(
        "/api/v1/agents/roam1/login", json={"site": "dhaka", "queues": ["care-en"]}, headers=AUTH
    )
    assert r.status == 200
    r = await client.post("/api/v1/agents/roam1/pause", json={"reason": "lunch"}, headers=AUTH)
    assert r.status == 200
    link.down = True
    r = await client.post("/api/v1/agents/roam1/logout", json={}, headers=AUTH)
    assert (r.status, (await r.json())["error"]) == (503, "site-down")
    (agent,) = (await (await client.get("/api/v1/agents", headers=AUTH)).json())["agents"]
    assert agent["sites"][0]["pause_reason"] == "lunch"
