"""FastAGI server: accepts Asterisk connections and runs one handler per request path."""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import enum
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Container, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Final, cast

from ccbridge import loopdebug
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
from ccbridge.agi.transport import SessionTransport
from ccbridge.logs import mask_number
from ccbridge.readbuf import ReadInto

__all__ = [
    "AgiCommandError",
    "AgiHangup",
    "AgiProtocolError",
    "AgiSession",
    "FastAgiServer",
    "FastAgiStats",
    "Handler",
    "Script",
    "ScriptHandler",
    "SessionEndHook",
    "SessionOutcome",
    "script",
]

# Asterisk opens one connection per AGI() call; a burst of calls must not overflow the
# accept queue (a dropped SYN costs the caller a 1 s retransmit, Asterisk gives up at 2 s).
_BACKLOG: Final = 1024
# After a stall (a SIGSTOP, a swap) the whole queue is waiting: accepting 1,000
# connections in one callback took 64 ms on asyncio's loop (which accepts up to its
# ``backlog`` argument a turn), and libuv (uvloop) accepts until the queue is empty.
# The server accepts itself (_accept), at most this many a loop turn, so the
# kernel queue stays _BACKLOG deep and one turn stays short on either loop.
_ACCEPT_BATCH: Final = 64
# Of those, the first few get their transport in the accept callback itself (one loop
# turn less before their header is read); a burst's rest one a callback, next turn.
_ADOPT_NOW: Final = 4
# res_agi.c treats a first line starting with "failure" as AGI_RESULT_FAILURE, so
# AGISTATUS=FAILURE and the dialplan takes its fallback branch.  Closing without a
# line would give AGISTATUS=SUCCESS (the "script completed" path).
_FAILURE_LINE: Final = b"FAILURE\n"
_BUSY_LOG_INTERVAL_S: Final = 1.0
_ACCEPT_SETTLE_S: Final = 0.05
_ACCEPT_RETRY_S: Final = 1.0  # after EMFILE and the like (asyncio's ACCEPT_RETRY_DELAY)
# libuv's timers have millisecond resolution: one may fire up to this early.
_EARLY_S: Final = 0.002


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
#: A script: the command lines of one session, each ``yield`` answered with Asterisk's
#: reply (``AgiHangup`` and ``AgiProtocolError`` are raised at the ``yield``, as at an
#: ``await session.command``); it runs inside the connection's callbacks, so it must not
#: block and cannot await.
Script = Generator[str, AgiReply, None]
#: ``on_session_end(route, outcome, duration_s)``; ``route`` is the matched handler
#: key or ``""``, never the raw requested path, so it is safe as a label.
SessionEndHook = Callable[[str, SessionOutcome, float], None]


class ScriptHandler:
    """A handler that needs nothing but Asterisk's replies (the ``route`` decision, the
    guard's check): run in the connection's own callbacks, with no task, no future and
    no stream a session. A handler that awaits anything else is a ``Handler``."""

    __slots__ = ("run",)

    def __init__(self, run: Callable[[AgiRequest], Script]) -> None:
        self.run = run


def script(run: Callable[[AgiRequest], Script]) -> ScriptHandler:
    """Mark a generator function ``run(request)`` as a script handler."""
    return ScriptHandler(run)


@dataclass
class FastAgiStats:
    """Counters a metrics collector reads at scrape time."""

    sessions_total: int = 0  # connections given a session slot
    sessions_active: int = 0
    rejected_busy: int = 0
    rejected_source: int = 0  # connections from an address not allowed (dropped at once)
    largest_accept_batch: int = 0  # the most connections one loop turn accepted
    errors_total: Counter[str] = field(default_factory=Counter)  # by SessionOutcome


def _encode(lines: Sequence[str]) -> bytes:
    """Command lines as written to Asterisk; ValueError for one it would misread."""
    payload = bytearray()
    for line in lines:
        if "\n" in line or "\r" in line:
            raise ValueError("an AGI command is a single line")
        encoded = line.encode("utf-8")
        if len(encoded) > MAX_COMMAND_BYTES:
            raise ValueError(f"AGI command longer than {MAX_COMMAND_BYTES} bytes")
        payload += encoded
        payload += b"\n"
    return bytes(payload)


class AgiSession:
    """One FastAGI conversation; a handler drives it with commands.

    Not safe for concurrent use from several tasks: AGI is strictly one reply per
    command, in order.  After a hangup every command raises ``AgiHangup``.
    """

    __slots__ = ("_conn", "_in_use", "hung_up", "request", "route")

    def __init__(self, request: AgiRequest, route: str, conn: _Connection) -> None:
        self.request = request
        self.route = route
        self.hung_up = False
        self._conn = conn
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
        payload = _encode(lines)
        conn = self._conn
        self._in_use = True
        try:
            if conn.lost:
                self.hung_up = True
                raise AgiHangup("connection lost while sending a command")
            conn.transport.write(payload)
            replies: list[AgiReply] = []
            for _ in lines:
                reply = await conn.reply(self)
                if reply.is_hangup or reply.code == 511:
                    self.hung_up = True
                    raise AgiHangup(reply.raw)
                replies.append(reply)
            return replies
        finally:
            self._in_use = False

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


class _State(enum.Enum):
    HEADER = 1  # reading the request header
    SCRIPT = 2  # a script handler waits for a reply
    TASK = 3  # an async handler runs in its task
    LINGER = 4  # FAILURE written and half-closed: discarding input until Asterisk closes
    DONE = 5  # outcome known, the transport closing


class _Connection(ReadInto):
    """One accepted FastAGI connection, from the first byte to the report of its outcome.

    The header is parsed and a script handler run straight from ``data_received``: a
    ``route`` session is two callbacks and one write, with no task, future or stream.
    """

    __slots__ = (
        "_deadline",
        "_script",
        "_server",
        "_started",
        "_timer",
        "closed",
        "counted",
        "error",
        "lost",
        "outcome",
        "parser",
        "paused",
        "pending",
        "replies",
        "request",
        "route",
        "session",
        "state",
        "task",
        "transport",
        "waiter",
    )

    def __init__(self, server: FastAgiServer) -> None:
        self._server = server
        self._started = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0  # loop.time() by which the header, then a script, must be done
        self._script: Script | None = None
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.state = _State.HEADER
        self.parser: AgiRequestParser | None = AgiRequestParser()
        self.replies: AgiReplyParser | None = None
        self.pending: list[AgiReply] = []
        self.request: AgiRequest | None = None
        self.route = ""
        self.outcome: SessionOutcome | None = None
        self.counted = False  # holds a session slot (not busy, not forbidden)
        self.lost = False  # Asterisk closed its side or the connection is gone
        self.closed = False  # connection_lost ran
        self.paused = False  # reading paused: replies wait that no handler asked for
        self.error: AgiProtocolError | None = None  # a bad reply, for the task's next read
        self.session: AgiSession | None = None
        self.task: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is a Transport by its methods, not by its class.
        self.transport = cast(asyncio.Transport, transport)
        server = self._server
        if server.io_timer is None:
            server.connection_made(self)
        else:
            started = time.perf_counter()
            server.connection_made(self)
            server.io_timer(started)

    def data_received(self, data: bytes) -> None:
        timer = self._server.io_timer
        if timer is None:
            self._data(data)
        else:
            # uvloop calls this straight from libuv, untimed: time it for the gate.
            started = time.perf_counter()
            self._data(data)
            timer(started)

    def eof_received(self) -> bool:
        state = self.state
        if state is _State.HEADER:
            # EOF must end the session: re-reading it forever is what freezes
            # panoramisk's fast_agi on a plain port probe.
            self._server.log.debug("FastAGI %s: closed before a request", _peer(self.transport))
            self.finish(SessionOutcome.NO_REQUEST, _Close.CLOSE)
        elif state is _State.SCRIPT:
            self.lost = True
            self._step(None, AgiHangup("Asterisk closed the connection"))
        elif state is _State.TASK:
            self.lost = True
            self._wake()
        elif state is _State.LINGER:
            self.state = _State.DONE
            self._close(_Close.CLOSE)
        return True  # half-open: the session decides what to write before closing

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.closed = True
        state = self.state
        if state is _State.HEADER:
            self.finish(SessionOutcome.NO_REQUEST, _Close.ABORT)
        elif state is _State.SCRIPT:
            self._step(None, AgiHangup("connection lost while waiting for a reply"))
        elif state is _State.TASK:
            self._wake()
        elif state is _State.LINGER:
            self.state = _State.DONE
        self._cancel_timer()
        if self.outcome is not None:
            self._server.ended(self)
        # else an async handler still runs: its end reports (finish, then ended)

    # ------------------------------------------------------------------ session

    def _data(self, data: bytes) -> None:
        state = self.state
        if state is _State.SCRIPT or state is _State.TASK:
            self._replies(data)
        elif state is _State.HEADER:
            self._header(data)
        # LINGER, DONE: Asterisk's input after the end is read and dropped

    def _header(self, data: bytes) -> None:
        parser = self.parser
        assert parser is not None  # HEADER state
        try:
            request = parser.feed(data)
        except AgiProtocolError as exc:
            self._server.log.warning(
                "FastAGI %s: not a FastAGI request (%s), dropped", _peer(self.transport), exc
            )
            self.finish(SessionOutcome.PROTOCOL_ERROR, _Close.ABORT)
            return
        if request is None:
            return
        self.parser = None
        self.request = request
        server = self._server
        handler = server._handlers.get(request.path)
        if handler is None:
            server.log.warning(
                "FastAGI %s: no handler for path %r (uniqueid %s), answered FAILURE",
                _peer(self.transport),
                request.path[:80],
                request.uniqueid,
            )
            self.finish(SessionOutcome.NOT_FOUND, _Close.FAILURE)
            return
        self._deadline = server.loop.time() + server.session_timeout
        self.route = request.path
        self.replies = AgiReplyParser()
        tail = parser.tail
        loop = server.loop
        if isinstance(handler, ScriptHandler):
            # The header's timer stays, due no later than this deadline: it moves on to
            # it if it fires first (expire), which spares a timer a session.
            self.state = _State.SCRIPT
            try:
                self._script = handler.run(request)
            except Exception as exc:
                self._handler_failed(exc)
                return
            self._step(None, None)
        else:
            self._cancel_timer()  # the task's own asyncio.timeout() bounds the session
            self.state = _State.TASK
            self.session = AgiSession(request, self.route, self)
            task = loop.create_task(self._run(handler, self.session))
            self.task = task
            server.tasks.add(task)
            task.add_done_callback(self._task_done)
        if tail and (self.state is _State.SCRIPT or self.state is _State.TASK):
            self._replies(tail)

    def _replies(self, data: bytes) -> None:
        replies = self.replies
        assert replies is not None  # SCRIPT or TASK
        try:
            self.pending += replies.feed(data)
        except AgiProtocolError as exc:
            if self.state is _State.SCRIPT:
                self._step(None, exc)
                return
            self.error = exc
        if self.state is _State.SCRIPT:
            while self.pending and self.state is _State.SCRIPT:
                reply = self.pending.pop(0)
                if reply.is_hangup or reply.code == 511:
                    self.lost = True  # every later command of the script raises AgiHangup
                    self._step(None, AgiHangup(reply.raw))
                else:
                    self._step(reply, None)
        elif self.waiter is not None:
            self._wake()
        elif self.pending and not self.paused:
            # Replies nobody asked for yet: stop reading until the handler does, so a
            # peer cannot grow the list while the handler awaits something else.
            self.paused = True
            self.transport.pause_reading()

    # A script's own errors follow ``_run``'s rules for an async handler's.
    def _step(self, reply: AgiReply | None, exc: BaseException | None) -> None:
        """Resume the script with ``reply`` (or ``exc`` raised at its ``yield``) and write
        its next command; end the session when it returns or raises."""
        running = self._script
        assert running is not None  # SCRIPT state
        try:
            while True:
                if exc is not None:
                    line = running.throw(exc)
                elif reply is not None:
                    line = running.send(reply)
                else:
                    line = next(running)  # the script's first command
                exc = None
                if self.lost:
                    exc = AgiHangup("channel already hung up")
                    continue
                try:
                    payload = _encode((line,))
                except ValueError as bad:
                    exc = bad
                    continue
                self.transport.write(payload)
                return
        except StopIteration:
            self.finish(
                SessionOutcome.HANGUP if self.lost else SessionOutcome.OK,
                _Close.CLOSE,
            )
        except AgiHangup as hangup:
            self._server.log.debug("FastAGI %r: hangup (%s)", self.route, hangup)
            self.lost = True
            self.finish(SessionOutcome.HANGUP, _Close.CLOSE)
        except Exception as failed:
            self._handler_failed(failed)

    def _handler_failed(self, exc: Exception) -> None:
        outcome, close = self._server.handler_failed(self, exc)
        self.finish(outcome, close)

    def _script_expired(self) -> None:
        running = self._script
        if running is None:
            return
        self.state = _State.DONE  # a script's own cleanup must not write more commands
        try:
            running.close()
        except Exception:
            self._server.log.exception("FastAGI %r: script failed on close", self.route)
        self._server.log_timeout(self)
        self.finish(SessionOutcome.TIMEOUT, _Close.FAILURE)

    async def _run(self, handler: Handler, session: AgiSession) -> None:
        server = self._server
        try:
            outcome, close = await server.serve(self, handler, session)
        except asyncio.CancelledError:
            # Only stop() cancels these tasks; nobody awaits this one's result.
            outcome, close = SessionOutcome.CANCELLED, _Close.FAILURE_NOW
        except Exception:
            # A bug in this module, not in a handler: keep serving other calls.
            server.log.exception("FastAGI %s: internal error", _peer(self.transport))
            outcome, close = SessionOutcome.INTERNAL_ERROR, _Close.FAILURE_NOW
        self.finish(outcome, close)
        if self.closed:
            server.ended(self)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._server.tasks.discard(task)
        if self.outcome is None:  # cancelled before its first step: _run never ran
            self.finish(SessionOutcome.CANCELLED, _Close.FAILURE_NOW)
            if self.closed:
                self._server.ended(self)

    async def reply(self, session: AgiSession) -> AgiReply:
        """The next reply, for an async handler's ``AgiSession``."""
        while not self.pending:
            if self.error is not None:
                raise AgiProtocolError(str(self.error))
            if self.lost:
                session.hung_up = True
                raise AgiHangup("Asterisk closed the connection")
            waiter = self._server.loop.create_future()
            self.waiter = waiter
            self._resume_reading()
            try:
                await waiter
            finally:
                self.waiter = None
        return self.pending.pop(0)

    def _resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            self.transport.resume_reading()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ end

    def finish(self, outcome: SessionOutcome, close: _Close) -> None:
        """The session's outcome: free its slot, then close the connection ``close``'s way."""
        if self.outcome is not None:
            return
        self.outcome = outcome
        self._script = None
        if self.counted:
            self.counted = False
            self._server.stats.sessions_active -= 1
        self._cancel_timer()
        if self.closed:
            self.state = _State.DONE
            return
        self._close(close)

    def _close(self, mode: _Close) -> None:
        """Close the connection; never raises, waits at most ``linger``."""
        transport = self.transport
        if mode is _Close.ABORT:
            self.state = _State.DONE
            transport.abort()
            return
        if mode is _Close.CLOSE:
            self.state = _State.DONE
            transport.close()
            if transport.get_write_buffer_size():
                # A peer that stopped reading must not hold the socket forever.
                self._timer = self._server.loop.call_later(self._server.linger, transport.abort)
            return
        transport.write(_FAILURE_LINE)
        if mode is _Close.FAILURE_NOW or not transport.can_write_eof():
            self.state = _State.DONE
            transport.close()
            return
        # Closing with unread input sends an RST, which can destroy the FAILURE line
        # before Asterisk reads it: half-close, then read (and discard) until Asterisk
        # closes its side, for at most ``linger``.
        self.state = _State.LINGER
        self._resume_reading()
        transport.write_eof()
        self._timer = self._server.loop.call_later(self._server.linger, self.abort)

    def abort(self) -> None:
        """Reset the connection (linger over, or the server stopping)."""
        self._timer = None
        self.state = _State.DONE
        self.transport.abort()

    def cancel(self) -> None:
        """The server stops: end a running session with FAILURE, cut a lingering close."""
        state = self.state
        if state is _State.TASK and self.task is not None:
            self.task.cancel()
        elif state is _State.SCRIPT or state is _State.HEADER:
            running = self._script
            self.state = _State.DONE
            if running is not None:
                running.close()
            self.finish(SessionOutcome.CANCELLED, _Close.FAILURE_NOW)
        elif state is _State.LINGER or state is _State.DONE:
            self._cancel_timer()
            self.abort()

    def expire(self) -> None:
        """The connection's one timer, for the header's deadline and then the script's:
        set again for the one that has not come yet."""
        self._timer = None
        state = self.state
        if state is not _State.HEADER and state is not _State.SCRIPT:
            return
        loop = self._server.loop
        if loop.time() < self._deadline - _EARLY_S:
            self._timer = loop.call_at(self._deadline, self.expire)
        elif state is _State.SCRIPT:
            self._script_expired()
        else:
            self._header_expired()

    def _header_expired(self) -> None:
        server = self._server
        server.log.warning(
            "FastAGI %s: no complete request within %.1fs, dropped",
            _peer(self.transport),
            server.header_timeout,
        )
        self.finish(SessionOutcome.HEADER_TIMEOUT, _Close.ABORT)

    def _cancel_timer(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    def start_timer(self) -> None:
        """One timer a session (expire), at the earlier of its two deadlines."""
        server = self._server
        now = server.loop.time()
        self._deadline = now + server.header_timeout
        first = min(server.header_timeout, server.session_timeout)
        self._timer = server.loop.call_at(now + first, self.expire)

    def duration(self) -> float:
        return time.monotonic() - self._started


class FastAgiServer:
    """Asyncio FastAGI listener.

    Request paths map to handlers (``"route"`` and ``"/route"`` are the same key): a
    ``Handler`` coroutine gets a task and an ``AgiSession``, a ``ScriptHandler`` runs in
    the connection's callbacks.  Every failure ends the connection with a ``FAILURE``
    line so Asterisk sets ``AGISTATUS=FAILURE``; a handler that returns normally closes
    the socket, which Asterisk reports as ``AGISTATUS=SUCCESS``.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler | ScriptHandler],
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
        routes: dict[str, Handler | ScriptHandler] = {}
        for key, handler in handlers.items():
            norm = key.lstrip("/")
            if norm in routes:
                raise ValueError(f"handler paths {key!r} and {norm!r} collide")
            routes[norm] = handler
        self._handlers: Mapping[str, Handler | ScriptHandler] = MappingProxyType(routes)
        self._host = host
        self._port = port
        self._max_sessions = max_sessions
        self.session_timeout = session_timeout
        self.header_timeout = header_timeout
        self.linger = linger
        self.log = logger if logger is not None else logging.getLogger("ccbridge.agi")
        self._on_session_end = on_session_end
        self._allow = allow
        self._on_forbidden = on_forbidden
        self._last_forbidden_log = 0.0
        self._forbidden_unlogged = 0
        self._server: asyncio.Server | None = None  # bound sockets; accepted by _accept
        self._listeners: list[socket.socket] = []
        self._lean = False  # set by start(): SessionTransport on asyncio's selector loop
        self.loop: asyncio.AbstractEventLoop = cast(asyncio.AbstractEventLoop, None)
        # Times protocol callbacks for the slow-callback gate where the loop does not
        # (uvloop in debug mode; ccbridge/loopdebug.py); None elsewhere.
        self.io_timer: Callable[[float], None] | None = None
        self._conns: set[_Connection] = set()  # accepted, not yet reported
        self._drained: asyncio.Future[None] | None = None  # stop() waits on it
        self.tasks: set[asyncio.Task[None]] = set()  # async handlers running
        self._last_busy_log = 0.0
        self._busy_unlogged = 0
        self.stats = FastAgiStats()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FastAgiServer already started")
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.io_timer = loopdebug.io_timer(loop, "FastAGI connection callback")
        # asyncio's selector loop: a transport of the server's own (agi/transport.py);
        # uvloop's own C transport is cheaper still, and any other loop keeps its own.
        self._lean = isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
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
            # Replies are small: no Nagle delay. Linux gives an accepted socket the
            # listener's TCP_NODELAY, one setsockopt here instead of one a session.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.listen(_BACKLOG)  # start_serving=False: bound, not yet listening
            self._listeners.append(sock)
            loop.add_reader(sock.fileno(), self._accept, sock)
        self.log.info(
            "FastAGI listening on %s:%d, routes %s", self._host, self.port, sorted(self._handlers)
        )

    def _accept(self, sock: socket.socket) -> None:
        """Accept up to _ACCEPT_BATCH waiting connections; the rest wait in the kernel's
        queue (_BACKLOG deep) for the next loop turn."""
        loop = self.loop
        accepted = 0
        while accepted < _ACCEPT_BATCH:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): stop
                # accepting for a second, as asyncio's own accept does, and say so.
                self.log.error("FastAGI accept failed (%s): accepting again in 1 s", exc)
                loop.remove_reader(sock.fileno())
                loop.call_later(_ACCEPT_RETRY_S, self._resume_accepting, sock)
                break
            accepted += 1
            conn.setblocking(False)  # TCP_NODELAY comes from the listener (start)
            if accepted <= _ADOPT_NOW:
                # Set up here: a session one loop turn sooner (a turn under load is the
                # AMI share, held slices and other sessions: 1-5 ms; ~4 turns a session).
                self._adopt(conn)
            else:
                # A burst's rest in callbacks of their own: 64 transports built in one
                # took 53-63 ms on asyncio's loop on the shared machine (the 50 ms gate).
                loop.call_soon(self._adopt, conn)
        if accepted > self.stats.largest_accept_batch:
            self.stats.largest_accept_batch = accepted

    def _adopt(self, conn: socket.socket) -> None:
        """Give an accepted socket a transport and a _Connection, with no task.

        On asyncio's selector loop the transport is the server's own (agi/transport.py),
        which also leaves no cyclic garbage (asyncio's keeps a bound method of itself).
        Elsewhere (uvloop) ``connect_accepted_socket``, the loops' public way: a coroutine
        only to wait until ``connection_made`` ran, which the connection learns by
        itself. It runs here up to that wait and is resumed by the wait's own callback,
        as a task would, minus the task.
        """
        if self._lean:
            try:
                SessionTransport(self.loop, conn, _Connection(self))
            except Exception as exc:  # the descriptor unwatchable, or connection_made failed
                self.log.debug("FastAGI: an accepted connection could not be set up (%r)", exc)
                conn.close()
            return
        coro = self.loop.connect_accepted_socket(lambda: _Connection(self), conn)
        _step_adoption(coro, conn, self.log)

    def _resume_accepting(self, sock: socket.socket) -> None:
        if self._server is not None and sock in self._listeners:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting, give running sessions ``grace`` seconds, then cancel them."""
        server = self._server
        if server is None:
            return
        self._server = None
        loop = self.loop
        for sock in self._listeners:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._listeners.clear()
        server.close()
        # A connection accepted just before close() is made a few loop turns later (and
        # then dropped); without this pause its transport would outlive the loop. Health
        # checks (the AGI guard's, every 0.5 s per site) make that common.
        await asyncio.sleep(_ACCEPT_SETTLE_S)
        if self._conns:
            drained: asyncio.Future[None] = loop.create_future()
            self._drained = drained
            try:
                done, _ = await asyncio.wait({drained}, timeout=grace)
                if not done:
                    for conn in list(self._conns):
                        conn.cancel()
                    if self.tasks:
                        await asyncio.wait(set(self.tasks))
                    # FAILURE written and closing: connection_lost follows at once
                    done, _ = await asyncio.wait({drained}, timeout=grace)
                if not done:
                    for conn in list(self._conns):
                        conn.abort()
            finally:
                self._drained = None
        await server.wait_closed()
        self.log.info("FastAGI on %s stopped", self._host)

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

    def connection_made(self, conn: _Connection) -> None:
        transport = conn.transport
        if self._server is None:  # stopping: accepted just before close()
            conn.state = _State.DONE
            conn.outcome = SessionOutcome.CANCELLED  # not reported: never a session
            transport.abort()
            return
        if self._allow is not None and _peer_host(transport) not in self._allow:
            conn.state = _State.DONE
            conn.outcome = SessionOutcome.CANCELLED  # not reported: never a session
            self._forbid(transport)
            return
        self._conns.add(conn)
        stats = self.stats
        if stats.sessions_active >= self._max_sessions:
            stats.rejected_busy += 1
            self._log_busy()
            conn.parser = None
            conn.finish(SessionOutcome.BUSY, _Close.FAILURE)
            return
        stats.sessions_total += 1
        stats.sessions_active += 1
        conn.counted = True
        conn.start_timer()

    async def serve(
        self, conn: _Connection, handler: Handler, session: AgiSession
    ) -> tuple[SessionOutcome, _Close]:
        """Run an async handler under the session deadline; its outcome."""
        deadline = asyncio.timeout(self.session_timeout)
        try:
            async with deadline:
                await handler(session)
        except AgiHangup as exc:
            self.log.debug("FastAGI %r: hangup (%s)", conn.route, exc)
            return SessionOutcome.HANGUP, _Close.CLOSE
        except Exception as exc:
            if deadline.expired():
                self.log_timeout(conn)
                return SessionOutcome.TIMEOUT, _Close.FAILURE
            return self.handler_failed(conn, exc)
        if session.hung_up:
            return SessionOutcome.HANGUP, _Close.CLOSE
        return SessionOutcome.OK, _Close.CLOSE

    def handler_failed(self, conn: _Connection, exc: Exception) -> tuple[SessionOutcome, _Close]:
        request = conn.request
        assert request is not None  # a handler ran
        if isinstance(exc, AgiProtocolError):
            self.log.warning(
                "FastAGI %r: bad reply from Asterisk (%s), answered FAILURE", conn.route, exc
            )
            return SessionOutcome.PROTOCOL_ERROR, _Close.FAILURE
        self.log.error(
            "FastAGI %r: handler failed (caller %s, uniqueid %s), answered FAILURE",
            conn.route,
            mask_number(request.callerid),
            request.uniqueid,
            exc_info=exc,
        )
        return SessionOutcome.HANDLER_ERROR, _Close.FAILURE

    def log_timeout(self, conn: _Connection) -> None:
        request = conn.request
        assert request is not None  # a handler ran
        self.log.warning(
            "FastAGI %r: handler exceeded %.1fs (caller %s, uniqueid %s), answered FAILURE",
            conn.route,
            self.session_timeout,
            mask_number(request.callerid),
            request.uniqueid,
        )

    def ended(self, conn: _Connection) -> None:
        """A connection is closed and its outcome known: count and report it, once."""
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        outcome = conn.outcome
        assert outcome is not None  # ended only with an outcome
        if outcome in _ERROR_OUTCOMES:
            self.stats.errors_total[outcome] += 1
        if self._on_session_end is not None:
            try:
                self._on_session_end(conn.route, outcome, conn.duration())
            except Exception:
                self.log.exception("FastAGI on_session_end hook failed")
        drained = self._drained
        if drained is not None and not self._conns and not drained.done():
            drained.set_result(None)

    def _forbid(self, transport: asyncio.Transport) -> None:
        # RST and no session slot: a scan or a flood from elsewhere costs the calls nothing.
        transport.abort()
        self.stats.rejected_source += 1
        if self._on_forbidden is not None:
            try:
                self._on_forbidden()
            except Exception:
                self.log.exception("FastAGI on_forbidden hook failed")
        now = time.monotonic()
        self._forbidden_unlogged += 1
        if now - self._last_forbidden_log >= _BUSY_LOG_INTERVAL_S:
            self.log.warning(
                "FastAGI: %d connection(s) from addresses not allowed dropped (last from %s; "
                "only the sites and bridge.agi_allow may connect)",
                self._forbidden_unlogged,
                _peer_host(transport),
            )
            self._last_forbidden_log = now
            self._forbidden_unlogged = 0

    def _log_busy(self) -> None:
        # Under overload every rejected call would log a line: summarise instead.
        now = time.monotonic()
        self._busy_unlogged += 1
        if now - self._last_busy_log >= _BUSY_LOG_INTERVAL_S:
            self.log.warning(
                "FastAGI: %d connection(s) refused, %d sessions active (max_sessions), "
                "answered FAILURE",
                self._busy_unlogged,
                self.stats.sessions_active,
            )
            self._last_busy_log = now
            self._busy_unlogged = 0


def _step_adoption(
    coro: Coroutine[Any, Any, object], conn: socket.socket, log: logging.Logger
) -> None:
    """Run ``connect_accepted_socket`` to its next wait; resume it when that is done."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return
    except (Exception, asyncio.CancelledError) as exc:  # reset before set up, loop closing
        log.debug("FastAGI: an accepted connection could not be set up (%r)", exc)
        conn.close()
        return
    if asyncio.isfuture(waiting):
        waiting.add_done_callback(lambda _: _step_adoption(coro, conn, log))
    else:  # a bare yield (no loop does this today): try again next turn
        asyncio.get_running_loop().call_soon(_step_adoption, coro, conn, log)


def _peer_host(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return ""


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
