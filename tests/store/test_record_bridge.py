"""The bridge with records on, against real SQLite and PostgreSQL: schema check at start,
decisions and AMI events into rows, the database down at start or lost mid-run (routing
goes on, /readyz detail says so, the records catch up), coverage gaps across restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from sqlalchemy import select, text

from ccbridge.ami.client import LinkState
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import Config, load_config
from ccbridge.config.model import HostPort
from ccbridge.lifecycle import StartError
from ccbridge.records import alive
from ccbridge.routing.engine import CallRequest
from ccbridge.store.migrate import SchemaError
from ccbridge.store.schema import calls, coverage_gaps, legs
from tests.polling import until
from tests.store.conftest import Db

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "unit" / "fixtures" / "records"
T0 = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # both lab sites open


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[Config]:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "t")
    cfg = load_config(REPO / "examples" / "lab.yaml")
    # AMI at a port nobody listens on (never the lab's), FastAGI and HTTP on free ports.
    closed = _free_port()
    sites = tuple(replace(s, ami=replace(s.ami, host="127.0.0.1", port=closed)) for s in cfg.sites)
    bridge = replace(
        cfg.bridge,
        agi_listen=HostPort("127.0.0.1", 0),
        http_listen=HostPort("127.0.0.1", 0),
    )
    yield replace(cfg, sites=sites, bridge=bridge)


def _take_away(db: Db) -> Any:
    """Make the database unusable; the function returned brings it back. PostgreSQL: the
    server stops (nothing answers). SQLite: another connection holds the write lock, so
    every write fails with "database is locked" (a missing file is no outage but a
    database never created: the start refuses it, see the schema test)."""
    db.down()
    return db.up


def with_store(config: Config, db: Db) -> Config:
    return replace(config, store=replace(db.settings, enabled=True))


def stream(name: str) -> list[tuple[str, dict[str, str]]]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return [(item["site"], item["event"]) for item in data]


async def rows(db: Db, table: Any) -> list[dict[str, Any]]:
    engine = db.engine()
    async with engine.connect() as conn:
        result = await conn.execute(select(table))
        return [dict(r._mapping) for r in result]


async def readyz(bridge: Bridge) -> dict[str, Any]:
    url = f"http://127.0.0.1:{bridge.http_port}/readyz"
    async with ClientSession() as http, http.get(url) as resp:
        body: dict[str, Any] = await resp.json()
        return body


def replay(bridge: Bridge, name: str) -> str:
    """Hand a recorded call's events to the bridge's bus (as its AMI links would), after
    the decision the bridge would have made for it at FastAGI time; the call's ID."""
    events = stream(name)
    first = next(e for _, e in events if "ChanVariable" in e)
    call_id = first["ChanVariable"].split("=", 1)[1]
    entry = call_id.split(":", 1)[0]
    uniqueid = next(e["Linkedid"] for s, e in events if s == entry and "Linkedid" in e)
    call = CallRequest(
        did="+918000000001",
        caller="+919812345678",
        receiving_site=entry,
        call_id=call_id,
        uniqueid=uniqueid,
    )
    decision = bridge.decide(call)
    bridge._on_decision(call, decision)
    for site, ev in events:
        bridge.bus.dispatch(site, ev)
    return call_id


async def test_an_empty_or_unknown_schema_stops_the_start(lab_config: Config, db: Db) -> None:
    bridge = Bridge(with_store(lab_config, db), Clock(T0))
    with pytest.raises(StartError) as failed:
        await bridge.start()
    assert isinstance(failed.value.__cause__, SchemaError)
    assert "run `ccbridge db upgrade CONFIG`" in str(failed.value)
    assert bridge.http_port is None and not bridge.links  # everything started was undone


async def test_a_schema_written_by_a_newer_ccbridge_stops_the_start(
    lab_config: Config, migrated: Db
) -> None:
    engine = migrated.engine()
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    bridge = Bridge(with_store(lab_config, migrated), Clock(T0))
    with pytest.raises(StartError) as failed:
        await bridge.start()
    assert isinstance(failed.value.__cause__, SchemaError)
    assert "which this ccbridge does not know" in str(failed.value)


async def test_records_of_a_recorded_call_reach_the_database(
    lab_config: Config, migrated: Db
) -> None:
    bridge = Bridge(with_store(lab_config, migrated), Clock(T0))
    await bridge.start()
    try:
        call_id = replay(bridge, "answered")
        records = bridge.records
        assert records is not None
        await until(lambda: records.writer.status().caught_up, 10, "records written")
        detail = (await readyz(bridge))["detail"]["records"]
        assert detail["enabled"] and detail["db_reachable"] and detail["schema_ok"]
        # The writer's and the ingest's metrics are in the bridge's registry.
        sample = bridge.registry.get_sample_value
        assert (sample("ccbridge_records_written_total", {"table": "calls"}) or 0) >= 1
        assert sample("ccbridge_records_db_up") == 1
        assert (sample("ccbridge_records_events_total") or 0) >= 5
        assert sample("ccbridge_records_unwritten_total") == 0
    finally:
        await bridge.stop()
    (row,) = [r for r in await rows(migrated, calls) if r["call_id"] == call_id]
    assert row["outcome"] == "answered" and row["entry_site"] == "bangalore"
    assert row["agent"] is not None and row["talk_s"] > 1.0 and row["did"] == "+918000000001"
    assert [lg["site"] for lg in await rows(migrated, legs)] == ["bangalore"]


async def test_database_down_at_start_routes_on_and_catches_up(
    lab_config: Config, migrated: Db
) -> None:
    away = _take_away(migrated)
    bridge = Bridge(with_store(lab_config, migrated), Clock(T0))
    await bridge.start()
    try:
        call_id = replay(bridge, "answered")
        body = await readyz(bridge)
        assert body["checks"]["fastagi_listening"]
        records = body["detail"]["records"]
        # PostgreSQL down: not checked yet. SQLite locked: readable, so checked.
        assert records["schema_ok"] is (None if migrated.cluster is not None else True)
        await until(
            lambda: (
                bridge.records is not None and bridge.records.writer.status().db_reachable is False
            ),
            15,
            "the write fails",
        )
        assert (await readyz(bridge))["detail"]["records"]["db_reachable"] is False
        away()
        assert bridge.records is not None
        rec = bridge.records
        await until(lambda: rec.writer.status().caught_up, 30, "records caught up")
        await until(lambda: rec.schema_ok is True, 15, "the schema checked")
    finally:
        await bridge.stop()
    assert [r["outcome"] for r in await rows(migrated, calls) if r["call_id"] == call_id] == [
        "answered"
    ]


async def test_database_lost_mid_run_routes_on_and_catches_up(
    lab_config: Config, migrated: Db
) -> None:
    bridge = Bridge(with_store(lab_config, migrated), Clock(T0))
    await bridge.start()
    rec = bridge.records
    assert rec is not None
    try:
        first = replay(bridge, "answered")
        await until(lambda: rec.writer.status().caught_up, 10, "first call written")
        migrated.down()
        second = replay(bridge, "abandoned")
        await until(lambda: rec.writer.status().db_reachable is False, 20, "writes fail")
        detail = (await readyz(bridge))["detail"]["records"]
        assert detail["db_reachable"] is False and detail["db_error"]
        migrated.up()
        await until(lambda: rec.writer.status().caught_up, 30, "records caught up")
    finally:
        await bridge.stop()
    outcomes = {r["call_id"]: r["outcome"] for r in await rows(migrated, calls)}
    assert outcomes[first] == "answered"
    assert outcomes[second] == "abandoned"


async def test_a_restart_shows_the_gap_and_closes_it(lab_config: Config, migrated: Db) -> None:
    config = with_store(lab_config, migrated)
    heartbeat = alive.path_for(config.store.journal)
    killed_at = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    # What a SIGKILLed run leaves: its last heartbeat, no clean-stop gap rows.
    alive.write(heartbeat, killed_at)
    bridge = Bridge(config, Clock(T0))
    await bridge.start()
    try:
        rec = bridge.records
        assert rec is not None
        assert sorted(rec.ingest.gaps.open) == sorted(s.name for s in config.sites)
        bridge._on_link_state("bangalore", LinkState.UP)
        await until(lambda: rec.writer.status().caught_up, 10, "gaps written")
    finally:
        await bridge.stop()
    gaps = await rows(migrated, coverage_gaps)
    at_kill = {g["site"]: g for g in gaps if g["started_at"] == killed_at}
    assert set(at_kill) == {s.name for s in config.sites}
    assert at_kill["bangalore"]["ended_at"] is not None
    # The clean stop left every site in an open gap, for the next start to close.
    stopped = alive.read(heartbeat)
    assert stopped is not None and stopped > killed_at
    still_open = {g["site"] for g in gaps if g["ended_at"] is None}
    assert still_open == {s.name for s in config.sites}


def test_ccbridge_run_exits_2_on_a_schema_it_does_not_know(tmp_path: Path) -> None:
    # `ccbridge run`'s code path in its own process, the store on an empty SQLite file
    # (the exit status does not depend on the engine; the start test covers both).
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from dataclasses import replace\n"
        "from ccbridge.app import run_bridge\n"
        "from ccbridge.config import load_config\n"
        "from ccbridge.config.model import HostPort\n"
        "from ccbridge.config.store import StoreSettings\n"
        f"cfg = load_config({str(REPO / 'examples' / 'lab.yaml')!r})\n"
        "sites = tuple(replace(s, ami=replace(s.ami, host='127.0.0.1', port=int(sys.argv[1]))) "
        "for s in cfg.sites)\n"
        "b = replace(cfg.bridge, agi_listen=HostPort('127.0.0.1', 0), "
        "http_listen=HostPort('127.0.0.1', 0))\n"
        "store = StoreSettings(enabled=True, url=sys.argv[2], journal=sys.argv[3])\n"
        "sys.exit(run_bridge(replace(cfg, sites=sites, bridge=b, store=store)))\n"
    )
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    out = subprocess.run(
        [sys.executable, str(script), str(_free_port()), url, str(tmp_path / "journal")],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "CCBRIDGE_AMI_SECRET": "x",
            "CCBRIDGE_API_TOKEN": "t",
        },
        check=False,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "cannot start the record store" in out.stderr
    assert "ccbridge db upgrade" in out.stderr


async def test_a_site_link_lost_mid_run_is_a_closed_gap(lab_config: Config, migrated: Db) -> None:
    bridge = Bridge(with_store(lab_config, migrated), Clock(T0))
    await bridge.start()
    rec = bridge.records
    assert rec is not None
    try:
        bridge._on_link_state("dhaka", LinkState.UP)  # the first connection: no gap
        bridge._on_link_state("dhaka", LinkState.DOWN)
        assert "dhaka" in rec.status()["coverage_gaps_open"]
        bridge._on_link_state("dhaka", LinkState.UP)
        assert "dhaka" not in rec.status()["coverage_gaps_open"]
        await until(lambda: rec.writer.status().caught_up, 10, "the gap written")
    finally:
        await bridge.stop()
    dhaka = sorted(
        (g for g in await rows(migrated, coverage_gaps) if g["site"] == "dhaka"),
        key=lambda g: g["started_at"],
    )
    # The gap while the link was down, closed (the real link, retrying a closed port,
    # may add gaps of its own), then the one the clean stop opened.
    closed = [g for g in dhaka if g["ended_at"] is not None]
    assert closed and all(g["ended_at"] >= g["started_at"] for g in closed)
    assert dhaka[-1]["ended_at"] is None
