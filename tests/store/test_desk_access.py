"""Who may use the desk, on a started bridge with a real store and one user per role: a
supervisor supervises from phones at their own sites only, and controls their sites'
agents' calls; an agent controls their own calls and supervises nothing; a viewer does
neither. Refusals send nothing (the sites' AMI is down here: an allowed request gets
503 site-down, a refused one 403) and are in the audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.store.access_world import BOOTSTRAP, World, make_world
from tests.store.test_access_api import audited, call

DHAKA_CALL = "dhaka:1795888704.144284:17"
BLR_CALL = "bangalore:1795888705.000001:18"


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", BOOTSTRAP)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await make_world(tmp_path)
    for site, cid, agent in (
        ("dhaka", DHAKA_CALL, "dac-agent1"),
        ("bangalore", BLR_CALL, "blr-agent1"),
    ):
        w.bridge.bus.dispatch(
            site,
            {
                "Event": "AgentConnect",
                "ChanVariable": f"CCB_CALLID={cid}",
                "Queue": "orders-en",
                "Channel": "PJSIP/carrier-in-00000001",
                "DestChannel": f"PJSIP/{agent}-00000002",
                "MemberName": agent,
            },
        )
    try:
        yield w
    finally:
        await w.bridge.stop()


async def _post(w: World, path: str, user: str, body: dict[str, Any]) -> tuple[int, str]:
    status, answer, _ = await call(w, "POST", path, user, json=body)
    return status, answer["error"]


async def test_supervision_needs_the_mode_and_a_phone_at_ones_own_site(world: World) -> None:
    monitor = f"/api/v1/calls/{DHAKA_CALL}/monitor"
    sue_here = {"mode": "whisper", "supervisor": "dac-agent2"}  # a dhaka phone
    sue_away = {"mode": "whisper", "supervisor": "blr-agent1"}  # a bangalore phone
    assert await _post(world, monitor, "sue", sue_here) == (503, "site-down")  # allowed
    assert await _post(world, monitor, "sue", sue_away) == (403, "forbidden")
    assert await _post(world, monitor, "ada", sue_away) == (503, "site-down")  # admin: any
    assert await _post(world, monitor, "vic", sue_here) == (403, "forbidden")
    assert await _post(world, monitor, "dac-agent1", sue_here) == (403, "forbidden")
    assert await _post(world, monitor, "crm", sue_here) == (403, "forbidden")
    rows = await audited(world, 6)
    denied = [r for r in rows if r["action"] == "POST /api/v1/calls/{id}/monitor"]
    assert sorted(r["actor"] for r in denied if r["result"] == "denied") == [
        "crm",
        "dac-agent1",
        "sue",
        "vic",
    ]


async def test_call_control_is_the_agents_own_or_their_supervisors(world: World) -> None:
    for path, body in (("transfer", {"service": "orders"}), ("hold", {})):
        own, other = f"/api/v1/calls/{DHAKA_CALL}/{path}", f"/api/v1/calls/{BLR_CALL}/{path}"
        assert await _post(world, own, "dac-agent1", body) == (503, "site-down"), path
        assert await _post(world, other, "dac-agent1", body) == (403, "forbidden"), path
        assert await _post(world, own, "sue", body) == (503, "site-down"), path
        assert await _post(world, other, "sue", body) == (403, "forbidden"), path
        assert await _post(world, own, "vic", body) == (403, "forbidden"), path
