"""Idempotent writes on both engines: the same records twice make one row; a record in
parts builds one row; a value left out keeps what the row has; the record writer's way
through the driver writes the same rows as SQLAlchemy's."""

from __future__ import annotations

import asyncio
from datetime import timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.store.records import Record, check_record
from ccbridge.store.schema import Outcome, call_events, calls, coverage_gaps, legs
from ccbridge.store.write import write_batch, write_records
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


async def _write_both_ways(engine: AsyncEngine, batches: list[list[Record]], fast: bool) -> None:
    for batch in batches:
        if fast:
            await write_batch(engine, batch)
        else:
            async with engine.begin() as conn:
                await write_records(conn, batch)


@pytest.mark.parametrize("fast", [False, True], ids=["sqlalchemy", "driver"])
async def test_a_batch_mixing_rows_with_and_without_json_keeps_each_rows_json(
    migrated: Db, fast: bool
) -> None:
    # A call's end (no reasons) beside another call's decision (reasons) in one batch:
    # SQLAlchemy sent the missing reasons as JSON null, coalesce() kept that, and the
    # first call's reasons were gone.
    a = {"call_id": "A", "entry_site": "dhaka", "arrived_at": T0}
    b = {"call_id": "B", "entry_site": "dhaka", "arrived_at": T0}
    await _write_both_ways(
        migrated.engine(),
        [
            [check_record("calls", {**a, "reasons": ["caller_prefix"], "ivr_path": ["1"]})],
            [
                check_record("calls", {**a, "outcome": "answered"}),
                check_record("calls", {**b, "reasons": ["home_site_open"]}),
            ],
        ],
        fast,
    )
    async with migrated.engine().connect() as conn:
        rows = (await conn.execute(select(calls).order_by(calls.c.call_id))).all()
    assert [(r.call_id, r.reasons, r.ivr_path, r.outcome) for r in rows] == [
        ("A", ["caller_prefix"], ["1"], "answered"),
        ("B", ["home_site_open"], None, None),
    ]


def _apart(values: Any) -> dict[str, str]:
    """The key columns of a second copy: call ID and event key with an x before them."""
    return {k: "x" + values[k] for k in ("call_id", "event_key") if k in values}


async def test_the_drivers_way_writes_the_rows_sqlalchemy_writes(migrated: Db) -> None:
    # The same records through both ways into two copies of every row (call IDs apart):
    # every column reads back equal, instants in UTC and aware, JSON as given.
    ist = timezone(timedelta(hours=5, minutes=30))
    recs = [check_record(t, v) for n in range(40) for t, v in call_records(n)]
    recs.append(
        check_record(
            "calls",
            {
                "call_id": "c00000003",
                "entry_site": "dhaka",
                "arrived_at": T0.astimezone(ist),  # not in UTC: stored as UTC
                "reasons": ["caller_prefix", "ünïcode"],
                "static_fallback": True,
                "trunk_failovers": 2,
                "wait_s": 1.25,
            },
        )
    )
    engine = migrated.engine()
    await _write_both_ways(engine, [recs[i : i + 37] for i in range(0, len(recs), 37)], False)
    shifted = [Record(r.table, {**r.values, **_apart(r.values)}) for r in recs]
    await _write_both_ways(engine, [shifted[i : i + 37] for i in range(0, len(shifted), 37)], True)

    async with engine.connect() as conn:
        for t in (calls, legs, call_events):
            rows = (await conn.execute(select(t))).mappings().all()
            by_way: dict[bool, dict[str, Any]] = {False: {}, True: {}}
            for row in rows:
                d = {k: v for k, v in row.items() if k != "id"}
                cid = d.pop("call_id")
                key = (cid.removeprefix("x"), d.pop("event_key", "").removeprefix("x"))
                by_way[cid.startswith("x")][str(key)] = d
            assert by_way[True] == by_way[False] and len(by_way[True]) > 0, t.name
        if migrated.kind == "sqlite":  # the very same text, so ranges compare alike
            texts = (
                await conn.execute(text("SELECT call_id, arrived_at FROM calls ORDER BY 1"))
            ).all()
            stored = {cid: at for cid, at in texts}
            assert stored["c00000003"] == stored["xc00000003"] == "2026-11-28 14:00:00.000000"


async def _rows(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    async with engine.connect() as conn:
        return {
            t.name: [
                {k: v for k, v in row.items() if k != "id"}
                for row in (await conn.execute(select(t))).mappings().all()
            ]
            for t in (calls, legs, call_events)
        }


async def test_a_rows_parts_in_one_batch_make_the_row_its_parts_make_one_by_one(
    migrated: Db,
) -> None:
    # One batch: a call's parts merged into one row (PostgreSQL's upsert from its staging
    # table refuses to touch a row twice), a leg updated twice, an event given twice: the
    # rows are the ones the same records make written one per transaction, over a row the
    # database already holds (its values stay where the batch gives none).
    a = {"call_id": "A", "entry_site": "dhaka", "arrived_at": T0}
    leg = {"call_id": "A", "site": "dhaka", "linkedid": "1.1"}
    ev = {"site": "dhaka", "event_key": "k1", "call_id": "A", "at": T0, "name": "Hangup"}
    before = [check_record("calls", {**a, "did": "+8809600000001", "reasons": ["caller_prefix"]})]
    batch = [
        check_record("calls", {**a, "queue": "orders-en", "outcome": "abandoned"}),
        check_record("legs", {**leg, "queued_at": T0}),
        check_record("call_events", {**ev, "fields": {"n": "1"}}),
        check_record("calls", {**a, "outcome": "answered", "agent": "dac-agent2"}),
        check_record("call_events", {**ev, "fields": {"n": "2"}}),
        check_record("legs", {**leg, "answered_at": T0 + timedelta(seconds=7), "agent": "x"}),
        check_record("calls", {**a, "satisfaction": 4, "queue": None}),
        check_record("legs", {**leg, "agent": "dac-agent2", "queued_at": None}),
    ]
    engine = migrated.engine()
    await write_batch(engine, before)
    sent = await write_batch(engine, batch)
    assert sent == {"calls": 3, "legs": 3, "call_events": 2}  # records, as the metric counts
    fast = await _rows(engine)

    async with engine.begin() as conn:
        for t in (calls, legs, call_events):
            await conn.execute(t.delete())
    for rec in [*before, *batch]:
        async with engine.begin() as conn:
            await write_records(conn, [rec])
    assert fast == await _rows(engine)
    (row,) = fast["calls"]
    assert (row["did"], row["queue"], row["outcome"], row["agent"], row["satisfaction"]) == (
        "+8809600000001",
        "orders-en",
        "answered",
        "dac-agent2",
        4,
    )
    assert row["reasons"] == ["caller_prefix"]
    assert [e["fields"] for e in fast["call_events"]] == [{"n": "1"}]


async def test_two_bridges_writing_the_same_batches_at_once_make_one_record_each(
    migrated: Db,
) -> None:
    # Two engines (two bridges, each PostgreSQL session with its own staging tables)
    # write the same records at the same moment, in batches cut differently.
    recs = _records(60)
    one, two = migrated.engine(), migrated.engine()

    async def write(engine: AsyncEngine, size: int) -> None:
        for i in range(0, len(recs), size):
            await write_batch(engine, recs[i : i + size])

    await asyncio.gather(write(one, 50), write(two, 77))
    assert await _counts(migrated) == {
        "calls": 60,
        "legs": 60,
        "call_events": 120,
        "coverage_gaps": 0,
    }
    async with one.connect() as conn:
        done = (
            await conn.execute(
                select(func.count()).select_from(calls).where(calls.c.talk_s == 63.5)
            )
        ).scalar()
    assert done == 60
