"""The satisfaction survey on the real lab, with the bridge down: after the agent hangs
up, a SIPp caller keys DTMF; a score 1-5 arrives over AMI as the CCBSurvey UserEvent,
garbage and silence give none, and every call ends (no call is left hanging)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ccbridge import variables
from ccbridge.ami.client import SiteLink
from ccbridge.config import Config
from ccbridge.config.store import StoreSettings
from ccbridge.lab.dtmf import Step, survey_call
from ccbridge.lab.sipp import Agent
from ccbridge.lab.sites import Lab
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.schema import calls
from tests.integration.conftest import (
    AmiRecorder,
    BridgeFactory,
    clear_held_routes,
    udp_port_taken,
)
from tests.polling import until, until_sync

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
CARE_IN = "+918000000004"  # care at bangalore: a surveyed service in examples/lab.yaml
BANGALORE = "127.0.1.1:5060"
QUEUE = "care-en"
PHONE = ("127.0.0.1", 7061)  # a phone no configured agent uses
# roam1's endpoint dialling another URI: the member is this test's phone alone. Its
# device state is roam1's (a URI has none: app_queue skips an Invalid member).
INTERFACE = f"PJSIP/roam1/sip:agent@{PHONE[0]}:{PHONE[1]}"
STATE = "PJSIP/roam1"


@pytest.fixture
def hangup_phone(lab: Lab) -> Iterator[Agent]:
    """A SIPp phone that answers, talks 1.5 s and hangs up (agent_hangup.xml)."""
    phone = Agent(*PHONE, scenario="agent_hangup.xml", max_seconds=300, workdir=lab.log_dir)
    phone.start()
    until_sync(lambda: udp_port_taken(*PHONE), 5, "the hang-up phone listening")
    try:
        yield phone
    finally:
        phone.stop()


@pytest.fixture
async def member(lab: Lab, hangup_phone: Agent) -> AsyncIterator[SiteLink]:
    """The hang-up phone as the only member of care-en at bangalore."""
    link = SiteLink("bangalore", lab.config.site("bangalore").ami, lambda s, e: None)
    await link.start()
    await until(lambda: link.connected, 10, "AMI to bangalore")
    fields = {"Queue": QUEUE, "Interface": INTERFACE}
    try:
        reply = await link.action(
            "QueueAdd",
            {**fields, "MemberName": "survey-phone", "StateInterface": STATE, "Paused": "false"},
            as_list=False,
        )
        assert reply.get("Response") == "Success", dict(reply.items())
        yield link
    finally:
        await link.action("QueueRemove", fields, as_list=False)
        await link.stop()


def _surveys(ami: AmiRecorder) -> list[dict[str, str]]:
    return [e for e in ami.named("UserEvent") if e.get("UserEvent") == variables.EVENT_SURVEY]


def _completes(ami: AmiRecorder) -> list[dict[str, str]]:
    return [e for e in ami.named("AgentComplete", "bangalore") if e.get("Queue") == QUEUE]


async def _call(ami: AmiRecorder, steps: list[Step], port: int) -> None:
    """One call answered by the phone, which hangs up; the caller keys ``steps``; the
    dialplan must end the call (the caller's SIPp waits for its BYE, 20 s at most)."""
    before = len(_completes(ami))
    result = await asyncio.to_thread(survey_call, BANGALORE, CARE_IN, steps, local_port=port)
    assert result.ok, result.output[-3000:]
    await ami.wait_for(lambda: len(_completes(ami)) > before, what="AgentComplete")
    # the agent's side ended the call: the survey ran after the agent hung up
    assert _completes(ami)[-1].get("Reason") == "agent"


async def test_a_score_arrives_and_garbage_or_silence_give_none(
    lab: Lab, ami: AmiRecorder, member: SiteLink
) -> None:
    clear_held_routes(lab)  # no bridge and no held route: the static route to care-en
    # 1.6 s ringing and talking, then the prompt; 4 keyed during it
    await _call(ami, [(3500, "4")], port=6151)
    await ami.wait_for(lambda: len(_surveys(ami)) == 1, what="the CCBSurvey UserEvent")
    ev = _surveys(ami)[0]
    assert (ev.get("Score"), ev.get("Queue"), ev.get("Site")) == ("4", QUEUE, "bangalore")
    assert "CallID" in ev  # ${CCB_CALLID}: the call record's key
    # a key out of range, '*', and silence until the timeout: no score, the call ends
    for port, steps in ((6152, [(3500, "9")]), (6153, [(3500, "*")]), (6154, [])):
        await _call(ami, steps, port=port)
    assert len(_surveys(ami)) == 1


async def test_with_the_bridge_the_score_is_in_the_call_record(
    lab: Lab, lab_config: Config, ami: AmiRecorder, member: SiteLink, bridge_at: BridgeFactory,
    tmp_path: Path,
) -> None:  # fmt: skip
    store = StoreSettings(
        enabled=True,
        url=f"sqlite+aiosqlite:///{tmp_path / 'records.db'}",
        journal=str(tmp_path / "records.journal"),
    )
    engine = make_engine(store)
    try:
        await upgrade(engine)
        async with bridge_at(WEDNESDAY_MORNING, replace(lab_config, store=store)) as bridge:
            # the bridge routes the care call to bangalore, where the phone is a member
            await until(
                lambda: bridge.state.sites["bangalore"].queues["care-en"].logged_in == 1,
                10,
                "the bridge to see the phone in care-en",
            )
            await _call(ami, [(3500, "5")], port=6155)
            await ami.wait_for(lambda: len(_surveys(ami)) == 1, what="the CCBSurvey UserEvent")
            call_id = _surveys(ami)[0].get("CallID", "")
            assert call_id.startswith("bangalore:"), call_id  # the entry site's call ID

            async def scored() -> list[dict[str, Any]]:
                async with engine.connect() as conn:
                    rows = await conn.execute(select(calls).where(calls.c.call_id == call_id))
                    return [dict(r._mapping) for r in rows]

            deadline = asyncio.get_running_loop().time() + 20
            # the score as the survey sends it, the outcome once the caller's leg ends
            while not (got := await scored()) or None in (
                got[0]["satisfaction"],
                got[0]["outcome"],
            ):
                assert asyncio.get_running_loop().time() < deadline, "the scored call recorded"
                await asyncio.sleep(0.3)
    finally:
        await engine.dispose()
    (row,) = got
    assert (row["satisfaction"], row["queue"], row["outcome"]) == (5, QUEUE, "answered")
    assert row["target_site"] == "bangalore" and row["hung_up_by"] == "agent"
