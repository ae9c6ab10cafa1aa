"""sd_notify from the bridge over real datagram sockets: READY, then WATCHDOG only while the
event loop turns; the test-only stall hook."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccbridge.sdnotify import (
    STALL_ENV,
    Notifier,
    ServiceNotifier,
    install_stall_hook,
    socket_address,
    watchdog_interval,
)


class Receiver:
    """A notify socket that timestamps each datagram as it arrives (in a thread)."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.got: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.got.append((time.monotonic(), data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def beats(self) -> list[float]:
        return [t for t, d in self.got if d == b"WATCHDOG=1"]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Receiver]]:
    path = str(tmp_path / "notify")
    r = Receiver(path)
    try:
        yield path, r
    finally:
        r.close()


def test_notifier_sends_key_value_lines(receiver: tuple[str, Receiver]) -> None:
    path, r = receiver
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled and n.send("READY=1", "STATUS=up")
    n.close()
    deadline = time.monotonic() + 2
    while not r.got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [d for _, d in r.got] == [b"READY=1\nSTATUS=up"]


def test_abstract_socket_names_start_with_a_nul() -> None:
    assert socket_address("@ccb-test") == b"\0ccb-test"
    assert socket_address("/run/notify") == "/run/notify"
    name = f"@ccb-sdnotify-test-{os.getpid()}"
    r = Receiver(socket_address(name))
    n = Notifier({"NOTIFY_SOCKET": name})
    try:
        assert n.send("WATCHDOG=1")
        deadline = time.monotonic() + 2
        while not r.got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.beats()
    finally:
        n.close()
        r.close()


def test_without_a_socket_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier({}).enabled and not Notifier({}).send("READY=1")
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    try:
        assert gone.enabled and not gone.send("READY=1")  # ENOENT: reported, not raised
    finally:
        gone.close()


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "1000000"}, 0.25),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4242"}, 0.5),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4243"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "1e6"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_from_the_environment(
    env: dict[str, str], interval: float | None
) -> None:
    assert watchdog_interval(env, pid=4242) == interval


async def test_heartbeat_stops_while_the_loop_is_blocked(receiver: tuple[str, Receiver]) -> None:
    path, r = receiver
    service = ServiceNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})  # 50 ms
    service.ready("test")
    await asyncio.sleep(0.3)
    blocked = time.monotonic()
    time.sleep(0.5)  # noqa: ASYNC251 - the fault under test: a blocking call in the loop
    await asyncio.sleep(0.3)
    await service.stopping()
    await asyncio.sleep(0.05)
    assert r.got[0][1].startswith(b"READY=1\nSTATUS=test")
    assert r.got[-1][1] == b"STOPPING=1"
    beats = r.beats()
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    during = [b for b in beats if blocked + 0.02 < b < blocked + 0.48]
    assert during == []  # no ping while the loop was blocked
    assert max(gaps) >= 0.45
    assert sorted(gaps)[len(gaps) // 2] < 0.15  # otherwise every interval or so


async def test_stall_hook_is_off_unless_asked() -> None:
    loop = asyncio.get_running_loop()
    assert not install_stall_hook(loop, {})
    assert not install_stall_hook(loop, {STALL_ENV: "soon"})
    assert not install_stall_hook(loop, {STALL_ENV: "0"})


async def test_stall_hook_blocks_the_loop_on_sigusr2() -> None:
    loop = asyncio.get_running_loop()
    assert install_stall_hook(loop, {STALL_ENV: "0.3"})
    try:
        ticks: list[float] = []

        async def tick() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.02)

        task = asyncio.create_task(tick())
        await asyncio.sleep(0.1)
        os.kill(os.getpid(), signal.SIGUSR2)
        await asyncio.sleep(0.5)
        task.cancel()
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert max(gaps) >= 0.28
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)
