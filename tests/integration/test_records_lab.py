"""Call records on the lab (issue 12): a call that crossed sites is one call with two legs;
a SIGKILLed bridge loses and duplicates nothing it had recorded and shows the gap; the
record database lost mid-run does not stop routing, /readyz says so, the records catch up."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ccbridge.config import Config, load_config
from ccbridge.config.store import StoreSettings
from ccbridge.lab.demo import BridgeProcess
from ccbridge.lab.sipp import Agent, place_calls
from ccbridge.lab.sites import Lab
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.schema import call_events, calls, coverage_gaps, legs
from tests.integration.conftest import LAB_CONFIG, BridgeFactory
from tests.polling import until

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # both sites open
ORDERS_IN = "+918000000001"  # received at bangalore
BENGALI = "+8801712345678"  # sent on to dhaka
HINDI = "+919812345678"  # stays at bangalore


def store_config(tmp: Path) -> tuple[Path, StoreSettings]:
    """The lab's config file with a store section, and its settings."""
    path = tmp / "lab-records.yaml"
    db = tmp / "records.db"
    path.write_text(
        LAB_CONFIG.read_text(encoding="utf-8") + f"\nstore:\n  url: sqlite:///{db}\n",
        encoding="utf-8",
    )
    settings = load_config(path).store
    assert settings.enabled
    return path, settings


async def migrate(settings: StoreSettings) -> None:
    engine = make_engine(settings)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def table(settings: StoreSettings, t: Any) -> list[dict[str, Any]]:
    engine = make_engine(settings)
    try:
        async with engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(select(t))]
    finally:
        await engine.dispose()


def call(did: str, caller: str, port: int, calls_: int = 1, rate: float = 1.0) -> Any:
    return asyncio.to_thread(
        place_calls,
        "127.0.1.1:5060",
        did,
        caller=caller,
        calls=calls_,
        rate=rate,
        duration_ms=1500,
        max_seconds=40,
        local_port=port,
    )


def readyz(base: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as resp:
            body: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as err:  # 503 still has the body
        body = json.loads(err.read())
    return body


async def test_cross_site_call_two_legs_and_a_sigkill_loses_nothing(
    lab: Lab, agents: dict[str, Agent], tmp_path: Path
) -> None:
    path, settings = store_config(tmp_path)
    await migrate(settings)
    proc = BridgeProcess(lab, WEDNESDAY_MORNING)
    proc.config = replace(lab.config, source=str(path))
    await proc.start()
    try:
        # One call entering at bangalore and answered at dhaka, one staying at bangalore.
        results = await asyncio.gather(call(ORDERS_IN, BENGALI, 6481), call(ORDERS_IN, HINDI, 6482))
        assert all(r.ok for r in results), results[0].output[-1500:]

        async def answered() -> list[dict[str, Any]]:
            return [r for r in await table(settings, calls) if r["outcome"] == "answered"]

        deadline = time.monotonic() + 20
        while len(await answered()) < 2:
            assert time.monotonic() < deadline, "two answered calls recorded"
            await asyncio.sleep(0.3)
        rows = {r["language"]: r for r in await answered()}
        crossed = rows["bn"]
        assert crossed["entry_site"] == "bangalore" and crossed["target_site"] == "dhaka"
        its_legs = [lg for lg in await table(settings, legs) if lg["call_id"] == crossed["call_id"]]
        assert sorted(lg["site"] for lg in its_legs) == ["bangalore", "dhaka"]
        assert all(lg["ended_at"] is not None for lg in its_legs)
        assert rows["hi"]["target_site"] == "bangalore"
        detail = (await asyncio.to_thread(readyz, proc.base))["detail"]["records"]
        assert detail["enabled"] and detail["db_reachable"] and detail["schema_ok"]

        before = {
            "calls": await table(settings, calls),
            "legs": await table(settings, legs),
            "call_events": await table(settings, call_events),
        }
        # Calls going on while the bridge is SIGKILLed and restarted.
        running = asyncio.create_task(call(ORDERS_IN, HINDI, 6483, calls_=6, rate=2))
        await asyncio.sleep(1.0)
        proc.kill()
        killed = datetime.now(UTC)
        await asyncio.sleep(1.0)
        await proc.start()
        restarted = datetime.now(UTC)
        await running
    finally:
        proc.stop()
    after = {
        "calls": await table(settings, calls),
        "legs": await table(settings, legs),
        "call_events": await table(settings, call_events),
    }
    # Nothing recorded before the kill is missing or duplicated (rows keep their ids).
    for name, rows_before in before.items():
        now = {r.get("id", r.get("call_id")): r for r in after[name]}
        for r in rows_before:
            assert now[r.get("id", r.get("call_id"))] == r, name
    keys = [(e["site"], e["event_key"]) for e in after["call_events"]]
    assert len(keys) == len(set(keys))
    # The gap: every site, from the last heartbeat before the kill to its link's return.
    gaps = await table(settings, coverage_gaps)
    for site in lab.config.sites:
        mine = [
            g
            for g in gaps
            if g["site"] == site.name and killed - timedelta(seconds=2) <= g["started_at"] <= killed
        ]
        assert len(mine) == 1, (site.name, gaps)
        assert mine[0]["ended_at"] is not None and killed < mine[0]["ended_at"] <= restarted


def exclusive_lock(db: Path) -> sqlite3.Connection:
    """A connection holding ``db``'s exclusive lock (waits up to 30 s for it)."""
    lock = sqlite3.connect(db, isolation_level=None, timeout=30, check_same_thread=False)
    lock.execute("BEGIN EXCLUSIVE")
    return lock


async def test_database_lost_mid_run_routes_on_and_catches_up(
    lab: Lab, agents: dict[str, Agent], bridge_at: BridgeFactory, lab_config: Config, tmp_path: Path
) -> None:
    db = tmp_path / "records.db"
    settings = StoreSettings(
        enabled=True, url=f"sqlite+aiosqlite:///{db}", journal=str(tmp_path / "records.journal")
    )
    await migrate(settings)
    async with bridge_at(WEDNESDAY_MORNING, replace(lab_config, store=settings)) as bridge:
        rec = bridge.records
        assert rec is not None
        # Another process holds SQLite's write lock: every write fails ("database is locked").
        # Taken in a thread, waiting out the bridge's own short transactions (its writer,
        # the staffing plan's read): on the loop the wait stalled it and 5 s were too few.
        lock = await asyncio.to_thread(exclusive_lock, db)
        try:
            result = await call(ORDERS_IN, HINDI, 6484)
            assert result.ok, result.output[-1500:]  # routed and answered all the same
            await until(lambda: rec.writer.status().db_reachable is False, 20, "writes failing")
            url = f"http://127.0.0.1:{bridge.http_port}"
            body = await asyncio.to_thread(readyz, url)
            assert body["ready"] and body["detail"]["records"]["db_reachable"] is False
            assert "locked" in body["detail"]["records"]["db_error"]
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        await until(lambda: rec.writer.status().caught_up, 30, "records caught up")
    recorded = await table(settings, calls)
    assert [r["outcome"] for r in recorded] == ["answered"]
