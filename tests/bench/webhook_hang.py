"""bench_e2e --webhook-hang: a CRM that accepts every connection and never answers, and real
queue calls that pop to it while the bench measures the route paths.

The pops come from calls the bench does not measure: the number's English callers
(``+441632960001``, the lab's default caller) take bangalore's held route to the real
``orders-en`` queue (the bench replaces only ``orders-hi`` and ``returns-en`` with its
target), where the lab's SIPp agents answer. Each such call rings an agent and is
answered: two pops, two webhook events for the hanging target. They run through every
step, the static ones too, so the ratios still compare like with like; the result adds
the bridge's pop and webhook counters read from its /metrics.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path
from types import TracebackType

from ccbridge.lab.sipp import SCENARIOS, Agent, caller_command, start_member_agents
from ccbridge.lab.sites import Lab

SECRET_ENV = "CCB_BENCH_WEBHOOK_SECRET"
POP_DID = "+918000000001"
POP_CALLER = "+441632960001"  # English: orders-en, a queue the bench leaves real
POP_RATE = 2.0  # calls/s through the queue, each answered for POP_CALL_MS
POP_CALL_MS = 400
POP_PORT = 6377


class HangingCrm:
    """A TCP server that accepts and then never reads nor answers: a hung CRM."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1024)
        self.port = self._sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/ccbridge"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never answered

    def close(self) -> None:
        self._sock.close()
        for conn in self.accepted:
            conn.close()


def config_section(url: str) -> str:
    """The deployment file's screen_pop section for the hanging target."""
    os.environ.setdefault(SECRET_ENV, "bench-only-secret")
    return (
        "\nscreen_pop:\n  webhooks:\n    crm:\n"
        f"      url: {url}\n      secret: {{env: {SECRET_ENV}}}\n"
        "      timeout: 5\n      max_age: 60\n      queue: 1000\n"
    )


class PopFeeder:
    """The lab's SIPp agents plus a steady SIPp caller into orders-en, for the whole run."""

    def __init__(self, lab: Lab, seconds: float) -> None:
        self.lab = lab
        self.seconds = seconds
        self._agents: dict[str, Agent] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._wd = tempfile.TemporaryDirectory(prefix="ccb-e2e-pops-")
        self.output = ""

    def __enter__(self) -> PopFeeder:
        wd = Path(self._wd.name)
        self._agents = start_member_agents(self.lab.config, self.seconds + 60, wd)
        calls = int(POP_RATE * self.seconds) + 1
        cmd = caller_command(
            SCENARIOS / "caller.xml",
            str(self.lab.config.site("bangalore").sip),
            POP_DID,
            caller=POP_CALLER,
            local_port=POP_PORT,
            calls=calls,
            max_seconds=self.seconds + 30,
            extra=("-r", str(POP_RATE), "-d", str(POP_CALL_MS), "-l", "20"),
        )
        self._proc = subprocess.Popen(
            cmd, cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self.output, _ = self._proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self.output, _ = self._proc.communicate()
        for agent in self._agents.values():
            agent.stop()
        self._wd.cleanup()


def pop_metrics(base: str) -> dict[str, float]:
    """The bridge's screen pop and webhook series, summed by name and labels."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("ccbridge_webhook_", "ccbridge_screen_pops_total")):
            key, _, value = line.rpartition(" ")
            if "_created" not in key:
                out[key] = float(value)
    return out
