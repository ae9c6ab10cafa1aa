"""SiteLink against the fake AMI server: login, events, failures, liveness, actions, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest

from ccbridge.ami.client import (
    AmiActionError,
    AmiTimeoutError,
    LinkState,
    SiteDownError,
    SiteLink,
    backoff_delay,
)
from ccbridge.ami.codec import AmiMessage
from ccbridge.config.model import AmiSettings, SecretValue
from ccbridge.events import EventBus
from tests.amifake import FakeAmi
from tests.polling import until

SITE = "mumbai"
SECRET = "s3cret-do-not-log"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Mapping[str, str]]] = []
        self.states: list[LinkState] = []

    def on_event(self, site: str, event: Mapping[str, str]) -> None:
        self.events.append((site, event))

    def on_state(self, site: str, state: LinkState) -> None:
        assert site == SITE
        self.states.append(state)

    def named(self, name: str) -> list[Mapping[str, str]]:
        return [e for _, e in self.events if e.get("Event") == name]


def make_settings(
    port: int, secret: str = SECRET, overrides: Mapping[str, float] | None = None
) -> AmiSettings:
    values: dict[str, float] = {
        "ping_interval": 0.2,
        "ping_timeout": 0.3,
        "action_timeout": 1.0,
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
    }
    values.update(overrides or {})
    return AmiSettings(
        host="127.0.0.1",
        port=port,
        username="ccbridge",
        secret=SecretValue(secret, "test"),
        **values,
    )


# `until` at the fake server's pace: checked every 5 ms, 2 s unless a test says `within`.
wait_until = functools.partial(until, within=2.0, interval=0.005)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    server = FakeAmi(secret=SECRET)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


LinkFactory = Callable[..., SiteLink]


@pytest.fixture
async def make_link(recorder: Recorder) -> AsyncIterator[LinkFactory]:
    links: list[SiteLink] = []

    def factory(settings: AmiSettings, **kwargs: Any) -> SiteLink:
        link = SiteLink(
            SITE,
            settings,
            recorder.on_event,
            recorder.on_state,
            logging.getLogger("test.ami"),
            **kwargs,
        )
        links.append(link)
        return link

    yield factory
    for link in links:
        await link.stop()
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith("ami-")]
    assert leftovers == []


async def up_link(make_link: LinkFactory, fake: FakeAmi, **overrides: float) -> SiteLink:
    link = make_link(make_settings(fake.port, overrides=overrides))
    await link.start()
    await wait_until(lambda: link.state is LinkState.UP)
    return link


def test_backoff_doubles_with_jitter_within_bounds() -> None:
    assert backoff_delay(0, 0.5, 10.0, 0.99) == 0.5
    assert 0.5 <= backoff_delay(1, 0.5, 10.0, 0.0) <= backoff_delay(1, 0.5, 10.0, 0.99) <= 1.0
    assert backoff_delay(3, 0.5, 10.0, 0.0) == 2.0
    assert backoff_delay(3, 0.5, 10.0, 0.999) == pytest.approx(4.0, abs=0.01)
    assert all(5.0 <= backoff_delay(n, 0.5, 10.0, 0.5) <= 10.0 for n in range(6, 200))


async def test_login_ok_goes_up_and_delivers_events(
    fake: FakeAmi, make_link: LinkFactory, recorder: Recorder
) -> None:
    link = await up_link(make_link, fake)
    assert link.connected and link.ready
    assert recorder.states == [LinkState.UP]
    fake.push_event(
        "QueueMemberStatus",
        {"Queue": "sales-en", "Interface": "PJSIP/agent1001", "Status": "2"},
    )
    await wait_until(lambda: bool(recorder.named("QueueMemberStatus")))
    (event,) = recorder.named("QueueMemberStatus")
    # The parsed message itself, read-only: every subscriber shares it, none may change it.
    assert isinstance(event, AmiMessage)
    with pytest.raises(TypeError, match="read-only"):
        event["Interface"] = "PJSIP/other"  # type: ignore[index]
    assert event["Interface"] == "PJSIP/agent1001"
    assert recorder.named("FullyBooted")  # events right after login are not lost
    assert all(site == SITE for site, _ in recorder.events)


async def test_repeated_keys_reach_on_event_as_first_value(
    fake: FakeAmi, make_link: LinkFactory, recorder: Recorder
) -> None:
    await up_link(make_link, fake)
    for writer in list(fake._writers):
        writer.write(b"Event: Newchannel\r\nChanVariable: A=1\r\nChanVariable: B=2\r\n\r\n")
    await wait_until(lambda: bool(recorder.named("Newchannel")))
    assert recorder.named("Newchannel")[0]["ChanVariable"] == "A=1"


async def test_wrong_password_is_auth_failed_logged_and_retried_with_backoff(
    fake: FakeAmi, make_link: LinkFactory, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    link = make_link(make_settings(fake.port, secret="wrong-secret-value"))
    await link.start()
    await wait_until(lambda: link.auth_failures >= 4, within=3.0)
    assert link.state is LinkState.AUTH_FAILED
    assert not link.connected
    assert recorder.states == [LinkState.AUTH_FAILED]
    assert fake.logins_failed >= 4
    gaps = [b - a for a, b in zip(fake.login_times, fake.login_times[1:], strict=False)]
    assert all(gap >= 0.045 for gap in gaps)  # never a hot loop: at least reconnect_min
    assert max(gaps) > 0.09  # and it backs off beyond the minimum
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == link.auth_failures
    assert all(SITE in r.getMessage() and r.levelno == logging.ERROR for r in rejected)
    assert "Authentication failed" in rejected[0].getMessage()
    assert "wrong-secret-value" not in caplog.text
    assert SECRET not in caplog.text
    with pytest.raises(SiteDownError):
        await link.action("Ping")


async def test_unreachable_at_start_then_server_appears(
    fake: FakeAmi, make_link: LinkFactory, recorder: Recorder
) -> None:
    await fake.stop()  # nothing listens on the port now
    link = make_link(make_settings(fake.port))
    started = time.monotonic()
    await link.start()
    assert time.monotonic() - started < 0.05
    await wait_until(lambda: link.state is LinkState.DOWN)
    with pytest.raises(SiteDownError):
        await link.action("Ping")
    await wait_until(lambda: link.reconnects >= 1, what="a reconnection attempt")
    await fake.start()
    await wait_until(lambda: link.state is LinkState.UP)
    assert recorder.states == [LinkState.DOWN, LinkState.UP]


async def test_cut_mid_session_fails_pending_fast_then_reconnects(
    fake: FakeAmi, make_link: LinkFactory, recorder: Recorder
) -> None:
    link = await up_link(make_link, fake, action_timeout=5.0)
    fake.mute("CoreSettings")
    fake.script_list("QueueStatus", None, [{"Event": "QueueParams", "Queue": "sales-en"}])
    silent = asyncio.create_task(link.action("CoreSettings"))
    half_list = asyncio.create_task(link.action("QueueStatus"))
    await wait_until(lambda: len(fake.actions_named("QueueStatus")) == 1)
    # The half list has reached the client once an event written after it has: one stream.
    fake.push_event("TestMarker")
    await wait_until(lambda: bool(recorder.named("TestMarker")), what="the half list read")
    cut_at = time.monotonic()
    await fake.cut()
    await wait_until(lambda: link.state is LinkState.DOWN, within=1.0)
    for task in (silent, half_list):
        with pytest.raises(SiteDownError):
            await task
    assert time.monotonic() - cut_at < 1.0  # not the 5 s action timeout
    await wait_until(lambda: link.state is LinkState.UP)
    assert recorder.states == [LinkState.UP, LinkState.DOWN, LinkState.UP]
    assert link.reconnects >= 1
    assert len(fake.actions_named("CoreSettings")) == 1  # never re-sent after reconnect


async def test_hung_server_is_detected_by_ping_deadline(
    fake: FakeAmi, make_link: LinkFactory
) -> None:
    link = await up_link(make_link, fake)
    await wait_until(lambda: len(fake.actions_named("Ping")) >= 2, what="a few good pings first")
    fake.hang()
    elapsed = await wait_until(lambda: link.state is LinkState.DOWN, within=2.0)
    assert elapsed <= 0.2 + 0.3 + 0.2  # ping_interval + ping_timeout + margin
    assert link.ping_timeouts == 1
    fake.hang(False)
    await wait_until(lambda: link.state is LinkState.UP)


async def test_action_timeout_raises_counts_and_keeps_link(
    fake: FakeAmi, make_link: LinkFactory
) -> None:
    link = await up_link(make_link, fake)
    fake.mute("CoreSettings")
    with pytest.raises(AmiTimeoutError) as caught:
        await link.action("CoreSettings", timeout=0.1)
    assert isinstance(caught.value, asyncio.TimeoutError)
    assert link.action_timeouts == 1
    assert link.state is LinkState.UP
    reply = await link.action("Ping")
    assert not isinstance(reply, list)
    assert reply["Ping"] == "Pong"


async def test_queue_status_returns_the_list_and_keeps_it_off_on_event(
    fake: FakeAmi, make_link: LinkFactory, recorder: Recorder
) -> None:
    fake.script_list(
        "QueueStatus",
        "QueueStatusComplete",
        [
            {"Event": "QueueParams", "Queue": "sales-en", "Calls": "2", "Strategy": "rrmemory"},
            {
                "Event": "QueueMember",
                "Queue": "sales-en",
                "Name": "Agent 1001",
                "Location": "PJSIP/agent1001",
                "Status": "1",
                "Paused": "0",
            },
        ],
    )
    link = await up_link(make_link, fake)
    result = await link.action("QueueStatus", {"Queue": "sales-en"})
    assert isinstance(result, list)
    assert [m.name for m in result] == [
        "Success",
        "QueueParams",
        "QueueMember",
        "QueueStatusComplete",
    ]
    assert result[2]["Location"] == "PJSIP/agent1001"
    assert fake.actions_named("QueueStatus")[0]["Queue"] == "sales-en"
    assert not recorder.named("QueueMember")  # list events go to the action only


async def test_queue_add_resolves_despite_panoramisk_list_guess(
    fake: FakeAmi, make_link: LinkFactory
) -> None:
    link = await up_link(make_link, fake)
    reply = await link.action(
        "QueueAdd", {"Queue": "sales-en", "Interface": "PJSIP/agent1001", "Penalty": "0"}
    )
    assert not isinstance(reply, list)
    assert reply["Message"] == "Added interface to queue"


async def test_error_replies_raise_at_once_even_for_list_actions(
    fake: FakeAmi, make_link: LinkFactory
) -> None:
    link = await up_link(make_link, fake, action_timeout=5.0)
    started = time.monotonic()
    with pytest.raises(AmiActionError, match="Invalid/unknown command") as caught:
        await link.action("PJSIPShowContacts")  # a list action answered with Error
    assert caught.value.response["Response"] == "Error"
    assert time.monotonic() - started < 1.0
    with pytest.raises(AmiActionError):
        await link.action("Bogus", as_list=False)


async def test_actions_fail_fast_when_not_up_and_are_not_sent(
    fake: FakeAmi, make_link: LinkFactory
) -> None:
    link = make_link(make_settings(fake.port))
    with pytest.raises(SiteDownError, match="connecting"):
        await link.action("QueuePause", {"Interface": "PJSIP/1", "Paused": "true"})
    await link.start()
    await wait_until(lambda: link.connected)
    await link.stop()
    with pytest.raises(SiteDownError, match="down"):
        await link.action("QueuePause", {"Interface": "PJSIP/1", "Paused": "true"})
    assert fake.actions_named("QueuePause") == []


async def test_header_injection_is_refused(fake: FakeAmi, make_link: LinkFactory) -> None:
    link = await up_link(make_link, fake)
    with pytest.raises(ValueError, match="CR/LF"):
        await link.action("QueuePause", {"Interface": "PJSIP/1\r\nAction: Hangup"})
    assert fake.actions_named("QueuePause") == []


async def test_failing_on_event_callback_is_logged_and_link_survives(
    fake: FakeAmi, make_link: LinkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def explosive(site: str, event: Mapping[str, str]) -> None:
        seen.append(event["Event"])
        if event["Event"] == "Boom":
            raise RuntimeError("callback bug")

    link = SiteLink(SITE, make_settings(fake.port), explosive, None, logging.getLogger("t"))
    try:
        await link.start()
        await wait_until(lambda: link.connected)
        fake.push_event("Boom")
        fake.push_event("After")
        await wait_until(lambda: "After" in seen)
        assert link.connected
        assert "on_event callback failed" in caplog.text
    finally:
        await link.stop()


async def test_on_ready_runs_after_up_on_every_connection(
    fake: FakeAmi, make_link: LinkFactory, recorder: Recorder
) -> None:
    fake.script_list("QueueSummary", "QueueSummaryComplete", [{"Event": "QueueSummary"}])
    synced: list[tuple[LinkState, int]] = []

    async def on_ready(link: SiteLink) -> None:
        summary = await link.action("QueueSummary")
        synced.append((link.state, len(summary) if isinstance(summary, list) else 0))

    link = make_link(make_settings(fake.port), on_ready=on_ready)
    await link.start()
    await wait_until(lambda: link.ready)
    assert synced == [(LinkState.UP, 3)]
    await fake.cut()
    await wait_until(lambda: len(synced) == 2 and link.ready)
    assert recorder.states == [LinkState.UP, LinkState.DOWN, LinkState.UP]


async def test_failing_on_ready_drops_the_connection_to_retry(
    fake: FakeAmi, make_link: LinkFactory
) -> None:
    calls: list[int] = []

    async def on_ready(link: SiteLink) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("sync failed")

    link = make_link(make_settings(fake.port), on_ready=on_ready)
    await link.start()
    await wait_until(lambda: link.ready)
    assert len(calls) == 2
    assert fake.connections == 2


async def test_shutdown_event_takes_the_link_down(fake: FakeAmi, make_link: LinkFactory) -> None:
    link = await up_link(make_link, fake)
    fake.push_event("Shutdown", {"Shutdown": "Cleanly", "Restart": "True"})
    await wait_until(lambda: link.state is LinkState.DOWN, within=1.0)
    await wait_until(lambda: link.state is LinkState.UP)


async def test_non_ami_peer_is_dropped_and_retried(make_link: LinkFactory) -> None:
    hits: list[int] = []

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(1)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        # Bounded: a client that never closes must not keep the server (and the test) alive.
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(), 2.0)
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    try:
        link = make_link(make_settings(server.sockets[0].getsockname()[1]))
        await link.start()
        await wait_until(lambda: len(hits) >= 2)
        assert link.state is LinkState.DOWN
        await link.stop()
    finally:
        server.close()
        await server.wait_closed()


async def test_stop_closes_the_socket_and_no_secret_is_logged(
    fake: FakeAmi, make_link: LinkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    link = await up_link(make_link, fake)
    await link.action("Ping")
    await link.stop()
    assert link.state is LinkState.DOWN
    await wait_until(lambda: fake.client_count == 0, within=1.0)
    assert "AMI logged in" in caplog.text
    assert SECRET not in caplog.text


async def test_every_subscriber_reads_the_one_parsed_mapping(fake: FakeAmi) -> None:
    """One parse per event: the link hands the bus the parsed message, and every part
    subscribed to that name gets that same read-only object, no copy."""
    bus = EventBus()
    seen: list[tuple[str, Mapping[str, str]]] = []
    for part in ("state", "kpi", "agents"):
        bus.subscribe("QueueCallerJoin", lambda s, e, part=part: seen.append((part, e)))
    link = SiteLink(SITE, make_settings(fake.port), bus.dispatch)
    await link.start()
    try:
        await wait_until(lambda: link.state is LinkState.UP and fake.logins_ok == 1)
        fake.push_event("QueueCallerJoin", {"Queue": "sales-en", "Position": "1"})
        fake.push_event("Newexten", {"Channel": "PJSIP/x"})  # nobody reads it
        await wait_until(lambda: len(seen) == 3 and bus.unwanted >= 1)
    finally:
        await link.stop()
    assert [part for part, _ in seen] == ["state", "kpi", "agents"]
    first = seen[0][1]
    assert all(event is first for _, event in seen)
    assert isinstance(first, AmiMessage) and first["Queue"] == "sales-en"
    with pytest.raises(TypeError, match="read-only"):
        first["Queue"] = "other"  # type: ignore[index]


async def test_plain_actions_answer_their_one_reply_without_panoramisk(
    fake: FakeAmi, make_link: LinkFactory
) -> None:
    """Setvar, Getvar and DialplanExtensionAdd (the held-route writes) go out encoded by
    ccbridge with an ActionID of its own; the reply is the parsed AmiMessage itself, an
    Error raises, a late reply after a timeout is dropped, and a cut fails them at once."""
    link = await up_link(make_link, fake, action_timeout=5.0)
    protocol = link._protocol
    assert protocol is not None
    sent = await link.action("Setvar", {"Variable": "CCB_X", "Value": "a: b"})
    assert isinstance(sent, AmiMessage) and sent["Message"] == "Variable Set"
    got = await link.action("Getvar", {"Variable": "CCB_X"}, as_list=False)
    assert isinstance(got, AmiMessage) and got["Value"] == "a: b"
    ids = [m["ActionID"] for m in fake.actions_named("Setvar") + fake.actions_named("Getvar")]
    assert ids == ["ccb/1", "ccb/2"] and protocol.replies == {} and protocol.responses == {}
    with pytest.raises(AmiActionError, match="Invalid/unknown command"):
        await link.action("DialplanExtensionAdd", {"Context": "c", "Extension": "1"})
    with pytest.raises(ValueError, match="CR/LF"):
        await link.action("Setvar", {"Variable": "CCB_X", "Value": "1\r\nAction: Hangup"})
    assert len(fake.actions_named("Setvar")) == 1  # the injection never left
    fake.mute("Setvar")
    with pytest.raises(AmiTimeoutError):
        await link.action("Setvar", {"Variable": "CCB_Y", "Value": "1"}, timeout=0.1)
    assert protocol.replies == {}  # a reply still to come finds nobody waiting
    fake.push_raw(b"Response: Success\r\nActionID: ccb/4\r\nMessage: Variable Set\r\n\r\n")
    reply = await link.action("Ping")  # read after that late reply: it was dropped
    assert not isinstance(reply, list) and reply["Ping"] == "Pong"
    assert link.state is LinkState.UP
    held = asyncio.create_task(link.action("Setvar", {"Variable": "CCB_Z", "Value": "1"}))
    await wait_until(lambda: len(fake.actions_named("Setvar")) == 3)
    await fake.cut()
    with pytest.raises(SiteDownError):
        await held


async def test_plain_actions_in_one_write_answer_in_order_and_fail_as_one_would(
    fake: FakeAmi, make_link: LinkFactory
) -> None:
    """A held pass's writes in one write (SiteLink.plain_actions): every reply in the
    order sent; an Error raises once all are in (the actions after it ran, as Asterisk
    runs them); nothing leaves on a bad field or a non-plain action; late replies find
    nobody; a cut fails the batch at once; not UP, nothing is sent."""
    link = await up_link(make_link, fake, action_timeout=5.0)
    protocol = link._protocol
    assert protocol is not None
    assert await link.plain_actions([]) == []
    writes = [("Setvar", {"Variable": f"CCB_{i}", "Value": str(i)}) for i in range(5)]
    replies = await link.plain_actions([*writes, ("Getvar", {"Variable": "CCB_3"})])
    assert [r["ActionID"] for r in replies] == [f"ccb/{i}" for i in range(1, 7)]
    assert replies[-1]["Value"] == "3" and fake.globals["CCB_4"] == "4"
    assert protocol.replies == {} and link._pending == {}
    bad = ("DialplanExtensionAdd", {"Context": "c", "Extension": "1"})  # the fake: Error
    with pytest.raises(AmiActionError, match="Invalid/unknown command"):
        await link.plain_actions([writes[0], bad, ("Setvar", {"Variable": "AFTER", "Value": "1"})])
    assert fake.globals["AFTER"] == "1"
    before = len(fake.received)
    with pytest.raises(ValueError, match="CR/LF"):
        await link.plain_actions([writes[0], ("Setvar", {"Variable": "X", "Value": "1\r\n"})])
    with pytest.raises(ValueError, match="PLAIN_ACTIONS"):
        await link.plain_actions([writes[0], ("Hangup", {"Channel": "PJSIP/1"})])
    assert len(fake.received) == before  # neither batch left, not even its good actions
    fake.mute("Setvar")
    with pytest.raises(AmiTimeoutError, match="no reply to 2 actions"):
        await link.plain_actions(writes[:2], timeout=0.1)
    assert link.action_timeouts == 1 and protocol.replies == {} and link._pending == {}
    ping = await link.action("Ping")
    assert not isinstance(ping, list) and ping["Ping"] == "Pong"
    held = asyncio.create_task(link.plain_actions(writes[:3]))
    await wait_until(lambda: len(fake.actions_named("Setvar")) == 12)
    await fake.cut()
    with pytest.raises(SiteDownError):
        await held
    await link.stop()
    with pytest.raises(SiteDownError, match="down"):
        await link.plain_actions(writes[:1])
