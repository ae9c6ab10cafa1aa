"""The bridge under test as a subprocess: start, wait ready, kill, restart, drain over the API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from ccbridge.config.model import Config
from ccbridge.lab.demo import bridge_ready, start_bridge
from ccbridge.lab.sites import Lab


class BridgeError(RuntimeError):
    pass


class BridgeProcess:
    """`ccbridge run CONFIG` started the way `make run` does, its clock set to ``at``."""

    def __init__(self, lab: Lab, at: datetime | None) -> None:
        self.lab = lab
        self.config: Config = lab.config
        self.env = {"CCBRIDGE_CLOCK": at.isoformat()} if at is not None else {}
        http = self.config.bridge.http_listen
        self.base = f"http://{http.host}:{http.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_file(self) -> Path:
        return self.lab.log_dir / "bridge.log"

    async def start(self, ready_within: float = 20.0) -> float:
        """Start and wait for /readyz; returns the seconds it took."""
        t0 = time.monotonic()
        self.proc = start_bridge(self.lab, self.env)
        self.starts += 1
        while not await asyncio.to_thread(bridge_ready, self.base):
            if self.proc.poll() is not None:
                raise BridgeError(f"bridge exited ({self.proc.returncode}); see {self.log_file}")
            if time.monotonic() - t0 > ready_within:
                raise BridgeError(f"bridge not ready after {ready_within:.0f}s")
            await asyncio.sleep(0.1)
        return time.monotonic() - t0

    def kill(self) -> None:
        """SIGKILL: the crash the dialplan's static fallback is there for."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def api(self, method: str, path: str, timeout: float = 3.0) -> int:
        """An authenticated API call; returns the HTTP status."""
        token = self.config.bridge.api_token
        headers = {"Authorization": f"Bearer {token.reveal()}"} if token else {}
        data = b"" if method == "POST" else None
        req = urllib.request.Request(f"{self.base}{path}", data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
