"""`make run`: the lab, its SIPp agents and the bridge, a few demo calls, then wait for Ctrl-C;
the bridge as a subprocess (also the load tests' and the failover test's)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from ccbridge import loopdebug
from ccbridge.config.model import Config
from ccbridge.lab.sipp import Agent, place_calls, start_member_agents
from ccbridge.lab.sites import Lab
from ccbridge.logs import mask_number

DEMO_CALLERS = ("+919812345678", "+8801712345678", "+639171234567", "+447700900123")
AGENT_SECONDS = 4 * 3600  # SIPp agents are bounded in time even in a long demo


def start_agents(lab: Lab) -> list[Agent]:
    return list(start_member_agents(lab.config, AGENT_SECONDS, lab.log_dir).values())


def http_json(
    url: str,
    body: dict[str, object] | None = None,
    timeout: float = 2.0,
    token: str | None = None,
) -> object:
    """GET (or POST ``body``) as JSON; ``token``: the bearer token (every /api/v1 call)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def bridge_ready(base: str) -> bool:
    try:
        out = http_json(f"{base}/readyz")
    except OSError:
        return False
    return isinstance(out, dict) and bool(out.get("ready"))


class BridgeError(RuntimeError):
    pass


def bridge_log_file(lab: Lab) -> Path:
    """Where every BridgeProcess of ``lab`` appends its output."""
    return lab.log_dir / "bridge.log"


class BridgeProcess:
    """`ccbridge run` on the lab's config as a subprocess of its own session, its output
    appended to ``log_file``, its clock set to ``at``: start, wait ready, kill, stop.

    ``slow_callback_ms`` (default: $CCBRIDGE_LOOP_DEBUG_MS, which the integration tests
    set) runs it with the event loop's slow-callback report; ``slow_callbacks()`` lists
    the reports its log got since this object first started it.
    """

    def __init__(
        self,
        lab: Lab,
        at: datetime | None = None,
        *,
        slow_callback_ms: float | None = None,
        log_level: str | None = None,
    ) -> None:
        self.lab = lab
        self.config: Config = lab.config
        # Another network namespace to run in (`ip netns exec`): the partition tests'
        # bridges, each on a host of its own; set with ``config`` and ``base`` to match.
        self.netns: str | None = None
        self.at = at
        self.log_level = log_level  # `run --log-level`; None: the config's
        self.first_start: float | None = None  # wall clock of the first spawn
        self.env: dict[str, str] = {}
        # More of the child's environment, e.g. a second bridge's identity and listeners
        # (CCBRIDGE_BRIDGE_ID, CCBRIDGE_AGI_LISTEN, CCBRIDGE_HTTP_LISTEN: ccbridge/cluster.py)
        self.extra_env: dict[str, str] = {}
        http = self.config.bridge.http_listen
        self.base = f"http://{http.host}:{http.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.slow_callback_ms = (
            slow_callback_ms if slow_callback_ms is not None else loopdebug.env_threshold_ms()
        )
        self._log_start: int | None = None  # log_file's size when first spawned

    @property
    def log_file(self) -> Path:
        return bridge_log_file(self.lab)

    def clock_at(self, wall: float) -> datetime | None:
        """The bridge's clock at the wall-clock instant ``wall``: it started at ``at`` on
        the first spawn and runs on, restarts included."""
        if self.at is None:
            return None
        started = self.first_start if self.first_start is not None else wall
        return self.at + timedelta(seconds=wall - started)

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process, not waiting for it to be ready."""
        self.lab.log_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        if self.first_start is None:
            self.first_start = now
        clock = self.clock_at(now)
        # A restarted bridge goes on from where its clock was, not from ``at`` again.
        self.env = {"CCBRIDGE_CLOCK": clock.isoformat()} if clock is not None else {}
        self.env.update(self.extra_env)
        command = [sys.executable, "-m", "ccbridge.cli", "run", self.config.source]
        if self.slow_callback_ms is not None:
            command += ["--slow-callback-ms", str(self.slow_callback_ms)]
        if self.log_level is not None:
            command += ["--log-level", self.log_level]
        if self.netns is not None:
            command = ["ip", "netns", "exec", self.netns, *command]  # it execs: the same pid
        with open(self.log_file, "ab") as log:  # the child keeps its own copy
            if self._log_start is None:
                self._log_start = log.tell()
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        self.starts += 1
        return self.proc

    async def start(self, ready_within: float = 20.0, poll: float = 0.1) -> float:
        """Start and wait for /readyz and every site's AGI guard to forward to it (when
        the config has one), checked every ``poll`` seconds; returns the seconds it took."""
        t0 = time.monotonic()
        # fork + exec of a large test process can take the loop past the tests' 50 ms gate
        proc = await asyncio.to_thread(self.spawn)

        def ready() -> bool:
            sites = self.lab.config.sites
            guarded = self.config.bridge.agi_guard is not None  # this bridge behind the guards
            return bridge_ready(self.base) and (
                not guarded or all(self.lab.guard_forwards(s) for s in sites)
            )

        while not await asyncio.to_thread(ready):
            if proc.poll() is not None:
                raise BridgeError(f"bridge exited ({proc.returncode}); see {self.log_file}")
            if time.monotonic() - t0 > ready_within:
                raise BridgeError(
                    f"bridge not ready after {ready_within:.0f}s; see {self.log_file}"
                )
            await asyncio.sleep(poll)
        return time.monotonic() - t0

    def log_text(self) -> str:
        """What the runs this object started have logged so far."""
        if self._log_start is None:
            return ""
        with open(self.log_file, "rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def slow_callbacks(self) -> list[str]:
        """The slow-callback lines (ccbridge.loopdebug) of the runs this object started,
        less those a ``stopped()`` window explains."""
        return loopdebug.unexplained(self.log_text())

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """SIGSTOP the bridge for the ``with`` block, SIGCONT after it (also on error),
        and note the stop in its log so the slow-callback gate can tell a callback the
        stop landed in from one that was slow by itself (loopdebug.unexplained)."""
        assert self.proc is not None, "the bridge is not running"
        pid = self.proc.pid
        os.killpg(pid, signal.SIGSTOP)
        began = time.monotonic()
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGCONT)
            seconds = time.monotonic() - began
            with open(self.log_file, "a") as log:
                log.write(loopdebug.stopped_line(seconds) + "\n")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash the dialplan's static fallback is there for."""
        if self.proc is not None and self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM (a clean stop), SIGKILL if it is not gone within 10 s."""
        if self.proc is not None and self.running:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def run_demo(lab: Lab, calls: int = 6, keep_running: bool = True) -> int:
    config = lab.config
    timings = lab.up()
    print(f"lab: {len(config.sites)} sites up in {timings['total']:.1f}s")
    agents: list[Agent] = []
    bridge = BridgeProcess(lab)
    base = bridge.base
    try:
        agents = start_agents(lab)  # inside: a SIPp that fails to start still takes the lab down
        try:
            asyncio.run(bridge.start(ready_within=15))
        except BridgeError as exc:
            print(exc)
            return 1
        print(f"bridge ready: FastAGI {config.bridge.agi_listen}, API {base}")
        numbers = list(config.numbers)
        for i in range(calls):
            number = numbers[i % len(numbers)]
            caller = DEMO_CALLERS[i % len(DEMO_CALLERS)]
            site = config.site(number.site)
            preview = http_json(
                f"{base}/api/v1/route/preview",
                {"did": number.did, "caller": caller},
                token=config.bridge.api_token.reveal() if config.bridge.api_token else None,
            )
            decision = preview["decision"] if isinstance(preview, dict) else {}
            result = place_calls(
                str(site.sip),
                number.did,
                caller=caller,
                calls=1,
                duration_ms=1500,
                local_port=6200 + i,
                max_seconds=20,
            )
            print(
                f"call {i + 1}: {mask_number(caller)} -> {number.did} at {site.name}: "
                f"{'answered' if result.ok else 'FAILED'}; routed to {decision.get('site')} "
                f"queue {decision.get('queue')} ({', '.join(decision.get('reasons', []))})"
            )
        if not keep_running:
            return 0
        print("lab and bridge running; Ctrl-C (or `make down` in another shell) stops them")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.is_set() and bridge.running:
                stop.wait(5)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        bridge.stop()
        for a in agents:
            a.stop()
        lab.down()
        print("stopped: bridge, agents and lab")
