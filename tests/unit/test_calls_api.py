"""POST /api/v1/calls over a recording AMI link: the Originate sent, and garbage refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ccbridge.ami.client import AmiActionError, LinkState
from ccbridge.ami.codec import AmiMessage
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.routing.state import set_site_up

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "Bearer the-token"}


class RecordingLink:
    """A site's AMI link that records actions and answers Success (or an error)."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, dict[str, Any]]] = []
        self.error: str | None = None

    state = LinkState.UP
    connected = True

    async def action(self, name: str, fields: Mapping[str, Any], *, as_list: bool) -> AmiMessage:
        self.actions.append((name, dict(fields)))
        if self.error:
            raise AmiActionError(name, AmiMessage([("Response", "Error"), ("Message", self.error)]))
        return AmiMessage([("Response", "Success")])


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[TestClient, Bridge]]:  # type: ignore[type-arg]
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    bridge = Bridge(
        load_config(REPO / "examples" / "lab.yaml"), Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC))
    )
    for s in bridge.config.sites:
        bridge.links[s.name] = RecordingLink()  # type: ignore[assignment]
        bridge.state = set_site_up(bridge.state, s.name, True, 0.0)
    async with TestClient(TestServer(bridge.http_app())) as c:
        yield c, bridge


async def test_a_callback_dials_the_customer_through_the_carriers(
    setup: tuple[TestClient, Bridge],  # type: ignore[type-arg]
) -> None:
    client, bridge = setup
    r = await client.post(
        "/api/v1/calls", json={"to": "+919812345678", "service": "orders"}, headers=AUTH
    )
    body = await r.json()
    assert r.status == 202, body
    assert body["site"] == "bangalore" and body["queue"] == "orders-hi"
    assert body["trunks"] == ["blr-pstn1", "blr-pstn2"]
    link: RecordingLink = bridge.links["bangalore"]  # type: ignore[assignment]
    ((name, fields),) = link.actions
    assert name == "Originate"
    assert fields["Channel"] == "Local/+919812345678@ccb-outbound/n"
    assert fields["Exten"] == "orders-hi" and fields["Async"] == "true"
    assert fields["CallerID"] == "+919812345678"  # what the agent who takes it sees
    assert "__CCB_TRUNK_1=blr-pstn1" in fields["Variable"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({}, 400, "invalid-field"),
        ({"to": 919812345678}, 400, "invalid-field"),
        ({"to": "+91 98123"}, 400, "invalid-field"),
        ({"to": "+919812345678\r\nAction: Hangup"}, 400, "invalid-field"),
        ({"to": "+919812345678\n", "queue": "orders-hi"}, 400, "invalid-field"),
        ({"to": "+919812345678", "site": "pune", "queue": "orders-hi"}, 404, "no-such-site"),
        ({"to": "+919812345678", "site": ["x"]}, 400, "invalid-field"),
        ({"to": "+919812345678"}, 400, "missing-field"),
        ({"to": "+919812345678", "queue": "orders-xx"}, 400, "no-such-queue"),
        ({"to": "+919812345678", "queue": 7}, 400, "invalid-field"),
        ({"to": "+639171234567", "queue": "orders-en"}, 503, "no-carrier"),
    ],
)
async def test_bad_calls_get_clear_errors_and_send_nothing(
    setup: tuple[TestClient, Bridge],  # type: ignore[type-arg]
    body: dict[str, Any],
    status: int,
    error: str,
) -> None:
    client, bridge = setup
    r = await client.post("/api/v1/calls", json=body, headers=AUTH)
    assert (r.status, (await r.json())["error"]) == (status, error)
    assert all(not link.actions for link in bridge.links.values())  # type: ignore[attr-defined]


async def test_a_refused_originate_is_503(setup: tuple[TestClient, Bridge]) -> None:  # type: ignore[type-arg]
    client, bridge = setup
    bridge.links["bangalore"].error = "Originate failed"  # type: ignore[attr-defined]
    r = await client.post(
        "/api/v1/calls", json={"to": "+919812345678", "queue": "orders-hi"}, headers=AUTH
    )
    assert (r.status, (await r.json())["error"]) == (503, "originate-failed")
    assert (await client.post("/api/v1/calls", json={"to": "+919812345678"})).status == 401
