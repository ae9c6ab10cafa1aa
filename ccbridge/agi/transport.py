"""A FastAGI connection's transport on asyncio's selector loop: the socket itself,
watched with ``add_reader``, and nothing a FastAGI session does not use.

Asterisk opens a TCP connection for every AGI() call, so a routed call pays for one
transport's set-up and tear-down. asyncio's ``connect_accepted_socket`` builds a
``_SelectorSocketTransport`` for it: a waiter future, the peer's and the socket's names
asked of the kernel, a weak registry entry, and three ``call_soon`` callbacks before the
protocol sees its first byte. This one registers the reader and calls
``connection_made`` in the accept callback, asks for the peer's name only when
something reads it, and ends with the one ``call_soon`` that asyncio's own transports
also use for ``connection_lost`` (so the protocol is never re-entered from its own
``close``). A routed call costs ~70-100 us less CPU (BENCHMARKS §12, eighteenth session).

What it keeps of asyncio's contract, for ``_Connection`` (ccbridge/agi/server.py):
- reads land through the protocol's ``get_buffer``/``buffer_updated`` (a
  ``BufferedProtocol``, ccbridge/readbuf.py); end of file calls ``eof_received`` and
  closes unless it returns true;
- ``write`` sends at once and buffers what the socket does not take, flushed by a writer
  callback; ``write_eof`` and ``close`` wait for that flush; ``abort`` drops it;
- ``pause_reading``/``resume_reading``; ``get_extra_info`` for ``peername``,
  ``sockname`` and ``socket``;
- an exception from the protocol or the socket is reported to the loop's exception
  handler, as asyncio's "Fatal error" is, and the connection is reset; the loop never
  stops for one connection.

Writes in FastAGI are a few hundred bytes, so there is no write flow control (asyncio's
``pause_writing`` at 64 KiB): a peer that stops reading is cut by the session's linger.
uvloop keeps its own transport (C, cheaper than either): ccbridge/agi/server.py chooses.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

_FATAL_MESSAGE = "Fatal error on a FastAGI connection"

# The socket's close on a native thread of its own (agi/_closer.c): a loopback TCP close
# runs the FIN's path for both ends in the closing thread, ~4 % of the loop thread's time
# at 1,000 routed calls/s. None where the extension was not built: closed here.
_close_later: Callable[[int], bool] | None
try:
    from ccbridge.agi._closer import close_later as _close_later
except ImportError:
    _close_later = None
_UNASKED = object()  # the peer's name, until something asks for it


class SessionTransport(asyncio.Transport):
    __slots__ = (
        "__weakref__",
        "_buffer",
        "_closing",
        "_eof",
        "_fd",
        "_loop",
        "_lost",
        "_paused",
        "_peer",
        "_protocol",
        "_sock",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.BufferedProtocol,
    ) -> None:
        super().__init__(None)
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol: asyncio.BufferedProtocol | None = protocol
        self._buffer = bytearray()
        self._closing = False  # close() or abort() called: no more reading
        self._eof = False  # write_eof() called: no more writing
        self._lost = False  # connection_lost scheduled
        self._paused = False
        self._peer: Any = _UNASKED  # None when the kernel would not say
        loop.add_reader(self._fd, self._read_ready)
        try:
            protocol.connection_made(self)
        except BaseException:
            # The caller closes the socket: its descriptor must leave the selector first,
            # or the next socket given the same number could not be watched.
            self._lost = self._closing = self._paused = True
            self._protocol = None
            loop.remove_reader(self._fd)
            raise

    # ------------------------------------------------------------------ reading

    def _read_ready(self) -> None:
        protocol = self._protocol
        if protocol is None or self._paused:  # lost, or paused after this read was due
            return
        try:
            buffer = protocol.get_buffer(-1)
            n = self._sock.recv_into(buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal(exc, "reading")
            return
        try:
            if n:
                protocol.buffer_updated(n)
                return
            self._stop_reading()
            if not protocol.eof_received():
                self.close()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal(exc, "the protocol's read callback")

    def _stop_reading(self) -> None:
        if not self._paused:
            self._paused = True
            self._loop.remove_reader(self._fd)

    def is_reading(self) -> bool:
        return not (self._paused or self._closing)

    def pause_reading(self) -> None:
        if self._closing:
            return
        self._stop_reading()

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._loop.add_reader(self._fd, self._read_ready)

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._lost:
            return
        if not self._buffer:
            sent = self._send(data)
            if sent is None or sent == len(data):
                return
            data = memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._write_ready)
        self._buffer += data

    def _send(self, data: bytes | bytearray | memoryview) -> int | None:
        """What the socket took of ``data`` (0 when it is full); None when the connection
        failed, which is then closing."""
        try:
            return self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal(exc, "writing")
            return None

    def _write_ready(self) -> None:
        if self._lost:
            return
        buffer = self._buffer
        sent = self._send(buffer)
        if not sent:
            return
        del buffer[:sent]
        if buffer:
            return
        self._loop.remove_writer(self._fd)
        if self._closing:
            self._lose(None)
        elif self._eof:
            self._shutdown_write()

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        with contextlib.suppress(OSError):  # reset already: reading sees it
            self._sock.shutdown(socket.SHUT_WR)

    # ------------------------------------------------------------------ ending

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; end the connection once what was written is sent."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._lose(None)

    def abort(self) -> None:
        """End the connection now, dropping what is not sent yet."""
        self._force_close(None)

    def _fatal(self, exc: BaseException, during: str) -> None:
        if not isinstance(exc, OSError):  # a reset or a broken pipe is the peer's doing
            self._loop.call_exception_handler(
                {
                    "message": f"{_FATAL_MESSAGE} ({during})",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._loop.remove_writer(self._fd)
        self._closing = True
        self._stop_reading()
        self._lose(exc)

    def _lose(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        protocol = self._protocol
        # The protocol holds this transport: dropping it here breaks the cycle, so both
        # are freed by reference counting, not by a later collection (as asyncio's do).
        self._protocol = None
        try:
            if protocol is not None:
                protocol.connection_lost(exc if isinstance(exc, Exception) else None)
        finally:
            close_socket(self._sock)

    # ------------------------------------------------------------------ facts

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            if self._peer is _UNASKED:
                try:
                    self._peer = self._sock.getpeername()
                except OSError:
                    self._peer = None
            return default if self._peer is None else self._peer
        if name == "sockname":
            try:
                return self._sock.getsockname()
            except OSError:
                return default
        if name == "socket":
            return self._sock
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[return-value]  # None once lost, as asyncio's

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        raise NotImplementedError("a FastAGI connection keeps its protocol")


def close_socket(sock: socket.socket) -> None:
    """Close ``sock``, out of every selector already: by the closer thread when there is
    one (the descriptor is detached from the object, which then holds none), else here."""
    close_later = _close_later
    if close_later is None:
        sock.close()
        return
    fd = sock.detach()
    if fd >= 0:
        close_later(fd)
