"""Several bridges on one store (issue 15), on SQLite and on a real PostgreSQL: heartbeat
rows, GET /api/v1/cluster (alive bridges, sites, sessions; permission and garbage), and a
once-only job run by two bridges against one PostgreSQL runs once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from aiohttp import ClientSession
from sqlalchemy import select

from ccbridge.app import Bridge
from ccbridge.cluster import (
    ENV_AGI_LISTEN,
    ENV_HTTP_LISTEN,
    ENV_ID,
    ENV_JOURNAL,
    for_this_process,
    wall_now,
)
from ccbridge.config import Config
from ccbridge.config.model import HostPort
from ccbridge.store.cluster import BridgeBeat, alive, beat, lock_key, run_once, stopped
from ccbridge.store.retention import JOB_NAME, RetentionJob
from ccbridge.store.schema import cluster_jobs
from tests.store.conftest import Db
from tests.store.test_record_bridge import lab_config, with_store

__all__ = ["lab_config"]  # the fixture, shared with the record bridge's tests

T = TypeVar("T")
T0 = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)


def _beat(identity: str, seen: datetime, sessions: int = 0) -> BridgeBeat:
    return BridgeBeat(identity, "0.1.0", seen - timedelta(minutes=1), seen, ("dhaka",), sessions)


async def test_heartbeat_rows_say_who_is_alive(migrated: Db) -> None:
    engine = migrated.engine()
    now = wall_now()
    await beat(engine, _beat("a:8080", now, 3))
    await beat(engine, _beat("b:8080", now - timedelta(seconds=30)))  # aged out
    await beat(engine, _beat("c:8080", now))
    await beat(engine, _beat("a:8080", now, 7))  # the same bridge again: one row
    got = await alive(engine, now, 5.0)
    assert [b.identity for b in got] == ["a:8080", "c:8080"]
    assert got[0].sessions == 7 and got[0].sites == ("dhaka",)
    await stopped(engine, "c:8080", now)  # a clean stop leaves at once
    assert [b.identity for b in await alive(engine, now, 5.0)] == ["a:8080"]
    await beat(engine, _beat("c:8080", now))  # restarted: alive again
    assert [b.identity for b in await alive(engine, now, 5.0)] == ["a:8080", "c:8080"]


def test_lock_keys_are_stable_signed_64_bit_and_distinct() -> None:
    keys = {lock_key(n) for n in ("retention", "rollup", "webhooks")}
    assert len(keys) == 3 and all(-(2**63) <= k < 2**63 for k in keys)
    assert lock_key("retention") == lock_key("retention")


async def test_two_bridges_run_a_once_only_job_once(migrated: Db) -> None:
    """Two engines (two bridges) start the same job at the same moment: on PostgreSQL
    the advisory lock lets one through and the other skips. SQLite serves one bridge
    (a file is not shared across hosts): no lock, the rounds come one after the other,
    and the last run noted still keeps a second round from running it again."""
    ran: list[str] = []

    def job(who: str) -> Any:
        async def body() -> int:
            ran.append(who)
            await asyncio.sleep(0.2)  # long enough for the other to arrive meanwhile
            return 1

        return body

    a, b = migrated.engine(), migrated.engine()

    async def both(*rounds: Awaitable[tuple[bool, int | None]]) -> list[tuple[bool, int | None]]:
        if migrated.kind == "postgresql":
            return list(await asyncio.gather(*rounds))
        return [await r for r in rounds]

    results = await both(
        run_once(a, "rollup", 3600, wall_now, "a", job("a")),
        run_once(b, "rollup", 3600, wall_now, "b", job("b")),
    )
    assert sum(r[0] for r in results) == 1 and len(ran) == 1, (results, ran)
    # Later rounds within the interval: neither runs it again.
    again = await both(
        run_once(a, "rollup", 3600, wall_now, "a", job("a")),
        run_once(b, "rollup", 3600, wall_now, "b", job("b")),
    )
    assert not any(r[0] for r in again) and len(ran) == 1
    async with a.connect() as conn:
        row = (await conn.execute(select(cluster_jobs))).one()
    assert row.name == "rollup" and row.bridge == ran[0]
    # Past half the interval it is due again: one of them runs it.
    later = [wall_now() + timedelta(seconds=1801)]
    third = await both(
        run_once(a, "rollup", 3600, lambda: later[0], "a", job("a")),
        run_once(b, "rollup", 3600, lambda: later[0], "b", job("b")),
    )
    assert sum(r[0] for r in third) == 1 and len(ran) == 2


async def test_a_failing_job_releases_its_lock(migrated: Db) -> None:
    engine = migrated.engine()

    async def boom() -> int:
        raise RuntimeError("backend gone")

    with pytest.raises(RuntimeError):
        await run_once(engine, "rollup", 3600, wall_now, "a", boom)

    async def fine() -> int:
        return 5

    assert await run_once(engine, "rollup", 3600, wall_now, "b", fine) == (True, 5)


async def test_two_retention_jobs_on_one_store_purge_once(migrated: Db) -> None:
    jobs = []
    for who in ("a", "b"):
        job = RetentionJob(migrated.settings, 30, 3600, lambda: T0, first_delay=0)
        job.identity = who
        jobs.append(job)
    try:
        for _ in range(2):
            if migrated.kind == "postgresql":  # two bridges at the same moment
                await asyncio.gather(*(j.run_once() for j in jobs))
            else:  # SQLite: one bridge's rounds, one after the other
                for j in jobs:
                    await j.run_once()
    finally:
        for j in jobs:
            await j.stop()
    assert sum(j.rounds for j in jobs) == 1 and sum(j.skipped for j in jobs) == 3
    async with migrated.engine().connect() as conn:
        row = (await conn.execute(select(cluster_jobs))).one()
    assert row.name == JOB_NAME and row.bridge in ("a", "b")


# -- the bridges and the API ---------------------------------------------------------------


def _two(config: Config, db: Db) -> tuple[Config, Config]:
    """Two bridges of one deployment file: what differs comes from their environment."""
    base = with_store(config, db)
    fast = replace(base.bridge.cluster, heartbeat=0.2, alive_after=1.0)
    base = replace(base, bridge=replace(base.bridge, cluster=fast))
    one = for_this_process(base, {ENV_ID: "blr-bridge-1", ENV_JOURNAL: str(db.tmp / "one.journal")})
    two = for_this_process(
        base,
        {
            ENV_ID: "blr-bridge-2",
            ENV_AGI_LISTEN: "127.0.0.1:0",
            ENV_HTTP_LISTEN: "127.0.0.1:0",
            ENV_JOURNAL: str(db.tmp / "two.journal"),  # a local file each, as on two hosts
        },
    )
    return one, two


@pytest.fixture
async def two_bridges(lab_config: Config, migrated: Db) -> AsyncIterator[tuple[Bridge, Bridge]]:
    one, two = _two(lab_config, migrated)
    bridges = (Bridge(one), Bridge(two))
    started: list[Bridge] = []
    try:
        for b in bridges:
            await b.start()
            started.append(b)
        yield bridges
    finally:
        for b in started:
            await b.stop()


async def _poll(
    get: Callable[[], Awaitable[T]], ok: Callable[[T], bool], what: str, within: float = 5.0
) -> T:
    """Ask until the answer is ``ok`` (tests/polling.until's contract, for an async ask)."""
    deadline = time.monotonic() + within
    while True:
        got = await get()
        if ok(got):
            return got
        assert time.monotonic() < deadline, f"timed out after {within}s waiting for {what}: {got}"
        await asyncio.sleep(0.05)


async def _get(bridge: Bridge, path: str, token: str | None = "t") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        ClientSession() as http,
        http.get(f"http://127.0.0.1:{bridge.http_port}{path}", headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_cluster_lists_both_bridges_and_drops_one_that_stops(
    two_bridges: tuple[Bridge, Bridge],
) -> None:
    one, two = two_bridges
    two.sessions_served = 12  # as if it had served calls

    async def identities() -> list[str]:
        status, body = await _get(one, "/api/v1/cluster")
        assert status == 200, body
        return [b["identity"] for b in body["bridges"]]

    await _poll(lambda: identities(), lambda ids: len(ids) == 2, "both bridges alive")
    _, body = await _get(one, "/api/v1/cluster")
    assert body["alive"] == 2 and body["shared_store"] is True
    rows = {b["identity"]: b for b in body["bridges"]}
    assert rows["blr-bridge-1"]["this"] and not rows["blr-bridge-2"]["this"]
    assert rows["blr-bridge-2"]["version"] and rows["blr-bridge-2"]["sites_connected"] == []
    await _poll(
        lambda: _get(one, "/api/v1/cluster"),
        lambda got: any(b["sessions_served"] == 12 for b in got[1]["bridges"]),
        "bridge 2's sessions in its heartbeat",
    )
    await two.stop()
    assert await identities() == ["blr-bridge-1"]  # a clean stop leaves at once


async def test_cluster_refuses_garbage_and_strangers(two_bridges: tuple[Bridge, Bridge]) -> None:
    one = two_bridges[0]
    for query in ("?x=1", "?within=5", "?" + "a" * 5000 + "=1", "?%ff%fe=%00", "?&&&=="):
        status, body = await _get(one, "/api/v1/cluster" + query)
        assert status == 400 and body["error"] == "invalid-field", (query[:20], body)
        assert len(body["message"]) < 200  # the garbage is not echoed whole
    status, body = await _get(one, "/api/v1/cluster", token=None)
    assert status == 401 and body["error"] == "missing-token"
    status, body = await _get(one, "/api/v1/cluster", token="ccb_nope_nope")
    assert status == 401


async def test_cluster_without_a_store_is_this_bridge_alone(lab_config: Config) -> None:
    bridge = Bridge(lab_config)
    await bridge.start()
    try:
        status, body = await _get(bridge, "/api/v1/cluster")
    finally:
        await bridge.stop()
    assert status == 200 and body["shared_store"] is False and body["alive"] == 1
    assert body["bridges"][0]["this"] is True


def test_bad_environment_overrides_are_one_line_errors(lab_config: Config) -> None:
    for env, needle in (
        ({ENV_ID: "has space"}, ENV_ID),
        ({ENV_ID: ""}, ENV_ID),
        ({ENV_AGI_LISTEN: "nope"}, ENV_AGI_LISTEN),
        ({ENV_HTTP_LISTEN: "h:99999"}, ENV_HTTP_LISTEN),
        ({ENV_JOURNAL: " "}, ENV_JOURNAL),
    ):
        with pytest.raises(ValueError, match=needle):
            for_this_process(lab_config, env)
    same = for_this_process(lab_config, {})
    assert same is lab_config
    moved = for_this_process(lab_config, {ENV_AGI_LISTEN: "127.0.0.1:4574"})
    assert moved.bridge.agi_listen == HostPort("127.0.0.1", 4574)
