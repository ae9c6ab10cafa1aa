"""AMI events by name: parts subscribe to the events they read; the AMI filter is built from that.

Dispatch costs one dictionary lookup for an event nobody reads, and calls only the
handlers subscribed to that event's name (``UserEvent``s also by their own name). The
filter each AMI session asks Asterisk for is made from the same subscriptions, so a part
cannot read an event the filter drops (the hand-kept list this replaces had drifted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Final

from ccbridge.variables import AMI_DISABLED_EVENTS

Event = Mapping[str, str]
EventHandler = Callable[[str, Event], None]  # (site, event)

USER_EVENT: Final = "UserEvent"
# Link-level events the bridge always wants, whoever subscribes (a site restarting).
ALWAYS: Final = frozenset({"Shutdown", "FullyBooted"})

log = logging.getLogger("ccbridge.events")


class EventBus:
    """Subscriptions by AMI event name; ``dispatch(site, event)`` is the event path's end."""

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[EventHandler, ...]] = {}
        self._by_user_event: dict[str, tuple[EventHandler, ...]] = {}
        self.handler_errors = 0
        self.unwanted = 0  # events that arrived though no part reads them (filter off)

    def subscribe(self, name: str, handler: EventHandler) -> None:
        """Call ``handler(site, event)`` for every event whose ``Event`` is ``name``
        (case as Asterisk writes it: ``QueueCallerJoin``), in subscription order."""
        _check_name(name)
        if name in AMI_DISABLED_EVENTS:
            # the rendered manager.conf has Asterisk never make it: a handler would wait forever
            raise ValueError(f"{name} is disabled in every site's manager.conf (disabledevents)")
        if name == USER_EVENT:
            raise ValueError("subscribe to a UserEvent by its own name: subscribe_user_event()")
        self._by_name[name] = (*self._by_name.get(name, ()), handler)

    def subscribe_user_event(self, user_event: str, handler: EventHandler) -> None:
        """Call ``handler`` for ``Event: UserEvent`` with ``UserEvent: user_event``."""
        _check_name(user_event)
        self._by_user_event[user_event] = (*self._by_user_event.get(user_event, ()), handler)

    def names(self) -> frozenset[str]:
        """Every event name some part reads (``UserEvent`` if any user event is read)."""
        names = set(self._by_name)
        if self._by_user_event:
            names.add(USER_EVENT)
        return frozenset(names)

    def user_event_names(self) -> frozenset[str]:
        return frozenset(self._by_user_event)

    def handlers(self, name: str) -> tuple[EventHandler, ...]:
        return self._by_name.get(name, ())

    def ami_match_criteria(self) -> list[str]:
        """``MatchCriteria`` values for AMI's ``Filter`` action, one per event name the
        bridge reads (the subscribed ones and the link-level ones): together they let
        through exactly those events.

        Asterisk's advanced filters (20.8, 21.3, 22 and later) compare the event name's
        hash; the regex of ``ami_filter`` is run over every event's whole text by the
        session's thread. Measured on the lab (tests/bench/bench_e2e.py, BENCHMARKS §1):
        the session thread spent 0.175 ms a call with the regex, 0.09-0.10 with names,
        0.14-0.15 with no filter at all (writing every event).
        """
        return [f"action(include),name({name})" for name in sorted(self.names() | ALWAYS)]

    def ami_filter(self) -> str:
        """The regex for AMI's ``Filter`` action (``Operation: Add``) that lets through
        exactly the subscribed events and the link-level ones: the form an Asterisk
        without advanced filters understands (``ami_match_criteria`` is cheaper for it).

        Asterisk matches it against the whole event text, whose lines end in CR LF: the
        ``[[:space:]]`` after the name makes ``QueueMemberStatus`` not also admit
        ``QueueMemberStatusX``. POSIX classes only: Asterisk uses regcomp(REG_EXTENDED).
        """
        names = sorted(self.names() | ALWAYS)
        return "Event: (" + "|".join(names) + ")[[:space:]]"

    def dispatch(self, site: str, event: Event) -> None:
        """Hand one event to its subscribers; a handler that raises is logged and counted,
        and the others still run."""
        handlers = self._by_name.get(event.get("Event"))  # type: ignore[arg-type]
        if handlers is None:
            handlers = self._unnamed(event)
            if handlers is None:
                return
        for handler in handlers:
            try:
                handler(site, event)
            except Exception:
                self.handler_errors += 1
                log.exception("event handler failed for %s from %s", event.get("Event"), site)

    def _unnamed(self, event: Event) -> tuple[EventHandler, ...] | None:
        """The handlers of a UserEvent by its own name; None for a message that is no
        event, or (counted) an event nobody reads."""
        name = event.get("Event")
        if name is None:
            return None
        if name == USER_EVENT:
            handlers = self._by_user_event.get(event.get(USER_EVENT, ""))
            if handlers is not None:
                return handlers
        self.unwanted += 1
        return None


def _check_name(name: str) -> None:
    # An AMI event name is one token; anything else would also break the filter regex.
    if not name or not all(ch.isalnum() or ch in "_-" for ch in name):
        raise ValueError(f"not an AMI event name: {name!r}")
