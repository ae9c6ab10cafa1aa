"""SessionTransport (ccbridge/agi/transport.py) on real loopback TCP: the part of asyncio's
transport contract a FastAGI connection uses, including the slow peer, the reset, and a
protocol that raises."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from ccbridge.agi.server import FastAgiServer, _Connection, script
from ccbridge.agi.transport import SessionTransport
from ccbridge.config.model import EventLoop
from ccbridge.readbuf import ReadInto
from tests.polling import until
from tests.unit.test_agi_script import LOOPS, on
from tests.unit.test_agi_server import asterisk, header


class Recorder(ReadInto):
    """A protocol that writes down what the transport tells it."""

    def __init__(self, keep_open: bool = False, raise_on: bytes | None = None) -> None:
        self.transport: SessionTransport | None = None
        self.data = bytearray()
        self.events: list[str] = []
        self.lost: list[Exception | None] = []
        self.keep_open = keep_open
        self.raise_on = raise_on

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, SessionTransport)
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.raise_on is not None and self.raise_on in self.data:
            raise ValueError("the protocol's own bug")

    def eof_received(self) -> bool:
        self.events.append("eof")
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.append(exc)


@asynccontextmanager
async def pair(protocol: Recorder) -> AsyncIterator[tuple[SessionTransport, socket.socket]]:
    """A transport on the accepted end of a loopback connection, and the peer's socket."""
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.socket()
        # A small receive window, set before the handshake: what the peer takes before
        # the transport must buffer does not hang on the host's TCP defaults.
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.connect(listener.getsockname())
        accepted, _ = listener.accept()
    accepted.setblocking(False)
    peer.setblocking(False)
    try:
        transport = SessionTransport(loop, accepted, protocol)
        try:
            yield transport, peer
        finally:
            transport.abort()
            await until(lambda: "lost" in protocol.events, within=2.0)
    finally:
        peer.close()


async def recv_all(peer: socket.socket, until_eof: bool = True, within: float = 5.0) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    async with asyncio.timeout(within):
        while True:
            chunk = await loop.sock_recv(peer, 1 << 16)
            if not chunk:
                return bytes(got)
            got += chunk
            if not until_eof:
                return bytes(got)


async def test_reads_reach_the_protocol_and_writes_the_peer() -> None:
    protocol = Recorder()
    async with pair(protocol) as (transport, peer):
        assert protocol.events == ["made"]
        assert transport.is_reading() and not transport.is_closing()
        peer.send(b"agi_network: yes\n")
        await until(lambda: bytes(protocol.data) == b"agi_network: yes\n", within=2.0)
        transport.write(b"SET VARIABLE X 1\n")
        assert await recv_all(peer, until_eof=False) == b"SET VARIABLE X 1\n"
        assert transport.get_write_buffer_size() == 0


async def test_a_slow_peer_gets_every_byte_and_close_waits_for_them() -> None:
    protocol = Recorder()
    async with pair(protocol) as (transport, peer):
        transport._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        payload = bytes(range(256)) * 8192  # 2 MiB: far more than the socket takes at once
        transport.write(payload[:1000])
        transport.write(payload[1000:])
        assert transport.get_write_buffer_size() > 0  # the rest waits for the peer
        transport.close()
        assert transport.is_closing()
        assert protocol.events == ["made"]  # not lost while bytes wait
        assert await recv_all(peer) == payload  # then EOF: closed once all was sent
        await until(lambda: protocol.events == ["made", "lost"], within=2.0)
        assert protocol.lost == [None]
        assert transport._sock.fileno() == -1


async def test_write_eof_half_closes_after_the_buffer_and_reading_goes_on() -> None:
    protocol = Recorder()
    async with pair(protocol) as (transport, peer):
        transport._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        payload = b"FAILURE\n" * 100_000
        transport.write(payload)
        transport.write_eof()
        transport.write_eof()  # twice is once
        assert transport.can_write_eof()
        with pytest.raises(RuntimeError, match="after write_eof"):
            transport.write(b"more")
        assert await recv_all(peer) == payload
        peer.send(b"200 result=1\n")  # the peer may still talk: read and handed on
        await until(lambda: bytes(protocol.data) == b"200 result=1\n", within=2.0)
        assert "lost" not in protocol.events


async def test_end_of_file_closes_unless_the_protocol_keeps_it_open() -> None:
    closing = Recorder()
    async with pair(closing) as (_, peer):
        peer.shutdown(socket.SHUT_WR)
        await until(lambda: closing.events == ["made", "eof", "lost"], within=2.0)
        assert closing.lost == [None]
    half = Recorder(keep_open=True)
    async with pair(half) as (transport, peer):
        peer.shutdown(socket.SHUT_WR)
        await until(lambda: half.events == ["made", "eof"], within=2.0)
        assert not transport.is_reading()
        transport.write(b"FAILURE\n")  # the half-open side still writes
        transport.close()
        assert await recv_all(peer) == b"FAILURE\n"
        await until(lambda: half.events == ["made", "eof", "lost"], within=2.0)


async def test_abort_drops_what_is_not_sent_and_ends_once() -> None:
    protocol = Recorder()
    async with pair(protocol) as (transport, _peer):
        transport._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        transport.write(b"x" * (1 << 20))
        assert transport.get_write_buffer_size() > 0
        transport.abort()
        transport.abort()
        transport.close()
        assert transport.get_write_buffer_size() == 0
        transport.write(b"after")  # ignored, as asyncio's transport does once lost
        transport.pause_reading()
        transport.resume_reading()
        await until(lambda: protocol.events == ["made", "lost"], within=2.0)
        await asyncio.sleep(0.05)
        assert protocol.events == ["made", "lost"]
        assert protocol.lost == [None]
        assert transport.get_protocol() is None  # the cycle with the protocol is broken


async def test_pause_and_resume_reading() -> None:
    protocol = Recorder()
    async with pair(protocol) as (transport, peer):
        transport.pause_reading()
        transport.pause_reading()
        assert not transport.is_reading()
        peer.send(b"held back\n")
        await asyncio.sleep(0.05)
        assert protocol.data == b""
        transport.resume_reading()
        transport.resume_reading()
        await until(lambda: bytes(protocol.data) == b"held back\n", within=2.0)


async def test_a_reset_by_the_peer_is_connection_lost_not_a_loop_error() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        protocol = Recorder()
        async with pair(protocol) as (transport, peer):
            # SO_LINGER 0: close() sends an RST, so the transport's next send fails.
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()
            await asyncio.sleep(0.05)
            for _ in range(3):
                transport.write(b"SET VARIABLE X 1\n")
                await asyncio.sleep(0.01)
            await until(lambda: "lost" in protocol.events, within=2.0)
            assert protocol.events[-1] == "lost"
            assert protocol.events.count("lost") == 1
            assert isinstance(protocol.lost[0], OSError), (protocol.events, protocol.lost)
        assert reported == []
    finally:
        loop.set_exception_handler(None)


async def test_a_protocol_that_raises_is_reported_and_its_connection_reset() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        protocol = Recorder(raise_on=b"boom")
        async with pair(protocol) as (transport, peer):
            peer.send(b"boom\n")
            await until(lambda: "lost" in protocol.events, within=2.0)
            assert len(reported) == 1
            assert "Fatal error on a FastAGI connection" in reported[0]["message"]
            assert isinstance(reported[0]["exception"], ValueError)
            assert isinstance(protocol.lost[0], ValueError)
            assert await recv_all(peer) == b""  # the peer sees the end
            assert transport.is_closing()
    finally:
        loop.set_exception_handler(None)


async def test_extra_info_asks_the_kernel_and_survives_the_close() -> None:
    protocol = Recorder()
    async with pair(protocol) as (transport, peer):
        assert transport.get_extra_info("peername") == peer.getsockname()
        assert transport.get_extra_info("sockname") == peer.getpeername()
        assert transport.get_extra_info("socket") is transport._sock
        assert transport.get_extra_info("ssl_object", "none") == "none"
        transport.close()
        await until(lambda: "lost" in protocol.events, within=2.0)
        assert transport.get_extra_info("peername") == peer.getsockname()  # asked before
        assert transport.get_extra_info("sockname", "gone") == "gone"
    with pytest.raises(NotImplementedError):
        transport.set_protocol(Recorder())


async def test_a_connection_made_that_raises_leaves_the_descriptor_unwatched() -> None:
    class Refusing(Recorder):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            raise ValueError("refused")

    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
    with peer, accepted:
        accepted.setblocking(False)
        protocol = Refusing()
        with pytest.raises(ValueError, match="refused"):
            SessionTransport(loop, accepted, protocol)
        assert not loop.remove_reader(accepted.fileno())  # nothing left registered
        await asyncio.sleep(0.01)
        assert protocol.events == []  # and no connection_lost for what was never made


@pytest.mark.parametrize("loop", LOOPS)
def test_the_server_uses_it_on_asyncios_loop_only(loop: EventLoop) -> None:
    seen: list[type] = []

    class Watched(FastAgiServer):
        def connection_made(self, conn: _Connection) -> None:
            seen.append(type(conn.transport))
            super().connection_made(conn)

    def one(_: object) -> Any:
        yield 'SET VARIABLE CCB_ROUTE "queue-sales"'

    async def test() -> None:
        server = Watched({"route": script(one)}, "127.0.0.1", 0)
        await server.start()
        try:
            async with asterisk(server.port) as ast:
                await ast.send(header())
                assert await ast.line() == 'SET VARIABLE CCB_ROUTE "queue-sales"'
                await ast.send(b"200 result=1\n")
                assert await ast.rest() == b""
        finally:
            await server.stop()

    on(loop, test)
    assert len(seen) == 1
    assert (seen[0] is SessionTransport) == (loop is EventLoop.ASYNCIO)
