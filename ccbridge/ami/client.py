"""One AMI link per site over panoramisk: login check, Ping liveness, fail-fast actions, retries.

panoramisk 1.4 does the connection and the action/response matching; this module owns
everything it gets wrong (see docs/asterisk-facts.md): a fresh ``Manager`` per connection
attempt (its own reconnect and re-send of queued actions are switched off), our own
login check, our own Ping with a deadline, and our own record of pending actions so they
fail at once with SiteDownError when the link drops.

Order on every successful login: the state becomes UP, ``on_state(site, UP)`` runs, then
the ``on_ready(link)`` coroutine runs in a task (it needs UP to send actions, e.g. a full
QueueStatus sync). ``link.ready`` turns True once it returns; if it raises, the connection
is dropped so the sync is retried on the next one.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Final, Literal, overload

from panoramisk import actions as pano_actions
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from ccbridge.ami.codec import AmiMessage, AmiParser, AmiProtocolError, action_fields, check_field
from ccbridge.config.model import AmiSettings

EventCallback = Callable[[str, Mapping[str, str]], None]
StateCallback = Callable[[str, "LinkState"], None]
ReadyHook = Callable[["SiteLink"], Awaitable[None]]
ActionFields = Mapping[str, str | Sequence[str]]

# Actions whose reply is "Response: Success / EventList: start", events, then "...Complete".
LIST_ACTIONS: Final = frozenset(
    {
        "queuestatus",
        "queuesummary",
        "pjsipshowcontacts",
        "pjsipshowendpoints",
        "pjsipshowregistrationsoutbound",
        "coreshowchannels",
        "status",
        "devicestatelist",
        "extensionstatelist",
    }
)
# panoramisk 1.4 reads "Added interface to queue" as the start of a list that never comes.
SINGLE_ACTIONS: Final = frozenset({"queueadd"})
_ERROR_RESPONSES: Final = frozenset({"Error", "Fail", "Failure"})
_CLOSE_GRACE: Final = 1.0  # seconds to wait for the socket to close before aborting it


class LinkState(enum.StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    AUTH_FAILED = "auth_failed"
    DOWN = "down"


class AmiError(Exception):
    """Base of the AMI link's errors."""


class SiteDownError(AmiError, ConnectionError):
    """The site's AMI link is not UP (or went down while the action was pending)."""


class AmiTimeoutError(AmiError, asyncio.TimeoutError):
    """No complete reply to an action within its timeout; the link itself may be fine."""


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error`` (or Fail/Failure) to an action."""

    def __init__(self, action: str, response: AmiMessage) -> None:
        self.action = action
        self.response = response
        super().__init__(f"{action}: {response.get('Message', response.name)}")


def backoff_delay(attempt: int, low: float, high: float, rand: float) -> float:
    """Delay before retry ``attempt`` (0-based): doubling from ``low``, capped at ``high``,
    with its upper half jittered by ``rand`` in [0, 1) so sites don't retry in lockstep."""
    base = min(high, low * (2.0 ** min(attempt, 32)))
    return max(low, min(high, base * (0.5 + 0.5 * rand)))


class SiteLink:
    """The AMI connection to one site; ``await start()`` returns at once, then it keeps
    (re)connecting in the background until ``await stop()``."""

    def __init__(
        self,
        site_name: str,
        settings: AmiSettings,
        on_event: EventCallback,
        on_state: StateCallback | None = None,
        logger: logging.Logger | None = None,
        *,
        on_ready: ReadyHook | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.site_name = site_name
        self.settings = settings
        self.reconnects = 0  # connection attempts after the first one
        self.action_timeouts = 0
        self.auth_failures = 0
        self.ping_timeouts = 0
        self._on_event = on_event
        self._on_state = on_state
        self._on_ready = on_ready
        self._log = logger or logging.getLogger(__name__)
        self._rng = rng or random.Random()
        self._state = LinkState.CONNECTING
        self._ready = False
        self._task: asyncio.Task[None] | None = None
        self._manager: _Manager | None = None
        self._protocol: _Protocol | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is LinkState.UP

    @property
    def ready(self) -> bool:
        """UP and the ``on_ready`` hook finished for this connection (True without a hook)."""
        return self._state is LinkState.UP and self._ready

    async def start(self) -> None:
        """Start connecting in the background; never waits for the site."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"ami-link-{self.site_name}")

    async def stop(self) -> None:
        """Close the connection and end every task this link started."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            # Python 3.11's asyncio.wait_for can swallow a cancellation that races with
            # its inner future finishing (seen as a stop() that never returned while the
            # link was reconnecting): cancel again until the task has really ended.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
        self._set_state(LinkState.DOWN)

    @overload
    async def action(
        self,
        name: str,
        fields: ActionFields | None = ...,
        *,
        as_list: Literal[True],
        timeout: float | None = ...,  # noqa: ASYNC109 (a per-action override)
    ) -> list[AmiMessage]: ...

    @overload
    async def action(
        self,
        name: str,
        fields: ActionFields | None = ...,
        *,
        as_list: Literal[False],
        timeout: float | None = ...,  # noqa: ASYNC109 (a per-action override)
    ) -> AmiMessage: ...

    @overload
    async def action(
        self,
        name: str,
        fields: ActionFields | None = ...,
        *,
        as_list: None = ...,
        timeout: float | None = ...,  # noqa: ASYNC109 (a per-action override)
    ) -> list[AmiMessage] | AmiMessage: ...

    async def action(
        self,
        name: str,
        fields: ActionFields | None = None,
        *,
        as_list: bool | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (a per-action override)
    ) -> list[AmiMessage] | AmiMessage:
        """Send an action; return its response, or for a list action the whole list
        ``[Response, event..., ...Complete]``.

        ``as_list=None`` picks list mode for LIST_ACTIONS, single for SINGLE_ACTIONS and
        panoramisk's guess otherwise. Raises SiteDownError at once when not UP or when the
        link drops meanwhile, AmiTimeoutError after ``timeout`` (default
        ``settings.action_timeout``), AmiActionError on an Error reply, ValueError on CR/LF.
        """
        manager, protocol = self._manager, self._protocol
        if self._state is not LinkState.UP or manager is None or protocol is None:
            raise SiteDownError(f"{self.site_name}: AMI link is {self._state.value}")
        pano = _build_action(name, fields or {}, _list_mode(name, as_list))
        action_id: str = pano.id
        future: asyncio.Future[Any] = manager.send_action(pano, as_list=pano.as_list)
        self._pending[action_id] = future
        limit = self.settings.action_timeout if timeout is None else timeout
        try:
            result = await asyncio.wait_for(future, limit)
        except TimeoutError:
            self.action_timeouts += 1
            protocol.responses.pop(action_id, None)
            raise AmiTimeoutError(
                f"{self.site_name}: no reply to {name} within {limit:.1f}s"
            ) from None
        finally:
            self._pending.pop(action_id, None)
        return _convert_result(name, result)

    # -- connection lifecycle -------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                if await self._session(attempt):
                    attempt = 0
            except Exception:  # a bug here must not end the link for good
                self._log.exception("%s: AMI link session failed", self.site_name)
            delay = backoff_delay(
                attempt,
                self.settings.reconnect_min,
                self.settings.reconnect_max,
                self._rng.random(),
            )
            attempt += 1
            await asyncio.sleep(delay)
            self.reconnects += 1

    async def _session(self, attempt: int) -> bool:
        """One connection attempt and its whole life; True if it got UP."""
        manager = _Manager(
            host=self.settings.host,
            port=self.settings.port,
            username=self.settings.username,
            secret=self.settings.secret.reveal(),
            loop=asyncio.get_running_loop(),
            ping_delay=3600,  # panoramisk's own ping is disabled below; ours checks replies
            log=_RedactingLog(self._log.getChild("panoramisk"), self.settings.secret.reveal()),
            protocol_factory=_Protocol,
        )
        manager.register_event("*", self._on_panoramisk_event)
        self._manager = manager
        protocol: _Protocol | None = None
        try:
            protocol = await self._connect(manager, attempt)
            if protocol is None or not await self._login(manager, protocol):
                return False
            self._protocol = protocol
            self._ready = self._on_ready is None
            self._set_state(LinkState.UP)
            self._spawn(self._ping_loop(manager, protocol), "ping")
            if self._on_ready is not None:
                self._spawn(self._run_on_ready(self._on_ready, protocol), "on-ready")
            await protocol.lost
            self._log.warning("%s: AMI link lost", self.site_name)
            return True
        finally:
            await self._teardown(manager, protocol)

    async def _connect(self, manager: _Manager, attempt: int) -> _Protocol | None:
        where = f"{self.settings.host}:{self.settings.port}"
        try:
            await asyncio.wait_for(manager.connect(), self.settings.action_timeout)
        except OSError as exc:  # refused, unreachable, DNS, and TimeoutError
            level = logging.WARNING if attempt == 0 else logging.INFO
            self._log.log(
                level,
                "%s: AMI connect to %s failed (attempt %d): %s",
                self.site_name,
                where,
                attempt + 1,
                exc or type(exc).__name__,
            )
            return None
        protocol: _Protocol | None = manager.protocol
        return protocol

    async def _login(self, manager: _Manager, protocol: _Protocol) -> bool:
        login = manager.login_future
        if login is None:
            return False
        await asyncio.wait(
            {login, protocol.lost},
            timeout=self.settings.action_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        where = f"{self.settings.host}:{self.settings.port}"
        if not login.done() or login.cancelled():
            self._log.warning("%s: no AMI login reply from %s", self.site_name, where)
            return False
        response = login.result()
        if response.success:
            self._log.info(
                "%s: AMI logged in to %s as %s (AMI %s)",
                self.site_name,
                where,
                self.settings.username,
                protocol.parser.version,
            )
            return True
        self.auth_failures += 1
        self._log.error(
            "%s: AMI login to %s as %r rejected: %s (failure %d; retrying with backoff)",
            self.site_name,
            where,
            self.settings.username,
            response.get("Message", "") or response.get("Response", ""),
            self.auth_failures,
        )
        self._set_state(LinkState.AUTH_FAILED)
        return False

    async def _ping_loop(self, manager: _Manager, protocol: _Protocol) -> None:
        """Ping every ping_interval; no reply within ping_timeout means the peer is gone
        (e.g. SIGSTOPped), which TCP alone would not notice."""
        while True:
            await asyncio.sleep(self.settings.ping_interval)
            ping = pano_actions.Action({"Action": "Ping"}, as_list=False)
            reply: asyncio.Future[Any] = manager.send_action(ping, as_list=False)
            try:
                await asyncio.wait_for(reply, self.settings.ping_timeout)
            except TimeoutError:
                self.ping_timeouts += 1
                self._log.warning(
                    "%s: no AMI Ping reply within %.1fs; dropping the link",
                    self.site_name,
                    self.settings.ping_timeout,
                )
                protocol.transport.abort()
                return

    async def _run_on_ready(self, hook: ReadyHook, protocol: _Protocol) -> None:
        try:
            await hook(self)
        except Exception:
            self._log.exception("%s: on_ready failed; reconnecting to retry", self.site_name)
            protocol.transport.abort()
            return
        if self._protocol is protocol:
            self._ready = True

    async def _teardown(self, manager: _Manager, protocol: _Protocol | None) -> None:
        """Mark the link down, fail pending actions, stop side tasks, close the socket."""
        self._protocol = None
        self._ready = False
        if self._state in (LinkState.UP, LinkState.CONNECTING):
            self._set_state(LinkState.DOWN)
        error = SiteDownError(f"{self.site_name}: AMI link went down")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        try:
            tasks = list(self._side_tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            manager.close()
            if protocol is not None:
                _, pending = await asyncio.wait({protocol.gone}, timeout=_CLOSE_GRACE)
                if pending:
                    # A write buffer that a hung peer never drains keeps close() waiting.
                    protocol.transport.abort()
                    await asyncio.wait({protocol.gone}, timeout=_CLOSE_GRACE)
        finally:
            # stop() cancels again every 0.5 s until the task ends: a cancellation that
            # lands in one of the waits above must still not leave the socket open.
            if protocol is not None and not protocol.gone.done():
                protocol.transport.abort()

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.create_task(coro, name=f"ami-{what}-{self.site_name}")
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- callbacks --------------------------------------------------------------

    def _set_state(self, state: LinkState) -> None:
        if state is self._state:
            return
        self._state = state
        self._log.info("%s: AMI link %s", self.site_name, state.value)
        if self._on_state is not None:
            try:
                self._on_state(self.site_name, state)
            except Exception:
                self._log.exception("%s: on_state callback failed", self.site_name)

    def _on_panoramisk_event(self, manager: object, message: Message) -> None:
        if manager is not self._manager:
            return  # a late event from a connection already replaced
        ami: AmiMessage | None = getattr(message, "ami", None)
        data = ami.to_dict() if ami is not None else {k: str(v) for k, v in message.items()}
        try:
            self._on_event(self.site_name, data)
        except Exception:
            self._log.exception(
                "%s: on_event callback failed for %s", self.site_name, data.get("Event")
            )


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with ccbridge's parser (limits, bare LF, old command output),
    an Error reply that ends a list action, and futures that tell when the link is over."""

    parser: AmiParser
    version: str | None
    lost: asyncio.Future[None]  # first sign the connection is over
    gone: asyncio.Future[None]  # asyncio has closed the socket

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self.parser = AmiParser()
        self.lost = loop.create_future()
        self.gone = loop.create_future()

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.parser.feed(data)
        except AmiProtocolError as exc:
            self.log.error("AMI protocol error, dropping the connection: %s", exc)
            self.transport.abort()
            return
        if self.version is None and self.parser.version is not None:
            self.version = self.parser.version
        for ami in messages:
            if ami.kind != "other" and not self.closed:
                self.handle_message(_to_panoramisk(ami))

    def handle_message(self, message: Message) -> None:
        action = self.responses.get(message.id)
        if action is None and message.action_id:
            action = self.responses.get(message.action_id)
        super().handle_message(message)
        if (
            action is not None
            and not action.future.done()
            and len(action.responses) == 1
            and message.get("Response") in _ERROR_RESPONSES
        ):
            # panoramisk 1.4 keeps a list action waiting for events an Error never starts.
            self.responses.pop(action.id, None)
            action.future.set_result(message)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)
        # panoramisk calls this with a Message on a Shutdown event; only asyncio's call
        # (None or an exception) means the socket is closed.
        if (exc is None or isinstance(exc, BaseException)) and not self.gone.done():
            self.gone.set_result(None)


class _Manager(Manager):  # type: ignore[misc]
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


class _RedactingLog(logging.LoggerAdapter[logging.Logger]):
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


def _list_mode(name: str, as_list: bool | None) -> bool | None:
    if as_list is not None:
        return as_list
    lowered = name.lower()
    if lowered in LIST_ACTIONS:
        return True
    if lowered in SINGLE_ACTIONS:
        return False
    return None


def _build_action(name: str, fields: ActionFields, as_list: bool | None) -> Any:
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


def _to_panoramisk(ami: AmiMessage) -> Message:
    """The panoramisk Message its matching and dispatch need, carrying ``ami`` along."""
    headers: Mapping[str, str | list[str]] = ami
    if ami.has_repeats:  # panoramisk's convention: a repeated key holds a list
        headers = {key: _one_or_all(ami.getall(key)) for key in ami}
    message = _new_message(headers)
    message.ami = ami
    return message


def _one_or_all(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def _slow_message(headers: Mapping[str, str | list[str]]) -> Message:
    return Message(headers)


def _fast_message(headers: Mapping[str, str | list[str]]) -> Message:
    """Message(headers) without CaseInsensitiveDict's per-key Python __setitem__ (half the
    cost of a live event); fills the layout of panoramisk 1.4, checked at import."""
    store = {key.lower(): (key, value) for key, value in headers.items()}
    store["content"] = ("content", "")  # Message.__init__ stores its body as a key
    message = Message.__new__(Message)
    message._store = store
    message.manager = None
    return message


def _pick_message_factory() -> Callable[[Mapping[str, str | list[str]]], Message]:
    sample: dict[str, str | list[str]] = {
        "Event": "Hangup",
        "ActionID": "a/1",
        "ChanVariable": ["A=1", "B=2"],
    }
    slow, fast = _slow_message(sample), _fast_message(sample)
    same = (
        list(slow.items()) == list(fast.items())
        and fast["event"] == "Hangup"
        and fast.id == slow.id == "a/1"
        and fast.content == slow.content
        and fast.manager is None
    )
    return _fast_message if same else _slow_message


_new_message = _pick_message_factory()


def _as_ami(message: Message) -> AmiMessage:
    ami: AmiMessage | None = getattr(message, "ami", None)
    if ami is not None:
        return ami
    return AmiMessage((str(k), str(v)) for k, v in message.items())


def _convert_result(name: str, result: Any) -> list[AmiMessage] | AmiMessage:
    if isinstance(result, list):
        return [_as_ami(m) for m in result]
    reply = _as_ami(result)
    if reply.kind == "response" and reply.name in _ERROR_RESPONSES:
        raise AmiActionError(name, reply)
    return reply
