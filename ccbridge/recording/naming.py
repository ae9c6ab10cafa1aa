"""A recording's file name at the site: made from the call ID, the site and the channel only.

``bangalore+1795897305.383234+2@dhaka@1795897311.45.wav`` is call
``bangalore:1795897305.383234:2`` recorded at dhaka on the agent channel whose uniqueid is
``1795897311.45`` (Asterisk's, so two recordings of one call at one site differ). No
caller-controlled string ever reaches the name (or MixMonitor's command): the dialplan
writes it from CCB_CALLID (FILTERed), the site's own name and UNIQUEID. The recording ID
in the API is ``SITE-UNIQUEID``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ccbridge import variables as v
from ccbridge.records import callid

_UNIQUEID = re.compile(r"[0-9]{1,12}\.[0-9]{1,12}")
_SITE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
RID = re.compile(r"([a-z][a-z0-9_-]{0,31})-([0-9]{1,12}\.[0-9]{1,12})")


@dataclass(frozen=True, slots=True)
class RecordingName:
    call_id: str
    site: str
    uniqueid: str

    @property
    def recording_id(self) -> str:
        return f"{self.site}-{self.uniqueid}"

    @property
    def file_name(self) -> str:
        return self.stem + v.RECORDING_DONE

    @property
    def stem(self) -> str:
        sep = v.RECORDING_SEP
        return f"{self.call_id.replace(':', '+')}{sep}{self.site}{sep}{self.uniqueid}"

    def storage_key(self, sha256: str) -> str:
        """Where central storage keeps it: one folder per call, the content's hash in the
        name, so a second copy of the same bytes is the same object (never stored twice)."""
        return f"{self.call_id.replace(':', '+')}/{self.recording_id}.{sha256[:16]}.ccbrec"


def parse_file_name(name: str) -> RecordingName | None:
    """The parts of a finished recording's file name; None for anything else (a file
    still being written, a stray file, garbage)."""
    if not name.endswith(v.RECORDING_DONE) or name.endswith(v.RECORDING_PART):
        return None
    parts = name[: -len(v.RECORDING_DONE)].split(v.RECORDING_SEP)
    if len(parts) != 3:
        return None
    call, site, uniqueid = parts
    cid = callid.parse(call.replace("+", ":"))
    if cid is None or not _SITE.fullmatch(site) or not _UNIQUEID.fullmatch(uniqueid):
        return None
    return RecordingName(cid.text, site, uniqueid)


def parse_recording_id(rid: str) -> tuple[str, str] | None:
    """(site, uniqueid) of an API recording ID; None when it is not one."""
    if len(rid) > 64:
        return None
    m = RID.fullmatch(rid)
    return (m.group(1), m.group(2)) if m else None
