"""The audit chain on both engines: written through the journal (nothing lost while the
database is down, replay is idempotent, two writers chain in turn), verified, broken by
an edited or deleted row, and still verifiable after a number's details are erased."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ccbridge.access.audit import AuditEvent, AuditTrail, append
from ccbridge.access.metrics import AuditCollector
from ccbridge.store.audit import (
    PURGE_ACTION,
    AuditPurged,
    anchor,
    erase_details,
    purge_before,
    verify,
)
from ccbridge.store.schema import audit, audit_head
from ccbridge.store.writer import RecordWriter
from tests.polling import until
from tests.store.conftest import Db

NUMBER = "+8801712345678"


def _trail(db: Db, journal: Path) -> AuditTrail:
    return AuditTrail(RecordWriter(db.engine(), journal, flush_interval=0.01))


def _event(i: int, **kw: object) -> AuditEvent:
    base: dict[str, object] = {
        "actor": f"user{i % 3}",
        "source": "127.0.0.1",
        "action": "POST /api/v1/sites/{name}/drain",
        "result": "ok",
        "object": "site:dhaka",
        "site": "dhaka",
        "status": 200,
        "details": {"i": i},
    }
    base.update(kw)
    return AuditEvent(**base)  # type: ignore[arg-type]


async def _count(db: Db) -> int:
    async with db.engine().connect() as conn:
        return len((await conn.execute(select(audit.c.seq))).all())


async def _verify(db: Db) -> tuple[bool, tuple[str, ...]]:
    async with db.engine().connect() as conn:
        r = await verify(conn)
    return r.ok, r.problems


async def test_rows_written_through_the_journal_survive_a_database_outage(migrated: Db) -> None:
    trail = _trail(migrated, migrated.tmp / "a.journal")
    await trail.start()
    try:
        for i in range(30):
            assert trail.record(_event(i))
        await until(lambda: trail.writer.status().caught_up, 20, "30 rows written")
        migrated.down()
        for i in range(30, 60):
            trail.record(_event(i))
        await until(lambda: trail.writer.journaled >= 60, 10, "rows journaled while down")
    finally:
        await trail.stop()  # the database is down: the rest waits in the journal
    migrated.up()
    again = _trail(migrated, migrated.tmp / "a.journal")
    await again.start()  # replays the journal
    try:
        await until(lambda: again.writer.status().caught_up, 30, "the journal replayed")
    finally:
        await again.stop()
    assert await _count(migrated) == 60  # none lost, none twice
    async with migrated.engine().connect() as conn:
        details = (await conn.execute(select(audit.c.details).order_by(audit.c.seq))).scalars()
        assert [d["i"] for d in details] == list(range(60))  # in the order recorded
    assert await _verify(migrated) == (True, ())


async def test_the_same_event_twice_is_one_row(migrated: Db) -> None:
    ev = _event(1)
    assert await append(migrated.engine(), ev, ev) == 1
    assert await append(migrated.engine(), ev) == 0
    assert await _count(migrated) == 1


async def test_two_writers_chain_one_after_the_other(migrated: Db) -> None:
    a = _trail(migrated, migrated.tmp / "a.journal")
    b = _trail(migrated, migrated.tmp / "b.journal")
    await a.start()
    await b.start()
    try:
        for i in range(40):
            (a if i % 2 else b).record(_event(i))
            if i % 10 == 0:
                await asyncio.sleep(0.02)
        await until(lambda: a.writer.status().caught_up and b.writer.status().caught_up, 30, "both")
    finally:
        await a.stop()
        await b.stop()
    assert await _count(migrated) == 40
    assert await _verify(migrated) == (True, ())


async def test_an_edited_row_breaks_the_chain(migrated: Db) -> None:
    await append(migrated.engine(), *[_event(i) for i in range(10)])
    assert (await _verify(migrated))[0]
    async with migrated.engine().begin() as conn:
        await conn.execute(update(audit).where(audit.c.seq == 4).values(actor="someone-else"))
    ok, problems = await _verify(migrated)
    assert not ok and any("row 4" in p and "edited" in p for p in problems), problems


async def test_edited_details_break_the_chain(migrated: Db) -> None:
    await append(migrated.engine(), *[_event(i) for i in range(5)])
    async with migrated.engine().begin() as conn:
        await conn.execute(update(audit).where(audit.c.seq == 2).values(details={"i": 99}))
    ok, problems = await _verify(migrated)
    assert not ok and any("row 2" in p for p in problems), problems


async def test_a_deleted_row_breaks_the_chain(migrated: Db) -> None:
    await append(migrated.engine(), *[_event(i) for i in range(10)])
    async with migrated.engine().begin() as conn:
        await conn.execute(delete(audit).where(audit.c.seq == 6))
    ok, problems = await _verify(migrated)
    assert not ok and any("6" in p and "missing" in p for p in problems), problems


async def test_deleting_the_newest_rows_breaks_the_chain(migrated: Db) -> None:
    await append(migrated.engine(), *[_event(i) for i in range(10)])
    async with migrated.engine().begin() as conn:
        await conn.execute(delete(audit).where(audit.c.seq >= 9))
    ok, problems = await _verify(migrated)
    assert not ok and any("head" in p for p in problems), problems


async def test_erasing_a_numbers_details_keeps_the_chain_verifiable(migrated: Db) -> None:
    events = [_event(i) for i in range(6)]
    events[2] = _event(2, details={"caller": NUMBER, "why": "export"})
    events[4] = _event(4, details={"filter": {"caller": NUMBER}})
    await append(migrated.engine(), *events)
    async with migrated.engine().begin() as conn:
        assert await erase_details(conn, NUMBER, datetime.now(UTC)) == 2
    assert await _verify(migrated) == (True, ())
    async with migrated.engine().connect() as conn:
        rows = (await conn.execute(select(audit).order_by(audit.c.seq))).mappings().all()
    assert [r["seq"] for r in rows if r["erased_at"] is not None] == [3, 5]
    assert all(NUMBER not in str(dict(r)) for r in rows)
    # An erased row's other fields are still covered by its hash.
    async with migrated.engine().begin() as conn:
        await conn.execute(update(audit).where(audit.c.seq == 3).values(result="failed"))
    assert not (await _verify(migrated))[0]


DAY0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _seqs(db: Db) -> list[int]:
    async with db.engine().connect() as conn:
        return list((await conn.execute(select(audit.c.seq).order_by(audit.c.seq))).scalars())


async def _purge(db: Db, days: int) -> AuditPurged:
    return await purge_before(
        db.engine(),
        DAY0 + timedelta(days=days),
        actor="retention",
        source="bridge",
        now=DAY0 + timedelta(days=days, hours=12),
    )


async def test_a_retention_purge_keeps_the_chain_verifiable(migrated: Db) -> None:
    """The oldest rows go; the last purged row becomes the anchor, the purge is an audit
    row naming it, and the chain verifies after it, after more appends and a second purge."""
    events = [_event(i, at=DAY0 + timedelta(days=i)) for i in range(10)]
    # A row written late (a replayed journal) with an older instant than its neighbour:
    # a purge stops before the first row it keeps, so the chain has no hole.
    events[7] = _event(7, at=DAY0 + timedelta(days=1))
    await append(migrated.engine(), *events)
    done = await _purge(migrated, 5)  # rows 1..5 (days 0..4)
    assert (done.anchor, done.rows) == (5, 5)
    assert await _seqs(migrated) == [6, 7, 8, 9, 10, 11]
    async with migrated.engine().connect() as conn:
        assert await anchor(conn) == (5, events_hash := await _hash_of_purged(conn))
        purge_row = (await conn.execute(select(audit).where(audit.c.seq == 11))).mappings().one()
    assert purge_row["action"] == PURGE_ACTION and purge_row["actor"] == "retention"
    assert purge_row["object"] == f"audit-chain:5:{events_hash}"
    assert purge_row["details"] == {"rows": 5, "before": "2026-01-06T00:00:00.000000Z"}
    assert await _verify(migrated) == (True, ())
    assert (await _purge(migrated, 5)).rows == 0  # nothing older: no row, no new anchor
    assert await _seqs(migrated) == [6, 7, 8, 9, 10, 11]
    await append(migrated.engine(), _event(20, at=DAY0 + timedelta(days=20)))
    # Day 9: rows 6, 7 (days 5, 6), 8 (the late day 1) and 9 (day 8) go; 10 (day 9) stays.
    assert (await _purge(migrated, 9)).anchor == 9
    assert await _seqs(migrated) == [10, 11, 12, 13]
    assert await _verify(migrated) == (True, ())


async def _hash_of_purged(conn: AsyncConnection) -> str:
    row = (await conn.execute(select(audit.c.prev_hash).where(audit.c.seq == 6))).scalar_one()
    return str(row)


async def test_moving_the_anchor_to_hide_deleted_rows_breaks_the_chain(migrated: Db) -> None:
    await append(migrated.engine(), *[_event(i, at=DAY0 + timedelta(days=i)) for i in range(8)])
    await _purge(migrated, 3)  # anchor: row 3
    assert (await _verify(migrated))[0]
    async with migrated.engine().begin() as conn:
        h5 = (await conn.execute(select(audit.c.hash).where(audit.c.seq == 5))).scalar_one()
        await conn.execute(delete(audit).where(audit.c.seq.in_([4, 5])))
        await conn.execute(update(audit_head).where(audit_head.c.id == 2).values(seq=5, hash=h5))
    ok, problems = await _verify(migrated)
    assert not ok and any("no purge row records" in p for p in problems), problems


async def test_deleting_the_purge_row_breaks_the_chain(migrated: Db) -> None:
    await append(migrated.engine(), *[_event(i, at=DAY0 + timedelta(days=i)) for i in range(4)])
    await _purge(migrated, 2)  # rows 1, 2; the purge row is 5
    await append(migrated.engine(), _event(9, at=DAY0 + timedelta(days=9)))
    async with migrated.engine().begin() as conn:
        await conn.execute(delete(audit).where(audit.c.seq == 5))
    ok, problems = await _verify(migrated)
    assert not ok and any("5" in p and "missing" in p for p in problems), problems


async def test_a_purge_of_every_row_leaves_the_purge_row(migrated: Db) -> None:
    await append(migrated.engine(), *[_event(i, at=DAY0) for i in range(3)])
    done = await _purge(migrated, 30)
    assert (done.anchor, done.rows) == (3, 3) and await _seqs(migrated) == [4]
    assert await _verify(migrated) == (True, ())


async def test_the_audit_writer_on_metrics(migrated: Db) -> None:
    """Written, failed (rejected) and waiting rows, read at scrape time; a trail that is
    off shows as store_on 0."""
    trail = _trail(migrated, migrated.tmp / "m.journal")
    registry = CollectorRegistry()
    current: list[AuditTrail | None] = [trail]
    registry.register(AuditCollector(lambda: current[0]))
    await trail.start()
    try:
        for i in range(5):
            assert trail.record(_event(i))
        assert not trail.record(_event(9, result="x" * 40))  # too long: refused
        await until(lambda: trail.writer.status().caught_up, 20, "5 rows written")
    finally:
        await trail.stop()
    value = registry.get_sample_value
    assert value("ccbridge_audit_store_on") == 1
    assert value("ccbridge_audit_rows_written_total") == 5
    assert value("ccbridge_audit_rows_failed_total", {"why": "rejected"}) == 1
    assert value("ccbridge_audit_rows_failed_total", {"why": "dropped"}) == 0
    assert value("ccbridge_audit_queue_depth") == 0
    assert value("ccbridge_audit_journal_backlog_bytes") == 0
    assert value("ccbridge_audit_db_up") == 1
    current[0] = None
    assert value("ccbridge_audit_store_on") == 0
    assert value("ccbridge_audit_rows_written_total") is None
