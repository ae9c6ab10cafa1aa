"""`ccbridge supervise`: run the bridge, and restart it when it exits or its heartbeat stops.

For hosts without systemd, and for the lab: the same NOTIFY_SOCKET datagram protocol as
systemd's `Type=notify` + `WatchdogSec=` (deploy/systemd/ccbridge.service). A bridge
whose event loop stops turning (blocked, stopped, swapping) sends no WATCHDOG=1: it is
SIGKILLed, which closes its sockets so calls waiting on it take their fallback at once,
and started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ccbridge.config.model import Watchdog

log = logging.getLogger("ccbridge.supervise")

_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_MAX_DATAGRAM = 4096
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
# A run this long after READY=1 counts as healthy: the restart delay starts over.
_HEALTHY_RUN = 10.0
_GARBAGE_LOG_INTERVAL = 1.0


def parse_notify(data: bytes) -> dict[str, str] | None:
    """A notify datagram's KEY=VALUE lines; None when it is not one (garbage)."""
    if not data or len(data) > _MAX_DATAGRAM:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not _KEY_RE.match(key):
            return None
        fields[key] = value
    return fields or None


@dataclass
class SupervisorStats:
    starts: int = 0
    exits: int = 0  # the bridge ended on its own
    watchdog_kills: int = 0  # heartbeat stopped (or never READY): SIGKILLed
    garbage: int = 0  # datagrams that are not notify messages: ignored
    foreign: int = 0  # datagrams from a process that is not the bridge: ignored
    last_kill_at: float | None = None  # time.monotonic() of the last watchdog kill


class Supervisor:
    """Runs ``argv`` with NOTIFY_SOCKET and WATCHDOG_USEC set, forever, until stopped."""

    def __init__(
        self,
        argv: Sequence[str],
        watchdog: Watchdog,
        *,
        env: Mapping[str, str] | None = None,
        pid_file: Path | None = None,
        tick: float = 0.05,
    ) -> None:
        self.argv = list(argv)
        self.watchdog = watchdog
        self.env = dict(os.environ if env is None else env)
        self.pid_file = pid_file
        self.tick = tick
        self.stats = SupervisorStats()
        self.child: asyncio.subprocess.Process | None = None
        self.ready = False
        self._last_beat = 0.0
        self._sock: socket.socket | None = None
        self.notify_path: Path | None = None  # NOTIFY_SOCKET while running
        self._last_garbage_log = 0.0

    # -- the notify socket -------------------------------------------------------------
    def _open_socket(self, path: Path) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.bind(str(path))
        # The kernel stamps each datagram with its sender: only the bridge may feed us.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.setblocking(False)
        return sock

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, anc, _flags, _addr = self._sock.recvmsg(
                    _MAX_DATAGRAM + 1, socket.CMSG_SPACE(_UCRED.size)
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("notify socket read failed: %s", exc)
                return
            self.on_datagram(data, _sender(anc))

    def on_datagram(self, data: bytes, sender: int | None) -> None:
        """One datagram: from the bridge and well formed, or counted and ignored."""
        if not self._from_child(sender):
            self.stats.foreign += 1
            self._log_ignored(f"from pid {sender}, not the bridge")
            return
        fields = parse_notify(data)
        if fields is None:
            self.stats.garbage += 1
            self._log_ignored(f"not KEY=VALUE lines ({len(data)} bytes)")
            return
        now = time.monotonic()
        if fields.get("READY") == "1" and not self.ready:
            self.ready = True
            self._last_beat = now
            log.info("bridge ready: %s", fields.get("STATUS", ""))
        if fields.get("WATCHDOG") == "1":
            self._last_beat = now

    def _from_child(self, pid: int | None) -> bool:
        child = self.child
        if child is None or pid is None:
            return False
        if pid == child.pid:
            return True
        try:
            return os.getpgid(pid) == child.pid  # the bridge's own children (own session)
        except OSError:
            return False

    def _log_ignored(self, why: str) -> None:
        now = time.monotonic()
        if now - self._last_garbage_log >= _GARBAGE_LOG_INTERVAL:
            self._last_garbage_log = now
            log.warning(
                "notify datagram ignored: %s (garbage %d, foreign %d so far)",
                why,
                self.stats.garbage,
                self.stats.foreign,
            )

    # -- the child ---------------------------------------------------------------------
    async def _spawn(self, notify_path: Path) -> asyncio.subprocess.Process:
        env = dict(self.env)
        env["NOTIFY_SOCKET"] = str(notify_path)
        env["WATCHDOG_USEC"] = str(int(self.watchdog.timeout * 1_000_000))
        env.pop("WATCHDOG_PID", None)  # for the child itself, whatever its pid
        proc = await asyncio.create_subprocess_exec(
            *self.argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.child = proc
        self.ready = False
        self.stats.starts += 1
        if self.pid_file is not None:
            self.pid_file.write_text(f"{proc.pid}\n")
        log.info("bridge started, pid %d (start %d)", proc.pid, self.stats.starts)
        return proc

    def _kill(self, proc: asyncio.subprocess.Process, why: str) -> None:
        log.error("bridge pid %d %s: SIGKILL", proc.pid, why)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.stats.watchdog_kills += 1
        self.stats.last_kill_at = time.monotonic()

    async def _watch(self, proc: asyncio.subprocess.Process, stop: asyncio.Event) -> bool:
        """Until the child is gone; True when it had run healthily for a while."""
        started = time.monotonic()
        ready_at: float | None = None
        killed = False
        while proc.returncode is None:
            if stop.is_set():
                await self._terminate(proc)
                break
            now = time.monotonic()
            if self.ready and ready_at is None:
                ready_at = now
            if not killed and not self.ready and now - started > self.watchdog.start_timeout:
                self._kill(proc, f"not ready after {self.watchdog.start_timeout:g}s")
                killed = True
            elif not killed and self.ready and now - self._last_beat > self.watchdog.timeout:
                self._kill(proc, f"sent no heartbeat for {now - self._last_beat:.2f}s")
                killed = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), self.tick)
        await proc.wait()
        if not stop.is_set() and not killed:
            self.stats.exits += 1
            log.warning("bridge pid %d ended (status %s)", proc.pid, proc.returncode)
        return ready_at is not None and time.monotonic() - ready_at >= _HEALTHY_RUN

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)  # a stopped bridge must be able to exit
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), self.watchdog.stop_timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def run(self, stop: asyncio.Event) -> int:
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory(prefix="ccb-supervise-") as tmp:
            path = self.notify_path = Path(tmp) / "notify"
            sock = self._sock = self._open_socket(path)
            loop.add_reader(sock.fileno(), self._on_readable)
            failures = 0
            try:
                while not stop.is_set():
                    healthy = await self._watch(await self._spawn(path), stop)
                    if stop.is_set():
                        break
                    # A bridge that keeps failing is restarted less and less often.
                    failures = 0 if healthy else failures + 1
                    delay = min(
                        self.watchdog.restart_delay * 2 ** min(failures, 16),
                        self.watchdog.max_restart_delay,
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
            finally:
                loop.remove_reader(sock.fileno())
                sock.close()
                self._sock = self.notify_path = None
                if self.child is not None and self.child.returncode is None:
                    await self._terminate(self.child)
                if self.pid_file is not None:
                    self.pid_file.unlink(missing_ok=True)
        return 0


def _sender(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if (
            level == socket.SOL_SOCKET
            and kind == socket.SCM_CREDENTIALS
            and len(data) >= _UCRED.size
        ):
            pid, _uid, _gid = _UCRED.unpack(data[: _UCRED.size])
            return int(pid)
    return None


def supervise(argv: Sequence[str], watchdog: Watchdog, pid_file: Path | None = None) -> int:
    """Run until SIGTERM or SIGINT; the bridge gets SIGTERM then."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await Supervisor(argv, watchdog, pid_file=pid_file).run(stop)

    return asyncio.run(main())
