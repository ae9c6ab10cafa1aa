"""Agents API on the real lab: login, pause and move between sites; calls follow the agent."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ccbridge.app import Bridge
from ccbridge.lab.sipp import Agent, place_calls
from ccbridge.lab.sites import Lab
from tests.integration.conftest import AmiRecorder, BridgeFactory
from tests.polling import until

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
CARE_IN = "+918000000004"  # care: no static members, received at bangalore
AGENT = "roam1"


async def _post(bridge: Bridge, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    token = bridge.config.bridge.api_token
    assert token is not None
    url = f"http://127.0.0.1:{bridge.http_port}/api/v1/agents/{AGENT}/{path}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=dict(body), headers={"Authorization": f"Bearer {token.reveal()}"}) as r,
    ):
        data: dict[str, Any] = await r.json()
        assert r.status == 200, data
        return data


async def _agents(bridge: Bridge) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{bridge.http_port}/api/v1/agents"
    token = bridge.config.bridge.api_token
    auth = {"Authorization": f"Bearer {token.reveal()}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=auth) as r:
        data: dict[str, list[dict[str, Any]]] = await r.json()
        return data["agents"]


def _logged_in(bridge: Bridge, site: str) -> int:
    q = bridge.state.sites[site].queues.get("care-en")
    return q.logged_in if q else 0


def _connects(ami: AmiRecorder, site: str) -> list[dict[str, str]]:
    return [
        e
        for e in ami.named("AgentConnect", site)
        if e.get("Queue") == "care-en" and e.get("MemberName") == AGENT
    ]


async def _call(port: int, duration_ms: int = 1500, *, answered: bool = True) -> None:
    result = await asyncio.to_thread(
        place_calls,
        "127.0.1.1:5060",
        CARE_IN,
        caller="+919812345678",
        calls=1,
        duration_ms=duration_ms,
        max_seconds=20 if answered else 4,
        local_port=port,
    )
    if answered:
        assert result.ok, result.output[-2000:]
    else:
        # Nobody can take it: Queue() never answers, SIPp gives up on the 200 OK.
        assert result.created == 1 and result.successful == 0


async def test_calls_follow_the_agent_through_login_pause_and_a_move(
    lab: Lab, agents: dict[str, Agent], ami: AmiRecorder, bridge_at: BridgeFactory
) -> None:
    async with bridge_at(WEDNESDAY_MORNING) as bridge:
        try:
            # Logged in at bangalore: the call is answered there.
            await _post(bridge, "login", {"site": "bangalore", "queues": ["care-en"]})
            await until(lambda: _logged_in(bridge, "bangalore") == 1, 10, "login mirrored")
            listed = [a for a in await _agents(bridge) if a["id"] == AGENT]
            assert [s["site"] for s in listed[0]["sites"]] == ["bangalore"]
            await _call(6161)
            await ami.wait_for(lambda: len(_connects(ami, "bangalore")) == 1, what="bangalore")

            # Paused: a call waits in the queue and the agent's phone never rings.
            await _post(bridge, "pause", {"reason": "lunch"})
            await until(
                lambda: bridge.state.sites["bangalore"].queues["care-en"].paused == 1, 10, "pause"
            )
            listed = [a for a in await _agents(bridge) if a["id"] == AGENT]
            assert listed[0]["paused"] and listed[0]["sites"][0]["pause_reason"] == "lunch"
            called_before = len(ami.named("AgentCalled", "bangalore"))
            await _call(6162, answered=False)
            joined = [
                e for e in ami.named("QueueCallerJoin", "bangalore") if e.get("Queue") == "care-en"
            ]
            assert len(joined) == 2
            assert len(ami.named("AgentCalled", "bangalore")) == called_before
            assert len(_connects(ami, "bangalore")) == 1
            # SIPp left without a CANCEL: hang the waiting channel up before unpausing.
            await bridge.links["bangalore"].action(
                "Hangup", {"Channel": joined[-1]["Channel"]}, as_list=False
            )
            await ami.wait_for(
                lambda: any(e.get("Channel") == joined[-1]["Channel"] for e in ami.named("Hangup")),
                what="the waiting caller hung up",
            )
            await _post(bridge, "unpause", {})

            # Logged out at bangalore, in at dhaka: the bridge sends the call to dhaka.
            await _post(bridge, "logout", {"site": "bangalore"})
            await _post(bridge, "login", {"site": "dhaka", "queues": ["care-en"], "penalty": 1})
            await until(
                lambda: _logged_in(bridge, "bangalore") == 0 and _logged_in(bridge, "dhaka") == 1,
                10,
                "the move mirrored",
            )
            await _call(6163)
            await ami.wait_for(lambda: len(_connects(ami, "dhaka")) == 1, what="dhaka")
            assert len(_connects(ami, "bangalore")) == 1
        finally:
            for site in ("bangalore", "dhaka"):
                if _logged_in(bridge, site):
                    await _post(bridge, "logout", {"site": site})
