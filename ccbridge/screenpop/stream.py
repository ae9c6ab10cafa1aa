"""The live stream's fan-out: every pop to the subscribers allowed to see it, never waiting.

Each subscriber has a bounded queue; a subscriber too slow to keep up (its queue full)
is closed instead of slowing the others or growing memory: its page reconnects and
reads on. Who may see what is the subscriber's own filter (ccbridge/http/events.py
builds it from the token's ACL); a caller number is masked for a subscriber that may
not read numbers, with the one masker (ccbridge/logs.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Final

from ccbridge.logs import mask_number

Event = Mapping[str, Any]
NUMBER_FIELDS: Final = ("caller",)
# Queued last for a subscriber that is cut off: the stream says why and ends.
CLOSED: Final[dict[str, Any]] = {"type": "closed", "why": "too slow: reconnect"}
STOPPING: Final[dict[str, Any]] = {"type": "closed", "why": "the bridge is stopping"}


class Subscriber:
    """One open stream: its filter, whether it sees numbers, its queue."""

    def __init__(self, wants: Callable[[Event], bool], numbers: bool, size: int) -> None:
        self.wants = wants
        self.numbers = numbers
        self.queue: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue(size + 1)  # + CLOSED
        self.size = size
        self.overflowed = False

    def close(self, last: Event) -> None:
        """End the stream after what it has queued, with ``last`` as its final message."""
        if not self.overflowed:
            self.overflowed = True
            self.queue.put_nowait(last)

    def put(self, event: Event) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self.size:
            self.close(CLOSED)
            return
        self.queue.put_nowait(event if self.numbers else masked(event))


def masked(event: Event) -> dict[str, Any]:
    out = dict(event)
    for key in NUMBER_FIELDS:
        if isinstance(out.get(key), str):
            out[key] = mask_number(out[key])
    return out


class EventHub:
    """Subscribers of the stream; ``publish`` hands an event to each that wants it."""

    def __init__(self, max_subscribers: int = 500, queue_size: int = 100) -> None:
        self.max_subscribers = max_subscribers
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.published = 0
        self.cut_off = 0  # subscribers closed for being too slow

    def subscribe(self, wants: Callable[[Event], bool], numbers: bool) -> Subscriber | None:
        """A new subscriber, or None when ``max_subscribers`` streams are open."""
        if len(self.subscribers) >= self.max_subscribers:
            return None
        sub = Subscriber(wants, numbers, self.queue_size)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def close_all(self) -> None:
        """Every open stream ends (the bridge stops): no handler waits out the HTTP
        server's shutdown timeout."""
        for sub in self.subscribers:
            sub.close(STOPPING)

    def publish(self, event: Event) -> None:
        self.published += 1
        for sub in list(self.subscribers):
            if sub.overflowed:
                continue
            if sub.wants(event):
                sub.put(event)
                if sub.overflowed:
                    self.cut_off += 1
