"""SIPp processes of a load test: command lines, start, and stop every process group at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from ccbridge.lab import dtmf
from ccbridge.lab.sipp import SCENARIOS, caller_command
from ccbridge.loadtest.options import CallerGroup

FIRST_CALLER_PORT = 6300  # agents use 7000+, tests' callers 6100-6299
CARRIER_SCENARIOS = {
    "answer": "carrier_answer.xml",
    "503": "carrier_503.xml",
    "486": "loadtest_carrier_486.xml",
    "silent": "loadtest_carrier_silent.xml",
}
RAMP_MIN_RATE = 2.0  # calls/s a group needs for SIPp to ramp it (see caller_argv)
RECV_TIMEOUT_MS = 32_000  # a caller waiting longer than this for a response fails
# An IVR caller keys its first digit this long after the answer, the next ones this far
# apart: each digit cuts the menu's prompt short (Background), so this paces a caller.
DTMF_FIRST_MS = 1500
DTMF_GAP_MS = 1200
# After its last digit an IVR caller stays this long before its talk time starts: the
# menu's choice, the route AGI and Queue() take well under a second on the lab; the run
# checks over AMI that every call joined the predicted queue (report.misrouted).
QUEUE_ALLOWANCE_MS = 3000


def dtmf_steps(digits: str) -> list[dtmf.Step]:
    """The IVR caller's keys: one SIP INFO each, paced by DTMF_FIRST_MS and DTMF_GAP_MS.

    Not RFC 2833: SIPp replays the same capture for every key, so Asterisk drops a second
    event with the same RTP timestamp as a duplicate and a "11" caller keyed one digit.
    """
    return [(DTMF_FIRST_MS if i == 0 else DTMF_GAP_MS, d, "info") for i, d in enumerate(digits)]


def ivr_stay_ms(digits: str, talk_ms: int) -> int:
    """How long an IVR caller stays after the answer: its digits, being queued, talking.

    The talk time alone (the load test's default of 1 s) hung up before the menu had
    taken the second digit: every IVR call of a run ended before reaching a queue.
    """
    keyed = sum(pause for pause, *_ in dtmf_steps(digits))
    return keyed + QUEUE_ALLOWANCE_MS + talk_ms


def dtmf_scenario(digits: str, out: Path, talk_ms: int) -> Path:
    """Write the IVR caller for ``digits`` into ``out``; returns its path."""
    text = dtmf.scenario(dtmf_steps(digits), hold_ms=QUEUE_ALLOWANCE_MS + talk_ms)
    path = out / f"loadtest_dtmf_{digits.replace('*', 's').replace('#', 'p')}.xml"
    path.write_text(text)
    return path


@dataclass(frozen=True, slots=True)
class CallerRun:
    """One bounded SIPp UAC: its command line and the files it writes."""

    name: str
    argv: tuple[str, ...]
    stat_file: Path
    error_file: Path
    max_seconds: float


def caller_argv(
    *,
    scenario: Path,
    target: str,
    did: str,
    caller: str,
    calls: int,
    rate: float,
    limit: int,
    talk_ms: int,
    port: int,
    max_seconds: float,
    stat_file: Path,
    error_file: Path,
    ramp: float = 0.0,
    recv_timeout_ms: int = RECV_TIMEOUT_MS,
) -> tuple[str, ...]:
    """A SIPp caller bounded by ``-m calls`` and ``-timeout max_seconds``.

    Steady rates are given per 10 s (``-rp 10s``) to resolve 0.1 calls/s. SIPp ramps in
    whole calls per interval and starts each interval's count afresh, so a ramp below
    2 calls/s would open no call at all (seen): such a group starts at its full rate.
    """
    if ramp > 0 and rate >= RAMP_MIN_RATE:
        step = max(1, round(rate / ramp))
        rate_args = ["-rp", "1s", "-r", str(step), "-rate_increase", str(step)]
        rate_args += ["-rate_interval", "1s", "-rate_max", str(max(step, round(rate)))]
        rate_args += ["-no_rate_quit"]
    else:
        rate_args = ["-rp", "10s", "-r", f"{rate * 10:.3f}"]
    argv = caller_command(
        scenario, target, did, caller=caller, local_port=port, calls=calls,
        max_seconds=max_seconds, timeout_is_error=False,
        extra=(
            *rate_args, "-l", str(limit), "-d", str(talk_ms),
            # a call nobody answers fails instead of waiting forever
            "-recv_timeout", str(recv_timeout_ms),
            "-trace_stat", "-stf", str(stat_file), "-fd", "1",
            "-trace_err", "-error_file", str(error_file),
        ),
    )  # fmt: skip
    return tuple(argv)


def group_run(
    index: int,
    group: CallerGroup,
    *,
    target: str,
    calls: int,
    rate: float,
    limit: int,
    talk_ms: int,
    ramp: float,
    max_seconds: float,
    out: Path,
) -> CallerRun:
    scenario = (
        dtmf_scenario(group.digits, out, talk_ms) if group.digits else SCENARIOS / "caller.xml"
    )
    name = f"g{index:02d}"
    stat, err = out / f"{name}.stat.csv", out / f"{name}.errors.log"
    argv = caller_argv(
        scenario=scenario,
        target=target,
        did=group.did,
        caller=group.caller,
        calls=calls,
        rate=rate,
        limit=limit,
        talk_ms=talk_ms,
        port=FIRST_CALLER_PORT + index,
        max_seconds=max_seconds,
        stat_file=stat,
        error_file=err,
        ramp=ramp,
    )
    return CallerRun(name, argv, stat, err, max_seconds)


class ProcessGroup:
    """SIPp children, each in its own session: stopped together on Ctrl-C or any error."""

    def __init__(self) -> None:
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, run: CallerRun, cwd: Path) -> asyncio.subprocess.Process:
        # SIPp's screen goes nowhere: its stats and error files say what happened.
        proc = await asyncio.create_subprocess_exec(
            *run.argv,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs[run.name] = proc
        return proc

    @property
    def running(self) -> int:
        return sum(1 for p in self.procs.values() if p.returncode is None)

    async def wait_all(self, within: float) -> bool:
        """True when every process exited within ``within`` seconds."""
        waits = [p.wait() for p in self.procs.values() if p.returncode is None]
        if not waits:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), within)
        return self.running == 0

    async def stop_all(self, grace: float = 3.0) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.procs.values():
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, sig)
            if await self.wait_all(grace):
                return
