"""One AMI link per site over panoramisk: login check, Ping liveness, fail-fast actions, retries.

panoramisk 1.4 does the connection and the action/response matching (everything that
touches its internals is in ``ami/pano.py``); this module owns everything it gets wrong
(see docs/asterisk-facts.md): a fresh ``Manager`` per connection attempt (its own
reconnect and re-send of queued actions are switched off), our own login check, our own
Ping with a deadline, and our own record of pending actions so they fail at once with
SiteDownError when the link drops.

Events bypass panoramisk: each is parsed once into an AmiMessage, a read-only mapping,
and that same object goes to ``on_event(site, event)`` (then to every subscriber).
Bad input is dropped and counted in ``bad_input``; a broken framing drops the connection,
which reconnects like any other loss.

Order on every successful login: the state becomes UP, ``on_state(site, UP)`` runs, then
the ``on_ready(link)`` coroutine runs in a task (it needs UP to send actions, e.g. a full
QueueStatus sync). ``link.ready`` turns True once it returns; if it raises, the connection
is dropped so the sync is retried on the next one.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import itertools
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Final, Literal, overload

from ccbridge.ami.codec import AmiMessage, action_fields, encode_fields
from ccbridge.ami.pano import (
    ERROR_RESPONSES,
    ActionFields,
    OneShotManager,
    Protocol,
    RedactingLog,
    build_action,
    convert_result,
    ping_action,
)
from ccbridge.config.model import AmiSettings

EventCallback = Callable[[str, Mapping[str, str]], None]
StateCallback = Callable[[str, "LinkState"], None]
ReadyHook = Callable[["SiteLink"], Awaitable[None]]

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
# Actions answered by one reply alone, sent without panoramisk (Protocol.send_plain): the
# held-route writes. An Action and a Message of panoramisk's, a dozen case-folding dict
# writes each, for every one of them (BENCHMARKS §12, tenth session).
PLAIN_ACTIONS: Final = frozenset({"setvar", "getvar", "dialplanextensionadd"})
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
        self.tls_failures = 0  # TLS handshakes that failed (a certificate not verified, ...)
        self._bad_input_before = 0  # bad input counted on connections already closed
        self._on_event = on_event
        self._on_state = on_state
        self._on_ready = on_ready
        self._log = logger or logging.getLogger(__name__)
        self._rng = rng or random.Random()
        self._state = LinkState.CONNECTING
        self._ready = False
        self._task: asyncio.Task[None] | None = None
        self._manager: OneShotManager | None = None
        self._protocol: Protocol | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._action_ids = itertools.count(1)  # the plain actions' ActionIDs
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._tls: ssl.SSLContext | None = None

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is LinkState.UP

    @property
    def bad_input(self) -> int:
        """Lines and messages dropped and framing errors, over every connection so far."""
        protocol = self._protocol
        return self._bad_input_before + (protocol.bad_input if protocol is not None else 0)

    @property
    def tls_version(self) -> str | None:
        """The TLS version of the current connection (None: plain, or not connected)."""
        protocol = self._protocol
        if protocol is None:
            return None
        tls = protocol.transport.get_extra_info("ssl_object")
        return tls.version() if isinstance(tls, ssl.SSLObject) else None

    @property
    def ready(self) -> bool:
        """UP and the ``on_ready`` hook finished for this connection (True without a hook)."""
        return self._state is LinkState.UP and self._ready

    async def start(self) -> None:
        """Start connecting in the background; never waits for the site."""
        if self._task is None:
            if self.settings.tls is not None and self._tls is None:
                # Reading the CA file is disk I/O: not on the event loop.
                self._tls = await asyncio.to_thread(tls_context, self.settings.tls.ca)
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
        mode = _list_mode(name, as_list)
        if not mode and name.lower() in PLAIN_ACTIONS:
            return (await self.plain_actions(((name, fields or {}),), timeout=timeout))[0]
        manager, protocol = self._manager, self._protocol
        if self._state is not LinkState.UP or manager is None or protocol is None:
            raise SiteDownError(f"{self.site_name}: AMI link is {self._state.value}")
        pano = build_action(name, fields or {}, mode)
        action_id = pano.id
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
        reply = convert_result(result)
        if (
            isinstance(reply, AmiMessage)
            and reply.kind == "response"
            and reply.name in ERROR_RESPONSES
        ):
            raise AmiActionError(name, reply)
        return reply

    async def plain_actions(
        self,
        actions: Sequence[tuple[str, ActionFields]],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (a per-batch override)
    ) -> list[AmiMessage]:
        """Send actions answered by one reply each (PLAIN_ACTIONS) in one write and return
        their replies in order. Asterisk runs one session's actions one after the other,
        in the order sent: the effect of awaiting ``action`` for each in turn, for one
        round trip (a held pass writes ~4; awaited one by one, each was a send, a wakeup
        and ~140 us of this process's CPU on a 2-vCPU host, BENCHMARKS §12).

        Raises as ``action`` does: ValueError (not a plain action, CR/LF) before sending
        anything; SiteDownError; AmiTimeoutError when the replies are not all in within
        ``timeout`` (default ``settings.action_timeout``) for the whole batch;
        AmiActionError for the first Error reply, once every reply is in (the actions
        after it have run: Asterisk does not stop a session's actions at an error).
        """
        if not actions:
            return []
        protocol = self._protocol
        if self._state is not LinkState.UP or self._manager is None or protocol is None:
            raise SiteDownError(f"{self.site_name}: AMI link is {self._state.value}")
        ids: list[str] = []
        blocks: list[bytes] = []
        for name, fields in actions:
            if name.lower() not in PLAIN_ACTIONS:
                raise ValueError(f"{name} is not an action of one reply (PLAIN_ACTIONS)")
            action_id = f"ccb/{next(self._action_ids)}"
            blocks.append(encode_fields([*action_fields(name, fields), ("ActionID", action_id)]))
            ids.append(action_id)
        futures = protocol.send_plain(ids, b"".join(blocks))
        pending = self._pending
        pending.update(zip(ids, futures, strict=True))
        limit = self.settings.action_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                for future in futures:
                    await future
        except TimeoutError:
            self.action_timeouts += 1
            for action_id in ids:
                protocol.replies.pop(action_id, None)
            what = actions[0][0] if len(ids) == 1 else f"{len(ids)} actions"
            raise AmiTimeoutError(
                f"{self.site_name}: no reply to {what} within {limit:.1f}s"
            ) from None
        finally:
            for action_id in ids:
                pending.pop(action_id, None)
        replies = [future.result() for future in futures]
        for (name, _), reply in zip(actions, replies, strict=True):
            if reply.kind == "response" and reply.name in ERROR_RESPONSES:
                raise AmiActionError(name, reply)
        return replies

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
        manager = OneShotManager(
            host=self.settings.host,
            port=self.settings.link_port,
            # TLS when configured, with no fallback: a failed handshake is a failed connect.
            ssl=self._tls if self._tls is not None else False,
            username=self.settings.username,
            secret=self.settings.secret.reveal(),
            loop=asyncio.get_running_loop(),
            ping_delay=3600,  # panoramisk's own ping is disabled below; ours checks replies
            log=RedactingLog(self._log.getChild("panoramisk"), self.settings.secret.reveal()),
            protocol_factory=functools.partial(Protocol, self._deliver),
        )
        self._manager = manager
        protocol: Protocol | None = None
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

    async def _connect(self, manager: OneShotManager, attempt: int) -> Protocol | None:
        where = f"{self.settings.host}:{self.settings.link_port}"
        try:
            await asyncio.wait_for(manager.connect(), self.settings.action_timeout)
        except ssl.SSLError as exc:
            # A wrong certificate (or no TLS at that port) is a configuration fault: said
            # at ERROR on every attempt, and the site stays down; nothing is sent in clear.
            self.tls_failures += 1
            self._log.error(
                "%s: AMI TLS with %s failed: %s (failure %d; the site stays down, retrying)",
                self.site_name,
                where,
                getattr(exc, "verify_message", None) or exc.reason or exc,
                self.tls_failures,
            )
            return None
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
        protocol: Protocol | None = manager.protocol
        return protocol

    async def _login(self, manager: OneShotManager, protocol: Protocol) -> bool:
        login = manager.login_future
        if login is None:
            return False
        await asyncio.wait(
            {login, protocol.lost},
            timeout=self.settings.action_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        where = f"{self.settings.host}:{self.settings.link_port}"
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

    async def _ping_loop(self, manager: OneShotManager, protocol: Protocol) -> None:
        """Ping every ping_interval; no reply within ping_timeout means the peer is gone
        (e.g. SIGSTOPped), which TCP alone would not notice."""
        while True:
            await asyncio.sleep(self.settings.ping_interval)
            ping = ping_action()
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

    async def _run_on_ready(self, hook: ReadyHook, protocol: Protocol) -> None:
        try:
            await hook(self)
        except Exception:
            self._log.exception("%s: on_ready failed; reconnecting to retry", self.site_name)
            protocol.transport.abort()
            return
        if self._protocol is protocol:
            self._ready = True

    async def _teardown(self, manager: OneShotManager, protocol: Protocol | None) -> None:
        """Mark the link down, fail pending actions, stop side tasks, close the socket."""
        if protocol is not None:
            self._bad_input_before += protocol.bad_input
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

    def _deliver(self, event: AmiMessage) -> None:
        """The event path's end in the link: ``event`` is the parsed mapping itself."""
        try:
            self._on_event(self.site_name, event)
        except Exception:
            self._log.exception(
                "%s: on_event callback failed for %s", self.site_name, event.get("Event")
            )


def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client context that verifies the site's certificate chain with ``ca_file`` and
    its name (the AMI host, an IP address in the lab) against the certificate's SANs."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _list_mode(name: str, as_list: bool | None) -> bool | None:
    if as_list is not None:
        return as_list
    lowered = name.lower()
    if lowered in LIST_ACTIONS:
        return True
    if lowered in SINGLE_ACTIONS:
        return False
    return None
