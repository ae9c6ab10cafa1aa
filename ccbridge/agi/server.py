"""FastAGI server: accepts Asterisk connections and runs one handler per request path."""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Final

from ccbridge.agi import codec
from ccbridge.agi.codec import (
    MAX_COMMAND_BYTES,
    AgiCommandError,
    AgiHangup,
    AgiProtocolError,
    AgiReply,
    AgiReplyParser,
    AgiRequest,
    AgiRequestParser,
)
from ccbridge.logs import mask_number

__all__ = [
    "AgiCommandError",
    "AgiHangup",
    "AgiProtocolError",
    "AgiSession",
    "FastAgiServer",
    "FastAgiStats",
    "Handler",
    "SessionEndHook",
    "SessionOutcome",
]

_READ_CHUNK: Final = 64 * 1024
# StreamReader pauses the socket past 2 * limit; we never use readline(), so this is
# only flow control.  The header parser rejects a long line after 4 KiB anyway.
_STREAM_LIMIT: Final = 64 * 1024
# Asterisk opens one connection per AGI() call; a burst of calls must not overflow the
# accept queue (a dropped SYN costs the caller a 1 s retransmit, Asterisk gives up at 2 s).
_BACKLOG: Final = 1024
# After a stall (a SIGSTOP, a swap) the whole queue is waiting: accepting 1,000
# connections in one callback took 64 ms on asyncio's loop (which accepts up to its
# ``backlog`` argument a turn), and libuv (uvloop) accepts until the queue is empty.
# The server accepts itself (_accept), at most this many a loop turn, so the
# kernel queue stays _BACKLOG deep and one turn stays short on either loop.
_ACCEPT_BATCH: Final = 64
# res_agi.c treats a first line starting with "failure" as AGI_RESULT_FAILURE, so
# AGISTATUS=FAILURE and the dialplan takes its fallback branch.  Closing without a
# line would give AGISTATUS=SUCCESS (the "script completed" path).
_FAILURE_LINE: Final = b"FAILURE\n"
_BUSY_LOG_INTERVAL_S: Final = 1.0
_ACCEPT_SETTLE_S: Final = 0.05
_ACCEPT_RETRY_S: Final = 1.0  # after EMFILE and the like (asyncio's ACCEPT_RETRY_DELAY)


class SessionOutcome(enum.StrEnum):
    """How a connection ended: a bounded set, safe as a metrics label."""

    OK = "ok"
    HANGUP = "hangup"
    NO_REQUEST = "no_request"  # closed before a complete header: probe or health check
    HEADER_TIMEOUT = "header_timeout"
    PROTOCOL_ERROR = "protocol_error"
    NOT_FOUND = "not_found"
    HANDLER_ERROR = "handler_error"
    TIMEOUT = "timeout"
    BUSY = "busy"
    CANCELLED = "cancelled"  # server stopped while the session ran
    INTERNAL_ERROR = "internal_error"


_ERROR_OUTCOMES: Final = frozenset(
    {
        SessionOutcome.NO_REQUEST,
        SessionOutcome.HEADER_TIMEOUT,
        SessionOutcome.PROTOCOL_ERROR,
        SessionOutcome.NOT_FOUND,
        SessionOutcome.HANDLER_ERROR,
        SessionOutcome.TIMEOUT,
        SessionOutcome.INTERNAL_ERROR,
    }
)


class _Close(enum.Enum):
    CLOSE = "close"  # plain FIN: AGISTATUS=SUCCESS (or HANGUP if the call is gone)
    FAILURE = "failure"  # FAILURE line, half-close, wait briefly for Asterisk to close
    FAILURE_NOW = "failure_now"  # FAILURE line and close, no waiting (server stopping)
    ABORT = "abort"  # RST: the peer is not speaking FastAGI


Handler = Callable[["AgiSession"], Awaitable[None]]
#: ``on_session_end(route, outcome, duration_s)``; ``route`` is the matched handler
#: key or ``""``, never the raw requested path, so it is safe as a label.
SessionEndHook = Callable[[str, SessionOutcome, float], None]


@dataclass
class FastAgiStats:
    """Counters a metrics collector reads at scrape time."""

    sessions_total: int = 0  # connections given a session slot
    sessions_active: int = 0
    rejected_busy: int = 0
    rejected_source: int = 0  # connections from an address not allowed (dropped at once)
    largest_accept_batch: int = 0  # the most connections one loop turn accepted
    errors_total: Counter[str] = field(default_factory=Counter)  # by SessionOutcome


class AgiSession:
    """One FastAGI conversation; a handler drives it with commands.

    Not safe for concurrent use from several tasks: AGI is strictly one reply per
    command, in order.  After a hangup every command raises ``AgiHangup``.
    """

    __slots__ = (
        "_in_use",
        "_parser",
        "_pending",
        "_reader",
        "_tail",
        "_writer",
        "hung_up",
        "request",
        "route",
    )

    def __init__(
        self,
        request: AgiRequest,
        route: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tail: bytes = b"",
    ) -> None:
        self.request = request
        self.route = route
        self.hung_up = False
        self._reader = reader
        self._writer = writer
        self._parser = AgiReplyParser()
        # A list, not a deque: one or two replies wait at most, and an empty deque is a
        # 600-byte block in each of up to 1,000 sessions (BENCHMARKS.md §4).
        self._pending: list[AgiReply] = []
        self._tail = tail
        self._in_use = False

    async def command(self, line: str) -> AgiReply:
        """Send one command line (no newline) and return its reply.

        Raises ``AgiHangup`` on ``HANGUP``/``511``/closed socket and
        ``AgiProtocolError`` on a malformed reply; 510/520 are returned, not raised.
        """
        return (await self._exchange((line,)))[0]

    async def _exchange(self, lines: Sequence[str]) -> list[AgiReply]:
        """Write ``lines`` in one go, then read one reply per line, in order."""
        if self.hung_up:
            raise AgiHangup("channel already hung up")
        if self._in_use:
            raise RuntimeError("AgiSession used concurrently from two tasks")
        payload = bytearray()
        for line in lines:
            if "\n" in line or "\r" in line:
                raise ValueError("an AGI command is a single line")
            encoded = line.encode("utf-8")
            if len(encoded) > MAX_COMMAND_BYTES:
                raise ValueError(f"AGI command longer than {MAX_COMMAND_BYTES} bytes")
            payload += encoded
            payload += b"\n"
        self._in_use = True
        try:
            try:
                self._writer.write(payload)
                await self._writer.drain()
            except ConnectionError as exc:
                self.hung_up = True
                raise AgiHangup("connection lost while sending a command") from exc
            replies: list[AgiReply] = []
            for _ in lines:
                reply = await self._read_reply()
                if reply.is_hangup or reply.code == 511:
                    self.hung_up = True
                    raise AgiHangup(reply.raw)
                replies.append(reply)
            return replies
        finally:
            self._in_use = False

    async def _read_reply(self) -> AgiReply:
        while not self._pending:
            if self._tail:
                data, self._tail = self._tail, b""
            else:
                try:
                    data = await self._reader.read(_READ_CHUNK)
                except ConnectionError as exc:
                    self.hung_up = True
                    raise AgiHangup("connection lost while waiting for a reply") from exc
                if not data:
                    self.hung_up = True
                    raise AgiHangup("Asterisk closed the connection")
            self._pending.extend(self._parser.feed(data))
        return self._pending.pop(0)

    async def set_variable(self, name: str, value: str) -> None:
        """``SET VARIABLE name "value"``; raises ``AgiCommandError`` unless 200."""
        line = codec.set_variable(name, value)
        reply = await self.command(line)
        if not reply.ok:
            raise AgiCommandError(line, reply)

    async def set_variables(self, variables: Mapping[str, str], *, pipelined: bool = False) -> None:
        """Set several variables, one command per round trip unless ``pipelined``.

        ``pipelined=True`` writes every command before reading any reply; it saves
        (n-1) round trips but is unverified against a real Asterisk and probably
        unsafe: res_agi.c reads commands with fgets() on a stdio FILE but waits for
        the next one by polling the raw socket, so lines already pulled into the
        stdio buffer may sit there while Asterisk waits for more bytes.
        """
        lines = [codec.set_variable(name, value) for name, value in variables.items()]
        if not lines:
            return
        if pipelined:
            replies = await self._exchange(lines)
        else:
            replies = [await self.command(line) for line in lines]
        for line, reply in zip(lines, replies, strict=True):
            if not reply.ok:
                raise AgiCommandError(line, reply)

    async def get_variable(self, name: str) -> str | None:
        """Value of a channel variable or function, ``None`` when unset."""
        line = codec.get_variable(name)
        reply = await self.command(line)
        if not reply.ok:
            raise AgiCommandError(line, reply)
        return reply.data if reply.result == 1 else None

    async def verbose(self, message: str, level: int = 1) -> None:
        """Write to the Asterisk console/log at verbosity ``level``."""
        line = codec.verbose(message, level)
        reply = await self.command(line)
        if not reply.ok:
            raise AgiCommandError(line, reply)


class FastAgiServer:
    """Asyncio FastAGI listener.

    Request paths map to handlers (``"route"`` and ``"/route"`` are the same key).
    Every failure ends the connection with a ``FAILURE`` line so Asterisk sets
    ``AGISTATUS=FAILURE``; a handler that returns normally closes the socket, which
    Asterisk reports as ``AGISTATUS=SUCCESS``.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        max_sessions: int = 1000,
        session_timeout: float = 5.0,
        header_timeout: float = 2.0,
        logger: logging.Logger | None = None,
        on_session_end: SessionEndHook | None = None,
        linger: float = 1.0,
        allow: Container[str] | None = None,
        on_forbidden: Callable[[], None] | None = None,
    ) -> None:
        """``allow``: the peer addresses accepted (None: any); a connection from another
        is reset before a byte is read, counted in ``stats.rejected_source`` and reported
        to ``on_forbidden``."""
        if max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        routes: dict[str, Handler] = {}
        for key, handler in handlers.items():
            norm = key.lstrip("/")
            if norm in routes:
                raise ValueError(f"handler paths {key!r} and {norm!r} collide")
            routes[norm] = handler
        self._handlers: Mapping[str, Handler] = MappingProxyType(routes)
        self._host = host
        self._port = port
        self._max_sessions = max_sessions
        self._session_timeout = session_timeout
        self._header_timeout = header_timeout
        self._linger = linger
        self._log = logger if logger is not None else logging.getLogger("ccbridge.agi")
        self._on_session_end = on_session_end
        self._allow = allow
        self._on_forbidden = on_forbidden
        self._last_forbidden_log = 0.0
        self._forbidden_unlogged = 0
        self._server: asyncio.Server | None = None  # bound sockets; accepted by _accept
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_busy_log = 0.0
        self._busy_unlogged = 0
        self.stats = FastAgiStats()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FastAgiServer already started")
        loop = asyncio.get_running_loop()
        # Bound (every address the host resolves to) but not served by the loop: this
        # server accepts itself, at most _ACCEPT_BATCH a loop turn, on asyncio's loop and
        # on uvloop alike (libuv accepts until the queue is empty, in one callback that
        # uvloop does not time for the slow-callback gate).
        self._server = await loop.create_server(
            asyncio.Protocol, self._host, self._port, backlog=_BACKLOG, start_serving=False
        )
        for listening in self._server.sockets:
            sock = socket.socket(fileno=os.dup(listening.fileno()))
            sock.setblocking(False)
            sock.listen(_BACKLOG)  # start_serving=False: bound, not yet listening
            self._listeners.append(sock)
            loop.add_reader(sock.fileno(), self._accept, sock)
        self._log.info(
            "FastAGI listening on %s:%d, routes %s", self._host, self.port, sorted(self._handlers)
        )

    def _accept(self, sock: socket.socket) -> None:
        """Accept up to _ACCEPT_BATCH waiting connections; the rest wait in the kernel's
        queue (_BACKLOG deep) for the next loop turn."""
        loop = asyncio.get_running_loop()
        accepted = 0
        while accepted < _ACCEPT_BATCH:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): stop
                # accepting for a second, as asyncio's own accept does, and say so.
                self._log.error("FastAGI accept failed (%s): accepting again in 1 s", exc)
                loop.remove_reader(sock.fileno())
                loop.call_later(_ACCEPT_RETRY_S, self._resume_accepting, sock)
                break
            accepted += 1
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # replies are small
            task = loop.create_task(self._adopt(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if accepted > self.stats.largest_accept_batch:
            self.stats.largest_accept_batch = accepted

    def _resume_accepting(self, sock: socket.socket) -> None:
        if self._server is not None and sock in self._listeners:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    async def _adopt(self, conn: socket.socket) -> None:
        """One accepted connection as streams, then its session (``_on_connect``)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_STREAM_LIMIT)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn)
        except (OSError, asyncio.CancelledError):
            conn.close()  # reset before it was set up, or the server stopping
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._on_connect(reader, writer)

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting, give running sessions ``grace`` seconds, then cancel them."""
        server = self._server
        if server is None:
            return
        self._server = None
        loop = asyncio.get_running_loop()
        for sock in self._listeners:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._listeners.clear()
        server.close()
        # A connection accepted just before close() reaches _on_connect a few loop turns
        # later (which then drops it); without this pause its transport would outlive the
        # loop. Health checks (the AGI guard's, every 0.5 s per site) make that common.
        await asyncio.sleep(_ACCEPT_SETTLE_S)
        running = set(self._tasks)
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await server.wait_closed()
        self._log.info("FastAGI on %s stopped", self._host)

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``); the first socket's if several."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("FastAgiServer is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def listening(self) -> bool:
        return self._server is not None and bool(self._listeners)

    # ------------------------------------------------------------------ connections

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        if self._server is None:  # stopping: accepted just before close()
            writer.transport.abort()
            return
        if self._allow is not None and _peer_host(writer) not in self._allow:
            self._forbid(writer)
            return
        task = asyncio.current_task()
        assert task is not None  # _adopt runs this as a task
        self._tasks.add(task)
        stats = self.stats
        busy = stats.sessions_active >= self._max_sessions
        if busy:
            stats.rejected_busy += 1
            self._log_busy()
        else:
            stats.sessions_total += 1
            stats.sessions_active += 1
        routed: list[str] = []  # set by _serve once a handler matched, survives a cancel
        outcome = SessionOutcome.BUSY
        close = _Close.FAILURE
        try:
            if not busy:
                outcome, close = await self._serve(reader, writer, routed)
        except asyncio.CancelledError:
            # Only stop() cancels these tasks.  Not re-raised: on 3.11 the streams
            # done-callback calls task.exception() on a cancelled task and logs an
            # error; this task is the top of its stack and nobody awaits its result.
            # uncancel() so the asyncio.timeout() in _shutdown still works as a timeout.
            task.uncancel()
            outcome, close = SessionOutcome.CANCELLED, _Close.FAILURE_NOW
        except Exception:
            # A bug in this module, not in a handler: keep serving other calls.
            self._log.exception("FastAGI %s: internal error", _peer(writer))
            outcome, close = SessionOutcome.INTERNAL_ERROR, _Close.FAILURE_NOW
        finally:
            if not busy:
                stats.sessions_active -= 1
            try:
                await self._shutdown(reader, writer, close)
            except asyncio.CancelledError:
                # stop() cancelled a lingering close: same reasoning as above.
                task.uncancel()
                writer.transport.abort()
            finally:
                self._tasks.discard(task)
                if outcome in _ERROR_OUTCOMES:
                    stats.errors_total[outcome] += 1
                self._report(routed[0] if routed else "", outcome, time.monotonic() - started)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, routed: list[str]
    ) -> tuple[SessionOutcome, _Close]:
        parser = AgiRequestParser()
        request: AgiRequest | None = None
        try:
            async with asyncio.timeout(self._header_timeout):
                while request is None:
                    data = await reader.read(_READ_CHUNK)
                    if not data:
                        # EOF must end the loop: re-reading it forever is what freezes
                        # panoramisk's fast_agi on a plain port probe.
                        self._log.debug("FastAGI %s: closed before a request", _peer(writer))
                        return SessionOutcome.NO_REQUEST, _Close.CLOSE
                    request = parser.feed(data)
        except TimeoutError:
            self._log.warning(
                "FastAGI %s: no complete request within %.1fs, dropped",
                _peer(writer),
                self._header_timeout,
            )
            return SessionOutcome.HEADER_TIMEOUT, _Close.ABORT
        except AgiProtocolError as exc:
            self._log.warning("FastAGI %s: not a FastAGI request (%s), dropped", _peer(writer), exc)
            return SessionOutcome.PROTOCOL_ERROR, _Close.ABORT
        except ConnectionError:
            return SessionOutcome.NO_REQUEST, _Close.ABORT

        handler = self._handlers.get(request.path)
        if handler is None:
            self._log.warning(
                "FastAGI %s: no handler for path %r (uniqueid %s), answered FAILURE",
                _peer(writer),
                request.path[:80],
                request.uniqueid,
            )
            return SessionOutcome.NOT_FOUND, _Close.FAILURE

        route = request.path
        routed.append(route)
        session = AgiSession(request, route, reader, writer, parser.tail)
        deadline = asyncio.timeout(self._session_timeout)
        try:
            async with deadline:
                await handler(session)
        except AgiHangup as exc:
            self._log.debug("FastAGI %r: hangup (%s)", route, exc)
            return SessionOutcome.HANGUP, _Close.CLOSE
        except Exception as exc:
            if deadline.expired():
                self._log.warning(
                    "FastAGI %r: handler exceeded %.1fs (caller %s, uniqueid %s), answered FAILURE",
                    route,
                    self._session_timeout,
                    mask_number(request.callerid),
                    request.uniqueid,
                )
                return SessionOutcome.TIMEOUT, _Close.FAILURE
            if isinstance(exc, AgiProtocolError):
                self._log.warning(
                    "FastAGI %r: bad reply from Asterisk (%s), answered FAILURE", route, exc
                )
                return SessionOutcome.PROTOCOL_ERROR, _Close.FAILURE
            self._log.error(
                "FastAGI %r: handler failed (caller %s, uniqueid %s), answered FAILURE",
                route,
                mask_number(request.callerid),
                request.uniqueid,
                exc_info=True,
            )
            return SessionOutcome.HANDLER_ERROR, _Close.FAILURE
        if session.hung_up:
            return SessionOutcome.HANGUP, _Close.CLOSE
        return SessionOutcome.OK, _Close.CLOSE

    async def _shutdown(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mode: _Close
    ) -> None:
        """Close the connection; never raises, waits at most ``linger``."""
        transport = writer.transport
        if mode is _Close.ABORT:
            transport.abort()
            return
        try:
            if mode is not _Close.CLOSE:
                writer.write(_FAILURE_LINE)
            if mode is _Close.FAILURE:
                # Closing with unread input sends an RST, which can destroy the
                # FAILURE line before Asterisk reads it: half-close, then read
                # (and discard) until Asterisk closes its side.
                if writer.can_write_eof():
                    writer.write_eof()
                async with asyncio.timeout(self._linger):
                    while await reader.read(_READ_CHUNK):
                        pass
        except Exception:
            # Peer reset or linger expired: nothing more to say to it.
            transport.abort()
            return
        # No wait_closed(): the socket is released on the next loop iteration, and
        # an extra wake-up per call is measurable at high call rates.
        writer.close()
        if transport.get_write_buffer_size():
            # A peer that stopped reading must not hold the socket forever.
            asyncio.get_running_loop().call_later(self._linger, transport.abort)

    def _report(self, route: str, outcome: SessionOutcome, duration_s: float) -> None:
        if self._on_session_end is None:
            return
        try:
            self._on_session_end(route, outcome, duration_s)
        except Exception:
            self._log.exception("FastAGI on_session_end hook failed")

    def _forbid(self, writer: asyncio.StreamWriter) -> None:
        # RST and no session slot: a scan or a flood from elsewhere costs the calls nothing.
        writer.transport.abort()
        self.stats.rejected_source += 1
        if self._on_forbidden is not None:
            try:
                self._on_forbidden()
            except Exception:
                self._log.exception("FastAGI on_forbidden hook failed")
        now = time.monotonic()
        self._forbidden_unlogged += 1
        if now - self._last_forbidden_log >= _BUSY_LOG_INTERVAL_S:
            self._log.warning(
                "FastAGI: %d connection(s) from addresses not allowed dropped (last from %s; "
                "only the sites and bridge.agi_allow may connect)",
                self._forbidden_unlogged,
                _peer_host(writer),
            )
            self._last_forbidden_log = now
            self._forbidden_unlogged = 0

    def _log_busy(self) -> None:
        # Under overload every rejected call would log a line: summarise instead.
        now = time.monotonic()
        self._busy_unlogged += 1
        if now - self._last_busy_log >= _BUSY_LOG_INTERVAL_S:
            self._log.warning(
                "FastAGI: %d connection(s) refused, %d sessions active (max_sessions), "
                "answered FAILURE",
                self._busy_unlogged,
                self.stats.sessions_active,
            )
            self._last_busy_log = now
            self._busy_unlogged = 0


def _peer_host(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return ""


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
