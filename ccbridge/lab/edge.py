"""The lab's SIP edge: Kamailio (Debian's `kamailio`) in front of the sites, on its own
loopback address with the kamailio.cfg and dispatcher.list `ccbridge render` writes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ccbridge.config.edge import EDGE_DIR, EdgeSettings
from ccbridge.config.model import Config
from ccbridge.lab.rootfs import LabError
from ccbridge.lab.sites import _alive, _listening, _tail
from ccbridge.render import EDGE_CONFIG, render_edge


def kamailio_binary() -> str:
    found = shutil.which("kamailio") or "/usr/sbin/kamailio"
    if not Path(found).exists():
        raise LabError("the SIP edge needs Kamailio: apt-get install kamailio (make test does)")
    return found


class LabEdge:
    """Start, check and stop the edge of ``config`` under ``lab_dir``/edge."""

    def __init__(self, config: Config, lab_dir: Path) -> None:
        if config.edge is None:
            raise LabError("the config has no `edge:` section")
        self.config = config
        self.settings: EdgeSettings = config.edge
        self.dir = lab_dir / EDGE_DIR
        self.pidfile = self.dir / "kamailio.pid"
        self.log = lab_dir / "logs" / "edge.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def write_configs(self) -> Path:
        """kamailio.cfg and dispatcher.list in the lab's edge folder; returns the cfg."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, text in render_edge(self.config, install_dir=str(self.dir)).items():
            (self.dir / name).write_text(text, encoding="utf-8")
        return self.dir / EDGE_CONFIG

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self, timeout: float = 10.0) -> int:
        """Run Kamailio in the foreground of its own session; wait until its RPC answers."""
        if (pid := self.pid()) is not None:
            return pid
        cfg = self.write_configs()
        run = self.dir / "run"
        run.mkdir(exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self._proc = subprocess.Popen(
                [kamailio_binary(), "-f", str(cfg), "-DD", "-E", "-P", str(self.pidfile),
                 "-Y", str(run), "-w", str(self.dir)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its worker processes go with it on stop
            )  # fmt: skip
        rpc = self.settings.rpc
        deadline = time.monotonic() + timeout
        while not _listening(rpc.host, rpc.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = _tail(self.log)
                self.stop()
                raise LabError(f"the SIP edge did not start\n{tail}")
            time.sleep(0.05)
        return self._proc.pid

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        pid = proc.pid if proc is not None else self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5.0
            while _alive(pid) and time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    break
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # workers left behind, if any
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
        self.pidfile.unlink(missing_ok=True)
