"""SIPp IVR callers: one call that keys DTMF (RFC 2833 pcaps) at set times, bounded in time."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ccbridge.lab.sipp import SCENARIOS, CallResult, _port_for, _stat, sipp_binary

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


def scenario(steps: Sequence[Step], hold_ms: int) -> str:
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
    lines.append(f'  <pause milliseconds="{int(hold_ms)}"/>')
    template = (SCENARIOS / "ivr_caller.xml").read_text(encoding="utf-8")
    return template.replace("DTMF_STEPS", "\n".join(lines)).replace("BYE_CSEQ", str(cseq + 1))


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
    with tempfile.TemporaryDirectory(prefix="ccb-ivr-") as wd:
        sf = Path(wd) / "ivr.xml"
        sf.write_text(scenario(steps, hold_ms), encoding="utf-8")
        cmd = [
            sipp_binary(),
            "-sf",
            str(sf),
            "-key",
            "caller",
            caller,
            "-s",
            did,
            target,
            "-i",
            "127.0.0.1",
            "-p",
            str(local_port),
            "-mp",
            str(_port_for(local_port)),
            "-m",
            "1",
            "-l",
            "1",
            "-nostdin",
            "-timeout",
            f"{int(max_seconds)}s",
            "-timeout_error",
        ]
        try:
            out = subprocess.run(
                cmd, cwd=wd, capture_output=True, text=True, timeout=max_seconds + 10, check=False
            )
            text, rc = out.stdout + out.stderr, out.returncode
        except subprocess.TimeoutExpired as exc:
            text, rc = str(exc.stdout or "") + str(exc.stderr or ""), -1
    return CallResult(
        created=_stat(text, "Total Calls created"),
        successful=_stat(text, "Successful call"),
        failed=_stat(text, "Failed call"),
        returncode=rc,
        output=text,
    )
