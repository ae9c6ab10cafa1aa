"""The live event stream: who may see which pop, and opening and closing a subscription."""

from __future__ import annotations

import re
from collections.abc import Callable

from ccbridge.access.roles import Principal
from ccbridge.screenpop.stream import Event, EventHub, Subscriber
from ccbridge.services.errors import ServiceError

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def visible_to(p: Principal) -> Callable[[Event], bool]:
    """An event is shown to a principal that may read its agent's calls (an agent: only
    ``me``) or the calls of its site (a supervisor: the sites they are responsible for)."""

    def wants(event: Event) -> bool:
        agent, site = event.get("agent"), event.get("site")
        # A name with a '.' would add ACL segments: only plain names are checked.
        if (
            isinstance(agent, str)
            and _SEGMENT.match(agent)
            and p.can(f"ccb.agents.{agent}.calls.read")
        ):
            return True
        return (
            isinstance(site, str) and bool(_SEGMENT.match(site)) and p.can(f"ccb.calls.{site}.read")
        )

    return wants


class EventService:
    def __init__(self, hub: EventHub) -> None:
        self.hub = hub

    def subscribe(self, p: Principal, numbers: bool) -> Subscriber:
        """A subscription to the pops ``p`` may see, numbers masked unless ``numbers``."""
        sub = self.hub.subscribe(visible_to(p), numbers)
        if sub is None:
            raise ServiceError(
                "too-many-streams",
                f"{self.hub.max_subscribers} event streams are open; try again later",
            )
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.hub.unsubscribe(sub)
