"""Everything that touches panoramisk 1.4's internals, each workaround said and tested.

panoramisk keeps the connection, the actions and the matching of their replies. Events
do not go through it: ``Protocol.data_received`` parses with ccbridge's AmiParser and
hands each event's AmiMessage (a read-only mapping) straight to the link, so an event
is parsed once and never becomes a panoramisk ``Message``. Only replies to actions (and
the list events that carry a pending action's ActionID) take panoramisk's path.

The assumptions below are checked by tests/unit/test_ami_pano.py against the installed
panoramisk: each fails if panoramisk's behaviour or layout changes, so a new release is
noticed before it breaks a link.

- ``AMIProtocol.responses`` maps a pending action's ActionID to the action; events whose
  ActionID is there belong to that action (``Protocol.data_received``).
- ``Manager.connection_made`` schedules its own reconnect on a failed connect, ``login``
  re-arms an unchecked pinger, ``ping`` never checks the reply, ``connection_lost``
  reconnects on its own timer, and ``FullyBooted`` re-sends actions queued while down:
  ``OneShotManager`` switches all of these off (SiteLink owns retries and liveness).
- A list action answered with ``Response: Error`` waits forever for events that never
  come: ``Protocol.handle_message`` ends it.
- ``QueueAdd``'s reply text "Added interface to queue" is taken for a list start: callers
  pass ``as_list=False`` (``client.SINGLE_ACTIONS``).
- A ``Shutdown`` event makes panoramisk call ``connection_lost`` with a Message, not an
  exception; ``Protocol`` handles Shutdown itself.
- panoramisk logs whole actions (a pending Login carries the secret) through the
  manager's ``log``: ``RedactingLog`` hides the secret.

One read may carry hundreds of messages (a tick of a busy site, or what piled up while
the bridge was stopped; over TLS, asyncio's and uvloop's SSL layers hand on everything
they could decrypt as one read, megabytes after a stop): ``Protocol`` parses it
``PARSE_BYTES`` and hands it on ``SLICE`` messages at a time for at most ``BUDGET`` (2 ms)
per loop turn **over all sites' links together** (``TURN``), reading paused while a large
rest waits, so route requests wait a few ms, not the whole read (51-70 ms after a 30 s
SIGSTOP on uvloop, BENCHMARKS §12), nor every site's read of the same tick (20 sites each
with a read ready in one turn held it for their sum, BENCHMARKS §3).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from panoramisk import actions as pano_actions
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from ccbridge import loopdebug
from ccbridge.ami.codec import AmiMessage, AmiParser, AmiProtocolError, action_fields, check_field
from ccbridge.readbuf import ReadInto
from ccbridge.turns import TurnShare

ActionFields = Mapping[str, str | Sequence[str]]
EventSink = Callable[[AmiMessage], None]

ERROR_RESPONSES: Final = frozenset({"Error", "Fail", "Failure"})
# Seconds of AMI work per loop turn, over every site's link: a read after a 30 s SIGSTOP
# took 51-70 ms in one go (over the 50 ms slow-callback gate), and 20 sites' reads of one
# tick, each bounded alone (4 ms), held a turn for their sum; more than this waits for the
# next turns, so a route request waits ~2 ms of AMI work, not all of it.
BUDGET: Final = 0.002
TURN: Final = TurnShare(BUDGET)  # shared by every Protocol of the process
# Messages handed on between two looks at the clock: ~30 us each on the event path.
SLICE: Final = 32
# Bytes parsed between two looks at the clock: ~100 events, ~1 ms of AmiParser.feed.
PARSE_BYTES: Final = 64 * 1024


class Protocol(ReadInto, AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with ccbridge's parser (limits, bare LF, old command output),
    events delivered to ``on_event`` without panoramisk, an Error reply that ends a list
    action, and futures that tell when the link is over."""

    parser: AmiParser
    version: str | None
    lost: asyncio.Future[None]  # first sign the connection is over
    gone: asyncio.Future[None]  # asyncio has closed the socket
    protocol_errors: int  # connections dropped because the peer broke the framing
    unknown_messages: int  # blocks that are neither an event nor a response
    _slow_io: Callable[[float], None] | None  # loopdebug.io_timer
    # AMI work per loop turn when this link opens the turn's share (benches that time
    # parsing in a plain loop lift it; tests set 0: one slice a turn).
    budget: float = BUDGET  # seconds, checked after each slice and each parse
    slice: int = SLICE  # messages handed on between two checks
    parse_bytes: int = PARSE_BYTES  # bytes parsed between two checks
    _backlog: list[AmiMessage]  # parsed, not yet handed on
    _backlog_at: int  # the next one of them
    _raw: bytes  # read, not yet parsed
    _raw_at: int  # the next byte of it
    _waiting: bool  # work left for a later loop turn (TURN.later holds _work_on)
    _paused: bool  # reading paused by this protocol: PARSE_BYTES or more wait unparsed
    # ActionID -> the future of an action sent by ``send_plain`` (one reply, no panoramisk)
    replies: dict[str, asyncio.Future[AmiMessage]]

    def __init__(self, on_event: EventSink) -> None:
        self._on_event = on_event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self.parser = AmiParser()
        self.lost = loop.create_future()
        self.gone = loop.create_future()
        self.protocol_errors = 0
        self.unknown_messages = 0
        self._backlog = []
        self._backlog_at = 0
        self._raw = b""
        self._raw_at = 0
        self._waiting = False
        self._paused = False
        self.replies = {}
        # uvloop calls data_received untimed: the slow-callback gate times it here.
        self._slow_io = loopdebug.io_timer(loop, "<AMI data_received>")

    @property
    def bad_input(self) -> int:
        """Lines and messages dropped, and framing errors, on this connection."""
        p = self.parser
        return p.skipped_lines + p.dropped + self.unknown_messages + self.protocol_errors

    def data_received(self, data: bytes) -> None:
        timer = self._slow_io
        if timer is None:
            self._received(data)
        else:
            started = time.perf_counter()
            self._received(data)
            timer(started)

    def _received(self, data: bytes) -> None:
        if self._waiting:
            # Still working through an earlier read (a TLS layer may hand on what it had
            # decrypted before reading paused): this comes after it.
            self._raw = self._raw[self._raw_at :] + data
            self._raw_at = 0
            self._pause_if_behind()
            return
        self._raw, self._raw_at = data, 0
        self._work()

    def _work(self) -> None:
        """Parse and hand on what was read, ``parse_bytes`` and ``slice`` at a time, until
        this loop turn's AMI share (``TURN``) is spent; if some is left, go on next turn,
        reading paused while ``PARSE_BYTES`` or more wait unparsed (a short wait is not
        worth the two epoll_ctl calls: ~5 % of the AMI CPU under load). The link that
        opens a turn's share does at least one piece.

        A time budget, not a count: the usual read is done in one callback as before (a
        count of 32 a turn made the bridge fall behind a busy site under load: AMI ping
        timeouts and reconnects, ended calls missing from the store, BENCHMARKS §4),
        while a read of megabytes after a stop still gives the loop a turn every few ms."""
        deadline, first = TURN.begin(self.budget)
        if not first and time.perf_counter() >= deadline and not self.closed:
            self._defer(worked=False)  # other links spent this turn's share
            return
        while not self.closed:
            if self._backlog_at < len(self._backlog):
                at = self._backlog_at
                self._backlog_at = at + self.slice
                self._hand_on(self._backlog[at : at + self.slice])
            elif self._raw_at < len(self._raw):
                if not self._parse_more():
                    return  # a framing error: the connection is dropped
            else:
                self._backlog, self._backlog_at, self._raw, self._raw_at = [], 0, b"", 0
                self._waiting = False
                if self._paused:
                    self._paused = False
                    if not self.transport.is_closing():
                        self.transport.resume_reading()
                return
            if time.perf_counter() >= deadline:
                self._defer(worked=True)
                return

    def _defer(self, worked: bool) -> None:
        """Go on in a later loop turn; a link that did some of this turn's share goes
        after the links that did none (``TurnShare.later``)."""
        self._waiting = True
        self._pause_if_behind()
        TURN.later(self._work_on, worked)

    def _pause_if_behind(self) -> None:
        if not self._paused and len(self._raw) - self._raw_at >= self.parse_bytes:
            self._paused = True
            self.transport.pause_reading()

    def _work_on(self) -> None:
        if not self.closed and self._waiting:
            self._work()

    def _parse_more(self) -> bool:
        """Parse the next ``parse_bytes`` of the read into the backlog; False after a
        framing error (the connection is aborted)."""
        raw, at = self._raw, self._raw_at
        end = at + self.parse_bytes
        data = raw if at == 0 and end >= len(raw) else raw[at:end]
        self._raw_at = min(end, len(raw))
        try:
            messages = self.parser.feed(data)
        except AmiProtocolError as exc:
            self.protocol_errors += 1
            self.log.error("AMI protocol error, dropping the connection: %s", exc)
            self._backlog, self._backlog_at, self._raw, self._raw_at = [], 0, b"", 0
            self.transport.abort()
            return False
        if self.version is None and self.parser.version is not None:
            self.version = self.parser.version
        self._backlog, self._backlog_at = messages, 0
        return True

    def _hand_on(self, messages: list[AmiMessage]) -> None:
        responses = self.responses
        deliver = self._on_event
        for msg in messages:
            if self.closed:
                return
            name = msg.get("Event")
            if name is not None:
                # No action pending (most of the time): no ActionID to look up.
                if not responses or msg.get("ActionID") not in responses:
                    deliver(msg)  # the event path: this mapping is what subscribers read
                    if name == "Shutdown":
                        self._peer_shut_down()
                    continue
            elif "Response" not in msg:
                self.unknown_messages += 1
                continue
            else:
                plain = self.replies.pop(msg.get("ActionID", ""), None)
                if plain is not None:
                    if not plain.done():
                        plain.set_result(msg)
                    continue
            self.handle_message(to_panoramisk(msg))

    def send_plain(
        self, action_ids: Sequence[str], data: bytes
    ) -> list[asyncio.Future[AmiMessage]]:
        """Send encoded actions (``data``, their blocks in order, ``action_ids`` theirs)
        whose answer is each one reply, the AmiMessage itself: no panoramisk Action or
        Message for them either way, and one write for them all. A held pass writes its
        routes with these, about one a call while the sticky sites move (BENCHMARKS §12,
        tenth and twenty-second sessions)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[AmiMessage]] = []
        replies = self.replies
        for action_id in action_ids:
            future: asyncio.Future[AmiMessage] = loop.create_future()
            replies[action_id] = future
            futures.append(future)
        self.transport.write(data)
        return futures

    def handle_message(self, message: Message) -> None:
        action = self.responses.get(message.id)
        if action is None and message.action_id:
            action = self.responses.get(message.action_id)
        super().handle_message(message)
        if (
            action is not None
            and not action.future.done()
            and len(action.responses) == 1
            and message.get("Response") in ERROR_RESPONSES
        ):
            # panoramisk 1.4 keeps a list action waiting for events an Error never starts.
            self.responses.pop(action.id, None)
            action.future.set_result(message)

    def _peer_shut_down(self) -> None:
        """Asterisk said Shutdown: close as panoramisk would, but as ourselves."""
        if not self.closed:
            self.close()
            self.factory.connection_lost(None)
        if not self.lost.done():
            self.lost.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        # What a lost link had not handed on is stale; its plain actions' futures are the
        # link's to fail (SiteLink's pending actions).
        self._backlog, self._backlog_at, self._raw, self._raw_at = [], 0, b"", 0
        self.replies = {}
        self._waiting = self._paused = False
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)
        if not self.gone.done():
            self.gone.set_result(None)


class OneShotManager(Manager):  # type: ignore[misc]
    """panoramisk's Manager for exactly one connection attempt: SiteLink owns retries."""

    login_future: asyncio.Future[Any] | None = None
    pinger: asyncio.TimerHandle | None

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # SiteLink logs the failure and schedules the retry itself
        super().connection_made(f)
        self.login_future = self.authenticated_future

    def login(self, future: asyncio.Future[Any]) -> bool:
        # Replaces panoramisk's, which re-arms its own unchecked pinger.
        self.authenticated_future = None
        if future.cancelled() or future.exception() is not None:
            return False
        self.authenticated = bool(future.result().success)
        return bool(self.authenticated)

    def ping(self) -> None:
        """Disabled: panoramisk never checks the reply; SiteLink pings with a deadline."""

    def send_awaiting_actions(self, *_: object) -> None:
        """Disabled: re-sending after a reconnect would repeat actions already failed."""

    def connection_lost(self, exc: object) -> None:
        # No log and no call_later(reconnect): SiteLink reconnects with its own backoff.
        self._connected = False
        if self.pinger is not None:
            self.pinger.cancel()
            self.pinger = None


class RedactingLog(logging.LoggerAdapter[logging.Logger]):
    """panoramisk's logger: it may log a whole action, and Login carries the secret."""

    def __init__(self, logger: logging.Logger, secret: str) -> None:
        super().__init__(logger, {})
        self._secret = secret

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        if self._secret:
            text = text.replace(self._secret, "<hidden>")
        self.logger.log(level, "%s", text, **kwargs)


def build_action(name: str, fields: ActionFields, as_list: bool | None) -> Any:
    """A panoramisk Action (its ActionID generated) after checking every field for CR/LF."""
    grouped: dict[str, str | list[str]] = {}
    for key, value in action_fields(name, fields):
        check_field(key, value)
        have = grouped.get(key)
        if have is None:
            grouped[key] = value
        elif isinstance(have, list):
            have.append(value)
        else:
            grouped[key] = [have, value]
    return pano_actions.Action(grouped, as_list=as_list)


def ping_action() -> Any:
    return pano_actions.Action({"Action": "Ping"}, as_list=False)


def to_panoramisk(ami: AmiMessage) -> Message:
    """The Message panoramisk's reply matching needs (replies only), carrying ``ami``."""
    headers: Mapping[str, str | list[str]] = ami
    if ami.has_repeats:  # panoramisk's convention: a repeated key holds a list
        headers = {key: _one_or_all(ami.getall(key)) for key in ami}
    message = Message(headers)
    message.ami = ami
    return message


def _one_or_all(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def as_ami(message: Message | AmiMessage) -> AmiMessage:
    """The AmiMessage a reply was made from (or one built from a Message panoramisk made);
    a plain action's reply is one already."""
    if isinstance(message, AmiMessage):
        return message
    ami: AmiMessage | None = getattr(message, "ami", None)
    if ami is not None:
        return ami
    return AmiMessage((str(k), str(v)) for k, v in message.items())


def convert_result(result: Any) -> list[AmiMessage] | AmiMessage:
    """An action's result as panoramisk resolved it, as AmiMessages."""
    if isinstance(result, list):
        return [as_ami(m) for m in result]
    return as_ami(result)
