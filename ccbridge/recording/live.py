"""Recordings in progress, from AMI's MixMonitorStart and the channel's Hangup: what pause acts on.

MixMonitor runs on the answering agent's channel (dialplans: ccb-record-start); its
events carry that channel's snapshot with the call's CCB_CALLID (manager.conf
channelvars). Asterisk 22 sends MixMonitorStop only for StopMixMonitor, not when the
channel hangs up (seen on the lab), so the recording ends with its channel's Hangup.
Pure bookkeeping: no I/O, times given by the caller.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ccbridge.recording.naming import RecordingName
from ccbridge.records import callid

ENDED_KEPT = 10_000  # recently ended calls remembered, to answer "ended" rather than "unknown"
_UNIQUEID_TAIL = re.compile(r"[0-9]{1,12}\.[0-9]{1,12}$")


@dataclass
class LiveRecording:
    name: RecordingName
    channel: str
    started_at: datetime
    paused_at: datetime | None = None
    pauses: list[list[str | None]] = field(default_factory=list)

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


def call_id_of(event: Mapping[str, str]) -> str | None:
    return callid.of_event(event) or None


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


class LiveRecordings:
    """Recordings running now per call ID, and the calls whose recordings ended lately."""

    def __init__(self) -> None:
        self.by_call: dict[str, list[LiveRecording]] = {}
        self.ended: OrderedDict[str, None] = OrderedDict()

    def started(self, site: str, event: Mapping[str, str], at: datetime) -> LiveRecording | None:
        call = call_id_of(event)
        # A site with a systemname prefixes its uniqueids (bangalore-1795909152.1); the
        # dialplan names the file from the number part alone (FILTER(0-9.)), so does this.
        m = _UNIQUEID_TAIL.search(event.get("Uniqueid", ""))
        channel = event.get("Channel", "")
        if call is None or callid.parse(call) is None or not channel or m is None:
            return None
        uniqueid = m.group(0)
        rec = LiveRecording(RecordingName(call, site, uniqueid), channel, at)
        recs = self.by_call.setdefault(call, [])
        recs[:] = [r for r in recs if r.channel != channel] + [rec]
        return rec

    def stopped(self, site: str, event: Mapping[str, str], at: datetime) -> LiveRecording | None:
        call = call_id_of(event)
        channel = event.get("Channel", "")
        if call is None or call not in self.by_call:
            return None
        recs = self.by_call[call]
        gone = [r for r in recs if r.channel == channel and r.name.site == site]
        recs[:] = [r for r in recs if r not in gone]
        if not recs:
            del self.by_call[call]
            self.ended[call] = None
            while len(self.ended) > ENDED_KEPT:
                self.ended.popitem(last=False)
        for r in gone:
            if r.paused_at is not None:
                r.pauses[-1][1] = _iso(at)
                r.paused_at = None
        return gone[0] if gone else None

    def current(self, call: str) -> LiveRecording | None:
        """The call's newest recording in progress."""
        recs = self.by_call.get(call)
        return recs[-1] if recs else None

    def has_ended(self, call: str) -> bool:
        return call in self.ended and call not in self.by_call

    def forget_site(self, site: str) -> None:
        """A site's link dropped: its MixMonitors' ends will not be seen."""
        for call in list(self.by_call):
            self.by_call[call] = [r for r in self.by_call[call] if r.name.site != site]
            if not self.by_call[call]:
                del self.by_call[call]


def pause(rec: LiveRecording, at: datetime) -> bool:
    """Mark ``rec`` paused from ``at``; False when it already was (nothing changes)."""
    if rec.paused_at is not None:
        return False
    rec.paused_at = at
    rec.pauses.append([_iso(at), None])
    return True


def resume(rec: LiveRecording, at: datetime) -> bool:
    if rec.paused_at is None:
        return False
    rec.paused_at = None
    rec.pauses[-1][1] = _iso(at)
    return True
