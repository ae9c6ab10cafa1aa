"""The desk's API over fake AMI links: what each request sends to which site, and bad
input (an unknown, ended, waiting call; a site down; garbage) refused with a stable error
id before anything is sent: no supervisor rung, no caller moved."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ccbridge.access.audit import AuditEvent
from ccbridge.ami.client import AmiActionError, LinkState, SiteDownError
from ccbridge.ami.codec import AmiMessage
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.desk.live import CallState
from ccbridge.routing.state import set_site_up
from ccbridge.services.desk import encode
from tests.polling import until

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "Bearer the-token"}
CALL = "bangalore:1795888704.144284:17"
AGENT_CHAN = "PJSIP/dac-agent1-0000001a"
CALLER_CHAN = "PJSIP/blr-dac-0000000c"


class FakeLink:
    """Records the actions a site is sent; fails them as told."""

    def __init__(self, site: str) -> None:
        self.site = site
        self.actions: list[tuple[str, dict[str, Any]]] = []
        self.down = False
        self.fail: str | None = None  # an action name answered with an error

    @property
    def connected(self) -> bool:
        return not self.down

    @property
    def state(self) -> LinkState:
        return LinkState.DOWN if self.down else LinkState.UP

    async def action(self, name: str, fields: Mapping[str, Any], *, as_list: bool) -> AmiMessage:
        if self.down:
            raise SiteDownError(self.site)
        self.actions.append((name, dict(fields)))
        if name == self.fail:
            raise AmiActionError(name, AmiMessage([("Response", "Error"), ("Message", "No")]))
        return AmiMessage([("Response", "Success")])


class Trail:
    """The audit trail as the bridge writes to it (AccessService.trail)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def actions(self) -> list[str]:
        """What the desk audited itself (the HTTP layer audits each request besides)."""
        return [e.action for e in self.events if e.source == "bridge"]


Setup = tuple[TestClient, Bridge, dict[str, FakeLink], Trail]  # type: ignore[type-arg]


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    config = load_config(REPO / "examples" / "lab.yaml")
    bridge = Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    links = {s.name: FakeLink(s.name) for s in config.sites}
    bridge.links.update(links)  # type: ignore[arg-type]
    trail = Trail()
    bridge.access.trail = trail  # type: ignore[assignment]
    async with TestClient(TestServer(bridge.http_app())) as c:
        yield c, bridge, links, trail


def event(name: str, call: str = CALL, **fields: str) -> dict[str, str]:
    return {"Event": name, "ChanVariable": f"CCB_CALLID={call}", **fields}


def connect(bridge: Bridge, site: str = "dhaka", queue: str = "orders-en") -> None:
    bridge.bus.dispatch(site, event("QueueCallerJoin", Queue=queue, Channel=CALLER_CHAN))
    bridge.bus.dispatch(
        site,
        event(
            "AgentConnect",
            Queue=queue,
            Channel=CALLER_CHAN,
            DestChannel=AGENT_CHAN,
            MemberName="dac-agent1" if site == "dhaka" else "blr-agent1",
        ),
    )


def sent(links: dict[str, FakeLink]) -> list[tuple[str, str]]:
    return [(site, name) for site, link in links.items() for name, _ in link.actions]


async def post(c: TestClient, path: str, body: Any) -> tuple[int, dict[str, Any]]:  # type: ignore[type-arg]
    r = await c.post(path, json=body, headers=AUTH)
    return r.status, await r.json()


# -- supervision ------------------------------------------------------------------------
async def test_monitor_rings_the_supervisor_over_the_trunk_into_chanspy(setup: Setup) -> None:
    c, bridge, links, trail = setup
    connect(bridge)
    status, body = await post(
        c, f"/api/v1/calls/{CALL}/monitor", {"mode": "whisper", "supervisor": "blr-agent1"}
    )
    assert status == 201, body
    assert body["site"] == "dhaka" and body["supervisor_site"] == "bangalore"
    assert body["state"] == "ringing"
    ((name, fields),) = links["dhaka"].actions
    assert name == "Originate"
    assert fields["Channel"] == "PJSIP/phone.blr-agent1@dac-blr"
    assert (fields["Application"], fields["Data"]) == ("ChanSpy", f"{AGENT_CHAN},qESdw")
    assert links["bangalore"].actions == []
    assert trail.actions()[-1] == "supervise.start"

    spy = fields["ChannelId"]
    bridge.bus.dispatch(
        "dhaka",
        {"Event": "ChanSpyStart", "SpyerUniqueid": spy, "SpyerChannel": "PJSIP/dac-blr-00000031"},
    )
    url = f"/api/v1/calls/{CALL}/monitor/{body['id']}"
    r = await c.patch(url, json={"mode": "barge"}, headers=AUTH)
    assert r.status == 200 and (await r.json())["mode"] == "barge"
    name, fields = links["dhaka"].actions[-1]
    assert name == "PlayDTMF" and fields["Digit"] == "6" and fields["Receive"] == "true"
    assert fields["Channel"] == "PJSIP/dac-blr-00000031"
    r = await c.delete(url, headers=AUTH)
    assert r.status == 200 and (await r.json())["state"] == "ended"
    assert links["dhaka"].actions[-1] == ("Hangup", {"Channel": "PJSIP/dac-blr-00000031"})
    assert trail.actions()[-2:] == ["supervise.mode", "supervise.end"]
    # the session is over: a second stop is refused
    r = await c.delete(url, headers=AUTH)
    assert r.status == 409 and (await r.json())["error"] == "session-ended"


async def test_a_session_ends_when_the_call_or_the_supervisor_ends(setup: Setup) -> None:
    c, bridge, links, trail = setup
    connect(bridge)
    for sup in ("blr-agent1", "dac-agent2"):
        status, _ = await post(
            c, f"/api/v1/calls/{CALL}/monitor", {"mode": "listen", "supervisor": sup}
        )
        assert status == 201
    # a supervisor at the call's own site is rung directly; listen is ChanSpy without w/B
    assert links["dhaka"].actions[-1][1]["Channel"] == "PJSIP/dac-agent2"
    assert links["dhaka"].actions[-1][1]["Data"] == f"{AGENT_CHAN},qESd"
    first = links["dhaka"].actions[0][1]["ChannelId"]
    bridge.bus.dispatch("dhaka", {"Event": "ChanSpyStop", "SpyerUniqueid": first})
    assert len(bridge.desk.active_sessions()) == 1
    bridge.bus.dispatch("dhaka", event("AgentComplete", Reason="caller", Queue="orders-en"))
    assert bridge.desk.active_sessions() == []
    assert trail.actions().count("supervise.end") == 2


async def test_a_call_ending_while_the_supervisor_rings_hangs_the_phone_up(
    setup: Setup,
) -> None:
    c, bridge, links, _ = setup
    connect(bridge)
    body = {"mode": "listen", "supervisor": "blr-agent1"}
    assert (await post(c, f"/api/v1/calls/{CALL}/monitor", body))[0] == 201
    spy = links["dhaka"].actions[0][1]["ChannelId"]
    bridge.bus.dispatch("dhaka", event("AgentComplete", Reason="caller", Queue="orders-en"))
    await until(lambda: len(links["dhaka"].actions) == 2, 5, "the ringing phone hung up")
    assert links["dhaka"].actions[1] == ("Hangup", {"Channel": spy})


async def test_the_supervisor_not_answering_ends_the_session(setup: Setup) -> None:
    c, bridge, links, _ = setup
    connect(bridge)
    status, body = await post(
        c, f"/api/v1/calls/{CALL}/monitor", {"mode": "barge", "supervisor": "blr-agent2"}
    )
    assert status == 201
    spy = links["dhaka"].actions[0][1]["ChannelId"]
    bridge.bus.dispatch(
        "dhaka",
        {"Event": "OriginateResponse", "Response": "Failure", "Uniqueid": spy, "Reason": "3"},
    )
    assert bridge.desk.sessions[body["id"]].state.value == "ended"
    # the supervisor is free again
    status, _ = await post(
        c, f"/api/v1/calls/{CALL}/monitor", {"mode": "barge", "supervisor": "blr-agent2"}
    )
    assert status == 201


BAD_MONITOR = [
    ({"mode": "spy", "supervisor": "blr-agent1"}, 400, "invalid-field"),
    ({"mode": 3, "supervisor": "blr-agent1"}, 400, "invalid-field"),
    ({"supervisor": "blr-agent1"}, 400, "missing-field"),
    ({"mode": "listen"}, 400, "missing-field"),
    ({"mode": "listen", "supervisor": "nobody"}, 404, "no-such-phone"),
    ({"mode": "listen", "supervisor": "PJSIP/x\r\nAction: Originate"}, 404, "no-such-phone"),
    ([1, 2], 400, "invalid-body"),
]


@pytest.mark.parametrize(("body", "status", "error"), BAD_MONITOR)
async def test_bad_monitor_requests(setup: Setup, body: Any, status: int, error: str) -> None:
    c, bridge, links, _ = setup
    connect(bridge)
    got, answer = await post(c, f"/api/v1/calls/{CALL}/monitor", body)
    assert (got, answer["error"]) == (status, error), answer
    assert sent(links) == []


async def test_garbage_json_is_refused(setup: Setup) -> None:
    c, bridge, links, _ = setup
    connect(bridge)
    for path in ("monitor", "transfer", "conference", f"monitor/{'0' * 16}"):
        r = await c.post(f"/api/v1/calls/{CALL}/{path}", data=b"{not json", headers=AUTH)
        assert r.status == 400 and (await r.json())["error"] == "invalid-json", path
    assert sent(links) == []


@pytest.mark.parametrize(
    "call_id", ["nope", "bangalore:1.2:3", "x" * 65, "bangalore:1.2:3%0aAction:%20Hangup"]
)
async def test_an_unknown_call_is_404_everywhere(setup: Setup, call_id: str) -> None:
    c, bridge, links, _ = setup
    connect(bridge)
    for path, body in (
        ("monitor", {"mode": "listen", "supervisor": "blr-agent1"}),
        ("transfer", {"service": "orders"}),
        ("hold", {}),
        ("unhold", {}),
        ("conference", {"party": "blr-agent1"}),
    ):
        status, answer = await post(c, f"/api/v1/calls/{call_id}/{path}", body)
        assert (status, answer["error"]) == (404, "no-such-call"), (path, answer)
    assert sent(links) == []


async def test_an_ended_or_waiting_call_is_409(setup: Setup) -> None:
    c, bridge, links, _ = setup
    bridge.bus.dispatch("dhaka", event("QueueCallerJoin", Queue="orders-en", Channel=CALLER_CHAN))
    status, answer = await post(c, f"/api/v1/calls/{CALL}/transfer", {"service": "orders"})
    assert (status, answer["error"]) == (409, "call-not-connected")
    connect(bridge)
    bridge.bus.dispatch("dhaka", event("AgentComplete", Reason="agent", Queue="orders-en"))
    for path, body in (
        ("monitor", {"mode": "listen", "supervisor": "blr-agent1"}),
        ("transfer", {"service": "orders"}),
        ("hold", {}),
        ("conference", {"party": "blr-agent1"}),
    ):
        status, answer = await post(c, f"/api/v1/calls/{CALL}/{path}", body)
        assert (status, answer["error"]) == (409, "call-ended"), (path, answer)
    assert sent(links) == []


@pytest.mark.parametrize("down", ["dhaka", "bangalore"])
async def test_a_site_down_is_503_and_nobody_is_rung(setup: Setup, down: str) -> None:
    """The agent's site (dhaka) or the supervisor's (bangalore) down: nothing is sent."""
    c, bridge, links, _ = setup
    connect(bridge)
    links[down].down = True
    status, answer = await post(
        c, f"/api/v1/calls/{CALL}/monitor", {"mode": "listen", "supervisor": "blr-agent1"}
    )
    assert (status, answer["error"]) == (503, "site-down")
    status, answer = await post(
        c,
        f"/api/v1/calls/{CALL}/transfer",
        {"service": "orders", "language": "hi", "site": "bangalore"},
    )
    assert (status, answer["error"]) == (503, "site-down")
    assert sent(links) == []
    assert bridge.desk.calls[CALL].state is CallState.CONNECTED


async def test_a_busy_supervisor_is_409(setup: Setup) -> None:
    c, bridge, links, _ = setup
    connect(bridge)
    body = {"mode": "listen", "supervisor": "blr-agent1"}
    assert (await post(c, f"/api/v1/calls/{CALL}/monitor", body))[0] == 201
    status, answer = await post(c, f"/api/v1/calls/{CALL}/monitor", body)
    assert (status, answer["error"]) == (409, "supervisor-busy")
    assert len(links["dhaka"].actions) == 1


# -- transfer ------------------------------------------------------------------------------
async def test_transfer_to_another_site_carries_the_context(setup: Setup) -> None:
    c, bridge, links, trail = setup
    bridge.bus.dispatch("dhaka", event("UserEvent", UserEvent="CcbIvr", Menu="language", Step="1"))
    connect(bridge)
    status, body = await post(
        c,
        f"/api/v1/calls/{CALL}/transfer",
        {"service": "orders", "language": "hi", "site": "bangalore", "note": "refund, é 1"},
    )
    assert status == 202, body
    assert body == {
        "call_id": CALL,
        "from_site": "dhaka",
        "kind": "remote",
        "site": "bangalore",
        "queue": "orders-hi",
        "trunks": ["dac-blr"],
    }
    actions = links["dhaka"].actions
    setvars = {f["Variable"]: f["Value"] for n, f in actions if n == "Setvar"}
    assert all(f["Channel"] == CALLER_CHAN for n, f in actions if n == "Setvar")
    assert setvars["CCB_QUEUE"] == "orders-hi" and setvars["CCB_TRUNK_1"] == "dac-blr"
    assert setvars["CCB_TRUNK_COUNT"] == "1" and setvars["CCB_LANGUAGE"] == "hi"
    assert setvars["__CCB_NOTE"] == "refund%2C%20%C3%A9%201"
    assert setvars["__CCB_IVR_PATH"] == "language%3A1"
    assert actions[-1] == (
        "BlindTransfer",
        {"Channel": AGENT_CHAN, "Context": "ccb-transfer", "Exten": "remote"},
    )
    assert bridge.desk.calls[CALL].state is CallState.MOVING
    assert trail.actions()[-1] == "call.transfer"


async def test_transfer_within_the_site_and_blind_to_a_number(setup: Setup) -> None:
    c, bridge, links, _ = setup
    bridge.state = set_site_up(bridge.state, "bangalore", True, 0.0)  # a carrier's site
    connect(bridge, "bangalore", "orders-hi")
    status, body = await post(c, f"/api/v1/calls/{CALL}/transfer", {"service": "returns"})
    assert status == 202 and (body["kind"], body["queue"]) == ("queue", "returns-hi"), body
    connect(bridge, "bangalore", "orders-hi")
    status, body = await post(c, f"/api/v1/calls/{CALL}/transfer", {"number": "+919812345678"})
    assert status == 202 and body["kind"] == "number", body
    setvars = {f["Variable"]: f["Value"] for n, f in links["bangalore"].actions if n == "Setvar"}
    assert setvars["CCB_XFER_NUMBER"] == "+919812345678"
    assert setvars["CCB_TRUNK_1"] == "blr-pstn1" and setvars["CCB_CALLER_ID"] == "+918045000000"


BAD_TRANSFER = [
    ({}, 400, "missing-field"),
    ({"service": "orders", "number": "+919812345678"}, 400, "missing-field"),
    ({"service": "pizza"}, 400, "invalid-field"),
    ({"service": ["orders"]}, 400, "invalid-field"),
    ({"service": "orders", "language": "xx"}, 400, "invalid-field"),
    ({"service": "orders", "site": "atlantis"}, 404, "no-such-site"),
    ({"service": "returns", "language": "en", "site": "dhaka"}, 400, "no-such-queue"),
    ({"service": "orders", "note": "two\nlines"}, 400, "invalid-field"),
    ({"service": "orders", "note": "x" * 201}, 400, "invalid-field"),
    ({"number": "12345"}, 400, "invalid-field"),
    ({"number": "+919812345678\r\nAction: Hangup"}, 400, "invalid-field"),
    ({"number": "+639171234567"}, 503, "no-carrier"),
]


@pytest.mark.parametrize(("body", "status", "error"), BAD_TRANSFER)
async def test_bad_transfer_requests(setup: Setup, body: Any, status: int, error: str) -> None:
    c, bridge, links, _ = setup
    connect(bridge)
    got, answer = await post(c, f"/api/v1/calls/{CALL}/transfer", body)
    assert (got, answer["error"]) == (status, error), answer
    assert sent(links) == []
    assert bridge.desk.calls[CALL].state is CallState.CONNECTED


async def test_a_refused_blind_transfer_leaves_the_call_with_its_agent(setup: Setup) -> None:
    c, bridge, links, _ = setup
    connect(bridge)
    links["dhaka"].fail = "BlindTransfer"
    status, answer = await post(c, f"/api/v1/calls/{CALL}/transfer", {"service": "orders"})
    assert (status, answer["error"]) == (502, "ami-error")
    assert bridge.desk.calls[CALL].state is CallState.CONNECTED


# -- hold and conference -----------------------------------------------------------------
async def test_hold_unhold_and_a_conference_use_the_calls_room(setup: Setup) -> None:
    c, bridge, links, trail = setup
    connect(bridge)
    status, body = await post(c, f"/api/v1/calls/{CALL}/hold", {})
    assert status == 200 and body["held"] is True, body
    room = body["room"]
    assert room.startswith("r") and len(room) == 13
    name, fields = links["dhaka"].actions[-1]
    assert name == "Redirect"
    assert (fields["Channel"], fields["Context"], fields["Exten"]) == (
        CALLER_CHAN,
        "ccb-room",
        room,
    )
    assert (fields["ExtraChannel"], fields["ExtraContext"]) == (AGENT_CHAN, "ccb-room-hold")
    n = len(links["dhaka"].actions)
    assert (await post(c, f"/api/v1/calls/{CALL}/hold", {}))[0] == 200  # already held
    assert len(links["dhaka"].actions) == n
    status, body = await post(c, f"/api/v1/calls/{CALL}/unhold", {})
    assert status == 200 and body["held"] is False
    assert links["dhaka"].actions[-1][1] == {
        "Channel": AGENT_CHAN, "Context": "ccb-room-agent", "Exten": room, "Priority": "1"
    }  # fmt: skip
    status, body = await post(c, f"/api/v1/calls/{CALL}/conference", {"party": "blr-agent2"})
    assert status == 202 and body["party"] == "blr-agent2"
    name, fields = links["dhaka"].actions[-1]
    assert name == "Originate" and fields["Channel"] == "PJSIP/phone.blr-agent2@dac-blr"
    assert (fields["Context"], fields["Exten"]) == ("ccb-room-agent", room)
    assert trail.actions()[-3:] == ["call.hold", "call.unhold", "call.conference"]
    # app_queue's end of the call does not end a call in its room
    bridge.bus.dispatch("dhaka", event("AgentComplete", Reason="caller", Queue="orders-en"))
    assert bridge.desk.calls[CALL].state is CallState.CONNECTED


async def test_conference_bad_input(setup: Setup) -> None:
    c, bridge, links, _ = setup
    connect(bridge)
    for body, status, error in (
        ({}, 400, "missing-field"),
        ({"party": "nobody"}, 404, "no-such-phone"),
        ({"party": 7}, 400, "invalid-field"),
    ):
        got, answer = await post(c, f"/api/v1/calls/{CALL}/conference", body)
        assert (got, answer["error"]) == (status, error), answer
    assert sent(links) == []


def test_encode_keeps_letters_and_digits_only() -> None:
    assert encode("a b,c:é\n") == "a%20b%2Cc%3A%C3%A9%0A"
    assert encode("") == ""
