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
the bridge was stopped): ``Protocol`` hands on at most ``SLICE`` of them per loop turn,
reading paused until the rest are out, so route requests wait for one slice (~1 ms), not
the whole read (57-70 ms after a 30 s SIGSTOP, BENCHMARKS §12).
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

ActionFields = Mapping[str, str | Sequence[str]]
EventSink = Callable[[AmiMessage], None]

ERROR_RESPONSES: Final = frozenset({"Error", "Fail", "Failure"})
# Messages handed on per loop turn: ~30 us each on the bridge's event path, so one slice
# holds the loop ~1 ms; a read of more waits for the next turns, reading paused.
SLICE: Final = 32


class Protocol(AMIProtocol):  # type: ignore[misc]
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
    slice: int = SLICE  # messages handed on per loop turn (benches of parsing lift it)
    _backlog: list[AmiMessage]  # parsed, not yet handed on (reading paused meanwhile)
    _backlog_at: int  # the next one of them

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
        try:
            messages = self.parser.feed(data)
        except AmiProtocolError as exc:
            self.protocol_errors += 1
            self.log.error("AMI protocol error, dropping the connection: %s", exc)
            self.transport.abort()
            return
        if self.version is None and self.parser.version is not None:
            self.version = self.parser.version
        if self._backlog:  # a read that was under way when reading paused: after the rest
            self._backlog += messages
        elif len(messages) <= self.slice:
            self._hand_on(messages)
        else:
            self._backlog, self._backlog_at = messages, 0
            self.transport.pause_reading()
            self._next_slice()

    def _next_slice(self) -> None:
        """Hand on the backlog's next SLICE messages; then come back, or resume reading."""
        backlog, at, end = self._backlog, self._backlog_at, self._backlog_at + self.slice
        if not backlog:
            return  # the connection was lost meanwhile
        self._backlog_at = end
        self._hand_on(backlog[at:end])
        if self._backlog_at < len(self._backlog) and not self.closed:
            asyncio.get_running_loop().call_soon(self._next_slice)
            return
        self._backlog, self._backlog_at = [], 0
        if not self.closed and not self.transport.is_closing():
            self.transport.resume_reading()

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
            self.handle_message(to_panoramisk(msg))

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
        self._backlog, self._backlog_at = [], 0  # a lost link's events are stale
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


def as_ami(message: Message) -> AmiMessage:
    """The AmiMessage a reply was made from (or one built from a Message panoramisk made)."""
    ami: AmiMessage | None = getattr(message, "ami", None)
    if ami is not None:
        return ami
    return AmiMessage((str(k), str(v)) for k, v in message.items())


def convert_result(result: Any) -> list[AmiMessage] | AmiMessage:
    """An action's result as panoramisk resolved it, as AmiMessages."""
    if isinstance(result, list):
        return [as_ami(m) for m in result]
    return as_ami(result)
