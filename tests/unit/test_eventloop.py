"""The bridge's event loop (uvloop or asyncio's) and the slow-callback gate on both."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from ccbridge import eventloop, loopdebug
from ccbridge.ami.codec import AmiMessage
from ccbridge.ami.pano import Protocol
from ccbridge.config.loader import parse_config
from ccbridge.config.model import EventLoop
from ccbridge.config.yamlsrc import ConfigError
from tests.polling import until

REPO = Path(__file__).resolve().parents[2]
LOOPS = (EventLoop.ASYNCIO, EventLoop.UVLOOP)


async def _slow_reports(limit_ms: float) -> list[str]:
    """A 60 ms plain callback, a 60 ms AMI chunk and a fast one, under the gate."""
    loop = asyncio.get_running_loop()
    found = loopdebug.report_slow_callbacks(loop, limit_ms)
    seen: list[str] = []

    def on_event(event: AmiMessage) -> None:
        seen.append(event["Event"])
        if event["Event"] == "Slow":
            time.sleep(0.06)  # the fault under test: an AMI handler holding the loop

    async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        writer.write(b"Event: Fast\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"Event: Slow\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    class Manager:  # what panoramisk's Manager is to the protocol when the link closes
        def connection_lost(self, exc: object) -> None:
            pass

    server = await asyncio.start_server(site, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        transport, proto = await loop.create_connection(
            lambda: Protocol(on_event), "127.0.0.1", port
        )
        proto.factory = Manager()  # connection_made resets it
        await until(lambda: "Slow" in seen, 5, "the slow AMI event")
        loop.call_soon(time.sleep, 0.06)  # the fault under test: a plain slow callback
        await asyncio.sleep(0.02)
        transport.close()
        await proto.gone
    finally:
        server.close()
        await server.wait_closed()
        loopdebug.stop_reporting(loop, found)
    assert seen == ["Fast", "Slow"]
    return found.lines


@pytest.mark.parametrize("choice", LOOPS)
def test_the_gate_reports_a_60_ms_callback_and_a_60_ms_ami_chunk_on_either_loop(
    choice: EventLoop,
) -> None:
    lines = eventloop.run(_slow_reports(50), choice)
    # Another callback may be slow on a busy machine too: these two must be there.
    sleeping = [x for x in lines if "sleep" in x]
    ami = [x for x in lines if "AMI data_received" in x or "_SelectorSocketTransport" in x]
    assert len(sleeping) == 1 and sleeping[0].startswith(loopdebug.MARK), lines
    assert len(ami) == 1 and "(limit 50 ms" in ami[0], lines


def test_the_io_timer_is_only_for_a_debug_loop_that_does_not_time_io_itself() -> None:
    async def timers() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        off = loopdebug.io_timer(loop, "x") is None
        loop.set_debug(True)
        on = loopdebug.io_timer(loop, "x") is not None
        loop.set_debug(False)
        return off, on

    assert eventloop.run(timers(), EventLoop.ASYNCIO) == (True, False)
    assert eventloop.run(timers(), EventLoop.UVLOOP) == (True, True)


def test_the_loop_is_uvloop_when_asked_unless_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvloop

    async def kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert eventloop.run(kind(), EventLoop.AUTO).startswith("uvloop")
    assert eventloop.run(kind(), EventLoop.UVLOOP).startswith("uvloop")
    assert eventloop.run(kind(), EventLoop.ASYNCIO).startswith("asyncio")
    assert eventloop.loop_factory(EventLoop.AUTO)[1] == f"uvloop {uvloop.__version__}"
    # uvloop not importable (a platform without a wheel): asyncio's loop, either way.
    monkeypatch.setitem(sys.modules, "uvloop", None)
    for choice in (EventLoop.AUTO, EventLoop.UVLOOP):
        factory, name = eventloop.loop_factory(choice)
        assert (factory, name) == (asyncio.new_event_loop, "asyncio")


def _bridge_yaml(extra: str) -> str:
    text = (REPO / "examples" / "lab.yaml").read_text()
    return text.replace("  max_agi_sessions: 1000\n", f"  max_agi_sessions: 1000\n{extra}", 1)


def test_event_loop_in_the_config_defaults_to_asyncio_and_refuses_garbage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "ami-secret-from-env")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "token-from-env")
    base = REPO / "examples"
    assert parse_config(_bridge_yaml(""), "d.yaml", base).bridge.event_loop is EventLoop.ASYNCIO
    got = parse_config(_bridge_yaml("  event_loop: uvloop\n"), "d.yaml", base)
    assert got.bridge.event_loop is EventLoop.UVLOOP
    for bad in ("libuv", "[uvloop]", "1", "''"):
        with pytest.raises(ConfigError) as info:
            parse_config(_bridge_yaml(f"  event_loop: {bad}\n"), "d.yaml", base)
        (problem,) = info.value.problems
        assert "bridge.event_loop" in str(problem), str(problem)
        assert "asyncio, uvloop, auto" in str(problem) or "expected" in str(problem)
