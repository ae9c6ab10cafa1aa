"""Pops POSTed to configured URLs (a CRM): signed, retried for a bounded time, off routing's path.

Each target has its own bounded queue and workers: ``offer`` never waits (a full queue
drops the event and counts it), so a dead or hanging CRM costs routing nothing. An
attempt has a timeout; 2xx is delivered; 410 Gone stops the target for good (its
queue is dropped); other 4xx but 408 and 429 are refused for good; anything else
(5xx, 408, 429, timeouts, connection errors) is retried after an exponential backoff
with full jitter, until ``max_age`` seconds after the event was made.

The signature (Stripe's scheme): header ``CCBridge-Signature: t=<unix time>,v1=<hex>``
where hex is HMAC-SHA256 over ``"<t>.<body>"`` with the target's shared secret, made at
each attempt (a receiver may refuse an old ``t``). ``CCBridge-Event-Id`` repeats the
body's ``id``: a retried event keeps its ID, so the receiver can drop duplicates.
HMAC over a pop (about 1 KB) takes microseconds: signing on the loop is cheaper than
handing it to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

from ccbridge.config.screenpop import WebhookTarget
from ccbridge.logs import ctx

log = logging.getLogger("ccbridge.webhooks")

SIGNATURE_HEADER: Final = "CCBridge-Signature"
EVENT_ID_HEADER: Final = "CCBridge-Event-Id"
USER_AGENT: Final = "ccbridge-webhooks/1"
# Why an event was dropped: the values of the `reason` label.
DROP_QUEUE_FULL: Final = "queue_full"
DROP_EXPIRED: Final = "expired"  # retried until max_age without success
DROP_GONE: Final = "gone"  # the target answered 410: it and its queue are done
DROP_REFUSED: Final = "refused"  # a 4xx other than 408, 410, 429
DROP_STOPPED: Final = "stopped"  # the bridge stopped with the event still queued
RETRY_STATUSES: Final = frozenset({408, 429})


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``CCBridge-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: bytes, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """What a receiver does (README): parse, recompute, compare in constant time, and
    refuse a timestamp older than ``tolerance`` seconds (a replay)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, given)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event for one target: its ID, its JSON body, and when it was made."""

    event_id: str
    body: bytes
    made: float  # monotonic seconds


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter(
            "ccbridge_webhook_delivered_total",
            "Events a webhook target accepted (2xx)",
            ["target"],
            registry=registry,
        )
        self.retried = Counter(
            "ccbridge_webhook_retried_total",
            "Delivery attempts that failed and were retried",
            ["target"],
            registry=registry,
        )
        self.dropped = Counter(
            "ccbridge_webhook_dropped_total",
            "Events given up for a target, by reason",
            ["target", "reason"],
            registry=registry,
        )
        self.queued = Gauge(
            "ccbridge_webhook_queued",
            "Events waiting for a webhook target",
            ["target"],
            registry=registry,
        )


class WebhookTargetSender:
    """One URL: a bounded queue and ``concurrency`` workers posting from it."""

    def __init__(
        self,
        target: WebhookTarget,
        metrics: WebhookMetrics,
        session: Callable[[], aiohttp.ClientSession],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        jitter: Callable[[float], float] = lambda cap: random.uniform(0, cap),
    ) -> None:
        self.target = target
        self._metrics = metrics
        self._session = session
        self._monotonic = monotonic
        self._wall = wall
        self._jitter = jitter
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(target.queue)
        self._secret = target.secret.reveal().encode()
        self._workers: list[asyncio.Task[None]] = []
        self.gone = False  # answered 410: nothing more is sent
        self.attempts = 0
        metrics.queued.labels(target.name).set_function(self._queue.qsize)

    def offer(self, item: Outgoing) -> bool:
        """Queue an event without waiting; False (and counted) when it was dropped."""
        if self.gone:
            self._metrics.dropped.labels(self.target.name, DROP_GONE).inc()
            return False
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._metrics.dropped.labels(self.target.name, DROP_QUEUE_FULL).inc()
            return False
        return True

    def start(self) -> None:
        for i in range(self.target.concurrency):
            self._workers.append(
                asyncio.create_task(self._work(), name=f"webhook {self.target.name} {i}")
            )

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        left = self._queue.qsize()
        if left:
            self._metrics.dropped.labels(self.target.name, DROP_STOPPED).inc(left)
            log.warning("webhook events not sent at stop", extra=ctx(target=self.target.name))
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._deliver(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the worker: the queue would stall
                log.exception("webhook delivery failed", extra=ctx(target=self.target.name))

    async def _deliver(self, item: Outgoing) -> None:
        name = self.target.name
        tries = 0
        while True:
            if self.gone:
                self._metrics.dropped.labels(name, DROP_GONE).inc()
                return
            status = await self._attempt(item)
            if status is not None and 200 <= status < 300:
                self._metrics.delivered.labels(name).inc()
                return
            if status == 410:
                self._gone()
                return
            if status is not None and 400 <= status < 500 and status not in RETRY_STATUSES:
                self._metrics.dropped.labels(name, DROP_REFUSED).inc()
                why = ctx(target=name, status=status, event=item.event_id)
                log.warning("webhook event refused", extra=why)
                return
            cap = min(self.target.max_backoff, self.target.backoff * 2**tries)
            delay = self._jitter(cap)
            tries += 1
            if self._monotonic() + delay - item.made > self.target.max_age:
                self._metrics.dropped.labels(name, DROP_EXPIRED).inc()
                log.warning(
                    "webhook event expired",
                    extra=ctx(target=name, attempts=tries, event=item.event_id),
                )
                return
            self._metrics.retried.labels(name).inc()
            await asyncio.sleep(delay)

    async def _attempt(self, item: Outgoing) -> int | None:
        """The HTTP status, or None when no answer came (refused, reset, timed out)."""
        self.attempts += 1
        stamp = int(self._wall())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(self._secret, stamp, item.body),
            EVENT_ID_HEADER: item.event_id,
        }
        timeout = aiohttp.ClientTimeout(total=self.target.timeout)
        try:
            # No redirects: the signed event goes to the configured URL or nowhere (a 3xx
            # is retried like a 5xx, and shows in the retried count).
            async with self._session().post(
                self.target.url,
                data=item.body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                # Read a little of the answer so the connection can be reused; never all.
                with contextlib.suppress(aiohttp.ClientError, ValueError):
                    await resp.content.read(1024)
                return resp.status
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None

    def _gone(self) -> None:
        name = self.target.name
        self.gone = True
        dropped = 1 + self._queue.qsize()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._metrics.dropped.labels(name, DROP_GONE).inc(dropped)
        log.warning("webhook target answered 410 Gone: no more events sent", extra=ctx(target=name))


class WebhookSender:
    """Every configured target; ``offer(event_id, body)`` queues the event for each."""

    def __init__(self, targets: tuple[WebhookTarget, ...], registry: CollectorRegistry) -> None:
        self.metrics = WebhookMetrics(registry)
        self._client: aiohttp.ClientSession | None = None
        self._monotonic = time.monotonic
        self.targets = [WebhookTargetSender(t, self.metrics, self._session) for t in targets]

    def _session(self) -> aiohttp.ClientSession:
        if self._client is None:
            # A connection limit per host: a hanging target holds at most its workers'.
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=64)
            )
        return self._client

    def offer(self, event_id: str, body: bytes) -> None:
        item = Outgoing(event_id, body, self._monotonic())
        for t in self.targets:
            t.offer(item)

    async def start(self) -> None:
        for t in self.targets:
            t.start()

    async def stop(self) -> None:
        for t in self.targets:
            await t.stop()
        if self._client is not None:
            await self._client.close()
            self._client = None
