"""Recordings: pause and resume a call's recording, list a call's recordings, play one back."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ccbridge.ami.client import AmiActionError, AmiTimeoutError, SiteDownError
from ccbridge.logs import ctx
from ccbridge.recording import crypto, index, live
from ccbridge.recording.index import RecordingRow
from ccbridge.recording.naming import parse_recording_id
from ccbridge.recording.part import RecordingPart
from ccbridge.records import callid
from ccbridge.services.errors import ServiceError
from ccbridge.services.ports import Runtime
from ccbridge.store.schema import RecordingStatus

log = logging.getLogger("ccbridge.services.recordings")

ACTIONS = ("pause", "resume")
_ENDPOINT = re.compile(r"PJSIP/([A-Za-z0-9_.-]{1,64}?)-[0-9a-f]{8}")
READ_BATCH = 16  # chunks decrypted per worker-thread hop while streaming


@dataclass(frozen=True, slots=True)
class Playback:
    row: RecordingRow
    size: int  # plaintext bytes
    content_type: str = "audio/wav"


class RecordingService:
    """Over the bridge's RecordingPart; every refusal is a ServiceError with a stable id."""

    def __init__(self, runtime: Runtime, part: Callable[[], RecordingPart | None]) -> None:
        self._rt = runtime
        self._part = part

    def _need(self) -> RecordingPart:
        p = self._part()
        if p is None:
            raise ServiceError("recording-off", "this bridge records no calls (no recording:)")
        return p

    @staticmethod
    def _call_id(call_id: str) -> str:
        if callid.parse(call_id) is None:
            raise ServiceError("no-such-call", "no call with this ID", call=call_id[:80])
        return call_id

    async def control(
        self, call_id: str, action: str, may: Callable[[str | None], bool]
    ) -> dict[str, Any]:
        """Pause or resume the call's recording in progress (AMI MixMonitorMute, both
        directions: silence replaces the audio, so the file keeps the call's timing).
        ``may(agent)``: whether the caller may control the calls of the recording's agent
        (the agent's own, a supervisor's agents')."""
        part = self._need()
        if action not in ACTIONS:
            raise ServiceError("invalid-field", "'action' must be pause or resume", field="action")
        self._call_id(call_id)
        rec = part.live.current(call_id)
        if rec is None:
            if part.live.has_ended(call_id):
                raise ServiceError("call-ended", "the call's recording has ended", call=call_id)
            raise ServiceError(
                "no-such-call", "no recording in progress for this call", call=call_id
            )
        site = rec.name.site
        if not may(self._agent(call_id, rec.channel)):
            raise ServiceError("forbidden", "may not control this call's recording", site=site)
        link = self._rt.links.get(site)
        if link is None or not link.connected:
            raise ServiceError("site-down", f"site {site} is not connected", site=site)
        state = "1" if action == "pause" else "0"
        try:
            await link.action(
                "MixMonitorMute",
                {"Channel": rec.channel, "Direction": "both", "State": state},
                as_list=False,
            )
        except AmiActionError as exc:
            message = str(exc.response.get("Message", ""))
            if part.live.current(call_id) is not rec:  # ended while we asked
                raise ServiceError("call-ended", "the call's recording has ended") from None
            raise ServiceError("ami-error", f"{site}: {message}", site=site) from None
        except SiteDownError:
            raise ServiceError("site-down", f"site {site} is not connected", site=site) from None
        except AmiTimeoutError:
            raise ServiceError("ami-timeout", f"site {site} did not answer", site=site) from None
        now = part.now()
        changed = live.pause(rec, now) if action == "pause" else live.resume(rec, now)
        if changed:
            part.save_pauses_soon(call_id, rec.name.recording_id, site, rec.pauses)
        log.info(
            "recording %s",
            "paused" if action == "pause" else "resumed",
            extra=ctx(recording=rec.name.recording_id, site=site),
        )
        return {
            "recording_id": rec.name.recording_id,
            "site": site,
            "paused": rec.paused,
            "pauses": rec.pauses,
        }

    def _agent(self, call_id: str, channel: str) -> str | None:
        """The recording's agent: the desk's view of the call (app_queue's MemberName),
        else the endpoint of the recorded channel (PJSIP/blr-agent1-0000002a)."""
        call = self._rt.desk.get(call_id)
        if call is not None and call.agent and call.agent_channel == channel:
            return call.agent
        m = _ENDPOINT.fullmatch(channel)
        return m.group(1) if m else None

    async def _row(self, call_id: str, rid: str, sites: list[str]) -> RecordingRow:
        part = self._need()
        self._call_id(call_id)
        if parse_recording_id(rid) is None:
            raise ServiceError("no-such-recording", "no recording with this ID", recording=rid[:80])
        try:
            row = await index.get(part.engine(), call_id, rid)
        except Exception as exc:
            raise ServiceError(
                "records-unavailable",
                f"the record database cannot be read: {exc.__class__.__name__}",
            ) from None
        if row is None:
            raise ServiceError("no-such-recording", "no recording with this ID", recording=rid)
        if row.site not in sites:
            raise ServiceError("forbidden", f"the recording is at {row.site}", site=row.site)
        return row

    async def playback(self, call_id: str, rid: str, sites: list[str]) -> Playback:
        """The stored recording's index row and size, checked readable."""
        part = self._need()
        row = await self._row(call_id, rid, sites)
        if row.status != RecordingStatus.STORED or row.storage_key is None:
            raise ServiceError(
                "recording-not-stored",
                f"the recording is {row.status}, not in central storage yet",
                recording_status=row.status,
            )
        key = row.storage_key

        def header() -> int:
            with part.storage.open(key) as f:
                h, size = crypto.plain_size(f)
            if h.key_id not in part.keys.keys:
                raise crypto.CryptoError(f"no key '{h.key_id}' configured")
            return size

        try:
            size = await asyncio.to_thread(header)
        except (OSError, crypto.CryptoError) as exc:
            log.warning("recording %s unreadable: %s", rid, exc)
            raise ServiceError(
                "recording-unreadable", f"the stored recording cannot be read: {exc}"
            ) from None
        return Playback(row, size)

    async def stream(self, pb: Playback, start: int, end: int) -> AsyncIterator[bytes]:
        """Plaintext bytes start..end, decrypted in a worker thread a few chunks at a time."""
        part = self._need()
        key = pb.row.storage_key
        assert key is not None
        f = await asyncio.to_thread(part.storage.open, key)
        try:
            it = crypto.decrypt_range(f, part.keys.keys, start, end)

            def batch() -> list[bytes]:
                out = []
                for block in it:
                    out.append(block)
                    if len(out) >= READ_BATCH:
                        break
                return out

            while blocks := await asyncio.to_thread(batch):
                for b in blocks:
                    yield b
        finally:
            await asyncio.to_thread(f.close)

    async def for_call(self, call_id: str, sites: list[str]) -> list[dict[str, Any]]:
        part = self._need()
        self._call_id(call_id)
        try:
            rows = await index.for_call(part.engine(), call_id)
        except Exception as exc:
            raise ServiceError(
                "records-unavailable",
                f"the record database cannot be read: {exc.__class__.__name__}",
            ) from None
        return [r.public() for r in rows if r.site in sites]
