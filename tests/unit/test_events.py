"""The event bus: dispatch by name, UserEvents by their own name, the filter from subscriptions."""

from __future__ import annotations

import re

import pytest

from ccbridge.events import Event, EventBus


def test_dispatch_reaches_only_subscribers_of_that_name_in_order() -> None:
    bus = EventBus()
    seen: list[tuple[str, str, str | None]] = []
    bus.subscribe("QueueCallerJoin", lambda s, e: seen.append(("a", s, e.get("Queue"))))
    bus.subscribe("QueueCallerJoin", lambda s, e: seen.append(("b", s, e.get("Queue"))))
    bus.subscribe("AgentConnect", lambda s, e: seen.append(("c", s, e.get("Queue"))))
    bus.dispatch("dhaka", {"Event": "QueueCallerJoin", "Queue": "q1"})
    bus.dispatch("dhaka", {"Event": "Newexten"})
    bus.dispatch("dhaka", {"Queue": "no event name"})
    assert seen == [("a", "dhaka", "q1"), ("b", "dhaka", "q1")]
    assert bus.unwanted == 1


def test_user_events_go_by_their_own_name() -> None:
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe_user_event("CcbTrunkResult", lambda s, e: seen.append(e["Trunk"]))
    bus.dispatch("blr", {"Event": "UserEvent", "UserEvent": "CcbTrunkResult", "Trunk": "t1"})
    bus.dispatch("blr", {"Event": "UserEvent", "UserEvent": "Other", "Trunk": "t2"})
    assert seen == ["t1"]
    assert bus.names() == {"UserEvent"}
    assert bus.unwanted == 1
    with pytest.raises(ValueError, match="subscribe_user_event"):
        bus.subscribe("UserEvent", lambda s, e: None)


def test_a_failing_handler_is_counted_and_the_others_still_run() -> None:
    bus = EventBus()
    seen: list[str] = []

    def boom(site: str, event: Event) -> None:
        raise RuntimeError("bug")

    bus.subscribe("Hangup", boom)
    bus.subscribe("Hangup", lambda s, e: seen.append(s))
    bus.dispatch("manila", {"Event": "Hangup"})
    assert seen == ["manila"]
    assert bus.handler_errors == 1


@pytest.mark.parametrize("bad", ["", "Queue|Agent", "A B", "Ev\r\nX"])
def test_names_that_would_break_the_filter_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an AMI event name"):
        EventBus().subscribe(bad, lambda s, e: None)


@pytest.mark.parametrize("name", ["Newexten", "VarSet"])
def test_an_event_the_sites_never_make_cannot_be_subscribed(name: str) -> None:
    # manager.conf's disabledevents (variables.AMI_DISABLED_EVENTS): a handler would wait
    # forever, so a part that reads one fails at start, not in production
    with pytest.raises(ValueError, match="disabledevents"):
        EventBus().subscribe(name, lambda s, e: None)


def test_filter_admits_exactly_the_subscribed_names() -> None:
    bus = EventBus()
    bus.subscribe("QueueMemberStatus", lambda s, e: None)
    bus.subscribe("ContactStatus", lambda s, e: None)
    # Asterisk applies the filter as a POSIX ERE to the event text with CR LF lines;
    # Python's re agrees with it on this subset ([[:space:]] spelled \s here).
    pattern = re.compile(bus.ami_filter().replace("[[:space:]]", r"\s"))
    assert pattern.search("Event: QueueMemberStatus\r\nQueue: q\r\n")
    assert pattern.search("Event: ContactStatus\r\n")
    assert pattern.search("Event: FullyBooted\r\n")
    assert not pattern.search("Event: QueueMemberStatusX\r\n")
    assert not pattern.search("Event: Newexten\r\n")
    assert not pattern.search("Event: QueueMember\r\n")
