"""Bridge start and stop on real sockets: a part that cannot start undoes the others and
names itself; a stop runs every cleanup and reports every failure; nothing leaks."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import Config, load_config
from ccbridge.config.model import HostPort
from ccbridge.lifecycle import SLOW_START_CPU_MS, Parts, StartError, StopError

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def taken() -> Iterator[int]:
    """A port another process holds: bound and listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    cfg = load_config(REPO / "examples" / "lab.yaml")
    # AMI at a port nobody listens on: the links keep retrying, as with a site down,
    # and never touch a lab that may be running on this machine.
    closed = free_port()
    sites = tuple(replace(s, ami=replace(s.ami, host="127.0.0.1", port=closed)) for s in cfg.sites)
    return replace(cfg, sites=sites)


def listening_on(config: Config, agi: int, http: int) -> Config:
    bridge = replace(
        config.bridge,
        agi_listen=HostPort("127.0.0.1", agi),
        http_listen=HostPort("127.0.0.1", http),
    )
    return replace(config, bridge=bridge)


def open_sockets() -> int:
    """Sockets this process holds, from /proc (real file descriptors, not Python objects)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


def others() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


def bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("part", ["HTTP API", "FastAGI server"])
async def test_a_port_taken_stops_what_started_and_names_the_part(
    config: Config, taken: int, part: str
) -> None:
    other = free_port()
    agi, http = (other, taken) if part == "HTTP API" else (taken, other)
    bridge = Bridge(listening_on(config, agi, http), Clock(T0))
    tasks, sockets = others(), open_sockets()
    with pytest.raises(StartError) as failed:
        await bridge.start()
    assert str(failed.value) == f"cannot start the {part} on 127.0.0.1:{taken}: address in use"
    # Everything that had started is stopped again (the other listener's socket, and for
    # FastAGI, which starts last, the AMI links' tasks); nothing is left half-set.
    assert others() == tasks
    assert open_sockets() == sockets
    assert bindable(other)
    assert not bridge.links and not bridge.agi.listening and bridge.http_port is None
    await bridge.stop()  # a no-op after a failed start


async def test_the_http_port_comes_from_the_runner(config: Config) -> None:
    bridge = Bridge(listening_on(config, 0, 0), Clock(T0))
    gc.unfreeze()
    await bridge.start()
    try:
        # Start-up's long-lived objects are out of the collector's reach (no long pause).
        assert gc.get_freeze_count() > 0
        assert bridge.http_port is not None and bridge.http_port > 0
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.http_port)
        writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert (await reader.readline()).split()[1] == b"200"
        writer.close()
        await writer.wait_closed()
    finally:
        await bridge.stop()


async def test_a_cleanup_that_raises_does_not_stop_the_others(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge = Bridge(listening_on(config, 0, 0), Clock(T0))
    assert bridge.selfservice is not None  # the lab's config has self-service
    real_agi_stop = bridge.agi.stop

    async def agi_stop_fails() -> None:
        raise RuntimeError("agi stop broke")

    async def close_fails() -> None:
        raise OSError("self-service close broke")

    monkeypatch.setattr(bridge.agi, "stop", agi_stop_fails)
    monkeypatch.setattr(bridge.selfservice, "close", close_fails)
    tasks, sockets = others(), open_sockets()
    await bridge.start()
    http_port = bridge.http_port
    assert http_port is not None and others() != tasks
    with pytest.raises(StopError) as failed:
        await bridge.stop()
    got = {(type(e).__name__, str(e), tuple(e.__notes__)) for e in failed.value.exceptions}
    assert got == {
        ("RuntimeError", "agi stop broke", ("while stopping the FastAGI server",)),
        ("OSError", "self-service close broke", ("while stopping the self-service client",)),
    }
    # The parts between and after them were still stopped: AMI links, the HTTP API.
    assert others() == tasks and bindable(http_port)
    await real_agi_stop()  # the one the test broke, so the test leaves nothing behind
    assert open_sockets() == sockets


async def test_parts_stop_newest_first_and_report_every_failure() -> None:
    stopped: list[str] = []

    def stopper(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        async def stop() -> None:
            stopped.append(name)
            if fail:
                raise ValueError(name)

        return stop

    async def started() -> int:
        return 1

    async def refuses() -> None:
        raise OSError(98, "Address already in use")

    parts = Parts()
    assert await parts.start("a", None, started, stopper("a", fail=True)) == 1
    await parts.start("b", "127.0.0.1:1", started, stopper("b"))
    parts.on_stop("c", stopper("c", fail=True))
    with pytest.raises(StartError, match=r"^cannot start the d on h:1: address in use$"):
        await parts.start("d", "h:1", refuses, stopper("d"))
    with pytest.raises(StopError) as failed:
        await parts.aclose()
    assert stopped == ["c", "b", "a"]
    assert [str(e) for e in failed.value.exceptions] == ["c", "a"]
    await parts.aclose()  # nothing left to stop: no error the second time


async def test_a_part_that_kept_the_loop_busy_is_logged_with_its_cpu(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each part's start is logged with its time and the loop thread's CPU: at DEBUG, at
    INFO from SLOW_START_CPU_MS (the line a slow start step is traced to)."""

    def at_once(spin_ms: float = 0.0):  # type: ignore[no-untyped-def]
        async def start() -> None:
            end = time.thread_time() + spin_ms / 1000
            while time.thread_time() < end:
                pass

        return start

    parts = Parts()
    caplog.set_level(logging.DEBUG, logger="ccbridge.lifecycle")
    await parts.start("a", None, at_once())
    await parts.start("b", None, at_once(spin_ms=SLOW_START_CPU_MS + 5))
    lines = {r.getMessage().split(" in ")[0]: r.levelno for r in caplog.records}
    assert lines == {"started the a": logging.DEBUG, "started the b": logging.INFO}, lines
    await parts.aclose()


def test_ccbridge_run_exits_non_zero_with_one_line(tmp_path: Path, taken: int) -> None:
    text = (REPO / "examples" / "lab.yaml").read_text()
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{taken}")
    text = text.replace("127.0.0.1:4573", f"127.0.0.1:{free_port()}")
    text = text.replace("  port: 5038\n", f"  port: {free_port()}\n")  # no lab's AMI
    assert f"port: {taken}" not in text and "5038" not in text
    cfg = tmp_path / "lab.yaml"
    cfg.write_text(text)
    env = {**os.environ, "CCBRIDGE_AMI_SECRET": "x", "CCBRIDGE_API_TOKEN": "t"}
    done = subprocess.run(
        [sys.executable, "-m", "ccbridge.cli", "run", str(cfg), "--log-level", "ERROR"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot start the HTTP API on 127.0.0.1:{taken}: address in use" in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""
