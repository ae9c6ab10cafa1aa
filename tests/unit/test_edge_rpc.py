"""The bridge's side of the SIP edge: its JSON-RPC client against real local servers that
answer garbage, and the driver that keeps the edge's view of the sites right."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from ccbridge.config import Config, load_config
from ccbridge.edge import rpc as edge_rpc
from ccbridge.edge.driver import START_GRACE, EdgeDriver
from ccbridge.edge.rpc import EdgeRpcError, KamailioRpc, parse_list
from ccbridge.edge.view import STATE_ACTIVE, STATE_DISABLED, EdgeView, edge_view
from ccbridge.routing.state import LiveState, initial_state, set_drained, set_site_up
from ccbridge.variables import EDGE_SITE_LOST

REPO = Path(__file__).resolve().parents[2]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "ami-secret")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "token")


class Edge:
    """A local HTTP server standing in for Kamailio's JSON-RPC: answers like it, or with
    what a test sets in ``answer``; keeps every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: Handler | None = None
        self.server: TestServer | None = None
        self.lost: list[str] = []  # the sites POSTed to /site-lost, in order
        self.lost_answer: Handler | None = None
        self.moved = 0  # what /site-lost answers: the calls moved on

    async def handle_lost(self, request: web.Request) -> web.StreamResponse:
        if self.lost_answer is not None:
            return await self.lost_answer(request)
        self.lost.append((await request.read()).decode())
        return web.Response(text=f"{self.moved}\n")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.answer is not None:
            return await self.answer(request)
        body = await request.json()
        self.requests.append(body)
        return web.json_response({"jsonrpc": "2.0", "result": "Ok.", "id": body["id"]})

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}/RPC"

    def states(self) -> list[tuple[str, int, str]]:
        return [tuple(r["params"]) for r in self.requests]  # type: ignore[misc]


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    fake = Edge()
    app = web.Application()
    app.router.add_post("/RPC", fake.handle)
    app.router.add_post(EDGE_SITE_LOST, fake.handle_lost)
    fake.server = TestServer(app, host="127.0.0.1")
    await fake.server.start_server()
    try:
        yield fake
    finally:
        await fake.server.close()


def reply(status: int = 200, body: bytes = b"") -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=status, body=body)

    return answer


def same_id(doc: Callable[[int], object]) -> Handler:
    """A JSON answer built from the request's own id."""

    async def answer(request: web.Request) -> web.StreamResponse:
        rid = (await request.json())["id"]
        return web.Response(body=json.dumps(doc(rid)).encode())

    return answer


# -- the client: every fault is one EdgeRpcError with a stable reason --------------------------


async def failure(url: str, rpc_timeout: float = 1.0) -> EdgeRpcError:
    """The error one RPC to ``url`` ends in (the test fails if it succeeds)."""
    client = KamailioRpc(url, rpc_timeout)
    try:
        with pytest.raises(EdgeRpcError) as info:
            await client.set_state("a", 1, "sip:127.0.1.1:5060")
        assert str(info.value)  # a message a log line can carry
        return info.value
    finally:
        await client.close()


async def test_a_good_answer_returns_its_result(edge: Edge) -> None:
    client = KamailioRpc(edge.url, 1.0)
    try:
        await client.set_state("d", 2, "sip:127.0.2.1:5060")
        assert edge.requests[0]["method"] == "dispatcher.set_state"
        assert edge.requests[0]["params"] == ["d", 2, "sip:127.0.2.1:5060"]
        assert edge.requests[0]["jsonrpc"] == "2.0"
    finally:
        await client.close()


GARBAGE: list[tuple[str, Handler, str]] = [
    ("http 500", reply(500, b"boom"), edge_rpc.HTTP_STATUS),
    ("http 403 (not loopback)", reply(403, b"loopback RPC only\n"), edge_rpc.HTTP_STATUS),
    ("empty body (Kamailio's answer to a request it cannot parse)", reply(), edge_rpc.NOT_JSON),
    ("text", reply(body=b"<html>hello</html>"), edge_rpc.NOT_JSON),
    ("not UTF-8", reply(body=b'{"result": "\xff\xfe"}'), edge_rpc.NOT_JSON),
    ("deep nesting", reply(body=b"[" * 100_000 + b"]" * 100_000), edge_rpc.NOT_JSON),
    ("a list", reply(body=b"[1, 2]"), edge_rpc.BAD_REPLY),
    ("another request's answer", reply(body=b'{"id": 999, "result": 1}'), edge_rpc.BAD_REPLY),
    ("no result", same_id(lambda rid: {"jsonrpc": "2.0", "id": rid}), edge_rpc.BAD_REPLY),
    (
        "an error object",
        same_id(lambda rid: {"id": rid, "error": {"code": 500, "message": "State Update Failed"}}),
        edge_rpc.RPC_ERROR,
    ),
    ("an error string", same_id(lambda rid: {"id": rid, "error": "nope"}), edge_rpc.RPC_ERROR),
    ("too large", reply(body=b" " * (edge_rpc.MAX_REPLY + 10)), edge_rpc.TOO_LARGE),
]


@pytest.mark.parametrize(("what", "answer", "reason"), GARBAGE, ids=[g[0] for g in GARBAGE])
async def test_garbage_answers_are_one_error_with_a_stable_reason(
    edge: Edge, what: str, answer: Handler, reason: str
) -> None:
    edge.answer = answer
    error = await failure(edge.url, 2.0)
    assert error.reason == reason, str(error)


async def test_a_silent_edge_times_out_and_a_closed_port_is_refused(edge: Edge) -> None:
    stalled = asyncio.Event()

    async def never(request: web.Request) -> web.StreamResponse:
        stalled.set()
        await asyncio.sleep(30)
        return web.Response()

    edge.answer = never
    assert (await failure(edge.url, 0.2)).reason == edge_rpc.TIMEOUT and stalled.is_set()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket closes
    assert (await failure(f"http://127.0.0.1:{port}/RPC")).reason == edge_rpc.REFUSED


async def test_a_server_that_closes_mid_answer_is_refused() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id"')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(half, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert (await failure(f"http://127.0.0.1:{port}/RPC")).reason == edge_rpc.REFUSED
    finally:
        server.close()
        await server.wait_closed()


LIST_56 = {
    "NRSETS": 1,
    "RECORDS": [
        {
            "SET": {
                "ID": 2,
                "TARGETS": [
                    {"DEST": {"URI": "sip:127.0.2.1:5060", "FLAGS": "DX", "PRIORITY": 3}},
                    {"DEST": {"URI": "sip:127.0.1.1:5060", "FLAGS": "AP", "PRIORITY": 2}},
                ],
            }
        }
    ],
}


def test_dispatcher_list_in_kamailio_56s_shape_and_garbage() -> None:
    assert parse_list(LIST_56) == {(2, "sip:127.0.2.1:5060"): "DX", (2, "sip:127.0.1.1:5060"): "AP"}
    assert parse_list({"NRSETS": 0}) == {}
    for bad in (
        None,
        "Ok.",
        [LIST_56],
        {"RECORDS": [{"SET": {"TARGETS": []}}]},
        {"RECORDS": [{"SET": {"ID": "two", "TARGETS": []}}]},
        {"RECORDS": [{"SET": {"ID": 1, "TARGETS": [{"DEST": {"URI": 5, "FLAGS": "A"}}]}}]},
        {"RECORDS": "all"},
    ):
        with pytest.raises(EdgeRpcError) as info:
            parse_list(bad)
        assert info.value.reason == edge_rpc.BAD_REPLY


# -- the driver -----------------------------------------------------------------------------


def lab_view(config: Config) -> EdgeView:
    view = edge_view(config)
    assert view is not None
    return view


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def lab() -> Config:
    config = load_config(REPO / "examples" / "lab.yaml")
    assert config.edge is not None
    return replace(config, edge=replace(config.edge, enabled=True))


def all_up(config: Config, since: float) -> LiveState:
    state = initial_state(s.name for s in config.sites)
    for s in config.sites:
        state = set_site_up(state, s.name, True, since)
    return state


def sent_for(edge: Edge, view: EdgeView, site: str) -> set[tuple[str, int]]:
    return {(state, group) for state, group, uri in edge.states() if uri == view.uris[site]}


def every(view: EdgeView, site: str, state: str) -> set[tuple[str, int]]:
    """``state`` for ``site`` in each set it is in."""
    return {(state, g) for g in view.sets_of(site)}


def driver_over(
    edge: Edge, config: Config, live: list[LiveState], clock: Clock, registry: CollectorRegistry
) -> EdgeDriver:
    view = lab_view(config)
    return EdgeDriver(
        view,
        lambda: live[0],
        clock,
        config.routing.site_holdoff,
        registry,
        rpc=KamailioRpc(edge.url, 0.5),
        monotonic=clock,
    )


async def test_down_drained_and_held_off_sites_are_disabled_in_every_set(edge: Edge) -> None:
    config = lab()
    view = lab_view(config)
    clock = Clock()
    live = [all_up(config, clock.t - 3600)]
    registry = CollectorRegistry()
    driver = driver_over(edge, config, live, clock, registry)
    await driver.start()  # the loop runs; the test drives sync_once itself too
    await driver.stop()
    try:
        assert await driver.sync_once(full=True)
        everyone = {(STATE_ACTIVE, g) for g in range(1, len(view.sets) + 1)}
        assert {(s, g) for s, g, _ in edge.states()} == everyone
        edge.requests.clear()
        assert await driver.sync_once()  # nothing changed: nothing sent
        assert edge.requests == []

        live[0] = set_drained(live[0], "dhaka", True)
        assert await driver.sync_once()
        assert sent_for(edge, view, "dhaka") == every(view, "dhaka", STATE_DISABLED)
        assert len(edge.requests) == len(view.sets_of("dhaka"))
        assert registry.get_sample_value("ccbridge_edge_site_active", {"site": "dhaka"}) == 0

        edge.requests.clear()
        live[0] = set_drained(live[0], "dhaka", False)
        live[0] = set_site_up(live[0], "manila", False, clock.t)
        assert await driver.sync_once()
        assert sent_for(edge, view, "dhaka") == every(view, "dhaka", STATE_ACTIVE)
        assert sent_for(edge, view, "manila") == every(view, "manila", STATE_DISABLED)

        # manila is back: disabled until the hold-off is over, then active
        edge.requests.clear()
        live[0] = set_site_up(live[0], "manila", True, clock.t)
        clock.t += config.routing.site_holdoff - 0.5
        assert await driver.sync_once() and edge.requests == []
        clock.t += 0.5
        assert await driver.sync_once()
        assert sent_for(edge, view, "manila") == every(view, "manila", STATE_ACTIVE)
        all_sets = sum(len(s.sites) for s in view.sets)
        changes = 2 * len(view.sets_of("dhaka")) + 2 * len(view.sets_of("manila"))
        ok = registry.get_sample_value("ccbridge_edge_rpc_total", {"result": "ok"})
        assert ok == all_sets + changes + 1  # + manila's link lost, reported once
        assert edge.lost == [view.uris["manila"]]
    finally:
        await driver.stop()


async def test_a_set_with_no_usable_site_is_left_to_the_edges_probing(edge: Edge) -> None:
    config = lab()
    view = lab_view(config)
    clock = Clock()
    live = [all_up(config, clock.t - 3600)]
    driver = driver_over(edge, config, live, clock, CollectorRegistry())
    for site in ("bangalore", "dhaka"):
        live[0] = set_site_up(live[0], site, False, clock.t)
    wanted = driver.wanted()
    care = next(s for s in view.sets if s.sites == ("bangalore", "dhaka"))
    # the care numbers' set has only these two: both stay active, the edge's probes decide
    assert wanted[(care.id, "bangalore")] == wanted[(care.id, "dhaka")] == STATE_ACTIVE
    # where manila is in the set, the bridge's view holds
    other = view.sets_of("manila")[0]
    assert wanted[(other, "dhaka")] == STATE_DISABLED
    assert wanted[(other, "manila")] == STATE_ACTIVE
    await driver.stop()


async def test_a_site_never_seen_is_left_alone_for_the_start_grace(edge: Edge) -> None:
    config = lab()
    clock = Clock()
    live = [initial_state(s.name for s in config.sites)]
    live[0] = set_site_up(live[0], "bangalore", True, clock.t - 3600)
    driver = driver_over(edge, config, live, clock, CollectorRegistry())
    await driver.start()
    await driver.stop()  # start() set the grace's origin; the test drives it from here
    wanted = driver.wanted()
    assert {site for _, site in wanted} == {"bangalore"}
    clock.t += START_GRACE
    wanted = driver.wanted()
    assert wanted[(lab_view(config).sets_of("dhaka")[0], "dhaka")] == STATE_DISABLED
    # disabled, but never seen up: its link never dropped, no call of it to move
    try:
        assert await driver.sync_once() and edge.lost == []
    finally:
        await driver.stop()


async def test_rpc_failures_are_counted_and_retried_never_raised(edge: Edge) -> None:
    config = lab()
    view = lab_view(config)
    clock = Clock()
    live = [all_up(config, clock.t - 3600)]
    registry = CollectorRegistry()
    driver = driver_over(edge, config, live, clock, registry)
    edge.answer = reply(body=b"garbage")
    try:
        assert not await driver.sync_once(full=True)
        assert registry.get_sample_value("ccbridge_edge_rpc_total", {"result": "not-json"}) == 1
        assert not await driver.sync_once()  # nothing confirmed: tried again
        edge.answer = None
        assert await driver.sync_once()
        assert len(edge.requests) == sum(len(s.sites) for s in view.sets)
        # confirmed now: a full resync sends everything again (an edge restarted forgets)
        edge.requests.clear()
        assert await driver.sync_once(full=True)
        assert len(edge.requests) == sum(len(s.sites) for s in view.sets)
    finally:
        await driver.stop()


async def test_the_loop_survives_a_dead_edge_and_catches_up_when_it_answers(edge: Edge) -> None:
    config = lab()
    view = lab_view(config)
    live = [all_up(config, 0.0)]
    registry = CollectorRegistry()
    edge.answer = reply(503)
    driver = EdgeDriver(
        view, lambda: live[0], lambda: 10_000.0, 10.0, registry, rpc=KamailioRpc(edge.url, 0.5)
    )
    await driver.start()
    try:
        for _ in range(200):
            if registry.get_sample_value("ccbridge_edge_rpc_total", {"result": "http-status"}):
                break
            await asyncio.sleep(0.01)
        assert registry.get_sample_value("ccbridge_edge_rpc_total", {"result": "http-status"})
        edge.answer = None
        live[0] = set_drained(live[0], "dhaka", True)
        for _ in range(600):  # retries come after 1 s, 2 s, ... (RETRY doubling)
            if sent_for(edge, view, "dhaka") >= every(view, "dhaka", STATE_DISABLED):
                break
            await asyncio.sleep(0.01)
        assert sent_for(edge, view, "dhaka") == every(view, "dhaka", STATE_DISABLED)
    finally:
        await driver.stop()


# -- a site lost: the calls in setup there move on -------------------------------------------


async def synced(
    edge: Edge,
) -> tuple[Config, Clock, list[LiveState], CollectorRegistry, EdgeDriver]:
    """A driver over the lab's sites, every one up for an hour, past its start grace and
    with its first full sync done (the test drives sync_once from here)."""
    config = lab()
    clock = Clock()
    live = [all_up(config, clock.t - 3600)]
    registry = CollectorRegistry()
    driver = driver_over(edge, config, live, clock, registry)
    await driver.start()
    await driver.stop()
    assert await driver.sync_once(full=True)
    return config, clock, live, registry, driver


async def test_a_site_whose_ami_link_drops_is_reported_lost_once(edge: Edge) -> None:
    config, clock, live, registry, driver = await synced(edge)
    view = lab_view(config)
    try:
        assert edge.lost == []
        live[0] = set_drained(live[0], "dhaka", True)  # alive: its calls in setup stay
        edge.moved = 3
        live[0] = set_site_up(live[0], "manila", False, clock.t)
        assert await driver.sync_once()
        assert edge.lost == [view.uris["manila"]]
        moved = registry.get_sample_value("ccbridge_edge_calls_moved_total", {"site": "manila"})
        assert moved == 3
        assert await driver.sync_once(full=True) and edge.lost == [view.uris["manila"]]
        # back, then lost again: told again
        live[0] = set_site_up(live[0], "manila", True, clock.t)
        assert await driver.sync_once() and len(edge.lost) == 1
        live[0] = set_site_up(live[0], "manila", False, clock.t)
        assert await driver.sync_once()
        assert edge.lost == [view.uris["manila"]] * 2
    finally:
        await driver.stop()


LOST_GARBAGE: list[tuple[str, Handler, str]] = [
    ("unknown site", reply(404, b"no such site\n"), edge_rpc.HTTP_STATUS),
    ("not a count", reply(body=b"moved some"), edge_rpc.BAD_REPLY),
    ("empty", reply(), edge_rpc.BAD_REPLY),
    ("negative", reply(body=b"-1\n"), edge_rpc.BAD_REPLY),
    ("huge number", reply(body=b"9" * 40), edge_rpc.BAD_REPLY),
    ("too large", reply(body=b"1" * (edge_rpc.MAX_REPLY + 10)), edge_rpc.TOO_LARGE),
]


@pytest.mark.parametrize(
    ("what", "answer", "reason"), LOST_GARBAGE, ids=[g[0] for g in LOST_GARBAGE]
)
async def test_garbage_answers_to_site_lost_are_one_error_and_retried(
    edge: Edge, what: str, answer: Handler, reason: str
) -> None:
    config, clock, live, registry, driver = await synced(edge)
    view = lab_view(config)
    try:
        live[0] = set_site_up(live[0], "dhaka", False, clock.t)
        edge.lost_answer = answer
        assert not await driver.sync_once()
        assert registry.get_sample_value("ccbridge_edge_rpc_total", {"result": reason}) == 1
        edge.lost_answer = None
        assert await driver.sync_once()  # not confirmed before: told now
        assert edge.lost == [view.uris["dhaka"]]
    finally:
        await driver.stop()
