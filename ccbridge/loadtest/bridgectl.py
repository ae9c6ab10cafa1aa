"""The bridge under test: the lab's bridge subprocess (start, wait ready, kill, restart) and
the authenticated API calls the fault injector makes (drain, undrain)."""

from __future__ import annotations

import urllib.error
import urllib.request

from ccbridge.lab import demo
from ccbridge.lab.demo import BridgeError

__all__ = ["BridgeError", "BridgeProcess"]


class BridgeProcess(demo.BridgeProcess):
    """The lab's bridge process (start, kill, stop, log file), plus its API for faults."""

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
