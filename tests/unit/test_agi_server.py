"""FastAGI server tests over real loopback sockets, with the test playing Asterisk."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import pytest

from ccbridge import eventloop
from ccbridge.agi.server import (
    _ADOPT_NOW,
    AgiCommandError,
    AgiHangup,
    AgiSession,
    FastAgiServer,
    Handler,
    SessionOutcome,
)
from ccbridge.config.model import EventLoop

LOGGER = "ccbridge.agi"
CALLER = "919876543210"


def header(script: str = "route", callerid: str = CALLER) -> bytes:
    return (
        b"agi_network: yes\n"
        b"agi_network_script: %s\n"
        b"agi_request: agi://127.0.0.1/%s\n"
        b"agi_channel: PJSIP/carrier-00000001\n"
        b"agi_language: en\n"
        b"agi_uniqueid: 1732265000.1\n"
        b"agi_callerid: %s\n"
        b"agi_context: from-carrier\n"
        b"agi_extension: 18005550100\n"
        b"agi_arg_1: sales\n"
        b"\n"
    ) % (script.encode(), script.encode(), callerid.encode())


@dataclass
class Ends:
    """Records on_session_end calls and lets a test wait for them."""

    calls: list[tuple[str, SessionOutcome, float]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, route: str, outcome: SessionOutcome, duration_s: float) -> None:
        self.calls.append((route, outcome, duration_s))
        self._changed.set()

    async def wait(self, count: int, within: float = 3.0) -> list[tuple[str, SessionOutcome]]:
        async with asyncio.timeout(within):
            while len(self.calls) < count:
                self._changed.clear()
                await self._changed.wait()
        return [(route, outcome) for route, outcome, _ in self.calls]


@asynccontextmanager
async def running(
    handlers: Mapping[str, Handler], **kwargs: float
) -> AsyncIterator[tuple[FastAgiServer, Ends]]:
    ends = Ends()
    server = FastAgiServer(handlers, "127.0.0.1", 0, on_session_end=ends, **kwargs)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server, ends
    finally:
        await server.stop()
        assert not server.listening


class Asterisk:
    """The Asterisk side of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Asterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self, within: float = 2.0) -> str:
        async with asyncio.timeout(within):
            raw = await self.reader.readline()
        assert raw.endswith(b"\n"), raw
        return raw.decode()[:-1]

    async def rest(self, within: float = 2.0) -> bytes:
        """Everything until the server closes; a reset counts as closed."""
        async with asyncio.timeout(within):
            try:
                return await self.reader.read()
            except ConnectionResetError:
                return b""

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError):
            await self.writer.wait_closed()


@asynccontextmanager
async def asterisk(port: int) -> AsyncIterator[Asterisk]:
    client = await Asterisk.connect(port)
    try:
        yield client
    finally:
        await client.close()


async def route_two_vars(session: AgiSession) -> None:
    await session.set_variable("CCB_ROUTE", "queue-sales")
    await session.set_variable("CCB_SITE", session.request.query.get("site", "in"))


async def normal_session(port: int) -> float:
    """Play a complete, well-behaved call against route_two_vars; return its duration."""
    started = time.monotonic()
    async with asterisk(port) as ast:
        await ast.send(header())
        assert await ast.line() == 'SET VARIABLE CCB_ROUTE "queue-sales"'
        await ast.send(b"200 result=1\n")
        assert await ast.line() == 'SET VARIABLE CCB_SITE "in"'
        await ast.send(b"200 result=1\n")
        assert await ast.rest() == b""
    return time.monotonic() - started


async def test_normal_session_sets_two_variables() -> None:
    async with running({"/route": route_two_vars}) as (server, ends):
        assert server.listening
        assert server.port > 0
        await normal_session(server.port)
        assert await ends.wait(1) == [("route", SessionOutcome.OK)]
        assert ends.calls[0][2] >= 0.0
        assert server.stats.sessions_total == 1
        assert server.stats.sessions_active == 0
        assert sum(server.stats.errors_total.values()) == 0


async def test_pipelined_set_variables_and_get_variable() -> None:
    seen: dict[str, str | None] = {}

    async def handler(session: AgiSession) -> None:
        await session.set_variables({"A": "1", "B": 'two "2"', "C": ""}, pipelined=True)
        seen["num"] = await session.get_variable("CALLERID(num)")
        seen["unset"] = await session.get_variable("NOPE")
        await session.verbose("done", 2)

    async with running({"route": handler}) as (server, ends), asterisk(server.port) as ast:
        await ast.send(header())
        # All three arrive before any reply: that is the point of pipelining.
        assert [await ast.line() for _ in range(3)] == [
            'SET VARIABLE A "1"',
            'SET VARIABLE B "two \\"2\\""',
            'SET VARIABLE C ""',
        ]
        await ast.send(b"200 result=1\n" * 3)
        assert await ast.line() == "GET VARIABLE CALLERID(num)"
        await ast.send(b"200 result=1 (919876543210)\n")
        assert await ast.line() == "GET VARIABLE NOPE"
        await ast.send(b"200 result=0\n")
        assert await ast.line() == 'VERBOSE "done" 2'
        await ast.send(b"200 result=1\n")
        assert await ast.rest() == b""
        assert await ends.wait(1) == [("route", SessionOutcome.OK)]
    assert seen == {"num": CALLER, "unset": None}


async def test_set_variables_is_lockstep_by_default() -> None:
    async def handler(session: AgiSession) -> None:
        await session.set_variables({"A": "1", "B": "2"})

    async with running({"route": handler}) as (server, ends), asterisk(server.port) as ast:
        await ast.send(header())
        assert await ast.line() == 'SET VARIABLE A "1"'
        # Asterisk reads one command per poll(): the next must wait for this reply.
        with pytest.raises(TimeoutError):
            await ast.line(within=0.1)
        await ast.send(b"200 result=1\n")
        assert await ast.line() == 'SET VARIABLE B "2"'
        await ast.send(b"200 result=1\n")
        assert await ast.rest() == b""
        assert await ends.wait(1) == [("route", SessionOutcome.OK)]


async def test_connect_and_close_does_not_block_the_server() -> None:
    async with running({"route": route_two_vars}) as (server, ends):
        for _ in range(3):
            probe = await Asterisk.connect(server.port)
            await probe.close()
        assert await ends.wait(3) == [("", SessionOutcome.NO_REQUEST)] * 3
        assert await normal_session(server.port) < 1.0
        assert (await ends.wait(4))[-1] == ("route", SessionOutcome.OK)
        assert server.stats.errors_total[SessionOutcome.NO_REQUEST] == 3


async def test_half_header_then_silence_is_dropped_while_others_proceed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with running({"route": route_two_vars}, header_timeout=0.5) as (server, ends):
        async with asterisk(server.port) as stuck:
            started = time.monotonic()
            await stuck.send(header()[:60])
            # At the same moment a normal call must be served at full speed.
            normal = await normal_session(server.port)
            assert normal < 0.2
            assert await ends.wait(1) == [("route", SessionOutcome.OK)]
            assert await stuck.rest(within=2.0) == b""
            dropped_after = time.monotonic() - started
        assert 0.4 <= dropped_after < 1.0
        assert (await ends.wait(2))[1] == ("", SessionOutcome.HEADER_TIMEOUT)
    records = [r for r in caplog.records if "no complete request" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is None


async def test_garbage_bytes_dropped_quickly_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with running({"route": route_two_vars}) as (server, ends):
        async with asterisk(server.port) as ast:
            started = time.monotonic()
            await ast.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xde\xad\n")
            assert await ast.rest() == b""
            assert time.monotonic() - started < 0.5
        assert await ends.wait(1) == [("", SessionOutcome.PROTOCOL_ERROR)]
        await normal_session(server.port)
    records = [r for r in caplog.records if "not a FastAGI request" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is None


async def test_megabyte_line_dropped_quickly() -> None:
    async with running({"route": route_two_vars}) as (server, ends):
        async with asterisk(server.port) as ast:
            started = time.monotonic()
            # The server may reset us while we are still writing.
            with suppress(ConnectionError):
                await ast.send(b"agi_network_script: " + b"x" * (1024 * 1024))
            assert await ast.rest() == b""
            assert time.monotonic() - started < 1.0
        assert await ends.wait(1) == [("", SessionOutcome.PROTOCOL_ERROR)]
        assert await normal_session(server.port) < 1.0


async def test_handler_exception_is_logged_masked_and_answered_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    async def broken(session: AgiSession) -> None:
        raise KeyError("no such queue")

    async with running({"broken": broken, "route": route_two_vars}) as (server, ends):
        async with asterisk(server.port) as ast:
            await ast.send(header("broken"))
            assert await ast.rest() == b"FAILURE\n"
        assert await ends.wait(1) == [("broken", SessionOutcome.HANDLER_ERROR)]
        await normal_session(server.port)
        assert server.stats.errors_total[SessionOutcome.HANDLER_ERROR] == 1
    [record] = [r for r in caplog.records if "handler failed" in r.getMessage()]
    message = record.getMessage()
    assert "'broken'" in message
    assert "91********10" in message  # ccbridge.logs.mask_number, as every log line
    assert CALLER not in message
    assert record.exc_info is not None  # a handler bug deserves its traceback


async def test_handler_past_session_timeout_is_cut_off() -> None:
    cancelled = asyncio.Event()

    async def slow(session: AgiSession) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with running({"slow": slow}, session_timeout=0.3) as (server, ends):
        async with asterisk(server.port) as ast:
            started = time.monotonic()
            await ast.send(header("slow"))
            assert await ast.rest() == b"FAILURE\n"
            assert 0.25 <= time.monotonic() - started < 1.0
        assert await ends.wait(1) == [("slow", SessionOutcome.TIMEOUT)]
        assert cancelled.is_set()


async def test_handler_own_timeout_error_is_a_handler_error() -> None:
    async def own_timeout(session: AgiSession) -> None:
        raise TimeoutError("database")

    async with (
        running({"route": own_timeout}) as (server, ends),
        asterisk(server.port) as ast,
    ):
        await ast.send(header())
        assert await ast.rest() == b"FAILURE\n"
        assert await ends.wait(1) == [("route", SessionOutcome.HANDLER_ERROR)]


@pytest.mark.parametrize(
    "answer", [b"HANGUP\n", b"511 Command Not Permitted on a dead channel or intercept routine\n"]
)
async def test_hangup_mid_session(answer: bytes) -> None:
    raised: list[BaseException] = []

    async def handler(session: AgiSession) -> None:
        try:
            await session.set_variable("CCB_ROUTE", "queue-sales")
        except AgiHangup as exc:
            raised.append(exc)
            raise

    async with running({"route": handler}) as (server, ends), asterisk(server.port) as ast:
        await ast.send(header())
        assert await ast.line() == 'SET VARIABLE CCB_ROUTE "queue-sales"'
        await ast.send(answer)
        # No FAILURE line: the call is gone and Asterisk reports HANGUP itself.
        assert await ast.rest() == b""
        assert await ends.wait(1) == [("route", SessionOutcome.HANGUP)]
    assert len(raised) == 1


async def test_hangup_swallowed_by_handler_still_counts_as_hangup() -> None:
    async def handler(session: AgiSession) -> None:
        with suppress(AgiHangup):
            await session.set_variables({"A": "1", "B": "2"}, pipelined=True)
        with pytest.raises(AgiHangup):
            await session.verbose("after hangup")

    async with running({"route": handler}) as (server, ends), asterisk(server.port) as ast:
        await ast.send(header())
        assert await ast.line() == 'SET VARIABLE A "1"'
        await ast.send(b"200 result=1\nHANGUP\n")
        assert await ends.wait(1) == [("route", SessionOutcome.HANGUP)]


async def test_asterisk_closing_mid_session_is_a_hangup() -> None:
    async with running({"route": route_two_vars}) as (server, ends):
        async with asterisk(server.port) as ast:
            await ast.send(header())
            assert await ast.line() == 'SET VARIABLE CCB_ROUTE "queue-sales"'
        assert await ends.wait(1) == [("route", SessionOutcome.HANGUP)]


async def test_command_errors_and_malformed_replies() -> None:
    async def handler(session: AgiSession) -> None:
        with pytest.raises(AgiCommandError) as info:
            await session.set_variable("X", "1")
        assert info.value.reply.code == 520
        reply = await session.command("NOT A COMMAND")
        assert (reply.code, reply.data) == (510, "Invalid or unknown command")
        with pytest.raises(ValueError, match="single line"):
            await session.command("VERBOSE x\nHANGUP")
        await session.command("NOOP")

    async with running({"route": handler}) as (server, ends), asterisk(server.port) as ast:
        await ast.send(header())
        assert await ast.line() == 'SET VARIABLE X "1"'
        await ast.send(
            b"520-Invalid command syntax.  Proper usage follows:\n"
            b"Usage: SET VARIABLE <variablename> <value>\n"
            b"520 End of proper usage.\n"
        )
        assert await ast.line() == "NOT A COMMAND"
        await ast.send(b"510 Invalid or unknown command\n")
        assert await ast.line() == "NOOP"
        await ast.send(b"this is not AGI\n")
        assert await ast.rest() == b"FAILURE\n"
        assert await ends.wait(1) == [("route", SessionOutcome.PROTOCOL_ERROR)]


async def test_max_sessions_overflow_answers_failure_and_counts() -> None:
    release = asyncio.Event()
    both_in = asyncio.Event()
    entered: list[str] = []

    async def blocking(session: AgiSession) -> None:
        entered.append(session.request.uniqueid)
        if len(entered) == 2:
            both_in.set()
        await release.wait()

    async with running({"route": blocking}, max_sessions=2) as (server, ends):
        first, second = await Asterisk.connect(server.port), await Asterisk.connect(server.port)
        try:
            await first.send(header())
            await second.send(header())
            async with asyncio.timeout(2):
                await both_in.wait()
            assert server.stats.sessions_active == 2
            async with asterisk(server.port) as third:
                started = time.monotonic()
                await third.send(header())
                assert await third.rest() == b"FAILURE\n"
                assert time.monotonic() - started < 0.5
            assert await ends.wait(1) == [("", SessionOutcome.BUSY)]
            assert server.stats.rejected_busy == 1
            release.set()
            assert await first.rest() == b""
            assert await second.rest() == b""
        finally:
            await first.close()
            await second.close()
        assert sorted(o for _, o in await ends.wait(3)) == sorted(
            [SessionOutcome.BUSY, SessionOutcome.OK, SessionOutcome.OK]
        )
        assert server.stats.sessions_total == 2
        assert server.stats.sessions_active == 0


async def test_unknown_path_answers_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with (
        running({"route": route_two_vars}) as (server, ends),
        asterisk(server.port) as ast,
    ):
        await ast.send(header("nope?x=1"))
        assert await ast.rest() == b"FAILURE\n"
        # The hook never sees the raw path: it would be an unbounded metrics label.
        assert await ends.wait(1) == [("", SessionOutcome.NOT_FOUND)]
    assert any("no handler for path 'nope'" in r.getMessage() for r in caplog.records)


async def test_stop_cancels_sessions_after_grace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    started = asyncio.Event()

    async def forever(session: AgiSession) -> None:
        started.set()
        await asyncio.sleep(30)

    ends = Ends()
    server = FastAgiServer(
        {"route": forever}, "127.0.0.1", 0, session_timeout=30, on_session_end=ends
    )
    async with server, asterisk(server.port) as ast:
        await ast.send(header())
        await started.wait()
        t0 = time.monotonic()
        stop = asyncio.create_task(server.stop(grace=0.2))
        assert await ast.rest() == b"FAILURE\n"
        await stop
        assert time.monotonic() - t0 < 1.0
    assert await ends.wait(1) == [("route", SessionOutcome.CANCELLED)]
    assert not server.listening
    # The 3.11 streams callback logs cancelled connection tasks as errors: none here.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_stop_cuts_a_lingering_failure_close(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ends = Ends()
    server = FastAgiServer({}, "127.0.0.1", 0, on_session_end=ends, linger=30)
    async with server, asterisk(server.port) as ast:
        # This peer never closes after FAILURE, so the server lingers on it.
        await ast.send(header("nope"))
        assert await ast.line() == "FAILURE"
        t0 = time.monotonic()
        await server.stop(grace=0.2)
        assert time.monotonic() - t0 < 1.0
        assert await ast.rest() == b""
    assert await ends.wait(1) == [("", SessionOutcome.NOT_FOUND)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_hook_failure_does_not_break_the_server(caplog: pytest.LogCaptureFixture) -> None:
    def bad_hook(route: str, outcome: SessionOutcome, duration_s: float) -> None:
        raise RuntimeError("metrics down")

    server = FastAgiServer({"route": route_two_vars}, "127.0.0.1", 0, on_session_end=bad_hook)
    async with server:
        await normal_session(server.port)
        await normal_session(server.port)
        assert server.stats.sessions_total == 2
    assert sum("on_session_end hook failed" in r.getMessage() for r in caplog.records) == 2


def test_handler_keys_are_normalised() -> None:
    async def h(session: AgiSession) -> None:
        return None

    with pytest.raises(ValueError, match="collide"):
        FastAgiServer({"/route": h, "route": h})
    with pytest.raises(ValueError, match="max_sessions"):
        FastAgiServer({"route": h}, max_sessions=0)
    server = FastAgiServer({"/route": h})
    assert not server.listening
    with pytest.raises(RuntimeError):
        _ = server.port


async def test_many_concurrent_sessions() -> None:
    async with running({"route": route_two_vars}) as (server, ends):
        durations = await asyncio.gather(*(normal_session(server.port) for _ in range(50)))
        assert len(durations) == 50
        assert [o for _, o in await ends.wait(50)] == [SessionOutcome.OK] * 50


def _connect_all(port: int, count: int) -> list[socket.socket]:
    """Open ``count`` blocking connections, each allowed 0.5 s for its handshake: a full
    listen queue drops the SYN and the connect times out."""
    opened = []
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=0.5)
        opened.append(conn)
    return opened


@pytest.mark.parametrize("loop", [EventLoop.ASYNCIO, EventLoop.UVLOOP])
def test_a_stalled_loop_leaves_a_deep_accept_queue_and_takes_it_64_a_turn(loop: EventLoop) -> None:
    """While the loop is held (a SIGSTOP, a swap), 300 connections queue in the kernel,
    not only the 64 one loop turn accepts; all become sessions when the loop runs again,
    at most 64 a turn on either loop (uvloop alone would accept all 300 in one callback)."""

    async def stall() -> int:
        async with running({"route": route_two_vars}) as (server, ends):
            with ThreadPoolExecutor(1) as pool:
                # .result() blocks the loop itself, as a stall would: nothing is accepted
                opened = pool.submit(_connect_all, server.port, 300).result(timeout=60)
            assert len(opened) == 300
            for conn in opened:
                conn.close()
            outcomes = await ends.wait(300, within=20.0)
            assert outcomes == [("", SessionOutcome.NO_REQUEST)] * 300
            return server.stats.largest_accept_batch

    assert eventloop.run(stall(), loop) == 64


@pytest.mark.parametrize("loop", [EventLoop.ASYNCIO, EventLoop.UVLOOP])
def test_a_burst_sets_up_a_few_connections_in_the_accept_callback_and_the_rest_later(
    loop: EventLoop,
) -> None:
    """The first connections an accept callback takes are set up in it (their header is
    read a loop turn sooner); a burst's rest one a callback, so one callback stays short."""

    adopted_inside: list[int] = []  # per accept callback: connections set up in it
    inside = [False]

    class Counted(FastAgiServer):
        def _accept(self, sock: socket.socket) -> None:
            inside[0] = True
            adopted_inside.append(0)
            try:
                super()._accept(sock)
            finally:
                inside[0] = False

        def _adopt(self, conn: socket.socket) -> None:
            if inside[0]:
                adopted_inside[-1] += 1
            super()._adopt(conn)

    async def burst() -> list[int]:
        ends = Ends()
        server = Counted({"route": route_two_vars}, "127.0.0.1", 0, on_session_end=ends)
        await server.start()
        try:
            with ThreadPoolExecutor(1) as pool:
                # .result() holds the loop: all 30 wait in the kernel's queue
                opened = pool.submit(_connect_all, server.port, 30).result(timeout=60)
            for conn in opened:
                conn.close()
            outcomes = await ends.wait(30, within=20.0)
            assert [o for _, o in outcomes] == [SessionOutcome.NO_REQUEST] * 30
            return adopted_inside
        finally:
            await server.stop()

    adopted = eventloop.run(burst(), loop)
    assert max(adopted) == _ADOPT_NOW  # the burst's first callback
    assert all(n <= _ADOPT_NOW for n in adopted)


@pytest.mark.parametrize("kind", [EventLoop.ASYNCIO, EventLoop.UVLOOP])
def test_a_sessions_socket_sends_without_nagles_delay(kind: EventLoop) -> None:
    """TCP_NODELAY is set once on the listener, and every accepted socket has it (Linux
    copies it to the accepted socket): no setsockopt a session, on either loop."""
    seen: list[int] = []

    async def handler(session: AgiSession) -> None:
        sock = session._conn.transport.get_extra_info("socket")
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        await session.set_variable("CCB_ROUTE", "queue-sales")
        await session.set_variable("CCB_SITE", "in")

    async def main() -> None:
        async with running({"/route": handler}) as (server, ends):
            for _ in range(3):
                await normal_session(server.port)
            await ends.wait(3)

    eventloop.run(main(), kind)
    assert seen == [1, 1, 1]
