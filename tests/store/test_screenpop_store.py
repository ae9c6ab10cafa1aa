"""Screen pops over a real store: the caller's previous contacts (SQLite and PostgreSQL), and
GET /api/v1/events on a started bridge: who sees which pop, numbers masked, bad callers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import insert

from ccbridge.records.callid import make
from ccbridge.screenpop.history import ContactHistory, store_query
from ccbridge.store.engine import make_engine
from ccbridge.store.schema import calls
from tests.polling import until
from tests.store.access_world import World
from tests.store.conftest import Db

NUMBER = "+8801712345678"
NOW = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)


async def add_calls(engine: Any, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(calls), rows)


def row(n: int, at: datetime, number: str, outcome: str, agent: str | None) -> dict[str, Any]:
    return {
        "call_id": make("dhaka", at, n),
        "entry_site": "dhaka",
        "arrived_at": at,
        "caller_number": number,
        "outcome": outcome,
        "agent": agent,
    }


async def test_previous_contacts_count_the_last_n_days_and_leave_this_call_out(
    migrated: Db,
) -> None:
    engine = migrated.engine()
    this = row(9, NOW, NUMBER, "answered", None)
    await add_calls(
        engine,
        [
            row(1, NOW - timedelta(days=40), NUMBER, "answered", "dac-agent2"),  # too old
            row(2, NOW - timedelta(days=3), NUMBER, "abandoned", None),
            row(3, NOW - timedelta(days=1), NUMBER, "answered", "dac-agent1"),
            row(4, NOW - timedelta(hours=1), "+8801799999999", "answered", "x"),  # another
            this,
        ],
    )

    @asynccontextmanager
    async def read() -> AsyncIterator[Any]:
        yield engine

    history = ContactHistory(store_query(read), days=30, timeout=5.0, ttl=30.0)
    found = await history.lookup(NUMBER, this["call_id"], NOW)
    assert found.available and found.count == 2
    assert (found.last_outcome, found.last_agent) == ("answered", "dac-agent1")
    assert found.last_at == NOW - timedelta(days=1)
    none = await history.lookup("+639170000000", "x", NOW)
    assert none.available and none.count == 0 and none.last_outcome is None
    again = await history.lookup(NUMBER, this["call_id"], NOW)
    assert again == found and history.queries == 2  # the second ask was the cache's


async def test_a_store_that_is_down_gives_a_history_marked_unavailable(
    migrated: Db, tmp_path: Path
) -> None:
    if migrated.kind == "sqlite":  # reads go on under a writer's lock: a file that is no
        not_db = tmp_path / "not-a-database.db"  # database fails every query instead
        not_db.write_bytes(b"this is not an SQLite database file" * 100)
        engine = make_engine(replace(migrated.settings, url=f"sqlite+aiosqlite:///{not_db}"))
    else:
        engine = migrated.engine()
        migrated.down()  # the PostgreSQL server stops

    @asynccontextmanager
    async def read() -> AsyncIterator[Any]:
        yield engine

    history = ContactHistory(store_query(read), days=30, timeout=3.0, ttl=30.0)
    try:
        found = await history.lookup(NUMBER, "x", NOW)
    finally:
        if migrated.kind == "sqlite":
            await engine.dispose()
    assert not found.available and found.why in ("error", "timeout")
    assert found.as_dict() == {"available": False, "days": 30, "why": found.why}


async def test_a_slow_store_does_not_hold_the_pop_and_fills_the_cache_later() -> None:
    release = asyncio.Event()

    async def slow(number: str, since: datetime, call_id: str) -> Any:
        await release.wait()
        return 4, "answered", "dac-agent1", NOW

    history = ContactHistory(slow, days=30, timeout=0.05, ttl=30.0)
    first = await history.lookup(NUMBER, "x", NOW)
    assert not first.available and first.why == "timeout"
    release.set()
    await until(lambda: NUMBER in history._cache, 2, "the query to finish")
    later = await history.lookup(NUMBER, "x", NOW)
    assert later.available and later.count == 4 and history.queries == 1


# -- GET /api/v1/events on a started bridge -------------------------------------------


def agent_called(site: str, agent: str, queue: str, seq: int, caller: str) -> dict[str, str]:
    return {
        "Event": "AgentCalled",
        "Timestamp": f"{NOW.timestamp() + seq:.6f}",
        "CallerIDNum": caller,
        "Uniqueid": f"{site}-1.{seq}",
        "Linkedid": f"{site}-1.{seq}",
        "ChanVariable": f"CCB_CALLID={make(site, NOW, seq)}",
        "Queue": queue,
        "MemberName": agent,
        "Interface": f"PJSIP/{agent}",
    }


class Stream:
    """One open GET /api/v1/events: its SSE messages as (event, data)."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        kind, data = "message", ""
        async for raw in self.resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif not line and data:
                self.messages.append((kind, json.loads(data)))
                kind, data = "message", ""

    def pops(self) -> list[dict[str, Any]]:
        return [d for k, d in self.messages if k.startswith("agent_")]

    async def close(self) -> None:
        self._task.cancel()
        self.resp.close()


@asynccontextmanager
async def streams(w: World, *users: str) -> AsyncIterator[dict[str, Stream]]:
    async with aiohttp.ClientSession() as http:
        opened: dict[str, Stream] = {}
        try:
            for user in users:
                resp = await http.get(w.base + "/api/v1/events", headers=w.auth(user))
                assert resp.status == 200, (user, resp.status, await resp.text())
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                opened[user] = Stream(resp)
                await until(lambda s=opened[user]: bool(s.messages), 5, f"{user}'s hello")
            yield opened
        finally:
            for s in opened.values():
                await s.close()


async def test_each_user_sees_the_pops_their_acl_allows_numbers_masked_without_the_right(
    access_world: World,
) -> None:
    engine = make_engine(access_world.config.store)
    try:
        await add_calls(engine, [row(1, NOW - timedelta(days=2), NUMBER, "abandoned", None)])
    finally:
        await engine.dispose()
    users = ("dac-agent1", "sue", "vic", "ada")
    async with streams(access_world, *users) as s:
        hello = s["dac-agent1"].messages[0]
        assert hello == (
            "hello",
            {"user": "dac-agent1", "agent": "dac-agent1", "sites": [], "numbers": False},
        )
        bus = access_world.bridge.bus
        bus.dispatch("dhaka", agent_called("dhaka", "dac-agent1", "orders-bn", 1, NUMBER))
        bus.dispatch("dhaka", agent_called("dhaka", "dac-agent2", "orders-bn", 2, NUMBER))
        bus.dispatch("bangalore", agent_called("bangalore", "blr-agent1", "orders-hi", 3, NUMBER))
        await until(lambda: len(s["ada"].pops()) == 3, 5, "the admin's three pops")
        await until(lambda: len(s["vic"].pops()) == 3, 5, "the viewer's three pops")
        await until(lambda: len(s["sue"].pops()) == 2, 5, "the supervisor's two")
        await until(lambda: len(s["dac-agent1"].pops()) == 1, 5, "the agent's own")
        mine = s["dac-agent1"].pops()[0]
        assert mine["agent"] == "dac-agent1" and mine["type"] == "agent_ringing"
        assert mine["caller"] == "+88*********78"  # masked: an agent may not read numbers
        assert (mine["service"], mine["language"]) == ("orders", "bn")
        assert mine["history"] == {
            "available": True,
            "days": 30,
            "count": 1,
            "last_outcome": "abandoned",
            "last_agent": None,
            "last_at": (NOW - timedelta(days=2)).isoformat().replace("+00:00", "Z"),
        }
        assert {p["site"] for p in s["sue"].pops()} == {"dhaka"}
        assert s["sue"].pops()[0]["caller"] == NUMBER  # a supervisor reads numbers
        assert all(p["caller"] == "+88*********78" for p in s["vic"].pops())
        assert all(p["caller"] == NUMBER for p in s["ada"].pops())
        ids = [p["id"] for p in s["ada"].pops()]
        assert len(set(ids)) == 3 and all(i.startswith("evt_") for i in ids)
        assert mine["id"] in ids  # one event, one ID, whoever receives it
    sample = access_world.bridge.registry.get_sample_value
    assert sample("ccbridge_screen_pops_total", {"kind": "agent_ringing", "history": "yes"}) == 3


async def test_bad_callers_of_the_stream_get_clear_errors(access_world: World) -> None:
    async with aiohttp.ClientSession() as http:
        url = access_world.base + "/api/v1/events"
        async with http.get(url) as r:
            assert r.status == 401 and (await r.json())["error"] == "missing-token"
        async with http.get(url, headers={"Authorization": "Bearer ccb_not-a-token"}) as r:
            assert r.status == 401
        async with http.get(url, headers=access_world.auth("crm")) as r:  # a service: no stream
            assert r.status == 403 and (await r.json())["error"] == "forbidden"
        async with http.post(url, headers=access_world.auth("ada")) as r:
            assert r.status == 405 and (await r.json())["error"] == "method-not-allowed"
        hub = access_world.bridge.screen_pop.hub
        hub.max_subscribers = 1
        sue = access_world.auth("sue")
        async with streams(access_world, "ada"), http.get(url, headers=sue) as r:
            assert r.status == 503 and (await r.json())["error"] == "too-many-streams"
        await until(lambda: not hub.subscribers, 5, "the stream closed")


async def test_a_stream_that_does_not_read_is_cut_off_not_waited_for(access_world: World) -> None:
    hub = access_world.bridge.screen_pop.hub
    hub.queue_size = 3
    async with aiohttp.ClientSession() as http:
        url = access_world.base + "/api/v1/events"
        resp = await http.get(url, headers=access_world.auth("ada"))
        assert resp.status == 200
        await until(lambda: len(hub.subscribers) == 1, 5, "subscribed")
        [sub] = hub.subscribers
        for n in range(5):  # published faster than the handler writes them out
            hub.publish({"id": f"evt_{n}", "type": "agent_ringing", "site": "dhaka"})
        assert sub.overflowed and hub.cut_off == 1
        body = (await asyncio.wait_for(resp.content.read(), 5)).decode()
        assert body.rstrip().endswith('data: {"why":"too slow: reconnect"}')
        resp.close()
    await until(lambda: not hub.subscribers, 5, "the cut-off stream unsubscribed")


async def test_the_agent_page_and_its_script_are_served_with_a_strict_policy(
    access_world: World,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(access_world.base + "/agent") as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            assert '<script src="/agent/agent.js">' in await r.text()
        async with http.get(access_world.base + "/agent/agent.js") as r:
            assert r.status == 200 and r.content_type == "text/javascript"
            assert "/api/v1/events" in await r.text()
        async with http.get(access_world.base + "/agent/../metrics") as r:
            assert r.status in (200, 404)  # normalised by the client: never a file read


async def test_a_bridge_that_stops_ends_its_open_streams_with_a_reason(
    access_world: World,
) -> None:
    async with aiohttp.ClientSession() as http:
        url = access_world.base + "/api/v1/events"
        resp = await http.get(url, headers=access_world.auth("sue"))
        assert resp.status == 200
        hub = access_world.bridge.screen_pop.hub
        await until(lambda: len(hub.subscribers) == 1, 5, "subscribed")
        stopping = asyncio.create_task(access_world.bridge.stop())
        body = (await asyncio.wait_for(resp.content.read(), 10)).decode()
        await asyncio.wait_for(stopping, 10)
        assert body.rstrip().endswith('data: {"why":"the bridge is stopping"}')
        resp.close()
