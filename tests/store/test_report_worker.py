"""Reports built in the worker process (ccbridge/reports/worker.py): a month of one
site's quarter hours answered without holding the bridge's loop past the 50 ms limit,
the same figures as built in place, and faults returned as values with their error ids.
The worker process is the record writer's child (ccbridge/store/writeproc.py) when the
store has one, else a child of the worker's own."""

from __future__ import annotations

import asyncio
import csv
import gc
import io
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config.model import Config
from ccbridge.config.store import StoreSettings
from ccbridge.loopdebug import report_slow_callbacks, stop_reporting
from ccbridge.reports.build import interval_report
from ccbridge.reports.intervals import Step
from ccbridge.reports.query import Period, ReportQuery
from ccbridge.reports.worker import Encoded, ReportWorker, WorkerFault, build, plan, roll
from ccbridge.services import ServiceError
from ccbridge.staffing.plan import Targets
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.writeproc import WriteProcess
from tests.bench.bench_reports import DAYS, FIRST, SITE, config, generate, load_sqlite

NOW = datetime(2026, 12, 1, tzinfo=UTC)
MONTH = {"from": [FIRST.isoformat()], "to": [(FIRST + timedelta(days=DAYS - 1)).isoformat()]}


@pytest.fixture(scope="module")
def month_db(tmp_path_factory: pytest.TempPathFactory) -> StoreSettings:
    """30 days of the bench's mix (60,000 calls over 5 sites), dhaka's ~11,000 kept: as
    many as hold the loop past 50 ms when the report is built on it (measured)."""
    path = tmp_path_factory.mktemp("month") / "month.db"
    settings = StoreSettings(url=f"sqlite+aiosqlite:///{path}", journal=str(path) + ".j")

    async def make() -> None:
        engine = make_engine(settings)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(make())
    calls, activity = generate(60_000)
    # Only what touches dhaka: its report is the same, and the load 5 times shorter.
    load_sqlite(
        path,
        [c for c in calls if SITE in (c[1], c[2])],
        [a for a in activity if a[0] == SITE],
    )
    return settings


@pytest.fixture
async def bridge(month_db: StoreSettings) -> AsyncIterator[Bridge]:
    b = Bridge(replace(config(), store=month_db), Clock(NOW))
    try:
        yield b
    finally:
        await _close(b)


async def _close(b: Bridge) -> None:
    await b.services.reports.close()
    if b.records is not None and b.records.writer.process is not None:
        await b.records.writer.process.close()  # the writer's child: the writer's to end


def _cfg(b: Bridge) -> Config:
    return b.config


async def test_a_month_of_quarter_hours_never_holds_the_loop(bridge: Bridge) -> None:
    """The 15-minute report of a site for the month, JSON and CSV, with the loop's debug
    mode on at the integration tests' 50 ms: no callback reported; the same figures as
    the report built in place."""
    svc = bridge.services.reports
    loop = asyncio.get_running_loop()
    # The test process's own heap (pytest, every module it imported, the fixture's data)
    # is not the bridge's: frozen, so a full collection of it is not counted here.
    gc.collect()
    gc.freeze()
    found = report_slow_callbacks(loop, 50)
    try:
        params = {**MONTH, "site": [SITE], "step": ["15"]}
        _, answer = await svc.interval_report(params)
        _, as_csv = await svc.interval_report({**params, "format": ["csv"]})
    finally:
        stop_reporting(loop, found)
        gc.unfreeze()
    assert found.lines == []
    assert answer.content_type == "application/json" and as_csv.content_type == "text/csv"
    body = json.loads(answer.body)
    q = ReportQuery(Period(first=FIRST, last=FIRST + timedelta(days=DAYS - 1)), (SITE,), Step.M15)
    engine = make_engine(bridge.config.store)
    try:
        here = await interval_report(engine, bridge.config, q, NOW)
    finally:
        await engine.dispose()
    assert body["rows"] == json.loads(json.dumps(here.rows)) and len(body["rows"]) > 8000
    assert body["columns"] == list(here.columns) and body["incomplete"] is False
    lines = list(csv.DictReader(io.StringIO(as_csv.body.decode())))
    assert len(lines) == answer.rows == len(here.rows)
    assert sum(int(x["offered"]) for x in lines) == sum(r["offered"] for r in here.rows) > 10_000


async def test_a_csv_needs_the_export_right_for_every_site(bridge: Bridge) -> None:
    params = {**MONTH, "site": [SITE, "manila"], "step": ["day"], "format": ["csv"]}
    with pytest.raises(ServiceError) as info:
        await bridge.services.reports.interval_report(params, exportable=[SITE])
    assert info.value.error_id == "forbidden" and "manila" in str(info.value)


async def test_faults_come_back_as_values(month_db: StoreSettings, tmp_path: Path) -> None:
    cfg = config()
    q = ReportQuery(Period(first=date(2026, 10, 1), last=date(2026, 10, 1)), (SITE,), Step.M60)
    got = await build(month_db, cfg, "agents", q, NOW)
    assert isinstance(got, Encoded) and got.rows > 0
    # A range no report can have (the parser refuses it before; the builder says why too).
    bad = replace(q, period=Period(start=NOW, end=NOW - timedelta(hours=1)))
    fault = await build(month_db, cfg, "intervals", bad, NOW)
    assert fault == WorkerFault("query", "the range ends before it starts")
    # A file that is not there is refused before any connect: opening it would make an
    # empty one, and a failed connect's aiosqlite thread outlived a test's loop once
    # (an exception in that thread, which failed the next test).
    nowhere = replace(month_db, url=f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/x.db")
    for fault in (
        await build(nowhere, cfg, "intervals", q, NOW),
        await plan(nowhere, cfg, [date(2026, 10, 1)], Targets(), NOW, 4),
        await roll(nowhere, cfg, NOW, "b1", 900.0),
    ):
        assert fault == WorkerFault("store", f"no such database file: {tmp_path}/no/such/dir/x.db")


async def test_the_rollup_job_rolls_in_the_worker_once_between_bridges(
    month_db: StoreSettings,
) -> None:
    """The bridge's rollup round runs in the worker process under the job's cluster
    lock, without holding the loop: the closed days after the retention cutoff (3 days
    here) rolled, then a second round at once skipped (another bridge, or this one,
    rolled less than half an interval ago)."""
    cfg = replace(config(), store=month_db)
    cfg = replace(cfg, records=replace(cfg.records, retention_days=3))
    b = Bridge(cfg, Clock(NOW))
    loop = asyncio.get_running_loop()
    found = report_slow_callbacks(loop, 50)
    try:
        first = await b.rollup.run_once()
        second = await b.rollup.run_once()
    finally:
        stop_reporting(loop, found)
        await _close(b)
    assert found.lines == []
    # NOW is 2026-12-01 00:00 UTC, the cutoff 11-28 00:00 UTC, the grace 2 h: the 29th
    # and 30th in Asia, the 28th and 29th in New York, London's 29th (its 30th ended
    # at midnight UTC, less than the grace ago).
    assert first.ran and first.rolled.left == 0
    assert first.rolled.days == {
        "bangalore": 2,
        "dhaka": 2,
        "manila": 2,
        "newyork": 2,
        "london": 1,
    }
    assert not second.ran and b.rollup.rounds == 1 and b.rollup.rolled == 9


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
async def recording_bridge(month_db: StoreSettings) -> AsyncIterator[Bridge]:
    """A bridge that keeps records (its writer has the child process, not started)."""
    b = Bridge(replace(config(), store=replace(month_db, enabled=True)), Clock(NOW))
    try:
        yield b
    finally:
        await _close(b)


async def test_reports_run_in_the_writers_child_and_a_killed_child_is_started_again(
    recording_bridge: Bridge,
) -> None:
    """store.writer_process (the default): the report worker's jobs go to the record
    writer's child, no process of their own; killed (SIGKILL) between two reports, the
    next one starts a new child and answers the same; the writer's batches go to it too."""
    bridge = recording_bridge
    assert bridge.records is not None
    process = bridge.records.writer.process
    assert process is not None and bridge.services.reports._worker.process is process
    params = {**MONTH, "site": [SITE], "step": ["day"]}
    _, first = await bridge.services.reports.interval_report(params)
    pid = process.pid
    assert pid is not None and process.starts == 1 and first.rows > DAYS
    os.kill(pid, signal.SIGKILL)  # asked at once: the job finds it dead or dying
    _, again = await bridge.services.reports.interval_report(params)
    assert again == first and process.starts == 2 and process.pid not in (None, pid)
    assert await process.write([]) == {}  # the same child takes the writer's batches


async def test_without_the_writer_process_the_worker_starts_a_child_of_its_own(
    month_db: StoreSettings,
) -> None:
    """store.writer_process off: the worker's own child, started by the first job (the
    same answer as built in place) and ended by close()."""
    settings = replace(month_db, writer_process=False)
    cfg = replace(config(), store=settings)
    q = ReportQuery(Period(first=date(2026, 10, 1), last=date(2026, 10, 2)), (SITE,), Step.M60)
    worker = ReportWorker(settings)
    assert worker.process is None  # nothing started before a job
    try:
        got = await worker.run(cfg, "agents", q, NOW)
        process = worker.process
        assert isinstance(process, WriteProcess) and process.pid is not None
        pid = process.pid
    finally:
        await worker.close()
    assert got == await build(settings, cfg, "agents", q, NOW) and isinstance(got, Encoded)
    assert worker.process is None and process.pid is None and _dead(pid)
