"""The AMI filter the bridge builds from its subscriptions, on the lab's Asterisk 22."""

from __future__ import annotations

from datetime import UTC, datetime

from ccbridge.ami.client import SiteLink
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import Config
from ccbridge.events import ALWAYS
from ccbridge.lab.sipp import Agent
from ccbridge.lab.sites import Lab
from ccbridge.variables import AMI_DISABLED_EVENTS
from tests.integration.conftest import AmiRecorder
from tests.polling import until

SITE = "bangalore"
QUEUE = "care-en"  # no static members: the test's login is the only one
AGENT = "PJSIP/roam1"


async def test_asterisk_accepts_the_filter_and_sends_only_what_it_admits(
    lab: Lab, lab_config: Config, agents: dict[str, Agent], ami: AmiRecorder
) -> None:
    bridge = Bridge(lab_config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    criteria = bridge.bus.ami_match_criteria()
    assert "action(include),name(QueueCallerJoin)" in criteria
    seen: list[dict[str, str]] = []
    link = SiteLink(SITE, lab_config.site(SITE).ami, lambda site, ev: seen.append(dict(ev)))
    await link.start()
    try:
        await until(lambda: link.connected, 10, "the filtered link to connect")
        # The bridge's own filters (one per name, Asterisk's advanced form): Asterisk
        # 22 takes them, and they admit exactly the names, none of the dialplan's noise.
        for one in criteria:
            reply = await link.action(
                "Filter", {"Operation": "Add", "MatchCriteria": one}, as_list=False
            )
            assert reply.get("Response") == "Success", dict(reply.items())
        before = len(seen)
        await link.action(
            "QueueAdd",
            {"Queue": QUEUE, "Interface": AGENT, "MemberName": "roam1", "Paused": "false"},
            as_list=False,
        )
        await link.action(
            "QueueMemberRingInUse",
            {"Queue": QUEUE, "Interface": AGENT, "RingInUse": "false"},
            as_list=False,
        )
        # A caller in the queue: the Local channels make Newchannel (no part reads it),
        # the queue QueueCallerJoin; roam1's SIPp answers, Wait(1) ends the call.
        await link.action(
            "Originate",
            {
                "Channel": f"Local/{QUEUE}@ccb-queue",
                "Application": "Wait",
                "Data": "1",
                "Async": "true",
            },
            as_list=False,
        )
        names = lambda: {e.get("Event") for e in seen[before:]}  # noqa: E731
        await until(
            lambda: {"QueueMemberRinginuse", "QueueCallerJoin", "QueueCallerLeave"} <= names(),
            15,
            "the filtered events",
        )
        # The unfiltered observer saw the channels made; the filtered link did not.
        await ami.wait_for(
            lambda: bool(ami.named("Newchannel", SITE)), what="Newchannel unfiltered"
        )
        admitted = bridge.bus.names() | ALWAYS
        assert {e.get("Event") for e in seen} - admitted == set()
        assert "Newchannel" not in names()
        # manager.conf's disabledevents: the dialplan's priorities and variable sets made
        # no event for any session, the unfiltered observer's either
        for name in AMI_DISABLED_EVENTS:
            assert not ami.named(name, SITE), name
    finally:
        if link.connected:
            await link.action("QueueRemove", {"Queue": QUEUE, "Interface": AGENT}, as_list=False)
        await link.stop()
