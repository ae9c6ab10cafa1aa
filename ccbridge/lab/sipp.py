"""Run SIPp callers and agents against the lab: every process bounded in calls and time."""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ccbridge.config.model import Config

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
_SIPP = "sipp"


class SippError(RuntimeError):
    pass


def sipp_binary() -> str:
    found = shutil.which(_SIPP)
    if not found:
        raise SippError("SIPp is missing: apt-get install sip-tester")
    return found


@dataclass
class CallResult:
    """What a bounded SIPp caller run achieved, read from its final statistics."""

    created: int
    successful: int
    failed: int
    returncode: int
    output: str = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.successful == self.created and self.created > 0


# SIPp's media port defaults to 6000 for every process: each gets its own block of four
# (audio RTP/RTCP, video RTP/RTCP) in [MEDIA_FLOOR, MEDIA_FLOOR + 4 * MEDIA_SLOTS). The
# blocks lie above the lab sites' Asterisk RTP ranges (10000-12999, examples/lab.yaml)
# and below Linux's ephemeral ports (32768-60999 by default), where any connect() or
# bind to port 0 may already hold the port SIPp wants ("Unable to bind ... RTP socket").
MEDIA_FLOOR = 13000
MEDIA_SLOTS = 4900


def _port_for(sip_port: int) -> int:
    """The first of the four media ports of the SIPp process whose SIP port is ``sip_port``
    (distinct for SIP ports that differ by less than MEDIA_SLOTS)."""
    return MEDIA_FLOOR + (sip_port % MEDIA_SLOTS) * 4


def _block_free(host: str, first: int) -> bool:
    """Whether UDP ports first..first+3 bind on ``host`` now. An address this namespace
    does not have (a test's network namespace) cannot be probed from here: taken as free."""
    held: list[socket.socket] = []
    try:
        for port in range(first, first + 4):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(s)
            s.bind((host, port))
    except OSError as exc:
        return exc.errno != errno.EADDRINUSE
    finally:
        for s in held:
            s.close()
    return True


def media_port(host: str, sip_port: int) -> int:
    """``-mp`` for the SIPp process at ``host``:``sip_port``: its block (``_port_for``), or
    the next one whose four ports are free. SIP ports MEDIA_SLOTS apart share a block: a
    test's free port (from the kernel's ephemeral range) met a lab phone's long-lived
    SIPp there ("Unable to bind audio RTP socket ... Address already in use", port 21528:
    56032 and 7032). A block taken between this probe and SIPp's bind still fails at
    SIPp's start, with its own clear error."""
    slot = sip_port % MEDIA_SLOTS
    for step in range(MEDIA_SLOTS):
        first = MEDIA_FLOOR + ((slot + step) % MEDIA_SLOTS) * 4
        if _block_free(host, first):
            return first
    raise SippError(
        f"no free block of four media ports in {MEDIA_FLOOR}-{MEDIA_FLOOR + 4 * MEDIA_SLOTS - 1}"
    )


class Agent:
    """A SIPp UAS answering as one queue member's phone at ``contact`` (sip:agent@IP:PORT).

    Other scenarios make it a carrier or trunk far end: ``carrier_answer.xml`` (answers
    qualify and calls), ``carrier_503.xml`` (answers qualify, rejects calls with 503).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_seconds: float = 600.0,
        workdir: Path | None = None,
        scenario: str = "agent.xml",
        keys: dict[str, str] | None = None,
        identity_log: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.max_seconds = max_seconds
        self.scenario = scenario
        self.keys = keys or {}
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="ccb-agent-"))
        self.identity_log = identity_log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def identity_log_file(self) -> Path:
        return self.workdir / f"agent-{self.port}-identity.log"

    def identities(self) -> list[str]:
        """With ``identity_log``: one line per INVITE received, the From and
        P-Asserted-Identity it carried (agent.xml and carrier_answer.xml log them)."""
        try:
            text = self.identity_log_file.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.startswith("INVITE ")]

    @classmethod
    def from_contact(cls, contact: str, **kw: object) -> Agent:
        hostport = contact.split("@", 1)[-1].split(";", 1)[0]
        host, _, port = hostport.rpartition(":")
        return cls(host, int(port), **kw)  # type: ignore[arg-type]

    def start(self) -> None:
        cmd = [
            sipp_binary(),
            "-sf",
            str(SCENARIOS / self.scenario),
            *[arg for k, val in self.keys.items() for arg in ("-key", k, val)],
            "-i",
            self.host,
            "-p",
            str(self.port),
            "-mp",
            str(media_port(self.host, self.port)),
            "-nostdin",
            # A UAS is bounded by time, not count: Asterisk may send it OPTIONS too.
            "-timeout",
            f"{int(self.max_seconds)}s",
            "-timeout_error",
            "-trace_stat",
            "-stf",
            str(self.workdir / f"agent-{self.port}.csv"),
            "-fd",
            "1",
        ]
        if self.identity_log:
            self.identity_log_file.unlink(missing_ok=True)  # this run's calls only
            cmd += ["-trace_logs", "-log_file", str(self.identity_log_file)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        # SIPp exits at once on a bad scenario or a port in use: say so here, not later
        # as a mysteriously unreachable agent.
        try:
            rc = self.proc.wait(0.2)
        except subprocess.TimeoutExpired:
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            return
        err = ""
        if self.proc.stderr is not None:
            with self.proc.stderr:
                err = self.proc.stderr.read().decode(errors="replace")
        self.proc = None
        raise SippError(
            f"SIPp {self.scenario} on {self.host}:{self.port} exited ({rc}): {err[-500:]}"
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(3)
        self.proc = None

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_member_agents(
    config: Config, max_seconds: float, workdir: Path, *, identity_log: bool = False
) -> dict[str, Agent]:
    """A SIPp UAS for every configured queue member's contact, keyed by contact.

    One phone may be a member at several sites (a roaming agent): it gets one UAS, not one
    a site (a second would find the port taken). If one fails to start, the ones already
    started are stopped before the error goes up.
    """
    agents: dict[str, Agent] = {}
    try:
        for site in config.sites:
            for member in site.agents:
                if member.contact not in agents:
                    agent = Agent.from_contact(
                        member.contact,
                        max_seconds=max_seconds,
                        workdir=workdir,
                        identity_log=identity_log,
                    )
                    agent.start()
                    agents[member.contact] = agent
    except BaseException:
        for agent in agents.values():
            agent.stop()
        raise
    return agents


def caller_command(
    scenario: Path,
    target: str,
    did: str,
    *,
    caller: str,
    local_port: int,
    calls: int,
    max_seconds: float,
    extra: Sequence[str] = (),
    timeout_is_error: bool = True,
) -> list[str]:
    """The argv of a bounded SIPp caller run: ``calls`` calls, at most ``max_seconds``."""
    return [
        sipp_binary(),
        "-sf", str(scenario),
        "-key", "caller", caller,
        "-s", did,
        target,
        "-i", "127.0.0.1",
        "-p", str(local_port),
        "-mp", str(media_port("127.0.0.1", local_port)),
        "-m", str(calls),
        *extra,
        "-nostdin",
        "-timeout", f"{math.ceil(max_seconds)}s",
        *(["-timeout_error"] if timeout_is_error else []),
    ]  # fmt: skip


def run_callers(cmd: list[str], scenario_text: str | None, max_seconds: float) -> CallResult:
    """Run one bounded SIPp caller command in a scratch folder; read its final statistics.

    ``scenario_text``, when given, is written to ``scenario.xml`` in that folder first
    (``cmd`` then names that file)."""
    with tempfile.TemporaryDirectory(prefix="ccb-caller-") as wd:
        if scenario_text is not None:
            (Path(wd) / "scenario.xml").write_text(scenario_text, encoding="utf-8")
        try:
            out = subprocess.run(
                cmd, cwd=wd, capture_output=True, text=True, timeout=max_seconds + 10, check=False
            )
            text, rc = out.stdout + out.stderr, out.returncode
        except subprocess.TimeoutExpired as exc:
            text, rc = str(exc.stdout or "") + str(exc.stderr or ""), -1
    return CallResult(
        created=final_stat(text, "Total Calls created"),
        successful=final_stat(text, "Successful call"),
        failed=final_stat(text, "Failed call"),
        returncode=rc,
        output=text,
    )


def place_calls(
    target: str,
    did: str,
    *,
    caller: str = "+441632960001",
    calls: int = 1,
    rate: float = 1.0,
    duration_ms: int = 500,
    local_port: int = 6100,
    max_seconds: float = 60.0,
    limit: int | None = None,
    scenario: str = "caller.xml",  # talking_caller.xml: sends audio once answered
    extra: Sequence[str] = (),
) -> CallResult:
    """Place ``calls`` calls to ``did`` at ``target`` (HOST:PORT), bounded by max_seconds
    (``edge_caller.xml``: through the SIP edge, following its recorded route); ``extra``:
    more SIPp options (a per-call receive timeout, a call trace)."""
    cmd = caller_command(
        SCENARIOS / scenario, target, did, caller=caller, local_port=local_port,
        calls=calls, max_seconds=max_seconds,
        extra=("-r", str(rate), "-d", str(duration_ms), "-l", str(limit or max(calls, 1)),
               *extra),
    )  # fmt: skip
    return run_callers(cmd, None, max_seconds)


def final_stat(text: str, label: str) -> int:
    """The cumulative column of a line in SIPp's final statistics screen."""
    value = 0
    for line in text.splitlines():
        if line.strip().startswith(label):
            cols = [c.strip() for c in line.split("|")]
            if len(cols) >= 3 and cols[2].isdigit():
                value = int(cols[2])
    return value


_CALL_DEBUG = "Call debugging information for call "
# A response SIPp received to the call's INVITE with 200: the call was answered.
_ANSWER = re.compile(r"^SIP/2\.0 200\b[^\n]*\n(?:[^\n]+\n)*?CSeq:\s*\d+ INVITE\s*$", re.M | re.I)


def aborted_calls(text: str) -> dict[str, bool]:
    """The calls a SIPp run aborted, from its ``-trace_calldebug`` file: Call-ID -> whether
    the call had been answered (a 200 to its INVITE received) before it failed. Text that
    is not a call-debug dump gives no calls."""
    out: dict[str, bool] = {}
    for block in text.split(_CALL_DEBUG)[1:]:
        call_id, sep, history = block.partition(":\n")
        call_id = call_id.strip()
        if not sep or not call_id or "\n" in call_id:
            continue
        out[call_id] = _ANSWER.search(history) is not None
    return out
