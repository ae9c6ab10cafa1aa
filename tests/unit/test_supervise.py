"""`ccbridge supervise` over a real notify socket, with small real child processes playing
the bridge: a heartbeat that stops is killed and restarted; garbage is counted, ignored."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from ccbridge.config.model import Watchdog
from ccbridge.supervise import Supervisor, parse_notify

# A child that plays the bridge: READY, then WATCHDOG every 50 ms for BEATS pings, then it
# stays alive but silent (hung). GARBAGE=1: it first sends datagrams that are not notify
# messages. EXIT=1: it exits after its pings instead of hanging.
CHILD = """
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
addr = os.environ["NOTIFY_SOCKET"]
assert os.environ["WATCHDOG_USEC"] == os.environ["EXPECT_USEC"]
if os.environ.get("GARBAGE"):
    for junk in (b"\\xff\\xfe\\x00", b"no equals sign", b"lower=1", b"", b"X" * 5000):
        s.sendto(junk, addr)
s.sendto(b"READY=1\\nSTATUS=child", addr)
for _ in range(int(os.environ["BEATS"])):
    s.sendto(b"WATCHDOG=1", addr)
    time.sleep(0.05)
if os.environ.get("EXIT"):
    sys.exit(3)
time.sleep(60)
"""

FAST = Watchdog(timeout=0.3, start_timeout=2.0, restart_delay=0.05, max_restart_delay=0.2)


def child_argv(tmp_path: Path) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script)]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "EXPECT_USEC": "300000", "BEATS": "6", **extra}


async def run_until(sup: Supervisor, done: object, within: float = 8.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    deadline = time.monotonic() + within
    try:
        while not done():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"not done: {sup.stats}"
            assert not task.done(), task
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 15) == 0


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (b"READY=1", {"READY": "1"}),
        (b"READY=1\nSTATUS=serving on x=y\n", {"READY": "1", "STATUS": "serving on x=y"}),
        (b"WATCHDOG=1", {"WATCHDOG": "1"}),
        (b"", None),
        (b"\n\n", None),
        (b"\xff\xfe", None),
        (b"READY", None),
        (b"ready=1", None),
        (b"=1", None),
        (b"READY=1\ngarbage", None),
        (b"A=" + b"x" * 5000, None),
    ],
)
def test_parse_notify(data: bytes, fields: dict[str, str] | None) -> None:
    assert parse_notify(data) == fields


async def test_a_silent_bridge_is_killed_and_restarted(tmp_path: Path) -> None:
    pid_file = tmp_path / "bridge.pid"
    sup = Supervisor(child_argv(tmp_path), FAST, env=env(), pid_file=pid_file)
    pids: list[int] = []

    def two_kills() -> bool:
        text = pid_file.read_text().strip() if pid_file.exists() else ""
        if text and (not pids or pids[-1] != int(text)):
            pids.append(int(text))
        return sup.stats.watchdog_kills >= 2 and sup.stats.starts >= 3

    await run_until(sup, two_kills)
    assert sup.stats.exits == 0 and sup.stats.garbage == 0 and sup.stats.foreign == 0
    assert len(set(pids)) >= 2  # the pid file follows the running bridge
    assert all(_zombie_or_gone(pid) for pid in pids[:-1])
    assert not await asyncio.to_thread(pid_file.exists)  # removed when the supervisor stops


def _zombie_or_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


async def test_the_kill_comes_within_the_timeout_of_the_last_beat(tmp_path: Path) -> None:
    sup = Supervisor(child_argv(tmp_path), FAST, env=env())
    beats: list[float] = []
    original = sup.on_datagram

    def spy(data: bytes, sender: int | None) -> None:
        if data == b"WATCHDOG=1":
            beats.append(time.monotonic())
        original(data, sender)

    sup.on_datagram = spy  # type: ignore[method-assign]
    await run_until(sup, lambda: sup.stats.watchdog_kills >= 1)
    assert sup.stats.last_kill_at is not None
    silent_for = sup.stats.last_kill_at - beats[-1]
    assert FAST.timeout <= silent_for < FAST.timeout + 0.25, silent_for


async def test_garbage_and_foreign_datagrams_are_counted_and_ignored(tmp_path: Path) -> None:
    sup = Supervisor(child_argv(tmp_path), FAST, env=env(GARBAGE="1", BEATS="1000"))

    def ready() -> bool:
        return sup.ready

    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        deadline = time.monotonic() + 8
        while not (ready() and sup.stats.garbage >= 4):
            assert time.monotonic() < deadline, sup.stats
            await asyncio.sleep(0.02)
        # Another process on the machine writes to the socket: it is not the bridge.
        path = sup.notify_path
        assert path is not None and path.exists()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.sendto(b"WATCHDOG=1", str(path))
            s.sendto(b"STOPPING=1", str(path))
        finally:
            s.close()
        while sup.stats.foreign < 2:
            assert time.monotonic() < deadline, sup.stats
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # the child keeps beating: nobody is killed
        assert sup.stats.watchdog_kills == 0 and sup.stats.starts == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    # '' is not a datagram of its own on a datagram socket: 4 or 5 depending on the kernel
    assert sup.stats.garbage in (4, 5)


async def test_a_bridge_that_exits_is_restarted_with_growing_delays(tmp_path: Path) -> None:
    sup = Supervisor(child_argv(tmp_path), FAST, env=env(EXIT="1", BEATS="2"))
    await run_until(sup, lambda: sup.stats.exits >= 3)
    assert sup.stats.watchdog_kills == 0


async def test_a_bridge_that_never_gets_ready_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "mute.py"
    script.write_text("import time\ntime.sleep(60)\n")
    slow = Watchdog(timeout=0.3, start_timeout=0.4, restart_delay=0.05, max_restart_delay=0.1)
    sup = Supervisor([sys.executable, str(script)], slow, env=env())
    await run_until(sup, lambda: sup.stats.watchdog_kills >= 1)
    assert not sup.ready


async def test_stopping_the_supervisor_stops_the_bridge(tmp_path: Path) -> None:
    pid_file = tmp_path / "bridge.pid"
    sup = Supervisor(child_argv(tmp_path), FAST, env=env(BEATS="1000"), pid_file=pid_file)
    await run_until(sup, lambda: sup.ready)
    assert sup.child is not None and sup.child.returncode is not None
    assert sup.stats.watchdog_kills == 0
