"""RecordWriter on both engines: records reach the database, an outage (the server
stopped, or the SQLite write lock held elsewhere) fills the journal and the writer
catches up afterwards, an unwritable journal and garbage records are counted, never
raised, and a journal left by a killed process is replayed without loss or duplicates."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from ccbridge.store.journal import Journal
from ccbridge.store.records import check_record
from ccbridge.store.schema import call_events, calls, legs
from ccbridge.store.writeproc import NICE, WriteProcess, _frame, _read_frame
from ccbridge.store.writer import RecordWriter
from tests.polling import until
from tests.store.conftest import Db
from tests.store.pg import PASSWORD
from tests.store.records_factory import call_records

REPO = Path(__file__).resolve().parents[2]
PER_CALL = len(call_records(0))


class Harness:
    def __init__(self, db: Db, journal: Path, **kw: Any) -> None:
        self.db = db
        self.registry = CollectorRegistry()
        self.writer = RecordWriter(db.engine(), journal, registry=self.registry, **kw)

    def put_calls(self, start: int, stop: int) -> None:
        for n in range(start, stop):
            for table, values in call_records(n):
                assert self.writer.put(table, values), (table, values)

    async def put_paced(self, start: int, stop: int) -> None:
        """Put calls ten at a time, each ten once the last are journaled: records that
        arrive over time, as AMI events do, rather than one burst bigger than memory."""
        for first in range(start, stop, 10):
            self.put_calls(first, min(first + 10, stop))
            base = self.writer.journaled + len(self.writer._buffer)
            await until(lambda b=base: self.writer.journaled >= b, 10, "records journaled")

    def metric(self, name: str, **labels: str) -> float:
        v = self.registry.get_sample_value(name, labels)
        assert v is not None, name
        return v

    async def counts(self) -> tuple[int, int, int]:
        out = []
        async with self.db.engine().connect() as conn:
            for t in (calls, legs, call_events):
                out.append((await conn.execute(select(func.count()).select_from(t))).scalar_one())
        return out[0], out[1], out[2]

    async def call_ids(self) -> list[str]:
        async with self.db.engine().connect() as conn:
            rows = await conn.execute(select(calls.c.call_id).order_by(calls.c.call_id))
            return [r.call_id for r in rows]


@pytest.fixture
async def harness_factory(migrated: Db) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**kw: Any) -> Harness:
        kw.setdefault("journal", migrated.tmp / "records.journal")
        h = Harness(migrated, **kw)
        made.append(h)
        return h

    yield make
    migrated.up()
    for h in made:
        if h.writer._tasks:
            await h.writer.stop(drain_timeout=1.0)


async def test_records_reach_the_database_and_the_journal_empties(
    harness_factory: Callable[..., Harness],
) -> None:
    h = harness_factory()
    await h.writer.start()
    h.put_calls(0, 300)
    await until(lambda: h.writer.status().caught_up, 30, "the writer to catch up")
    assert await h.counts() == (300, 300, 600)
    await until(lambda: h.writer.status().journal_bytes == 0, 5, "the journal truncated")
    st = h.writer.status()
    assert st.db_reachable is True and st.written == 300 * PER_CALL and st.rejected == 0
    assert h.metric("ccbridge_records_written_total", table="call_events") == 600
    assert h.metric("ccbridge_records_db_up") == 1
    await h.writer.stop()
    assert (await asyncio.to_thread(os.stat, h.writer.journal.path)).st_size == 0


async def test_database_down_at_start_fills_the_journal_then_catches_up(
    migrated: Db, harness_factory: Callable[..., Harness]
) -> None:
    migrated.down()
    # A small memory queue: the backlog must move to the journal file (spill).
    h = harness_factory(queue_size=200, batch_size=50)
    await h.writer.start()
    await h.put_paced(0, 200)  # 1000 records, five times the memory queue
    await until(lambda: h.writer.status().db_reachable is False, 30, "the outage noticed")
    await until(lambda: h.writer.journaled == 200 * PER_CALL, 10, "every record journaled")
    st = h.writer.status()
    assert st.written == 0 and st.unwritten == 0 and st.queue_depth <= 200
    assert st.journal_bytes > 0 and st.journal_backlog_bytes == st.journal_bytes
    assert st.db_error and h.metric("ccbridge_records_db_errors_total") >= 1
    assert h.metric("ccbridge_records_db_up") == 0
    migrated.up()
    await until(lambda: h.writer.status().caught_up, 60, "the writer to catch up")
    assert await h.counts() == (200, 200, 400)
    await until(lambda: h.writer.status().journal_bytes == 0, 5, "the journal truncated")
    assert h.writer.status().db_reachable is True


async def test_database_lost_mid_run_loses_nothing(
    migrated: Db, harness_factory: Callable[..., Harness]
) -> None:
    h = harness_factory(queue_size=300, batch_size=50)
    await h.writer.start()
    h.put_calls(0, 50)
    await until(lambda: h.writer.status().caught_up, 30, "the first calls written")
    migrated.down()
    await h.put_paced(50, 150)
    await until(lambda: h.writer.status().db_reachable is False, 30, "the outage noticed")
    await h.put_paced(150, 250)  # while it is down
    await until(lambda: h.writer.journaled == 250 * PER_CALL, 10, "every record journaled")
    migrated.up()
    await until(lambda: h.writer.status().caught_up, 60, "the writer to catch up")
    assert await h.counts() == (250, 250, 500)
    assert h.writer.status().unwritten == 0


async def test_records_faster_than_a_batch_a_loop_turn_on_a_busy_loop_are_journaled_not_dropped(
    migrated: Db, harness_factory: Callable[..., Harness]
) -> None:
    """The database down, the loop's turns held 20 ms each (a loaded bridge), records
    arriving at 3,000 a second for 2 s: memory (2,000) fills unless the journal takes
    more than one batch a turn. Before it did, this dropped records (BENCHMARKS §9b)."""
    migrated.down()
    h = harness_factory(queue_size=2000, batch_size=50)
    await h.writer.start()
    stop = False

    async def hog() -> None:
        while not stop:
            time.sleep(0.02)  # noqa: ASYNC251 -- a turn's work: blocking on purpose, as a busy loop
            await asyncio.sleep(0)

    hogging = asyncio.create_task(hog())
    per_s, seconds = 3000 // PER_CALL, 2.0
    start = time.monotonic()
    calls_put = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * per_s)
        h.put_calls(calls_put, due)  # asserts each put was taken, not dropped
        calls_put = due
        await asyncio.sleep(0.01)
    stop = True
    await hogging
    await until(lambda: h.writer.journaled == calls_put * PER_CALL, 10, "every record journaled")
    st = h.writer.status()
    assert calls_put * PER_CALL >= 5000 and st.unwritten == 0 and st.written == 0


async def test_an_unwritable_journal_is_reported_and_the_database_still_gets_records(
    migrated: Db, harness_factory: Callable[..., Harness]
) -> None:
    blocker = migrated.tmp / "not-a-folder"
    blocker.write_text("a file where the journal's folder should be\n")
    h = harness_factory(journal=blocker / "records.journal", queue_size=500, batch_size=50)
    await h.writer.start()
    st = h.writer.status()
    assert st.journal_error is not None and "not-a-folder" in st.journal_error
    assert h.metric("ccbridge_records_journal_errors_total") >= 1
    h.put_calls(0, 40)
    await until(lambda: h.writer.status().caught_up, 30, "records written without a journal")
    assert await h.counts() == (40, 40, 80)
    # Database down too: memory holds queue_size records, the rest are counted, and
    # put() still answers at once instead of raising.
    migrated.down()
    h.put_calls(40, 80)
    await until(lambda: h.writer.status().db_reachable is False, 30, "the outage noticed")
    refused = 0
    for n in range(80, 300):
        for table, values in call_records(n):
            refused += not h.writer.put(table, values)
    st = h.writer.status()
    assert refused > 0 and st.unwritten == refused
    assert st.queue_depth <= 500
    assert h.metric("ccbridge_records_unwritten_total") == refused
    migrated.up()
    await until(lambda: h.writer.status().caught_up, 60, "the records in memory written")
    ncalls, _, _ = await h.counts()
    assert 80 <= ncalls < 300


GARBAGE: list[tuple[Any, Any]] = [
    ("calls", {"entry_site": "dhaka"}),  # no call_id, no arrived_at
    (
        "calls",
        {"call_id": 5, "entry_site": "dhaka", "arrived_at": call_records(0)[0][1]["arrived_at"]},
    ),
    ("calls", {**call_records(0)[0][1], "arrived_at": "yesterday"}),
    (
        "calls",
        {
            **call_records(0)[0][1],
            "arrived_at": call_records(0)[0][1]["arrived_at"].replace(tzinfo=None),
        },
    ),
    ("calls", {**call_records(0)[0][1], "outcome": "maybe"}),
    ("calls", {**call_records(0)[0][1], "outcome": {"answered": 1}}),  # unhashable
    ("calls", {**call_records(0)[0][1], "hung_up_by": ["caller"]}),
    ("calls", {**call_records(0)[0][1], "satisfaction": 9}),
    ("calls", {**call_records(0)[0][1], "wait_s": float("nan")}),
    ("calls", {**call_records(0)[0][1], "talk_s": True}),
    ("calls", {**call_records(0)[0][1], "caller_number": "x" * 65}),
    ("calls", {**call_records(0)[0][1], "caller_number": "+88\x00"}),
    ("calls", {**call_records(0)[0][1], "colour": "blue"}),
    ("calls", {**call_records(0)[0][1], "call_id": None}),
    ("legs", {"call_id": "c1", "site": "dhaka"}),
    ("legs", {"call_id": "c1", "site": "dhaka", "linkedid": "1", "ring_no_answers": -1}),
    ("call_events", {**call_records(0)[2][1], "fields": {"x": object()}}),
    ("call_events", {**call_records(0)[2][1], "fields": {"big": "x" * 70000}}),
    ("coverage_gaps", {"site": "dhaka", "started_at": 0}),
    ("nonsense", {"call_id": "c1"}),
    (None, {}),
    ("calls", None),
    ("calls", ["call_id", "c1"]),
    ("calls", {1: "c1"}),
]


async def test_garbage_records_are_refused_and_counted_and_good_ones_still_written(
    harness_factory: Callable[..., Harness],
) -> None:
    h = harness_factory()
    await h.writer.start()
    for table, values in GARBAGE:
        assert h.writer.put(table, values) is False, (table, values)
    h.put_calls(0, 3)
    await until(lambda: h.writer.status().caught_up, 30, "the good records written")
    assert await h.counts() == (3, 3, 6)
    assert h.writer.status().rejected == len(GARBAGE)
    total = sum(
        h.metric("ccbridge_records_rejected_total", table=t)
        for t in ("calls", "legs", "call_events", "coverage_gaps", "unknown")
    )
    assert total == len(GARBAGE)
    assert h.metric("ccbridge_records_rejected_total", table="unknown") == 2  # no such table


@pytest.mark.parametrize("in_child", [False, True], ids=["in_process", "writer_process"])
async def test_a_journal_left_behind_is_replayed_and_its_garbage_counted(
    migrated: Db, harness_factory: Callable[..., Harness], in_child: bool
) -> None:
    # With store.writer_process the child reads the left journal itself, its lines
    # checked as any input (another run's), then this run's own lines.
    path = migrated.tmp / "left.journal"
    j = Journal(path, 0)
    await asyncio.to_thread(j.open)
    records = [check_record(t, v) for n in range(20) for t, v in call_records(n)]
    await asyncio.to_thread(j.append, records[:50])
    await asyncio.to_thread(j.close)
    with path.open("ab") as f:
        f.write(b'{"t": "calls", "v": {"call_id": 7}}\n')  # a line that is no record
        f.write(b"not json at all\n")
    j = Journal(path, 0)
    await asyncio.to_thread(j.open)
    await asyncio.to_thread(j.append, records[50:])
    await asyncio.to_thread(j.close)
    with path.open("ab") as f:
        f.write(b'{"t": "calls", "v": {"call_id": "c9')  # torn by a kill mid-write
    process = WriteProcess(migrated.settings) if in_child else None
    h = harness_factory(journal=path, process=process)
    await h.writer.start()
    h.put_calls(20, 25)
    await until(lambda: h.writer.status().caught_up, 30, "the journal replayed")
    assert await h.counts() == (25, 25, 50)
    assert h.writer.status().written == 25 * PER_CALL
    assert h.writer.status().rejected == 2
    assert h.metric("ccbridge_records_rejected_total", table="journal") == 2
    await until(lambda: path.stat().st_size == 0, 5, "the replayed journal truncated")


async def test_sigkill_loses_no_journaled_record_and_replay_duplicates_none(
    migrated: Db, harness_factory: Callable[..., Harness]
) -> None:
    journal = migrated.tmp / "killed.journal"
    env = dict(os.environ)
    if migrated.kind == "postgresql":
        env["CCBRIDGE_TEST_DB_PASSWORD"] = PASSWORD
        # On PostgreSQL the killed writer writes through store.writer_process: the crash
        # guarantee is the journal's either way, and its child must end with it.
        env["CCBRIDGE_TEST_WRITER_PROCESS"] = "1"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.store.writer_child",
        migrated.settings.url,
        str(journal),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    journaled = written = grandchild = 0
    try:
        assert child.stdout is not None
        async with asyncio.timeout(60):
            # Kill it once a good share is journaled and some of it already written.
            while journaled < 3000 or written == 0:
                line = await child.stdout.readline()
                if not line:
                    break
                _, j, _, w, _, pid = line.split()
                journaled, written, grandchild = int(j), int(w), int(pid) or grandchild
        child.send_signal(signal.SIGKILL)
    finally:
        if child.returncode is None:
            child.kill()
        _, err = await child.communicate()
    assert child.returncode == -signal.SIGKILL, err.decode()
    assert journaled >= 3000 and written > 0, err.decode()
    if migrated.kind == "postgresql":
        assert grandchild, "the writer process never started"
        await until(lambda: _gone(grandchild), 10, "the writer process to end with its bridge")
    h = harness_factory(journal=journal)
    await h.writer.start()
    await until(lambda: h.writer.status().caught_up, 120, "the killed writer's journal replayed")
    ids = await h.call_ids()
    # Every call the child reported journaled is there, and the calls are a prefix of
    # what it put: nothing missing before the kill point, nothing twice (unique keys).
    assert len(ids) >= journaled
    assert ids == [f"c{n:08d}" for n in range(len(ids))]
    _, nlegs, nevents = await h.counts()
    assert nlegs >= journaled and nevents >= 2 * journaled
    async with migrated.engine().connect() as conn:
        complete = (
            await conn.execute(
                select(func.count()).select_from(calls).where(calls.c.outcome.is_not(None))
            )
        ).scalar_one()
    assert complete >= journaled
    await until(lambda: journal.stat().st_size == 0, 5, "the replayed journal truncated")


async def test_a_full_disk_under_the_journal_is_reported_and_routing_goes_on(
    migrated: Db, harness_factory: Callable[..., Harness]
) -> None:
    # /dev/full opens like a file and fails every write with ENOSPC, as a full disk does.
    h = harness_factory(journal=Path("/dev/full"), queue_size=500, batch_size=50)
    await h.writer.start()
    assert h.writer.status().journal_error is None  # opening works; writing does not
    h.put_calls(0, 20)
    await until(lambda: h.writer.status().caught_up, 30, "records written without a journal")
    st = h.writer.status()
    assert st.journal_error is not None and "No space left on device" in st.journal_error
    assert h.metric("ccbridge_records_journal_errors_total") >= 1
    assert await h.counts() == (20, 20, 40) and h.writer.journaled == 0
    # With the database gone too, memory holds what it can; the rest is counted.
    migrated.down()
    refused = 0
    for n in range(20, 200):
        for table, values in call_records(n):
            refused += not h.writer.put(table, values)
    assert refused > 0 and h.writer.status().unwritten == refused
    migrated.up()
    await until(lambda: h.writer.status().caught_up, 60, "the records in memory written")


async def test_a_record_the_database_refuses_in_a_fast_batch_costs_only_itself(
    harness_factory: Callable[..., Harness],
) -> None:
    """A built record (unchecked, as the ingest's are) that breaks a NOT NULL column in
    the middle of a batch: the driver's way fails, the batch goes again through
    SQLAlchemy, which finds the one bad record; the rest are written."""
    h = harness_factory(batch_size=1000)
    await h.writer.start()
    h.put_calls(0, 10)
    bad = {"call_id": "bad", "entry_site": None, "arrived_at": call_records(0)[0][1]["arrived_at"]}
    assert h.writer.put_built("calls", bad)
    h.put_calls(10, 20)
    await until(lambda: h.writer.status().caught_up, 30, "the batch written")
    assert await h.counts() == (20, 20, 40)
    st = h.writer.status()
    assert st.rejected == 1 and st.written == 20 * PER_CALL and st.unwritten == 0
    assert h.metric("ccbridge_records_rejected_total", table="calls") == 1
    assert "bad" not in await h.call_ids()


def _big_event(n: int) -> tuple[str, dict[str, Any]]:
    """An event with 20 KB of fields: 100 of them are the memory of 3,000 small records."""
    ev = dict(call_records(n)[2][1])
    return "call_events", {**ev, "fields": {f"f{i}": "v" * 1000 for i in range(20)}}


async def test_memory_is_bounded_in_bytes_as_well_as_in_records(
    migrated: Db, harness_factory: Callable[..., Harness]
) -> None:
    """Records of 20 KB with the database down: the writer spills to the journal by
    bytes long before its record count (10,000) would, and nothing is lost; with the
    journal unwritable too, what is over the byte bound is dropped and counted, and the
    memory estimate never goes over it by more than the record that crossed it."""
    bound = 2 * 2**20
    slack = 2 * len(json.dumps(_big_event(0)[1]["fields"]))  # one record's estimate, ~42 KB
    migrated.down()
    h = harness_factory(queue_size=10_000, queue_bytes=bound, batch_size=20)
    await h.writer.start()
    peak = 0
    for first in range(0, 300, 10):  # 300 records, ~6 MB of JSON: three times the bound
        for n in range(first, first + 10):
            assert h.writer.put(*_big_event(n))
        base = h.writer.journaled + len(h.writer._buffer)
        await until(lambda b=base: h.writer.journaled >= b, 10, "records journaled")
        peak = max(peak, h.writer.status().queue_bytes)
    st = h.writer.status()
    assert st.unwritten == 0 and h.writer.journaled == 300 and st.spilled
    assert 0 < peak <= bound + slack and st.queue_depth < 300

    # No journal either (the database still down): memory holds what the byte bound
    # allows, the rest is dropped and counted.
    blocker = migrated.tmp / "no-folder"
    blocker.write_text("a file where the journal's folder should be\n")
    h2 = harness_factory(journal=blocker / "j", queue_size=10_000, queue_bytes=bound, batch_size=20)
    await h2.writer.start()
    taken = 0
    for n in range(1000, 1300):
        taken += h2.writer.put(*_big_event(n))
        if n % 20 == 0:
            await asyncio.sleep(0.01)  # the journal task tries, fails, hands batches over
        assert h2.writer.status().queue_bytes <= bound + slack
    st = h2.writer.status()
    assert 0 < taken < 300 and st.unwritten == 300 - taken

    migrated.up()
    await until(lambda: h.writer.status().caught_up, 60, "the journal written")
    await until(lambda: h2.writer.status().caught_up, 60, "the memory written")
    assert (await h.counts())[2] == 300 + taken


def _gone(pid: int) -> bool:
    """The process ended (a zombie nobody reaped yet counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def test_the_writer_process_writes_the_batches_and_a_killed_one_is_replaced(
    migrated: Db, harness_factory: Callable[..., Harness]
) -> None:
    # store.writer_process: the batches go to a child process. Killed (SIGKILL) between
    # batches, its batch in flight is written the SQLAlchemy way and the next goes to a
    # new child; nothing lost, nothing twice. The password is never on a command line.
    process = WriteProcess(replace(migrated.settings, writer_process=True))
    h = harness_factory(process=process, batch_size=50)
    await h.writer.start()
    await h.put_paced(0, 60)
    await until(lambda: h.writer.status().caught_up, 30, "the writer to catch up")
    first = process.pid
    assert first is not None and process.starts == 1
    cmdline = await asyncio.to_thread(Path(f"/proc/{first}/cmdline").read_bytes)
    assert PASSWORD.encode() not in cmdline and b"ccbridge.store.writeproc" in cmdline
    # Under the bridge's CPU priority (field 19 of /proc/PID/stat: its nice value)
    stat = await asyncio.to_thread(Path(f"/proc/{first}/stat").read_text)
    assert int(stat.rsplit(")", 1)[1].split()[16]) == os.nice(0) + NICE
    os.kill(first, signal.SIGKILL)
    await h.put_paced(60, 120)
    await until(lambda: h.writer.status().caught_up, 30, "the writer to catch up")
    assert await h.counts() == (120, 120, 240)
    assert await h.call_ids() == [f"c{n:08d}" for n in range(120)]
    second = process.pid
    assert process.starts == 2 and second is not None and second != first
    st = h.writer.status()
    assert st.written == 120 * PER_CALL and st.rejected == 0 and st.unwritten == 0
    await h.writer.stop()
    assert process.pid is None and _gone(second)  # the stop ended the child too


async def test_with_the_writer_process_journaled_records_wait_in_the_file_not_in_memory(
    migrated: Db, harness_factory: Callable[..., Harness]
) -> None:
    # store.writer_process: a journaled batch is handed to the child as journal bytes, so
    # while the database is down the queue counts the records but memory holds none, and
    # a backlog far below the memory bound is not a spill. Back up: all written, once.
    process = WriteProcess(migrated.settings)
    h = harness_factory(process=process, batch_size=50)
    await h.writer.start()
    migrated.down()
    await h.put_paced(0, 100)
    st = h.writer.status()
    assert st.queue_depth == 100 * PER_CALL and st.queue_bytes == 0, st
    assert not st.spilled and not st.caught_up and st.journal_backlog_bytes > 0, st
    migrated.up()
    await until(lambda: h.writer.status().caught_up, 60, "the writer to catch up")
    assert await h.counts() == (100, 100, 200)
    st = h.writer.status()
    assert st.written == 100 * PER_CALL and st.rejected == 0 and st.unwritten == 0, st
    await until(lambda: h.writer.status().journal_bytes == 0, 5, "the journal truncated")


async def test_the_writer_process_answers_garbage_requests_with_an_error_and_serves_on(
    migrated: Db,
) -> None:
    # Only the bridge writes to the child's pipe, but a request it cannot serve (a bad
    # shape, a journal that is not there, an offset past the end) is an answer of
    # "error", never the child's end: the bridge then writes that batch itself.
    path = migrated.tmp / "garbage.journal"
    j = Journal(path, 0)
    await asyncio.to_thread(j.open)
    end = await asyncio.to_thread(j.append, [check_record(t, v) for t, v in call_records(0)])
    await asyncio.to_thread(j.close)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ccbridge.store.writeproc",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    password = PASSWORD if migrated.kind == "postgresql" else None

    async def ask(request: Any) -> Any:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(_frame(request))
        async with asyncio.timeout(30):
            return await _read_frame(child.stdout)

    try:
        assert await ask(("open", migrated.settings.url, password)) == ("ready", None)
        for request in (
            "range",
            ("batch", "not a list"),
            ("batch", [("no_such_table", {})]),
            ("range", str(path), "0", end, 10, True),
            ("range", str(migrated.tmp / "missing.journal"), 0, 10, 10, True),
            ("vacuum", str(path)),
            None,
        ):
            kind, why = await ask(request)
            assert kind in ("error", "driver") and isinstance(why, str) and why, request
        # Past the end: nothing read, nothing written, the offset unchanged.
        assert await ask(("range", str(path), end + 100, end + 200, 10, True)) == (
            "ok",
            ({}, end + 100, 0, 0),
        )
        assert await ask(("range", str(path), 0, end, 100, False)) == (
            "ok",
            ({"calls": 2, "legs": 1, "call_events": 2}, end, PER_CALL, 0),
        )
    finally:
        child.stdin.close()
        async with asyncio.timeout(10):
            await child.wait()
    assert child.returncode == 0


def test_a_journal_says_without_io_when_a_sync_is_due(tmp_path: Path) -> None:
    """The idle writer asks ``sync_due`` on the loop and hops to a thread only for a sync."""
    j = Journal(tmp_path / "due.journal", fsync_interval=3600)
    assert not j.sync_due  # not open
    j.open()
    try:
        assert not j.sync_due  # open, nothing appended
        records = [check_record(t, v) for t, v in call_records(1)]
        j.append(records)
        assert not j.sync_due  # appended, but synced less than an hour ago (at open)
        j.fsync_interval = 0
        assert j.sync_due  # appended and the interval passed
        j.sync_if_due()
        assert not j.sync_due  # synced: nothing left to sync
    finally:
        j.close()
    assert not j.sync_due
