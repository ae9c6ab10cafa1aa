"""Bad input never takes the bridge down: FastAGI garbage under live calls, AMI faults."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ccbridge import variables as v
from ccbridge.ami.client import LinkState, SiteDownError
from ccbridge.app import Bridge
from ccbridge.config import Config
from ccbridge.config.model import SecretValue
from ccbridge.lab.sipp import Agent, place_calls
from ccbridge.lab.sites import Lab
from tests.integration.conftest import AmiRecorder, BridgeFactory
from tests.polling import until

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)


async def _probe(port: int, payload: bytes, linger: float) -> float:
    """Connect, send ``payload``, keep quiet; return how long until the bridge hung up."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if payload:
            writer.write(payload)
            await writer.drain()
        if linger == 0:
            return 0.0
        await asyncio.wait_for(reader.read(), timeout=linger)  # EOF when the bridge drops us
        return time.monotonic() - start
    except (ConnectionError, TimeoutError):
        return time.monotonic() - start
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.fixture
def answering_hindi(lab: Lab) -> Iterator[None]:
    """orders-hi at bangalore answers at once: ten calls waited ~20 s on its two agents'
    wrap-ups, and the test is about the FastAGI server, not agents."""
    from tests.integration.conftest import answering, clear_held_routes

    # The real calls must ask over FastAGI, not take a held route: none is kept.
    clear_held_routes(lab)
    with answering(lab, {"bangalore": "orders-hi"}):
        yield


async def test_fastagi_garbage_while_real_calls_are_routed(
    lab: Lab, answering_hindi: None, ami: AmiRecorder, bridge_at: BridgeFactory
) -> None:
    from tests.integration.conftest import without_held_routes

    async with bridge_at(WEDNESDAY_MORNING, without_held_routes(lab.config)) as bridge:
        port = bridge.agi.port
        calls = asyncio.create_task(
            asyncio.to_thread(
                place_calls,
                "127.0.1.1:5060",
                "+918000000001",
                caller="+919812345678",
                calls=10,
                rate=5,
                duration_ms=300,
                max_seconds=30,
                local_port=6130,
            )
        )
        bad = [
            b"",  # connect-and-close: a port probe or a health check
            b"agi_network: yes\nagi_request: agi://127.0.0.1/route\n",  # half a header, silence
            bytes(range(256)) * 8,  # garbage
            b"agi_network: " + b"x" * 1_000_000 + b"\n",  # a 1 MB line
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # the wrong protocol
        ]
        dropped_after: list[float] = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            got = await asyncio.gather(*(_probe(port, p, 0 if not p else 5.0) for p in bad))
            dropped_after += [t for p, t in zip(bad, got, strict=True) if p]
        result = await calls
        assert result.ok, result.output[-2000:]
        # Every bad connection was dropped within the header deadline (2 s) plus slack.
        assert dropped_after and max(dropped_after) < 3.0, max(dropped_after)
        # The calls were routed by the bridge, not by the fallback.
        routed = bridge.registry.get_sample_value(
            "ccbridge_route_decisions_total",
            {
                "receiving_site": "bangalore",
                "site": "bangalore",
                "outcome": "queue",
                "service": "orders",
                "language": "hi",
            },
        )
        # Where the calls went, when not all by the bridge: the dialplan's reports.
        went = {
            name: sum(1 for e in ami.named("UserEvent", "bangalore") if e.get("UserEvent") == name)
            for name in (v.EVENT_FALLBACK, v.EVENT_HELD_ROUTE)
        }
        assert routed == 10.0, f"{_agi_seen(bridge)}; dialplan events {went}"
        assert bridge.agi.listening


def _agi_seen(bridge: Bridge) -> str:
    """What the bridge's FastAGI server saw: the failure message of a route count."""
    stats = bridge.agi.stats
    return (
        f"FastAGI sessions {stats.sessions_total}, outcomes other than ok "
        f"{dict(stats.errors_total)}, refused busy {stats.rejected_busy}, "
        f"refused by source {stats.rejected_source}"
    )


def _with_site(config: Config, name: str, **ami: object) -> Config:
    sites = tuple(
        replace(s, ami=replace(s.ami, **ami)) if s.name == name else s  # type: ignore[arg-type]
        for s in config.sites
    )
    return replace(config, sites=sites)


async def test_wrong_ami_password_is_logged_and_retried_and_the_site_is_not_ready(
    lab: Lab, lab_config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    from ccbridge.app import Bridge
    from ccbridge.clock import Clock

    wrong = SecretValue("not-the-password", "test")
    config = _with_site(lab_config, "dhaka", secret=wrong, reconnect_min=0.2, reconnect_max=0.5)
    bridge = Bridge(config, Clock(WEDNESDAY_MORNING))
    caplog.set_level(logging.INFO)
    await bridge.start()
    try:
        await until(lambda: bridge.links["dhaka"].auth_failures >= 2, 10, "two auth failures")
        assert bridge.links["dhaka"].state is LinkState.AUTH_FAILED
        assert not bridge.state.sites["dhaka"].up
        await until(lambda: bridge.links["bangalore"].connected, 5, "bangalore connected")
        assert bridge.readiness()["site_connected"]
        text = caplog.text
        assert "dhaka" in text and "auth" in text.lower()
        assert "not-the-password" not in text
    finally:
        await bridge.stop()


async def test_unreachable_site_at_start_does_not_stop_the_bridge(
    lab: Lab, lab_config: Config, agents: dict[str, Agent]
) -> None:
    from ccbridge.app import Bridge
    from ccbridge.clock import Clock

    config = _with_site(lab_config, "manila", host="127.0.9.1")  # nothing listens there
    bridge = Bridge(config, Clock(WEDNESDAY_MORNING))
    started = time.monotonic()
    await bridge.start()
    try:
        assert time.monotonic() - started < 2.0
        await until(
            lambda: bridge.links["bangalore"].connected and bridge.links["dhaka"].connected,
            5,
            "bangalore and dhaka connected",
        )
        assert not bridge.links["manila"].connected
        assert not bridge.state.sites["manila"].up
        with pytest.raises(SiteDownError):
            await bridge.links["manila"].action("Ping", {})
        result = await asyncio.to_thread(
            place_calls,
            "127.0.1.1:5060",
            "+918000000001",
            caller="+919812345678",
            calls=2,
            rate=2,
            duration_ms=300,
            max_seconds=20,
            local_port=6140,
        )
        assert result.ok
    finally:
        await bridge.stop()


async def test_link_cut_mid_session_fails_fast_and_reconnects(
    lab: Lab, bridge_at: BridgeFactory
) -> None:
    dhaka = lab.config.site("dhaka")
    async with bridge_at(WEDNESDAY_MORNING) as bridge:
        link = bridge.links["dhaka"]
        pending = asyncio.create_task(
            link.action("Command", {"Command": "core waitfullybooted"}, timeout=30)
        )
        killed_at = time.monotonic()
        lab.signal_site(dhaka, signal.SIGKILL)
        await until(lambda: not link.connected, 3, "dhaka link down")
        detect = time.monotonic() - killed_at
        assert detect < 1.0, f"link down noticed after {detect:.2f}s"
        assert not bridge.state.sites["dhaka"].up
        with pytest.raises((SiteDownError, TimeoutError)):
            await asyncio.wait_for(pending, 2)
        t0 = time.monotonic()
        with pytest.raises(SiteDownError):
            await link.action("Ping", {})
        assert time.monotonic() - t0 < 0.1  # fails at once, never hangs
        await asyncio.to_thread(lab.stop_site, dhaka)
        await asyncio.to_thread(lab.start_site, dhaka)
        await asyncio.to_thread(lab.wait_ami, dhaka, 20)
        await until(lambda: bridge.state.sites["dhaka"].synced, 15, "dhaka resynced")
        assert link.reconnects >= 1


async def test_a_failing_route_handler_sends_the_call_to_the_static_fallback(
    lab: Lab, agents: dict[str, Agent], bridge_at: BridgeFactory
) -> None:
    """The server answers FAILURE on a handler error: Asterisk sets AGISTATUS=FAILURE."""
    from tests.integration.conftest import AmiRecorder, clear_held_routes, without_held_routes

    # No held route may answer for the bridge: this is about FastAGI's failure path.
    clear_held_routes(lab)
    async with bridge_at(WEDNESDAY_MORNING, without_held_routes(lab.config)) as bridge:
        recorder = AmiRecorder(bridge.config)
        await recorder.start()

        def broken(*args: object) -> object:
            raise RuntimeError("routing blew up")

        bridge.router.decide = broken  # type: ignore[method-assign]
        try:
            # A Bengali caller: the bridge would send it to dhaka; the fallback keeps it
            # at bangalore in the number's language (orders-hi).
            result = await asyncio.to_thread(
                place_calls,
                "127.0.1.1:5060",
                "+918000000001",
                caller="+8801712345678",
                calls=2,
                rate=2,
                duration_ms=300,
                max_seconds=20,
                local_port=6250,
            )
            assert result.ok, result.output[-2000:]
            await recorder.wait_for(
                lambda: (
                    sum(
                        1
                        for e in recorder.named("QueueCallerJoin", "bangalore")
                        if e.get("Queue") == "orders-hi"
                    )
                    >= 2
                ),
                what="fallback queue at bangalore",
            )
            assert recorder.named("QueueCallerJoin", "dhaka") == []
            assert bridge.agi.stats.errors_total["handler_error"] >= 2, _agi_seen(bridge)
        finally:
            await recorder.stop()
