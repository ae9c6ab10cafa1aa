"""panoramisk 1.4's behaviour that ami/pano.py works around: each test fails if it changes.

Each ``test_panoramisk_*`` asserts the installed panoramisk still does what the workaround
assumes (the bug is still there, the internal is laid out as used); its partner checks
that ccbridge's override does the right thing instead. When one of the former fails after
an upgrade, revisit that workaround in ccbridge/ami/pano.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from panoramisk import actions as pano_actions
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from ccbridge.ami.codec import AmiMessage
from ccbridge.ami.pano import OneShotManager, Protocol, RedactingLog, build_action

# These tests feed reads one after another in one loop turn, with no loop turn between:
# the AMI share of a turn (pano.TURN) would make a read after 2 ms wait for the next.
UNBOUNDED = float("inf")


class Loop:
    """Records what panoramisk schedules (only the calls it makes)."""

    def __init__(self) -> None:
        self.later: list[tuple[float, Any]] = []
        self.soon: list[Any] = []

    def call_later(self, delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        self.later.append((delay, callback))
        return asyncio.get_running_loop().call_later(3600, lambda: None)

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.soon.append(callback)


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def manager(cls: type[Manager], loop: Loop, **config: Any) -> Any:
    return cls(loop=loop, username="u", secret="topsecret", ping_delay=5, **config)


def connected(cls: type[Manager], loop: Loop) -> tuple[Any, Any]:
    """A manager that has just connected over a recorded transport."""
    m = manager(cls, loop, protocol_factory=AMIProtocol)
    proto = AMIProtocol()
    proto.connection_made(Transport())
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.set_result((proto.transport, proto))
    m.connection_made(done)
    return m, proto


def failed_connect() -> asyncio.Future[Any]:
    f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    f.set_exception(ConnectionRefusedError())
    return f


async def test_panoramisk_schedules_its_own_reconnect_after_a_failed_connect() -> None:
    loop = Loop()
    manager(Manager, loop).connection_made(failed_connect())
    assert [delay for delay, _ in loop.later] == [2]
    ours = Loop()
    manager(OneShotManager, ours).connection_made(failed_connect())
    assert ours.later == []


async def test_panoramisk_login_rearms_an_unchecked_pinger() -> None:
    loop = Loop()
    m, _ = connected(Manager, loop)
    m.login(_resolved(Message({"Response": "Success"})))
    assert [cb.__name__ for _, cb in loop.later][-1] == "ping"
    ours = Loop()
    o, _ = connected(OneShotManager, ours)
    before = len(ours.later)
    assert o.login(_resolved(Message({"Response": "Success"}))) is True
    assert len(ours.later) == before


async def test_panoramisk_ping_never_looks_at_the_reply() -> None:
    loop = Loop()
    m, proto = connected(Manager, loop)
    assert m.ping() is None  # the reply's future is dropped: a hung peer goes unnoticed
    assert any(b"Action: Ping" in w for w in proto.transport.written)
    ours = Loop()
    o, oproto = connected(OneShotManager, ours)
    sent = len(oproto.transport.written)
    o.ping()
    assert len(oproto.transport.written) == sent


async def test_panoramisk_resends_queued_actions_on_fully_booted() -> None:
    m = manager(Manager, Loop())
    assert m.send_awaiting_actions in m.callbacks["FullyBooted"]
    ours = manager(OneShotManager, Loop())
    ours.awaiting_actions.append(pano_actions.Action({"Action": "QueuePause"}))
    ours.send_awaiting_actions()
    assert len(ours.awaiting_actions) == 1  # nothing re-sent


async def test_panoramisk_reconnects_on_its_own_when_the_connection_drops() -> None:
    loop = Loop()
    m, _ = connected(Manager, loop)
    m.connection_lost(None)
    assert [cb.__name__ for _, cb in loop.later][-1] == "connect"
    ours = Loop()
    o, _ = connected(OneShotManager, ours)
    before = len(ours.later)
    o.connection_lost(None)
    assert len(ours.later) == before


async def test_panoramisk_keeps_a_list_action_waiting_after_an_error_reply() -> None:
    error = {"Response": "Error", "Message": "Invalid/unknown command"}
    theirs = AMIProtocol()
    theirs.connection_made(Transport())
    action = pano_actions.Action({"Action": "PJSIPShowContacts"}, as_list=True)
    theirs.send(action, as_list=True)
    theirs.handle_message(Message({**error, "ActionID": action.id}))
    assert not action.future.done()
    ours = Protocol(lambda event: None)
    ours.budget = UNBOUNDED
    ours.connection_made(Transport())
    action = pano_actions.Action({"Action": "PJSIPShowContacts"}, as_list=True)
    ours.send(action, as_list=True)
    ours.data_received(b"Asterisk Call Manager/9.0.0\r\n")
    ours.data_received(f"Response: Error\r\nActionID: {action.id}\r\n\r\n".encode())
    assert action.future.done() and action.future.result()["Response"] == "Error"


async def test_panoramisk_takes_queue_add_reply_for_a_list_start() -> None:
    action = pano_actions.Action({"Action": "QueueAdd"})
    action.responses.append(Message({"Response": "Success", "Message": "Added interface to queue"}))
    assert action.multi is True  # hence client.SINGLE_ACTIONS passes as_list=False
    assert build_action("QueueAdd", {"Queue": "q"}, as_list=False).as_list is False


async def test_pending_actions_are_found_by_action_id_and_keep_their_list_events() -> None:
    """The event path tells an action's list items from live events by
    ``AMIProtocol.responses`` keyed by ActionID: check that layout and the routing."""
    seen: list[AmiMessage] = []
    proto = Protocol(seen.append)
    proto.budget = UNBOUNDED
    proto.connection_made(Transport())
    action = pano_actions.Action({"Action": "QueueStatus"}, as_list=True)
    proto.send(action, as_list=True)
    assert proto.responses[action.id] is action
    aid = action.id
    proto.data_received(
        b"Asterisk Call Manager/9.0.0\r\n"
        + f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n\r\n".encode()
        + f"Event: QueueMember\r\nActionID: {aid}\r\nQueue: q\r\n\r\n".encode()
        + b"Event: QueueCallerJoin\r\nQueue: q\r\n\r\n"
        + b"Event: QueueMember\r\nActionID: gone/1\r\nQueue: late\r\n\r\n"
        + f"Event: QueueStatusComplete\r\nActionID: {aid}\r\nEventList: Complete\r\n\r\n".encode()
    )
    assert [m["Event"] for m in seen] == ["QueueCallerJoin", "QueueMember"]
    assert all(isinstance(m, AmiMessage) for m in seen)
    reply = action.future.result()
    assert [m.get("Event") for m in reply] == [None, "QueueMember", "QueueStatusComplete"]


async def test_panoramisk_closes_with_a_message_on_shutdown() -> None:
    theirs = AMIProtocol()
    theirs.connection_made(Transport())
    got: list[object] = []

    class Factory:
        def connection_lost(self, exc: object) -> None:
            got.append(exc)

        def dispatch(self, message: object) -> None:
            pass

    theirs.factory = Factory()
    theirs.handle_message(Message({"Event": "Shutdown", "Shutdown": "Cleanly"}))
    assert len(got) == 1 and isinstance(got[0], Message)  # not an exception, not None
    seen: list[AmiMessage] = []
    ours = Protocol(seen.append)
    ours.budget = UNBOUNDED
    ours.connection_made(Transport())
    ours.factory = Factory()
    ours.data_received(b"Asterisk Call Manager/9.0.0\r\nEvent: Shutdown\r\n\r\n")
    assert [m["Event"] for m in seen] == ["Shutdown"]
    assert ours.lost.done() and not ours.gone.done()  # the socket closes later
    assert got[-1] is None


async def test_panoramisk_logs_a_pending_login_with_its_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    loop = Loop()
    m, proto = connected(Manager, loop)
    proto.log = logging.getLogger("test.pano.raw")
    m.connection_lost = lambda exc: None
    m.forgetable_actions = ()
    proto.close()  # the Login is still pending: panoramisk logs it whole
    assert "topsecret" in caplog.text
    caplog.clear()
    o, oproto = connected(OneShotManager, Loop())
    oproto.log = RedactingLog(logging.getLogger("test.pano.ours"), "topsecret")
    o.forgetable_actions = ()
    oproto.close()
    assert "Login" in caplog.text and "topsecret" not in caplog.text


def _resolved(message: Message) -> asyncio.Future[Any]:
    f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    f.set_result(message)
    return f
