"""sd_notify from the bridge: READY=1 once it serves, WATCHDOG=1 while its event loop turns.

The datagram protocol of systemd's sd_notify(3), written out (a dozen lines) rather than
taken from a library: the PyPI packages for it are either unmaintained (sdnotify, 2017)
or bind libsystemd (systemd-python, needs a C toolchain and headers). `ccbridge
supervise` speaks the same protocol on hosts without systemd.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping

from ccbridge.lifecycle import cancel_and_wait

log = logging.getLogger("ccbridge.watchdog")

# Pings per watchdog period: systemd's advice is at least two; four tolerates one late
# wake-up on a busy host without a false kill.
PINGS_PER_PERIOD = 4
# Test-only (never set in production): SIGUSR2 blocks the event loop this many seconds,
# the stall the watchdog and the AGI guard are there for.
STALL_ENV = "CCBRIDGE_TEST_STALL_SECONDS"


def socket_address(value: str) -> str | bytes:
    """NOTIFY_SOCKET as a sendto() address: '@name' is Linux's abstract namespace."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends notify datagrams to $NOTIFY_SOCKET; does nothing when it is not set."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        value = env.get("NOTIFY_SOCKET", "")
        self.address = socket_address(value) if value else None
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)  # a full receiver must never stall the loop

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """One datagram of KEY=VALUE lines; False when it could not be sent."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] = os.environ, pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings, from WATCHDOG_USEC (None: no watchdog asked).

    WATCHDOG_PID, when set, names the process the watchdog is for (not a child of it)."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid if pid is not None else os.getpid()):
        return None
    return int(usec) / 1_000_000 / PINGS_PER_PERIOD


async def heartbeat(notifier: Notifier, interval: float) -> None:
    """WATCHDOG=1 every ``interval`` seconds, from a task of the event loop: when the loop
    is blocked or the process stopped, the pings stop and the watchdog acts."""
    while True:
        notifier.send("WATCHDOG=1")
        await asyncio.sleep(interval)


def install_stall_hook(loop: asyncio.AbstractEventLoop, env: Mapping[str, str]) -> bool:
    """The test-only hook of STALL_ENV; returns whether it is on."""
    raw = env.get(STALL_ENV, "")
    try:
        seconds = float(raw) if raw else 0.0
    except ValueError:
        log.warning("%s=%r is not a number: stall hook off", STALL_ENV, raw)
        return False
    if seconds <= 0:
        return False

    def stall() -> None:
        log.warning("test hook: blocking the event loop for %.1fs", seconds)
        time.sleep(seconds)  # deliberately blocking: this is the fault under test

    loop.add_signal_handler(signal.SIGUSR2, stall)
    log.warning("test hook on: SIGUSR2 blocks the event loop for %.1fs (%s)", seconds, STALL_ENV)
    return True


class ServiceNotifier:
    """What the running bridge tells systemd or `ccbridge supervise`: ready, alive, stopping."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self.notifier = Notifier(env)
        self.interval = watchdog_interval(env)
        self._task: asyncio.Task[None] | None = None

    def ready(self, status: str) -> None:
        """Call once the bridge serves; starts the heartbeat when a watchdog is asked."""
        if not self.notifier.enabled:
            return
        self.notifier.send("READY=1", f"STATUS={status}")
        if self.interval is not None:
            self._task = asyncio.create_task(heartbeat(self.notifier, self.interval))
            log.info("watchdog heartbeat every %.2fs", self.interval)

    async def stopping(self) -> None:
        self.notifier.send("STOPPING=1")
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self.notifier.close()
