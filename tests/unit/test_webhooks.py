"""Webhooks (ccbridge/screenpop/webhooks.py) against a real local HTTP server that answers
at once, slowly, 500, 410, 400, or never: signed, retried within bounds, stopped by 410,
dropped (and counted) when the queue is full, and the signature a receiver can check."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from ccbridge.config.model import SecretValue
from ccbridge.config.screenpop import WebhookTarget
from ccbridge.screenpop.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    Outgoing,
    WebhookMetrics,
    WebhookSender,
    WebhookTargetSender,
    sign,
    verify,
)
from tests.polling import until

SECRET = "whsec-test-only"


@dataclass
class Crm:
    """A CRM on a real socket: per path, how it answers; every request it got."""

    base: str = ""
    got: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    fail_first: int = 0  # /flaky answers 500 this many times, then 200

    def on(self, path: str) -> list[tuple[str, dict[str, str], bytes]]:
        return [g for g in self.got if g[0] == path]


@pytest.fixture
async def crm() -> AsyncIterator[Crm]:
    state = Crm()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        state.got.append((request.path, dict(request.headers), body))
        if request.path == "/slow":
            await asyncio.sleep(0.3)
        elif request.path == "/hang":
            await asyncio.sleep(3600)  # never answers (cancelled at cleanup)
        elif request.path == "/flaky" and len(state.on("/flaky")) <= state.fail_first:
            return web.Response(status=500)
        elif request.path == "/gone":
            return web.Response(status=410)
        elif request.path == "/bad":
            return web.Response(status=400)
        elif request.path == "/moved":
            raise web.HTTPTemporaryRedirect("/elsewhere")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


def target(url: str, name: str = "crm", **kw: float) -> WebhookTarget:
    defaults = {"timeout": 0.5, "backoff": 0.01, "max_backoff": 0.05, "max_age": 5.0}
    secret = SecretValue(SECRET, "test")
    return WebhookTarget(name=name, url=url, secret=secret, **(defaults | kw))  # type: ignore[arg-type]


def event(n: int) -> tuple[str, bytes]:
    eid = f"evt_{n:032x}"
    return eid, json.dumps({"id": eid, "type": "agent_ringing", "caller": "+919812345678"}).encode()


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    return reg.get_sample_value(name, {"target": "crm", **labels}) or 0.0


@pytest.fixture
async def sender_for() -> AsyncIterator[object]:
    made: list[WebhookSender] = []

    async def make(*targets: WebhookTarget) -> tuple[WebhookSender, CollectorRegistry]:
        reg = CollectorRegistry()
        s = WebhookSender(targets, reg)
        await s.start()
        made.append(s)
        return s, reg

    yield make
    for s in made:
        await s.stop()


async def test_an_event_is_delivered_signed_with_its_id(crm: Crm, sender_for: object) -> None:
    sender, reg = await sender_for(target(crm.base + "/ok"))  # type: ignore[operator]
    eid, body = event(1)
    sender.offer(eid, body)
    await until(lambda: value(reg, "ccbridge_webhook_delivered_total") == 1, 5, "delivery")
    [(_, headers, got)] = crm.on("/ok")
    assert got == body and headers[EVENT_ID_HEADER] == eid
    assert headers["Content-Type"] == "application/json"
    assert verify(SECRET.encode(), headers[SIGNATURE_HEADER], got, time.time())
    assert not verify(b"another secret", headers[SIGNATURE_HEADER], got, time.time())


async def test_500s_are_retried_with_the_same_event_id_then_delivered(
    crm: Crm, sender_for: object
) -> None:
    crm.fail_first = 2
    sender, reg = await sender_for(target(crm.base + "/flaky"))  # type: ignore[operator]
    eid, body = event(2)
    sender.offer(eid, body)
    await until(lambda: value(reg, "ccbridge_webhook_delivered_total") == 1, 5, "delivery")
    assert value(reg, "ccbridge_webhook_retried_total") == 2
    attempts = crm.on("/flaky")
    assert len(attempts) == 3
    assert {h[EVENT_ID_HEADER] for _, h, _ in attempts} == {eid}
    assert all(verify(SECRET.encode(), h[SIGNATURE_HEADER], b, time.time()) for _, h, b in attempts)


async def test_a_slow_answer_within_the_timeout_is_one_delivery(
    crm: Crm, sender_for: object
) -> None:
    sender, reg = await sender_for(target(crm.base + "/slow", timeout=2.0))  # type: ignore[operator]
    sender.offer(*event(3))
    await until(lambda: value(reg, "ccbridge_webhook_delivered_total") == 1, 5, "delivery")
    assert value(reg, "ccbridge_webhook_retried_total") == 0 and len(crm.on("/slow")) == 1


async def test_410_stops_the_target_for_good(crm: Crm, sender_for: object) -> None:
    sender, reg = await sender_for(target(crm.base + "/gone"))  # type: ignore[operator]
    sender.offer(*event(4))
    await until(lambda: sender.targets[0].gone, 5, "the target marked gone")
    sender.offer(*event(5))
    assert value(reg, "ccbridge_webhook_dropped_total", reason="gone") == 2
    assert len(crm.on("/gone")) == 1  # nothing sent after the 410
    assert value(reg, "ccbridge_webhook_retried_total") == 0


async def test_a_4xx_is_refused_without_retries(crm: Crm, sender_for: object) -> None:
    sender, reg = await sender_for(target(crm.base + "/bad"))  # type: ignore[operator]
    sender.offer(*event(6))
    await until(
        lambda: value(reg, "ccbridge_webhook_dropped_total", reason="refused") == 1, 5, "refusal"
    )
    assert len(crm.on("/bad")) == 1 and value(reg, "ccbridge_webhook_retried_total") == 0


async def test_a_hanging_crm_is_retried_until_max_age_and_its_queue_stays_bounded(
    crm: Crm, sender_for: object
) -> None:
    hang = target(crm.base + "/hang", timeout=0.2, max_age=0.8, backoff=0.05, max_backoff=0.1)
    sender, reg = await sender_for(replace(hang, queue=2, concurrency=1))  # type: ignore[operator]
    # offer never waits: two fit in the queue, the other eight are dropped at once
    hang = sender.targets[0]
    accepted = [hang.offer(Outgoing(*event(10 + n), time.monotonic())) for n in range(10)]
    assert accepted == [True, True] + [False] * 8
    assert value(reg, "ccbridge_webhook_dropped_total", reason="queue_full") == 8
    assert reg.get_sample_value("ccbridge_webhook_queued", {"target": "crm"}) == 2
    await until(
        lambda: value(reg, "ccbridge_webhook_dropped_total", reason="expired") >= 1,
        5,
        "the first event given up after max_age",
    )
    assert value(reg, "ccbridge_webhook_retried_total") >= 1
    assert value(reg, "ccbridge_webhook_delivered_total") == 0
    first = [h[EVENT_ID_HEADER] for _, h, _ in crm.on("/hang")]
    assert first[0] == event(10)[0] and set(first) <= {event(10)[0], event(11)[0]}


async def test_a_closed_port_is_retried_then_expired(sender_for: object) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender, reg = await sender_for(target(f"http://127.0.0.1:{port}/x", max_age=0.3))  # type: ignore[operator]
    sender.offer(*event(30))
    await until(
        lambda: value(reg, "ccbridge_webhook_dropped_total", reason="expired") == 1, 5, "expiry"
    )
    assert value(reg, "ccbridge_webhook_retried_total") >= 1


async def test_garbage_answers_and_redirects_are_retried_never_followed(
    crm: Crm, sender_for: object
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\x00\xffnot http at all\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sender, reg = await sender_for(  # type: ignore[operator]
            target(f"http://127.0.0.1:{port}/x", max_age=0.3),
            target(crm.base + "/moved", name="redirected", max_age=0.3),
        )
        sender.offer(*event(40))
        await until(
            lambda: value(reg, "ccbridge_webhook_dropped_total", reason="expired") == 1,
            5,
            "the garbage-answering target's event given up",
        )
        redirected = {"target": "redirected", "reason": "expired"}
        await until(
            lambda: reg.get_sample_value("ccbridge_webhook_dropped_total", redirected) == 1,
            5,
            "the redirecting target's event given up",
        )
        assert crm.on("/elsewhere") == []  # the redirect was never followed
    finally:
        server.close()
        await server.wait_closed()


async def test_backoff_doubles_up_to_its_cap_with_jitter_below_it() -> None:
    """The delays a sender draws: full jitter under min(max_backoff, backoff * 2**n)."""
    caps: list[float] = []
    reg = CollectorRegistry()
    t = target("http://127.0.0.1:9/x", backoff=1.0, max_backoff=8.0, max_age=100.0)
    clock = [0.0]

    def jitter(cap: float) -> float:
        caps.append(cap)
        clock[0] += cap
        return 0.0

    sender = WebhookTargetSender(
        t,
        WebhookMetrics(reg),
        lambda: None,
        monotonic=lambda: clock[0],
        jitter=jitter,  # type: ignore[arg-type,return-value]
    )

    async def no_answer(item: Outgoing) -> int | None:
        return None

    sender._attempt = no_answer  # type: ignore[method-assign]
    await sender._deliver(Outgoing("evt_x", b"{}", 0.0))
    assert caps[:6] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert value(reg, "ccbridge_webhook_dropped_total", reason="expired") == 1


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"id":"evt_1"}'
    header = sign(b"k", 1700000000, body)
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify(b"k", header, body, 1700000100)
    assert not verify(b"k", header, body + b" ", 1700000100)  # body changed
    assert not verify(b"k", header, body, 1700000000 + 301)  # too old: a replay
    for bad in ("", "t=x,v1=y", "v1=" + expected, "t=1700000000", "garbage,,=", "t=1,v1"):
        assert not verify(b"k", bad, body, 1700000000)
