"""The bridge's AMI event subscriptions: every event a part reads passes the session filter."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccbridge import agents, kpi, variables
from ccbridge.ami.client import LinkState, SiteLink
from ccbridge.ami.codec import AmiMessage, encode_fields
from ccbridge.app import CONTACT_STATUS, Bridge
from ccbridge.clock import Clock
from ccbridge.config import Config, load_config
from ccbridge.desk import live as desk_live
from ccbridge.events import ALWAYS
from ccbridge.routing.state import HANDLED_EVENTS
from ccbridge.screenpop import tracker as screenpop
from tests.amifake import FakeAmi
from tests.polling import until
from tests.unit.test_ami_client import make_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bridge(monkeypatch: pytest.MonkeyPatch) -> Bridge:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    config: Config = load_config(REPO / "examples" / "lab.yaml")
    return Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))


def _passes(ami_filter: str, name: str) -> bool:
    # Asterisk matches the filter (POSIX ERE, regcomp REG_EXTENDED) against the event's
    # text, lines ending CR LF; Python's re agrees on this subset with \s for [[:space:]].
    pattern = re.compile(ami_filter.replace("[[:space:]]", r"\s"))
    return pattern.search(f"Event: {name}\r\nPrivilege: agent,all\r\n") is not None


def test_every_event_a_part_reads_passes_the_filter(bridge: Bridge) -> None:
    pops = frozenset(screenpop.EVENTS)
    read = (
        HANDLED_EVENTS
        | kpi.EVENTS
        | agents.EVENTS
        | pops
        | desk_live.EVENTS
        | {CONTACT_STATUS, "UserEvent"}
    )
    ami_filter = bridge.bus.ami_filter()
    dropped = sorted(name for name in read if not _passes(ami_filter, name))
    assert dropped == []
    # QueueMemberRinginuse was the one the hand-kept list had lost.
    assert "QueueMemberRinginuse" in HANDLED_EVENTS
    assert bridge.bus.user_event_names() == {
        variables.EVENT_TRUNK_RESULT,
        variables.EVENT_HELD_ROUTE,
        variables.EVENT_HELD_REJECTED,
        *screenpop.USER_EVENTS,  # the IVR path and lookup answer of a screen pop
    }


def test_the_name_filters_are_the_regex_filters_names(bridge: Bridge) -> None:
    # One advanced filter per name the regex admits: the same events, cheaper to match.
    criteria = bridge.bus.ami_match_criteria()
    names = {c.removeprefix("action(include),name(").removesuffix(")") for c in criteria}
    assert len(names) == len(criteria) == len(bridge.bus.names() | ALWAYS)
    assert names == bridge.bus.names() | ALWAYS
    assert all(_passes(bridge.bus.ami_filter(), name) for name in names)
    assert not {"Newexten", "VarSet", "Newchannel", "Hangup"} & names


def test_every_subscribed_name_has_a_handler_and_nothing_else_passes(bridge: Bridge) -> None:
    ami_filter = bridge.bus.ami_filter()
    for name in bridge.bus.names() - {"UserEvent"}:
        assert bridge.bus.handlers(name), name
    for noise in ("Newexten", "VarSet", "Newchannel", "Hangup", "QueueMember", "DialBegin"):
        assert not _passes(ami_filter, noise), noise


def test_each_reader_gets_its_events_through_the_bus(bridge: Bridge) -> None:
    ev = {
        "Event": "QueueMemberAdded",
        "Queue": "care-en",
        "Interface": "PJSIP/roam1",
        "MemberName": "roam1",
        "Status": "1",
        "Paused": "0",
    }
    bridge.bus.dispatch("dhaka", ev)
    assert bridge.state.sites["dhaka"].queues["care-en"].logged_in == 1  # the reducer
    assert ("dhaka", "PJSIP/roam1") in bridge.agents.extra  # the agent mirror
    bridge.bus.dispatch("dhaka", {**ev, "Event": "QueueMemberRinginuse", "Ringinuse": "0"})
    bridge.bus.dispatch("dhaka", {"Event": "QueueCallerJoin", "Queue": "care-en", "Count": "1"})
    offered = bridge.registry.get_sample_value(
        "ccbridge_calls_offered_total",
        {"site": "dhaka", "service": "care", "language": "en", "queue": "care-en"},
    )
    assert offered == 1.0  # the KPI tracker
    for _ in range(3):
        bridge.bus.dispatch(
            "bangalore",
            {
                "Event": "UserEvent",
                "UserEvent": variables.EVENT_TRUNK_RESULT,
                "Trunk": "blr-dac",
                "DialStatus": "CONGESTION",
            },
        )
    assert "blr-dac" in bridge.state.unhealthy_trunks  # trunk results
    bridge.bus.dispatch(
        "bangalore", {"Event": CONTACT_STATUS, "AOR": "blr-mnl", "ContactStatus": "Unreachable"}
    )
    assert bridge.trunks["blr-mnl"].reachable is False  # qualify
    assert bridge.bus.handler_errors == 0


class _NoAdvancedFilters(FakeAmi):
    """An Asterisk without advanced filters: it refuses ``MatchCriteria``, takes a regex."""

    def _answer(self, writer: asyncio.StreamWriter, action: AmiMessage) -> None:
        if action.get("Action") == "Filter" and "MatchCriteria" in action:
            self.received.append(action)
            out = [("Response", "Error"), ("ActionID", action["ActionID"])]
            writer.write(encode_fields([*out, ("Message", "Filter Not Supported")]))
            return
        super()._answer(writer, action)


@pytest.mark.parametrize("advanced", [True, False])
async def test_the_session_asks_for_names_and_falls_back_to_the_regex(
    bridge: Bridge, advanced: bool
) -> None:
    fake = FakeAmi(secret="x") if advanced else _NoAdvancedFilters(secret="x")
    fake.replies["filter"] = {"Message": "Success"}
    await fake.start()
    link = SiteLink("bangalore", make_settings(fake.port, secret="x"), bridge.bus.dispatch)
    try:
        await link.start()
        await until(lambda: link.state is LinkState.UP, 2.0, "the link up")
        await bridge._filter_events(link)
    finally:
        await link.stop()
        await fake.close()
    sent = fake.actions_named("Filter")
    criteria = [a["MatchCriteria"] for a in sent if "MatchCriteria" in a]
    regexes = [a["Filter"] for a in sent if "Filter" in a]
    if advanced:  # every name, no regex
        assert (criteria, regexes) == (bridge.bus.ami_match_criteria(), [])
    else:  # the first name refused, then the one regex
        assert (criteria, regexes) == (
            bridge.bus.ami_match_criteria()[:1],
            [bridge.bus.ami_filter()],
        )
