"""Screen pops: made from the bus's events, completed with the caller's history, sent to the
live stream and the webhook targets.

The event path only feeds the tracker and, for a pop, starts a task: the history
lookup (bounded by ``history_timeout``) and the sending happen there, so AMI events
never wait on the store or a CRM. Pending pops are bounded too: beyond
``max_pending`` a pop goes out at once with its history marked unavailable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter

from ccbridge import variables as v
from ccbridge.config.model import Config, queue_name
from ccbridge.events import EventBus
from ccbridge.routing.engine import CallRequest, Decision
from ccbridge.screenpop.history import ContactHistory, History, Query
from ccbridge.screenpop.stream import EventHub
from ccbridge.screenpop.tracker import EVENTS, USER_EVENTS, Pop, PopTracker, TrackerSettings
from ccbridge.screenpop.webhooks import WebhookSender

log = logging.getLogger("ccbridge.screenpop")

BUSY: Final = "busy"  # too many pops waiting for their history: sent without it
# (site, channel, variable) -> the channel variable's value, None when it cannot be read
ChannelVar = Callable[[str, str, str], Coroutine[Any, Any, str | None]]


def _z(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t is not None else None


def pop_event(pop: Pop, history: History, event_id: str) -> dict[str, Any]:
    """The published form of a pop (the stream's data and the webhook's body)."""
    lookup = None
    if pop.lookup_result is not None or pop.lookup_answer is not None:
        lookup = {"result": pop.lookup_result, "answer": pop.lookup_answer}
    return {
        "id": event_id,
        "type": pop.kind,
        "at": _z(pop.at),
        "call_id": pop.call_id,
        "site": pop.site,
        "queue": pop.queue,
        "service": pop.service,
        "language": pop.language,
        "agent": pop.agent,
        "caller": pop.caller,
        "did": pop.did,
        "did_kind": pop.did_kind,
        "ivr_path": list(pop.ivr_path),
        "lookup": lookup,
        "waiting_s": pop.waiting_s,
        "history": history.as_dict(),
    }


def tracker_settings(config: Config) -> TrackerSettings:
    return TrackerSettings(
        number_kind={n.did: n.kind.value for n in config.numbers},
        queues={
            (s.name, queue_name(o.service, lang)): (o.service, lang)
            for s in config.sites
            for o in s.offerings
            for lang in o.languages
        },
    )


class ScreenPop:
    """The tracker, the history, the stream's hub and the webhook sender, wired together."""

    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry,
        now: Callable[[], datetime],
        history_query: Query | None,
        *,
        channel_var: ChannelVar | None = None,
        max_pending: int = 1000,
    ) -> None:
        settings = config.screen_pop
        self.tracker = PopTracker(tracker_settings(config))
        self.history = ContactHistory(
            history_query,
            days=settings.history_days,
            timeout=settings.history_timeout,
            ttl=settings.history_cache,
        )
        self.hub = EventHub()
        self.webhooks = WebhookSender(settings.webhooks, registry)
        self._now = now
        self._channel_var = channel_var
        self.max_pending = max_pending
        self._pending: set[asyncio.Task[None]] = set()
        self.pops = Counter(
            "ccbridge_screen_pops_total",
            "Screen pops published, by kind and whether the caller's history was in it",
            ["kind", "history"],
            registry=registry,
        )

    def subscribe(self, bus: EventBus) -> None:
        for name in EVENTS:
            bus.subscribe(name, self.on_event)
        for name in USER_EVENTS:
            bus.subscribe_user_event(name, self.on_event)

    def on_decision(self, call: CallRequest, decision: Decision) -> None:
        if call.call_id:
            self.tracker.decision(
                call.call_id, call.did, call.caller, decision.service, decision.language
            )

    def on_event(self, site: str, event: Mapping[str, str]) -> None:
        pop = self.tracker.feed(site, event, self._now())
        if pop is None:
            return
        if not self.webhooks.targets and not self.hub.subscribers:
            self._publish(pop, History(False, self.history.days, why="no-listener"))
        elif len(self._pending) >= self.max_pending:
            self._publish(pop, History(False, self.history.days, why=BUSY))
        else:
            task = asyncio.get_running_loop().create_task(self._complete(pop))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _complete(self, pop: Pop) -> None:
        # A call the dialplan routed from a held route reached no decision here: the
        # number dialled is read from the caller's channel, beside the history lookup.
        did: asyncio.Task[str | None] | None = None
        if pop.did is None and pop.channel and self._channel_var is not None:
            did = asyncio.create_task(self._dialled(pop.site, pop.channel))
        history = await self.history.lookup(pop.caller, pop.call_id, pop.at)
        if did is not None:
            pop = self.tracker.with_did(pop, await did)
        self._publish(pop, history)

    async def _dialled(self, site: str, channel: str) -> str | None:
        """The number the caller dialled: CCB_DID, else (ccb-inbound's fresh held route to
        a queue sets no variable) the channel's DNID, the same number at the entry site."""
        assert self._channel_var is not None
        did = await self._channel_var(site, channel, v.DID)
        return did or await self._channel_var(site, channel, "CALLERID(dnid)")

    def _publish(self, pop: Pop, history: History) -> None:
        event_id = "evt_" + uuid.uuid4().hex
        event = pop_event(pop, history, event_id)
        self.pops.labels(pop.kind, "yes" if history.available else "no").inc()
        self.hub.publish(event)
        if self.webhooks.targets:
            self.webhooks.offer(event_id, json.dumps(event, separators=(",", ":")).encode())

    async def start(self) -> None:
        await self.webhooks.start()

    async def stop(self) -> None:
        self.hub.close_all()
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self.history.close()
        await self.webhooks.stop()
