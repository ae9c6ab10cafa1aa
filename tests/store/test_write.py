"""Idempotent writes on both engines: the same records twice make one row; a record in
parts builds one row; a value left out keeps what the row has."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from ccbridge.store.records import check_record
from ccbridge.store.schema import Outcome, call_events, calls, coverage_gaps, legs
from ccbridge.store.write import write_records
from tests.store.conftest import Db
from tests.store.records_factory import T0, call_records


def _records(n: int) -> list:  # type: ignore[type-arg]
    return [check_record(t, v) for i in range(n) for t, v in call_records(i)]


async def _counts(db: Db) -> dict[str, int]:
    async with db.engine().connect() as conn:
        return {
            t.name: (await conn.execute(select(func.count()).select_from(t))).scalar_one()
            for t in (calls, legs, call_events, coverage_gaps)
        }


async def test_the_same_records_twice_make_one_row_each(migrated: Db) -> None:
    engine = migrated.engine()
    for _ in range(2):
        async with engine.begin() as conn:
            await write_records(conn, _records(3))
    # and once more one record per transaction, as a replayed journal would
    for rec in _records(3):
        async with engine.begin() as conn:
            await write_records(conn, [rec])
    assert await _counts(migrated) == {"calls": 3, "legs": 3, "call_events": 6, "coverage_gaps": 0}


async def test_a_call_written_in_parts_is_one_complete_row(migrated: Db) -> None:
    engine = migrated.engine()
    first, *_, last = call_records(0)
    async with engine.begin() as conn:
        await write_records(conn, [check_record(*last)])  # the end arrives first
    async with engine.begin() as conn:
        await write_records(conn, [check_record(*first)])
    async with engine.connect() as conn:
        row = (await conn.execute(select(calls))).one()
    assert row.did == "+8809600000001"  # from the first part
    assert row.outcome == Outcome.ANSWERED and row.talk_s == 63.5  # kept from the last
    assert row.answered_at == T0 + timedelta(seconds=7)
    assert row.answered_at.tzinfo is not None and row.arrived_at == T0


async def test_an_event_seen_twice_keeps_its_first_copy(migrated: Db) -> None:
    engine = migrated.engine()
    ev = {"site": "dhaka", "event_key": "k1", "call_id": "c1", "at": T0, "name": "Hangup"}
    async with engine.begin() as conn:
        await write_records(
            conn,
            [
                check_record("call_events", {**ev, "fields": {"n": 1}}),
                check_record("call_events", {**ev, "fields": {"n": 2}}),
            ],
        )
    async with engine.begin() as conn:
        await write_records(conn, [check_record("call_events", {**ev, "fields": {"n": 3}})])
    async with engine.connect() as conn:
        rows = (await conn.execute(select(call_events.c.fields))).all()
    assert [r.fields for r in rows] == [{"n": 1}]


async def test_a_coverage_gap_is_opened_then_closed(migrated: Db) -> None:
    engine = migrated.engine()
    gap = {"site": "manila", "started_at": T0}
    async with engine.begin() as conn:
        await write_records(conn, [check_record("coverage_gaps", gap)])
    async with engine.begin() as conn:
        await write_records(
            conn, [check_record("coverage_gaps", {**gap, "ended_at": T0 + timedelta(minutes=3)})]
        )
    async with engine.connect() as conn:
        rows = (await conn.execute(select(coverage_gaps))).all()
    assert [(r.site, r.ended_at - r.started_at) for r in rows] == [("manila", timedelta(minutes=3))]
