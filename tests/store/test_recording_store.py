"""Recordings in the store (issue 14), on SQLite and PostgreSQL: the index rows, the transfer
from a site's folder to central storage (encrypted, idempotent, the site's copy deleted
only once indexed), central storage full (a real tmpfs: marked failed, kept, recovered),
retention and erase-by-number deleting recordings, and the API's answers to bad input."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import subprocess
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config.model import SecretValue
from ccbridge.config.recording import RecordingKey, RecordingSettings, SiteRecording
from ccbridge.recording import crypto, index
from ccbridge.recording.naming import RecordingName
from ccbridge.recording.part import object_deleter
from ccbridge.recording.shipper import KeyRing, RecordingShipper
from ccbridge.recording.storage import DirectoryStorage
from ccbridge.records.callid import make
from ccbridge.services import ServiceError
from ccbridge.store.retention import erase_number, purge
from tests.store.conftest import Db
from tests.store.report_world import report_config, write

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = os.urandom(32)
CALLER = "+8801712345678"
ADMIN = {"Authorization": "Bearer the-token"}


def call_id(i: int, at: datetime = NOW) -> str:
    return make("bangalore", at - timedelta(minutes=i), i)


def wav_bytes(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(os.urandom(int(seconds * 8000) * 2))
    return out.getvalue()


def settings(tmp: Path, storage: Path | None = None) -> RecordingSettings:
    return RecordingSettings(
        policy=(("orders", 100.0),),
        sites=(("dhaka", SiteRecording(spool="/x", pickup=str(tmp / "dhaka-spool"))),),
        storage_dir=str(storage or tmp / "central"),
        keys=(RecordingKey("k1", SecretValue(base64.b64encode(KEY).decode(), "test")),),
        current_key="k1",
        chunk_size=4096,
    )


def drop(rec: RecordingSettings, name: RecordingName, data: bytes) -> Path:
    folder = Path(rec.site(name.site).pickup_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name.file_name
    path.write_bytes(data)
    return path


def stored_objects(rec: RecordingSettings) -> list[str]:
    root = Path(rec.storage_dir)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.ccbrec"))


def shipper(db: Db, rec: RecordingSettings, registry: CollectorRegistry) -> RecordingShipper:
    engine = db.engine()
    return RecordingShipper(
        rec,
        ("bangalore", "dhaka"),
        DirectoryStorage(rec.storage_dir),
        KeyRing({"k1": KEY}, "k1"),
        lambda: engine,
        lambda: NOW,
        registry,
    )


async def test_index_rows_are_upserts_and_a_stored_row_stays_stored(migrated: Db) -> None:
    e = migrated.engine()
    cid = call_id(1)
    await index.started(e, cid, "dhaka-1.2", "dhaka", NOW, NOW)
    await index.started(e, cid, "dhaka-1.2", "dhaka", NOW, NOW)  # seen twice: one row
    pauses: list[list[str | None]] = [["2026-11-28T12:00:01Z", "2026-11-28T12:00:03Z"]]
    await index.set_pauses(e, cid, "dhaka-1.2", "dhaka", pauses, NOW)
    await index.failed(e, cid, "dhaka-1.2", "dhaka", "storage: disk full", NOW)
    (row,) = await index.for_call(e, cid)
    assert (row.status, row.error, row.pauses) == ("failed", "storage: disk full", pauses)
    common: dict[str, Any] = {"call_id": cid, "rid": "dhaka-1.2", "site": "dhaka"}
    await index.stored(
        e, **common, duration_s=2.5, size=40044, sha256="ab" * 32, key_id="k1",
        storage_key="k/x.ccbrec", now=NOW,
    )  # fmt: skip
    await index.failed(e, cid, "dhaka-1.2", "dhaka", "late failure of a rescan", NOW)
    row2 = await index.get(e, cid, "dhaka-1.2")
    assert row2 is not None and row2.status == "stored" and row2.error is None
    assert row2.pauses == pauses and row2.size == 40044 and row2.started_at == NOW
    assert row2.public()["started_at"] == "2026-11-28T12:00:00Z"
    assert "storage_key" not in row2.public()


async def test_a_site_file_is_stored_encrypted_once_indexed_and_then_deleted(
    migrated: Db, tmp_path: Path
) -> None:
    rec = settings(tmp_path)
    reg = CollectorRegistry()
    s = shipper(migrated, rec, reg)
    audio = wav_bytes(2.0)
    name = RecordingName(call_id(2), "dhaka", "1795897311.45")
    site_file = drop(rec, name, audio)
    # a file MixMonitor is still writing and a stray file are left alone
    (site_file.parent / (name.stem + ".part.wav")).write_bytes(b"RIFF")
    (site_file.parent / "notes.txt").write_text("x")
    assert await s.run_once() == 1
    assert not site_file.exists()
    assert sorted(p.name for p in site_file.parent.iterdir()) == sorted(
        ["notes.txt", name.stem + ".part.wav"]
    )
    (row,) = await index.for_call(migrated.engine(), name.call_id)
    assert row.status == "stored" and row.size == len(audio) and row.duration_s == 2.0
    assert row.storage_key is not None and row.key_id == "k1"
    blob = (Path(rec.storage_dir) / row.storage_key).read_bytes()
    assert blob.startswith(crypto.MAGIC) and audio[44:200] not in blob
    f = io.BytesIO(blob)
    assert b"".join(crypto.decrypt_range(f, {"k1": KEY}, 0, len(audio) - 1)) == audio
    assert reg.get_sample_value("ccbridge_recordings_stored_total", {"site": "bangalore"}) == 0
    assert reg.get_sample_value("ccbridge_recordings_stored_total", {"site": "dhaka"}) == 1
    # the bridge died after storing, before deleting the site's copy: the next round
    # finds the same bytes stored under the same key and stores nothing twice
    drop(rec, name, audio)
    assert await s.run_once() == 1
    assert len(stored_objects(rec)) == 1
    assert len(await index.for_call(migrated.engine(), name.call_id)) == 1


async def test_a_recording_whose_site_wrote_no_file_is_marked_failed(
    migrated: Db, tmp_path: Path
) -> None:
    rec = settings(tmp_path)
    reg = CollectorRegistry()
    s = shipper(migrated, rec, reg)
    s.site_grace = 0.0
    gone = RecordingName(call_id(4), "dhaka", "1795897311.47")  # MixMonitor could not write
    closing = RecordingName(call_id(5), "dhaka", "1795897311.48")  # still being closed
    # the file still being written: MixMonitor's NAME.part.wav
    drop(rec, closing, b"RIFF").rename(
        Path(rec.site("dhaka").pickup_dir) / (closing.stem + ".part.wav")
    )
    for n in (gone, closing):
        await index.started(migrated.engine(), n.call_id, n.recording_id, "dhaka", NOW, NOW)
        s.expect(n)
    assert await s.run_once() == 0
    (row,) = await index.for_call(migrated.engine(), gone.call_id)
    assert row.status == "failed" and row.error is not None and "no file" in row.error
    (row,) = await index.for_call(migrated.engine(), closing.call_id)
    assert row.status == "recording"  # its file is still being written: no verdict yet
    labels = {"site": "dhaka", "reason": "site"}
    assert reg.get_sample_value("ccbridge_recordings_failed_total", labels) == 1


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real small filesystem (root mounts it): writes past ``size`` fail with ENOSPC."""
    where.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
async def test_central_storage_full_marks_failed_keeps_the_file_and_recovers(
    migrated: Db, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root to mount a tmpfs (run the store tests as make test does)")
    full = tmp_path / "full"
    rec = settings(tmp_path, full)
    reg = CollectorRegistry()
    name = RecordingName(call_id(3), "dhaka", "1795897311.46")
    with tiny_tmpfs(full, "16k"):
        s = shipper(migrated, rec, reg)
        site_file = drop(rec, name, wav_bytes(4.0))  # 64 kB: does not fit
        assert await s.run_once() == 0
        assert site_file.exists()  # kept at the site
        (row,) = await index.for_call(migrated.engine(), name.call_id)
        assert row.status == "failed" and row.error is not None
        assert "No space left on device" in row.error, row.error
        labels = {"site": "dhaka", "reason": "storage"}
        assert reg.get_sample_value("ccbridge_recordings_failed_total", labels) == 1
        assert reg.get_sample_value("ccbridge_recordings_pending", {"site": "dhaka"}) == 1
        assert not [p for p in full.rglob("*") if p.is_file()]  # no partial object left
    # room again (the mount gone: the folder on the real disk): the retry stores it
    deadline = asyncio.get_running_loop().time() + 10
    while await s.run_once() == 0:
        assert asyncio.get_running_loop().time() < deadline, "the retry stored it"
        await asyncio.sleep(0.2)
    (row,) = await index.for_call(migrated.engine(), name.call_id)
    assert row.status == "stored" and row.error is None and not site_file.exists()


async def test_retention_and_erasure_delete_recordings_and_their_files(
    migrated: Db, tmp_path: Path
) -> None:
    rec = settings(tmp_path)
    storage = DirectoryStorage(rec.storage_dir)
    old, erased, kept = call_id(10, NOW - timedelta(days=40)), call_id(11), call_id(12)
    await write(
        migrated,
        [
            (
                "calls",
                {"call_id": c, "entry_site": "bangalore", "arrived_at": at, "caller_number": n},
            )
            for c, at, n in (
                (old, NOW - timedelta(days=40), "+441632960001"),
                (erased, NOW, CALLER),
                (kept, NOW, "+441632960002"),
            )
        ],
    )  # fmt: skip
    s = shipper(migrated, rec, CollectorRegistry())
    for i, c in enumerate((old, erased, kept)):
        drop(rec, RecordingName(c, "dhaka", f"1795897311.{i}"), wav_bytes(0.5))
    assert await s.run_once() == 3
    e = migrated.engine()
    delete = object_deleter(storage)
    gone = await purge(e, NOW - timedelta(days=30), delete)
    assert gone["calls"] == 1 and gone["recordings"] == 1
    assert await index.for_call(e, old) == []
    done = await erase_number(e, CALLER, delete)
    assert (done.calls, done.recordings) == (1, 1)
    assert await index.for_call(e, erased) == []
    (left,) = await index.for_call(e, kept)
    assert left.storage_key is not None
    assert stored_objects(rec) == [left.storage_key]


# -- the API ---------------------------------------------------------------------------


@pytest.fixture
async def api(
    db_target: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TestClient, Bridge]]:  # type: ignore[type-arg]
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    await db_target.upgrade()
    config = replace(
        report_config(),
        store=replace(db_target.settings, enabled=True),
        recording=settings(tmp_path),
    )
    bridge = Bridge(config, Clock(NOW))
    assert bridge.recording is not None
    try:
        async with TestClient(TestServer(bridge.http_app()), headers=ADMIN) as c:
            yield c, bridge
    finally:
        await bridge.recording.stop()
        await db_target.dispose()


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
async def test_pause_and_resume_refuse_bad_input_with_stable_ids(api: Any) -> None:
    c, bridge = api
    cid = call_id(20)
    url = f"/api/v1/calls/{cid}/recording"
    cases: list[tuple[str, Any, int, str]] = [
        (url, b"{not json", 400, "invalid-json"),
        (url, b"[]", 400, "invalid-body"),
        (url, {}, 400, "missing-field"),
        (url, {"action": 5}, 400, "invalid-field"),
        (url, {"action": "stop"}, 400, "invalid-field"),
        (url, {"action": "pause" * 1000}, 400, "invalid-field"),
        ("/api/v1/calls/garbage/recording", {"action": "pause"}, 404, "no-such-call"),
        ("/api/v1/calls/%00%0a/recording", {"action": "pause"}, 404, "no-such-call"),
        (url, {"action": "pause"}, 404, "no-such-call"),  # a call with no recording
    ]
    for path, body, status, error in cases:
        kw = {"data": body} if isinstance(body, bytes) else {"json": body}
        r = await c.post(path, **kw)
        got = await r.json()
        assert (r.status, got["error"]) == (status, error), (path, body, got)
        assert got["message"]
    # a recording running at a site whose AMI link is down: 503, nothing sent
    event = {"Channel": "PJSIP/dac-agent1-00000001", "Uniqueid": "dhaka-1795897311.9",
             "ChanVariable": f"CCB_CALLID={cid}"}  # fmt: skip
    assert bridge.recording.live.started("dhaka", event, NOW) is not None
    r = await c.post(url, json={"action": "pause"})
    assert (r.status, (await r.json())["error"]) == (503, "site-down")
    assert not bridge.recording.live.current(cid).paused
    # only whoever may control the recorded agent's calls (the agent, their supervisor)
    service = bridge.services.recordings
    with pytest.raises(ServiceError) as exc:
        await service.control(cid, "pause", lambda agent: agent == "dac-agent2")
    assert exc.value.error_id == "forbidden"
    with pytest.raises(ServiceError) as exc:
        await service.control(cid, "pause", lambda agent: agent == "dac-agent1")
    assert exc.value.error_id == "site-down"  # allowed: on to the site
    # the call ended: 409
    bridge.recording.live.stopped("dhaka", event, NOW)
    r = await c.post(url, json={"action": "resume"})
    assert (r.status, (await r.json())["error"]) == (409, "call-ended")


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
async def test_playback_refuses_bad_input_and_tampering(api: Any, tmp_path: Path) -> None:
    c, bridge = api
    part = bridge.recording
    audio = wav_bytes(1.0)
    name = RecordingName(call_id(21), "dhaka", "1795897311.50")
    drop(part.settings, name, audio)
    assert await part.shipper.run_once() == 1
    base = f"/api/v1/calls/{name.call_id}/recordings"
    r = await c.get(base)
    (listed,) = (await r.json())["recordings"]
    assert listed["recording_id"] == name.recording_id and listed["status"] == "stored"
    play = f"{base}/{name.recording_id}"
    for path, status, error in [
        (f"{base}/garbage", 404, "no-such-recording"),
        (f"{base}/dhaka-1.2", 404, "no-such-recording"),
        (f"/api/v1/calls/x/recordings/{name.recording_id}", 404, "no-such-call"),
    ]:
        r = await c.get(path)
        assert (r.status, (await r.json())["error"]) == (status, error), path
    for header, error in [
        ("bytes=0-1,4-5", "invalid-range"),
        ("bytes=oops", "invalid-range"),
        ("pages=1-2", "invalid-range"),
        (f"bytes={len(audio)}-", "range-not-satisfiable"),
    ]:
        r = await c.get(play, headers={"Range": header})
        assert (r.status, (await r.json())["error"]) == (416, error), header
        assert r.headers["Content-Range"] == f"bytes */{len(audio)}"
    r = await c.get(play, headers={"Range": "bytes=-100"})
    assert r.status == 206 and await r.read() == audio[-100:]
    # another site's supervisor does not see it
    with pytest.raises(ServiceError) as exc:
        await bridge.services.recordings.playback(name.call_id, name.recording_id, ["bangalore"])
    assert exc.value.error_id == "forbidden"
    # a failed recording is not playable yet
    await index.failed(part.engine(), name.call_id, "dhaka-9.9", "dhaka", "storage: x", NOW)
    r = await c.get(f"{base}/dhaka-9.9")
    assert (r.status, (await r.json())["error"]) == (409, "recording-not-stored")
    # a changed byte in a chunk past the first: the answer is cut, never other audio
    row = await index.get(part.engine(), name.call_id, name.recording_id)
    assert row is not None and row.storage_key is not None
    obj = Path(part.settings.storage_dir) / row.storage_key
    blob = bytearray(obj.read_bytes())
    blob[-30] ^= 0xFF
    obj.write_bytes(bytes(blob))
    r = await c.get(play, headers={"Range": "bytes=0-99"})
    assert r.status == 206 and await r.read() == audio[:100]  # the untouched chunk
    r = await c.get(play)
    with pytest.raises(aiohttp.ClientPayloadError):
        await r.read()
    # a header that does not authenticate is refused before any byte
    obj.write_bytes(b"CCBREC1\x00garbage")
    r = await c.get(play)
    assert (r.status, (await r.json())["error"]) == (500, "recording-unreadable")


async def test_without_a_recording_section_the_api_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    bridge = Bridge(report_config(), Clock(NOW))
    async with TestClient(TestServer(bridge.http_app()), headers=ADMIN) as c:
        r = await c.post(f"/api/v1/calls/{call_id(1)}/recording", json={"action": "pause"})
        assert (r.status, (await r.json())["error"]) == (404, "recording-off")
        r = await c.get(f"/api/v1/calls/{call_id(1)}/recordings/dhaka-1.2")
        assert (r.status, (await r.json())["error"]) == (404, "recording-off")
