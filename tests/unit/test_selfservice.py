"""Self-service: the pure circuit breaker, the HTTP client's retries, the lookup handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ccbridge import variables as v
from ccbridge.agi.codec import AgiRequestParser
from ccbridge.agi.lookup import lookup_variables, make_lookup_handler
from ccbridge.config.ivr import BreakerSettings, IvrSettings, Lookup, SelfServiceSettings
from ccbridge.selfservice import (
    BreakerState,
    CircuitBreaker,
    LookupResult,
    SelfServiceClient,
    parse_reply,
)


def test_breaker_opens_after_consecutive_failures_and_half_opens_later() -> None:
    b = CircuitBreaker(BreakerSettings(failures=3, reset_after=10))
    for t in (0, 1):
        assert b.allow(t)
        b.failure(t)
    b.success(2)  # a success resets the count
    for t in (3, 4, 5):
        assert b.allow(t)
        b.failure(t)
    assert b.state(5) is BreakerState.OPEN and not b.allow(14.9)
    assert b.state(15) is BreakerState.HALF_OPEN
    assert b.allow(15) and not b.allow(15.1)  # one trial at a time
    b.failure(16)  # the trial failed: open again from now
    assert not b.allow(25) and b.allow(26)
    b.success(26)
    assert b.state(26) is BreakerState.CLOSED and b.allow(27) and b.opened_total == 2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"answer": "shipped", "say": "42"}, LookupResult(True, "ok", "shipped", "42")),
        ({"answer": "shipped", "say": 42}, LookupResult(True, "ok", "shipped", "42")),
        ({"answer": "shipped", "say": "4,2)"}, LookupResult(True, "ok", "shipped", None)),
        ({"answer": "Shipped!"}, LookupResult(False, "bad_reply")),
        (["shipped"], LookupResult(False, "bad_reply")),
    ],
)
def test_replies_reach_the_dialplan_only_in_safe_shapes(data: object, expected: object) -> None:
    assert parse_reply(data) == expected


class Backend:
    """A test backend: fails the first ``fail`` requests with ``status`` (or a stall)."""

    def __init__(self, fail: int = 0, status: int = 503, stall: float = 0.0) -> None:
        self.fail, self.status, self.stall = fail, status, stall
        self.bodies: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        if len(self.bodies) <= self.fail:
            if self.stall:
                await asyncio.sleep(self.stall)
            return web.Response(status=self.status)
        return web.json_response({"answer": "shipped", "say": "3"})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Backend, str]]:
    backend = Backend()
    app = web.Application()
    app.router.add_post("/lookup", backend.handle)
    async with TestServer(app) as server:
        yield backend, str(server.make_url("/lookup"))


def _client(url: str, **kw: object) -> SelfServiceClient:
    settings = SelfServiceSettings(url=url, timeout=0.3, retries=1, retry_backoff=0.0, **kw)  # type: ignore[arg-type]
    return SelfServiceClient(settings, clock=lambda: 0.0)


async def test_a_5xx_is_retried_once_then_the_answer_comes(served: tuple[Backend, str]) -> None:
    backend, url = served
    backend.fail = 1
    client = _client(url)
    try:
        assert await client.lookup("order-status", "1234", "bangalore") == LookupResult(
            True, "ok", "shipped", "3"
        )
    finally:
        await client.close()
    assert backend.bodies == [{"lookup": "order-status", "digits": "1234", "site": "bangalore"}] * 2


async def test_a_slow_backend_times_out_and_opens_the_breaker(served: tuple[Backend, str]) -> None:
    backend, url = served
    backend.fail, backend.stall = 100, 1.0
    client = _client(url, breaker=BreakerSettings(failures=1, reset_after=60))
    try:
        assert await client.lookup("order-status", "1234", "blr") == LookupResult(False, "timeout")
        assert await client.lookup("order-status", "1234", "blr") == LookupResult(
            False, "breaker_open"
        )
    finally:
        await client.close()
    assert len(backend.bodies) == 2  # two attempts, then the breaker kept it away


async def test_a_backend_that_is_down_fails_fast() -> None:
    client = _client("http://127.0.0.1:9/lookup")
    try:
        assert (await client.lookup("x", "1", "s")).reason == "connect_error"
    finally:
        await client.close()


class FakeSession:
    """The part of AgiSession the lookup handler uses."""

    def __init__(self, query: str) -> None:
        header = (
            f"agi_network: yes\nagi_network_script: lookup?{query}\n"
            f"agi_request: agi://h/lookup?{query}\n"
            "agi_callerid: +919812345678\nagi_extension: s\n\n"
        ).encode()
        request = AgiRequestParser().feed(header)
        assert request is not None
        self.request = request
        self.set: list[tuple[str, str]] = []

    async def set_variable(self, name: str, value: str) -> None:
        self.set.append((name, value))


IVR = IvrSettings(lookups=(Lookup("order-status", ("p",), (("shipped", ("a",)),)),))


class StubBackend:
    def __init__(self, result: LookupResult) -> None:
        self.result = result
        self.calls: list[tuple[str, str, str]] = []

    async def lookup(self, name: str, digits: str, site: str) -> LookupResult:
        self.calls.append((name, digits, site))
        return self.result


@pytest.mark.parametrize(
    ("query", "result", "expected"),
    [
        (
            "name=order-status&digits=1234&site=blr",
            LookupResult(True, "ok", "shipped", "7"),
            [(v.LOOKUP_ANSWER, "shipped"), (v.LOOKUP_SAY, "7"), (v.LOOKUP_RESULT, "ok")],
        ),
        (
            "name=order-status&digits=1234&site=blr",
            LookupResult(True, "ok", "lost", None),
            [(v.LOOKUP_ANSWER, "default"), (v.LOOKUP_SAY, ""), (v.LOOKUP_RESULT, "ok")],
        ),
        (
            "name=order-status&digits=1234&site=blr",
            LookupResult(False, "timeout"),
            [(v.LOOKUP_ANSWER, ""), (v.LOOKUP_SAY, ""), (v.LOOKUP_RESULT, "failed")],
        ),
        (
            "name=order-status&digits=12;3&site=blr",
            LookupResult(True, "ok", "shipped"),
            [(v.LOOKUP_ANSWER, ""), (v.LOOKUP_SAY, ""), (v.LOOKUP_RESULT, "failed")],
        ),
        (
            "name=nope&digits=1234&site=blr",
            LookupResult(True, "ok", "shipped"),
            [(v.LOOKUP_ANSWER, ""), (v.LOOKUP_SAY, ""), (v.LOOKUP_RESULT, "failed")],
        ),
    ],
)
async def test_the_handler_sets_one_variable_per_command_result_last(
    query: str, result: LookupResult, expected: list[tuple[str, str]]
) -> None:
    session = FakeSession(query)
    backend = StubBackend(result)
    await make_lookup_handler(IVR, backend)(session)  # type: ignore[arg-type]
    assert session.set == expected
    if expected[-1][1] == "ok" or result.reason == "timeout":
        assert backend.calls == [("order-status", "1234", "blr")]
    else:
        assert backend.calls == []


def test_lookup_variables_keep_result_last() -> None:
    out = lookup_variables(LookupResult(True, "ok", "shipped", "1"), frozenset({"shipped"}))
    assert list(out)[-1] == v.LOOKUP_RESULT
