"""Supervision modes and what each means to ChanSpy: the one definition (pure)."""

from __future__ import annotations

from typing import Final

LISTEN: Final = "listen"
WHISPER: Final = "whisper"
BARGE: Final = "barge"
MODES: Final = (LISTEN, WHISPER, BARGE)

# ChanSpy's options: q quiet (no beep, no channel name spoken), E exit when the spied
# channel hangs up, S exit when it is gone already (the call ended while the supervisor's
# phone rang: ChanSpy would otherwise wait for it), d DTMF 4/5/6 switch the mode (what a
# mode change sends, below), w whisper to the spied channel (the agent) only, B barge:
# talk to both sides.
_BASE: Final = "qESd"
_MODE_OPTION: Final = {LISTEN: "", WHISPER: "w", BARGE: "B"}
# With ``d``: 4 = listen (spy), 5 = whisper, 6 = barge (app_chanspy.c, the 'd' option).
MODE_DIGIT: Final = {LISTEN: "4", WHISPER: "5", BARGE: "6"}


def chanspy_options(mode: str) -> str:
    """ChanSpy's option string for a mode, e.g. ``qEdw`` for whisper."""
    return _BASE + _MODE_OPTION[mode]


def permission(mode: str) -> str:
    """The permission a supervisor needs for a mode (ccbridge/access/roles.py)."""
    return f"ccb.supervise.{mode}"
