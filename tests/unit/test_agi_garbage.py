"""A FastAGI connection leaves no cyclic garbage: its transport is freed when it closes,
not by a later collection (ccbridge/gcsetup.py makes full collections rare)."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Iterator

import pytest

from ccbridge.agi.codec import AgiRequest
from ccbridge.agi.server import FastAgiServer, Script, _Connection, script
from ccbridge.config.model import EventLoop
from tests.polling import until
from tests.unit.test_agi_script import LOOPS, on
from tests.unit.test_agi_server import LOGGER, asterisk, header


def one(request: AgiRequest) -> Script:
    yield 'SET VARIABLE CCB_ROUTE "queue-sales"'


class Watched(FastAgiServer):
    """The server, keeping a weak reference to each connection's transport."""

    def __init__(self) -> None:
        super().__init__(
            {"route": script(one)}, "127.0.0.1", 0, logger=logging.getLogger(LOGGER), linger=0.05
        )
        self.transports: list[weakref.ref[object]] = []

    def connection_made(self, conn: _Connection) -> None:
        self.transports.append(weakref.ref(conn.transport))
        super().connection_made(conn)


@pytest.fixture
def no_collector() -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@pytest.mark.usefixtures("no_collector")
@pytest.mark.parametrize("loop", LOOPS)
def test_a_closed_connections_transport_is_freed_without_a_collection(loop: EventLoop) -> None:
    async def test() -> None:
        server = Watched()
        await server.start()
        try:
            for _ in range(3):
                async with asterisk(server.port) as ast:
                    await ast.send(header())
                    assert await ast.line() == 'SET VARIABLE CCB_ROUTE "queue-sales"'
                    await ast.send(b"200 result=1\n")
                    assert await ast.rest() == b""
            assert len(server.transports) == 3
            # With the collector off, only reference counting frees them: a transport
            # in a reference cycle would stay.
            await until(lambda: all(ref() is None for ref in server.transports), within=2.0)
        finally:
            await server.stop()

    on(loop, test)
