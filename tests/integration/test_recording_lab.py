"""Call recording on the lab (issue 14): a SIPp call answered at bangalore is recorded by
MixMonitor, paused and resumed through the API (MixMonitorMute on the real Asterisk),
reaches central storage encrypted, is indexed on its call, and plays back with Range."""

from __future__ import annotations

import asyncio
import hashlib
import io
import wave
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from ccbridge.config import Config
from ccbridge.lab.sipp import Agent, place_calls
from ccbridge.lab.sites import Lab
from ccbridge.recording import crypto, index
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from tests.integration.conftest import BridgeFactory
from tests.integration.recordingcfg import recording_config
from tests.polling import until

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # bangalore open
ORDERS_IN = "+918000000001"  # received at bangalore, orders
HINDI = "+919812345678"  # stays at bangalore (orders-hi)


@pytest.fixture
def recording_lab(lab: Lab, lab_config: Config, tmp_path: Path) -> Iterator[Config]:
    """bangalore's dialplan rendered with `recording:` (reloaded in place), then back."""
    config = recording_config(lab, lab_config, tmp_path)
    site = lab.config.site("bangalore")
    lab.config = config
    try:
        lab.install_configs(site)
        for cmd in ("module load app_mixmonitor.so", "module load func_rand.so"):
            lab.cli(site, cmd)
        assert "reloaded" in lab.cli(site, "dialplan reload").lower()
        yield config
    finally:
        lab.config = lab_config
        lab.install_configs(site)
        lab.cli(site, "dialplan reload")


async def test_a_call_is_recorded_paused_stored_encrypted_indexed_and_played_back(
    lab: Lab, agents: dict[str, Agent], recording_lab: Config, bridge_at: BridgeFactory
) -> None:
    config = recording_lab
    assert config.recording is not None
    engine = make_engine(config.store)
    await upgrade(engine)
    try:
        async with bridge_at(WEDNESDAY_MORNING, config) as bridge:
            part = bridge.recording
            assert part is not None
            call = asyncio.create_task(
                asyncio.to_thread(
                    place_calls,
                    "127.0.1.1:5060",
                    ORDERS_IN,
                    caller=HINDI,
                    duration_ms=4000,
                    max_seconds=40,
                    local_port=6491,
                    scenario="talking_caller.xml",
                )
            )
            await until(lambda: part.live.by_call, 15, "MixMonitorStart at bangalore")
            (call_id,) = part.live.by_call
            token = config.bridge.api_token
            assert token is not None
            base = f"http://127.0.0.1:{bridge.http_port}/api/v1/calls/{call_id}"
            auth = {"Authorization": f"Bearer {token.reveal()}"}
            async with aiohttp.ClientSession(headers=auth) as http:
                for action in ("pause", "resume"):
                    async with http.post(f"{base}/recording", json={"action": action}) as r:
                        body = await r.json()
                        assert r.status == 200, body
                        assert body["paused"] is (action == "pause")
                assert (await call).ok
                await until(lambda: part.shipper.stored_count >= 1, 20, "the recording stored")
                # the call is over: pausing it now is refused with a stable id
                async with http.post(f"{base}/recording", json={"action": "pause"}) as r:
                    assert (r.status, (await r.json())["error"]) == (409, "call-ended")
                (row,) = await index.for_call(engine, call_id)
                assert row.status == "stored" and row.site == "bangalore"
                assert len(row.pauses) == 1 and None not in row.pauses[0]
                assert row.key_id == "lab1" and row.size and row.duration_s
                # the site kept nothing once stored; central storage holds ciphertext only
                spool = Path(config.recording.site("bangalore").pickup_dir)
                left = await asyncio.to_thread(lambda: [p.name for p in spool.iterdir()])
                assert not [n for n in left if call_id.split(":")[1] in n], left
                assert row.storage_key is not None
                stored = Path(config.recording.storage_dir) / row.storage_key
                blob = await asyncio.to_thread(stored.read_bytes)
                assert blob.startswith(crypto.MAGIC) and b"RIFF" not in blob
                play = f"{base}/recordings/{row.recording_id}"
                async with http.get(play) as r:
                    assert r.status == 200 and r.headers["Accept-Ranges"] == "bytes"
                    audio = await r.read()
                assert len(audio) == row.size
                assert hashlib.sha256(audio).hexdigest() == row.sha256
                with wave.open(io.BytesIO(audio)) as w:
                    seconds = w.getnframes() / w.getframerate()
                    assert w.getnchannels() == 1 and w.getsampwidth() == 2
                assert seconds == pytest.approx(row.duration_s, abs=0.01)
                assert 2.0 < seconds < 6.0  # only while bridged: ~4 s of talk
                # a Range across chunk boundaries decrypts to exactly those bytes
                lo, hi = 4000, min(row.size - 1, 9000)
                async with http.get(play, headers={"Range": f"bytes={lo}-{hi}"}) as r:
                    assert r.status == 206
                    assert r.headers["Content-Range"] == f"bytes {lo}-{hi}/{row.size}"
                    assert await r.read() == audio[lo : hi + 1]
                async with http.get(play, headers={"Range": f"bytes={row.size}-"}) as r:
                    got: dict[str, Any] = await r.json()
                    assert r.status == 416 and got["error"] == "range-not-satisfiable"
                    assert r.headers["Content-Range"] == f"bytes */{row.size}"
            # every playback (each Range request) is a row of the audit trail
            trail = bridge.access_store.trail
            assert trail is not None
            await until(lambda: trail.writer.status().caught_up, 10, "the audit trail written")
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT action, object, status FROM audit WHERE action LIKE :a"),
                    {"a": "GET /api/v1/calls/{id}/recordings/{rid}%"},
                )
            ).all()
        assert sorted(r.status for r in rows) == [200, 206, 416]
    finally:
        await engine.dispose()
