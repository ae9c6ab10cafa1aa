"""The AMI and FastAGI protocols read into one buffer a thread (ccbridge/readbuf.py)."""

from __future__ import annotations

import asyncio
import socket
import tracemalloc

from ccbridge.agi.server import _Connection
from ccbridge.ami.pano import Protocol as AmiProtocol
from ccbridge.readbuf import READ_SIZE, ReadInto
from tests.polling import until


class _Gather:
    """What a protocol read, kept; done at the end of the stream."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.got.append(data)

    def eof_received(self) -> bool:
        self.done.set_result(None)
        return False


class _Collect(_Gather, ReadInto):
    """Reads into the thread's buffer, as the bridge's AMI and FastAGI protocols do."""


class _Plain(_Gather, asyncio.Protocol):
    """Reads as a plain asyncio Protocol does."""


async def _read(protocol: _Collect | _Plain, chunks: list[bytes]) -> tuple[bytes, int]:
    """What the protocol got from a socket fed ``chunks``, and the largest traced
    allocation peak of one read (tracemalloc)."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, ours)
    peak = 0
    try:
        for chunk in chunks:
            tracemalloc.start()
            try:
                before = len(protocol.got)
                await loop.sock_sendall(theirs, chunk)
                await until(
                    lambda: sum(map(len, protocol.got[before:])) >= len(chunk),  # noqa: B023
                    5.0,
                    "the chunk read",
                    interval=0.001,
                )
                peak = max(peak, tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
        theirs.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(protocol.done, 5)
    finally:
        transport.close()
        theirs.close()
    return b"".join(protocol.got), peak


def test_the_busy_protocols_read_into_the_shared_buffer() -> None:
    assert issubclass(AmiProtocol, asyncio.BufferedProtocol)
    assert issubclass(_Connection, asyncio.BufferedProtocol)


async def test_what_comes_is_delivered_whole_and_in_order_without_a_read_sized_block() -> None:
    chunks = [b"Event: Newexten\r\nUniqueid: %d\r\n\r\n" % i for i in range(50)]
    chunks.append(bytes(range(256)) * 2048)  # 512 KiB: more than one read
    got, _ = await _read(_Collect(), chunks)
    assert got == b"".join(chunks)
    small, small_peak = await _read(_Collect(), chunks[:50])
    assert small == b"".join(chunks[:50])
    assert small_peak < READ_SIZE // 4  # each read costs its own size, not 256 KiB


async def test_a_plain_protocol_allocates_a_read_sized_block_for_contrast() -> None:
    chunks = [b"Event: Newexten\r\n\r\n"] * 20
    got, peak = await _read(_Plain(), chunks)
    assert got == b"".join(chunks)
    assert peak >= READ_SIZE  # asyncio's recv(256 KiB), shrunk after
