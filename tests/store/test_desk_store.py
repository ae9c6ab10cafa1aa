"""The desk with records on remembers only its last ended calls (desk/live.py
ENDED_WITH_STORE) and asks the store about older ones: a call the store holds as ended is
still 409 ``call-ended``, never a 404 as if it had never been, and nothing is sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.desk import live as desk_live
from tests.store.conftest import Db
from tests.store.staffing_records import write

REPO = Path(__file__).resolve().parents[2]
ADMIN = {"Authorization": "Bearer t"}
NOW = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
OLD_ENDED = "dhaka:1795888704.144284:17"  # ended long ago: only the store knows
STILL_OPEN = "dhaka:1795888705.144284:18"  # in the store without an end (not the desk's)


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
async def test_an_ended_call_past_the_desks_memory_is_409_from_the_store(
    migrated: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "t")
    arrived = NOW - timedelta(hours=2)
    row = {"entry_site": "dhaka", "arrived_at": arrived}
    await write(
        migrated,
        [
            ("calls", {"call_id": OLD_ENDED, **row, "ended_at": arrived + timedelta(minutes=3)}),
            ("calls", {"call_id": STILL_OPEN, **row}),
        ],
        tmp_path / "w.journal",
    )
    url = migrated.settings.url.replace("+aiosqlite", "")
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(f"{(REPO / 'examples' / 'lab.yaml').read_text()}\nstore: {{url: '{url}'}}\n")
    bridge = Bridge(load_config(cfg), Clock(NOW))
    assert bridge.desk.ended_at(OLD_ENDED) is None  # the desk itself does not remember it
    async with TestClient(TestServer(bridge.http_app())) as c:
        for call, status, error in (
            (OLD_ENDED, 409, "call-ended"),
            (STILL_OPEN, 404, "no-such-call"),
            ("dhaka:1795888706.1:19", 404, "no-such-call"),
        ):
            for path, body in (
                ("transfer", {"service": "orders"}),
                ("monitor", {"mode": "listen", "supervisor": "blr-agent1"}),
            ):
                r = await c.post(f"/api/v1/calls/{call}/{path}", json=body, headers=ADMIN)
                got = await r.json()
                assert (r.status, got["error"]) == (status, error), (call, path, got)
    await bridge.services.desk.close()
    # records on: the desk keeps the few last ended calls, not MAX_ENDED
    assert desk_live.ENDED_WITH_STORE < desk_live.MAX_ENDED
    assert bridge.desk._max_ended == desk_live.ENDED_WITH_STORE
