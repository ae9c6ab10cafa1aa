"""One read buffer a thread for the bridge's busy sockets (AMI links, FastAGI
connections): asyncio's plain ``Protocol`` reads each time into a new 256 KiB bytes
object and shrinks it to what came, a 256 KiB malloc and a realloc a read; with
``BufferedProtocol`` the socket is read into this thread's buffer and only what came is
copied out (``bytes`` of its size) for the protocol's ``data_received``.

The buffer is shared by every protocol of the thread: asyncio (and uvloop, and the TLS
layer) calls ``get_buffer``, reads, and calls ``buffer_updated`` in one go, and the copy is
made before any of the protocol's own code runs.
"""

from __future__ import annotations

import asyncio
import threading

READ_SIZE = 256 * 1024  # what asyncio's selector transports read at most a call


class _Local(threading.local):
    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_SIZE))


_local = _Local()


class ReadInto(asyncio.BufferedProtocol):
    """A protocol whose reads land in the thread's buffer; subclasses implement
    ``data_received`` as for ``asyncio.Protocol``."""

    __slots__ = ()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _local.view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_local.view[:nbytes]))

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError
