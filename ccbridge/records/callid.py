"""The call ID (``CCB_CALLID``): ``SITE:EPOCH.MICROS:SEQ``, made by the entry site's dialplan.

``bangalore:1795888704.136558:0`` is the call that entered at bangalore at that instant
(UTC, to the microsecond) as that Asterisk's channel number 0. The entry site and the
arrival instant are read from the ID alone, so every site's events (and a bridge that
restarted mid-call) name the call's row with the same key and the same required columns.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ccbridge.variables import CALLID

# The site part is a config name (config.reader.NAME_RE); the rest is what the dialplan's
# STRFTIME(,UTC,%s.%6q) and the uniqueid's last field give. 64 characters at most: the
# column's width.
_CALLID = re.compile(r"([a-z][a-z0-9_-]{0,31}):([0-9]{9,11})\.([0-9]{6}):([0-9]{1,18})")
MAX_LEN = 64
_VAR_PREFIX = CALLID + "="


@dataclass(frozen=True, slots=True)
class CallId:
    text: str
    entry_site: str
    arrived_at: datetime


def parse(text: str) -> CallId | None:
    """The call ID's parts; None for anything the dialplan does not write."""
    if len(text) > MAX_LEN:
        return None
    m = _CALLID.fullmatch(text)
    if m is None:
        return None
    seconds, micros = int(m.group(2)), int(m.group(3))
    try:
        at = datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)
    except (OverflowError, OSError, ValueError):
        return None
    # the site's name interned: a few names, one per call otherwise
    return CallId(text, sys.intern(m.group(1)), at)


def make(site: str, at: datetime, seq: int) -> str:
    """The ID the dialplan would give (tests, benches)."""
    ts = at.astimezone(UTC)
    return f"{site}:{int(ts.timestamp())}.{ts.microsecond:06d}:{seq}"


def of_event(event: Mapping[str, str]) -> str | None:
    """The ``CCB_CALLID`` an AMI event carries (its ``ChanVariable`` lines, manager.conf
    ``channelvars``: the caller's channel in app_queue's events), as written."""
    getall = getattr(event, "getall", None)
    values = getall("ChanVariable") if getall is not None else (event.get("ChanVariable"),)
    for item in values:
        if isinstance(item, str) and item.startswith(_VAR_PREFIX):
            return item[len(_VAR_PREFIX) :]
    return None
