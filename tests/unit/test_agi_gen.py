"""The ceiling bench's C load generator (tests/bench/agi_gen.c) against a real server.

Built with the system's C compiler (``gcc``, a Debian package ``make system-deps``
installs); each test drives it over loopback against a small asyncio FastAGI server that
answers each request with the command line the test picks, and checks what
``agi_load.run_c`` reports: the routed calls' latencies, the rest as errors, with the
same routed test as the Python generator's (``agi_load.routed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ccbridge import variables as v
from tests.bench import agi_load
from tests.bench.agi_load import routed, run_c

SEEN: list[bytes] = []  # the answers the generator wrote, in order


@pytest.fixture(scope="module")
def generator() -> Path:
    binary = agi_load.compile_generator()
    assert binary is not None, "no C compiler: make system-deps installs gcc"
    return binary


@contextlib.asynccontextmanager
async def server(command: bytes) -> AsyncIterator[int]:
    """A FastAGI server that reads the header, sends ``command``, reads the answer and
    closes (as ccbridge's route session does)."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\n\n")
            writer.write(command)
            SEEN.append(await reader.readline())
        finally:
            writer.close()

    srv = await asyncio.start_server(session, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


def calls(port: int, count: int) -> list[tuple[int, bytes]]:
    dids = [("+918000000001", "s00", "orders")]
    return agi_load.headers([port], count, dids, ["+919800000001"], "t", 1)


MSET_ROUTED = f'EXEC MSet "{v.SITE}=s00,{v.ROUTE}=queue,{v.QUEUE}=orders-hi"\n'.encode()
MSET_EMPTY = f'EXEC MSet "{v.SITE}=s00,{v.ROUTE}=,{v.QUEUE}=orders-hi"\n'.encode()
SET_ROUTED = f'SET VARIABLE {v.ROUTE} "queue"\n'.encode()
SET_EMPTY = f'SET VARIABLE {v.ROUTE} ""\n'.encode()
OTHER_ONLY = f'EXEC MSet "X{v.ROUTE}=queue"\n'.encode()  # another variable's name ends so


@pytest.mark.parametrize(
    "command", [MSET_ROUTED, MSET_EMPTY, SET_ROUTED, SET_EMPTY, OTHER_ONLY], ids=repr
)
async def test_routed_as_the_python_generator_reads_it(generator: Path, command: bytes) -> None:
    SEEN.clear()
    async with server(command) as port:
        result = await asyncio.to_thread(run_c, generator, calls(port, 20), 200.0)
    if routed(command):
        assert (result.sessions, result.errors) == (20, 0)
        assert all(0 < x < 5.0 for x in result.latencies)
        assert result.seconds >= 19 / 200
    else:
        assert (result.sessions, result.errors) == (0, 20)
    # every command line was answered as Asterisk does
    assert SEEN == [b"200 result=0\n"] * 20


def test_the_commands_of_the_tests_cover_both_verdicts() -> None:
    verdicts = [routed(c) for c in (MSET_ROUTED, MSET_EMPTY, SET_ROUTED, SET_EMPTY, OTHER_ONLY)]
    assert verdicts == [True, False, True, False, False]


async def test_a_refused_port_is_an_error_each_call(generator: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await asyncio.to_thread(run_c, generator, calls(port, 10), 500.0)
    assert (result.sessions, result.errors) == (0, 10)


async def test_a_server_that_never_closes_leaves_its_calls_as_errors(generator: Path) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.readuntil(b"\n\n")
        writer.write(MSET_ROUTED)

    srv = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        result = await asyncio.to_thread(run_c, generator, calls(port, 5), 500.0, 0.5)
    finally:
        for w in held:
            w.close()
        srv.close()
        await srv.wait_closed()
    assert (result.sessions, result.errors) == (0, 5)


def test_no_calls_no_result(generator: Path) -> None:
    result = run_c(generator, [], 100.0)
    assert (result.sessions, result.errors, result.latencies) == (0, 0, [])
