"""SIPp IVR callers: one call that keys DTMF (RFC 2833 pcaps) at set times, bounded in time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ccbridge.lab.sipp import SCENARIOS, CallResult, caller_command, run_callers

PCAP_DIR = Path("/usr/share/sip-tester")
_KEY_FILES = {"#": "pound", "*": "star"}


def pcap_for(key: str) -> Path:
    """The RFC 2833 capture SIPp ships for one keypad key."""
    name = _KEY_FILES.get(key, key)
    if name not in _KEY_FILES.values() and not (len(name) == 1 and name.isdigit()):
        raise ValueError(f"no DTMF capture for key {key!r}")
    return PCAP_DIR / f"dtmf_2833_{name}.pcap"


_INFO = """  <send retrans="500">
    <![CDATA[
      INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "[caller]" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: sip:[caller]@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={key}
      Duration=160
    ]]>
  </send>
  <recv response="200"/>"""

Step = tuple[int, str] | tuple[int, str, str]


def scenario(steps: Sequence[Step], hold_ms: int, template: str = "ivr_caller.xml") -> str:
    """The IVR caller with ``steps`` = (pause before ms, keys[, "info" | "rfc2833"]).

    RFC 2833 replays the same capture each time, so Asterisk drops a repeated key with
    the same RTP timestamp as a duplicate: use it for one key per call; SIP INFO for
    sequences.
    """
    lines = []
    cseq = 1
    for step in steps:
        pause_ms, keys = step[0], step[1]
        mode = step[2] if len(step) == 3 else "info"
        lines.append(f'  <pause milliseconds="{int(pause_ms)}"/>')
        for i, key in enumerate(keys):
            if i:
                lines.append('  <pause milliseconds="300"/>')  # keys apart, as a person types
            if mode == "rfc2833":
                lines.append(
                    f'  <nop><action><exec play_pcap_audio="{pcap_for(key)}"/></action></nop>'
                )
            else:
                pcap_for(key)  # the same keys are valid either way
                cseq += 1
                lines.append(_INFO.format(cseq=cseq, key=key))
    if hold_ms:
        lines.append(f'  <pause milliseconds="{int(hold_ms)}"/>')
    text = (SCENARIOS / template).read_text(encoding="utf-8")
    # The placeholder's own line only: the template's comment names it too.
    keyed = "\n" + "\n".join(lines) + "\n"
    return text.replace("\nDTMF_STEPS\n", keyed).replace("BYE_CSEQ", str(cseq + 1))


def ivr_call(
    target: str,
    did: str,
    steps: Sequence[Step],
    *,
    caller: str = "+441632960001",
    hold_ms: int = 3000,
    local_port: int = 6140,
    max_seconds: float = 60.0,
) -> CallResult:
    """One call to ``did`` at ``target`` that keys ``steps``; needs root (pcap play)."""
    cmd = caller_command(
        Path("scenario.xml"), target, did, caller=caller, local_port=local_port, calls=1,
        max_seconds=max_seconds, extra=("-l", "1"),
    )  # fmt: skip
    return run_callers(cmd, scenario(steps, hold_ms), max_seconds)


def survey_call(
    target: str,
    did: str,
    steps: Sequence[Step],
    *,
    caller: str = "+441632960001",
    local_port: int = 6150,
    max_seconds: float = 60.0,
) -> CallResult:
    """One call to ``did`` that keys ``steps`` and then waits for the far end to hang up
    (survey_caller.xml): a call the dialplan leaves open fails on SIPp's recv timeout."""
    cmd = caller_command(
        Path("scenario.xml"), target, did, caller=caller, local_port=local_port, calls=1,
        max_seconds=max_seconds, extra=("-l", "1", "-recv_timeout", "20000"),
    )  # fmt: skip
    return run_callers(cmd, scenario(steps, 0, "survey_caller.xml"), max_seconds)
