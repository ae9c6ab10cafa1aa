"""Idempotent batch writes: one upsert per table per batch, the same SQL on both engines.

A record's values replace the row's values for the columns it gives; columns it leaves
out (or gives as None) keep what the row has. So records may arrive in parts, twice, or
from two bridges, and a row ends up the same. ``call_events`` rows never change: a second
copy of an event is ignored (``ON CONFLICT DO NOTHING``).

Two ways in, the same conflict rules: ``write_records`` through SQLAlchemy (any caller,
any table), and ``write_batch``, the record writer's, with rows of plain values and a
row's parts in the batch merged: SQLite takes SQLAlchemy's compiled upsert through the
driver's own ``executemany`` (SQLAlchemy's per-row parameter processing was most of the
writer's cost on the loop), PostgreSQL a binary COPY into a staging table and one upsert
from it a table (one statement executed a row was most of the server's CPU; BENCHMARKS.md
§9b).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, func, select
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from ccbridge.store import dialects
from ccbridge.store.records import COLUMNS, Record
from ccbridge.store.schema import CONFLICT_KEYS, INSERT_ONLY, TABLES

_statements: dict[tuple[str, str, tuple[str, ...]], Insert] = {}
# JSON columns per table: a row that leaves one out must not send JSON ``null`` for it.
_JSON_COLUMNS: dict[str, frozenset[str]] = {
    name: frozenset(c.name for c in t.columns if isinstance(c.type, JSON))
    for name, t in TABLES.items()
}


def merge(records: Iterable[Record]) -> dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]]:
    """Rows per (table, the columns the batch gives), one per key, later values over
    earlier ones: PostgreSQL refuses an upsert that touches the same row twice in one
    statement, and fewer rows and columns cost less."""
    by_table: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for rec in records:
        rows = by_table.setdefault(rec.table, {})
        key = rec.key()
        row = rows.get(key)
        if row is None:
            rows[key] = {k: v for k, v in rec.values.items() if v is not None}
        elif rec.table not in INSERT_ONLY:
            row.update((k, v) for k, v in rec.values.items() if v is not None)
    out: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
    for table, rows in by_table.items():
        # executemany needs the same columns in every row: the ones any row gives, in
        # table order (so the statement cache sees few shapes); None means "keep".
        # Except JSON columns: SQLAlchemy sends None there as JSON null, which is not
        # SQL NULL, so coalesce() took it and a call's reasons were erased by a batch that
        # held another call's decision. Rows are grouped by the JSON columns they give.
        json_cols = _JSON_COLUMNS[table]
        groups: dict[frozenset[str], list[dict[str, Any]]] = {}
        for row in rows.values():
            groups.setdefault(json_cols.intersection(row), []).append(row)
        for has_json, group in groups.items():
            given = set().union(*group)
            names = tuple(
                n for n in COLUMNS[table] if n in given and (n not in json_cols or n in has_json)
            )
            out[(table, names)] = [
                row if len(row) == len(names) else {n: row.get(n) for n in names} for row in group
            ]
    return out


def upsert(dialect: str, table: str, names: tuple[str, ...]) -> Insert:
    """The statement for ``table``'s columns ``names`` on ``dialect`` ('sqlite' or
    'postgresql'), built once."""
    stmt = _statements.get((dialect, table, names))
    if stmt is not None:
        return stmt
    t = TABLES[table]
    ins = dialects.insert(dialect, t)
    keys = CONFLICT_KEYS[table]
    updates = {
        name: func.coalesce(ins.excluded[name], t.c[name]) for name in names if name not in keys
    }
    if table in INSERT_ONLY or not updates:  # nothing to update: only the key was given
        stmt = ins.on_conflict_do_nothing(index_elements=list(keys))
    else:
        stmt = ins.on_conflict_do_update(index_elements=list(keys), set_=updates)
    _statements[(dialect, table, names)] = stmt
    return stmt


async def write_records(conn: AsyncConnection, records: Iterable[Record]) -> dict[str, int]:
    """Write the records in the connection's transaction; rows sent per table."""
    dialect = conn.dialect.name
    sent: dict[str, int] = {}
    for (table, names), rows in merge(records).items():
        if table == "audit":  # chained, not upserted: see audit.py
            from ccbridge.store.audit import append_rows

            await append_rows(conn, rows)
            sent[table] = sent.get(table, 0) + len(rows)
            continue
        await conn.execute(upsert(dialect, table, names), rows)
        sent[table] = sent.get(table, 0) + len(rows)
    return sent


# -- the record writer's way: the driver's executemany ---------------------------------

_Convert = Callable[[Any], Any]
_compiled: dict[tuple[str, str, tuple[str, ...]], tuple[str, list[tuple[int, _Convert]]]] = {}


def _sqlite_instant(v: datetime) -> str:
    # SQLAlchemy's SQLite DATETIME text (UtcDateTime: in UTC, without the offset), so
    # rows written either way compare and sort alike: "YYYY-MM-DD HH:MM:SS.ffffff".
    if v.tzinfo is not UTC:
        v = v.astimezone(UTC)
    return v.isoformat(" ", "microseconds")[:26]


_json_text = json.JSONEncoder().encode  # json.dumps(v): SQLAlchemy's JSON serializer


def compiled(
    dialect: Dialect, table: str, names: tuple[str, ...]
) -> tuple[str, list[tuple[int, _Convert]]]:
    """The upsert's SQL in the driver's own parameter style, and which positions need a
    conversion (instants on SQLite, JSON on both), built once per shape."""
    key = (dialect.name, table, names)
    got = _compiled.get(key)
    if got is not None:
        return got
    c = upsert(dialect.name, table, names).compile(dialect=dialect, column_keys=list(names))
    assert c.positiontup is not None and tuple(c.positiontup) == names, c.positiontup
    cols = COLUMNS[table]
    json_cols = _JSON_COLUMNS[table]
    convert: list[tuple[int, _Convert]] = []
    for i, n in enumerate(names):
        if n in json_cols:
            convert.append((i, _json_text))
        elif cols[n].instant and dialect.name == "sqlite":
            convert.append((i, _sqlite_instant))
    _compiled[key] = got = (c.string, convert)
    return got


def driver_rows(
    dialect: Dialect, records: Iterable[Record]
) -> tuple[list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]], dict[str, int]]:
    """The batch as (table, columns, rows of plain values) per table, and records per
    table.

    Every row gives every column (None is SQL NULL, which the upsert's coalesce() keeps
    as "no value"), so one statement serves a table. A row's parts in the same batch (a
    call's decision and its end, a leg's updates) are merged into one row, later values
    over earlier ones as the upserts in a row would leave it: one upsert a row, not one a
    part (the calls table's indexes cost SQLite most of a write), and PostgreSQL's
    ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` refuses to touch a row twice. Rows
    of insert-only tables are left as they come (the first copy of an event wins either
    way)."""
    by_table: dict[str, list[list[Any]]] = {}
    keyed: dict[str, dict[tuple[Any, ...], list[Any]]] = {}
    specs: dict[str, tuple[tuple[str, ...], list[tuple[int, _Convert]], tuple[int, ...]]] = {}
    counts: dict[str, int] = {}
    for rec in records:
        table = rec.table
        spec = specs.get(table)
        if spec is None:
            names = tuple(COLUMNS[table])
            keys = (
                () if table in INSERT_ONLY else tuple(names.index(k) for k in CONFLICT_KEYS[table])
            )
            spec = specs[table] = (names, compiled(dialect, table, names)[1], keys)
            if dialect.name == "postgresql":  # compiled here, in the thread, once
                from_stage_sql(dialect, table, names)
            by_table[table], keyed[table], counts[table] = [], {}, 0
        names, convert, keys = spec
        get = rec.values.get
        vals = [get(n) for n in names]
        for i, f in convert:
            v = vals[i]
            if v is not None:
                vals[i] = f(v)
        counts[table] += 1
        if keys:
            key = tuple([vals[i] for i in keys])
            row = keyed[table].get(key)
            if row is not None:
                for i, v in enumerate(vals):
                    if v is not None:
                        row[i] = v
                continue
            keyed[table][key] = vals
        by_table[table].append(vals)
    statements = [
        (table, specs[table][0], [tuple(row) for row in by_table[table]])
        for table in TABLES  # one order for every batch: see from_stage_sql
        if table in by_table
    ]
    return statements, counts


# PostgreSQL: a batch's rows go by binary COPY into a session's staging table, then one
# INSERT ... SELECT ... ON CONFLICT a table: the server's cost a row was most of the
# machine's CPU at 2,000 calls/s with one upsert executed a row (BENCHMARKS.md §9b).
STAGE_PREFIX = "ccb_stage_"
_staged: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_from_stage: dict[tuple[str, tuple[str, ...]], str] = {}


def from_stage_sql(dialect: Dialect, table: str, names: tuple[str, ...]) -> str:
    """The upsert of ``table``'s columns ``names`` from its staging table: the same
    conflict rule as ``upsert`` (coalesce over the row's values; events: nothing)."""
    key = (table, names)
    sql = _from_stage.get(key)
    if sql is not None:
        return sql
    t = TABLES[table]
    stage = sa_table(STAGE_PREFIX + table, *(sa_column(n) for n in names), schema="pg_temp")
    keys = CONFLICT_KEYS[table]
    # In key order: two bridges writing the same rows lock them in the same order (tables
    # too, see driver_rows), so neither waits for the other in a circle (PostgreSQL
    # aborted one as a deadlock when their batches were cut differently).
    rows = select(*(stage.c[n] for n in names)).order_by(*(stage.c[k] for k in keys))
    ins = dialects.insert("postgresql", t).from_select(list(names), rows)
    updates = {
        name: func.coalesce(ins.excluded[name], t.c[name]) for name in names if name not in keys
    }
    if table in INSERT_ONLY or not updates:
        stmt = ins.on_conflict_do_nothing(index_elements=list(keys))
    else:
        stmt = ins.on_conflict_do_update(index_elements=list(keys), set_=updates)
    _from_stage[key] = sql = str(stmt.compile(dialect=dialect))
    return sql


async def _pg_copy(driver: Any, dialect: Dialect, statements: Sequence[Any]) -> None:
    """The batch through the staging tables, in one transaction (asyncpg)."""
    have = _staged.setdefault(driver, set())
    for table, names, _ in statements:
        if table not in have:
            # Temporary: the session's own (two bridges never see each other's rows);
            # emptied at each commit. Made outside the batch's transaction, so a batch
            # that fails does not take it away unnoticed.
            cols = ", ".join(names)
            await driver.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE_PREFIX}{table} "
                f"ON COMMIT DELETE ROWS AS SELECT {cols} FROM {table} WITH NO DATA"
            )
            have.add(table)
    async with driver.transaction():
        for table, names, rows in statements:
            await driver.copy_records_to_table(
                STAGE_PREFIX + table, records=rows, columns=names, schema_name="pg_temp"
            )
            await driver.execute(from_stage_sql(dialect, table, names))


class DriverError(Exception):
    """The driver refused the batch (its own exception is the cause): the database is
    down or locked, or the batch holds a value the database will not take."""


async def write_batch(engine: AsyncEngine, records: Sequence[Record]) -> dict[str, int]:
    """``write_records`` in one transaction of its own, through the driver's executemany:
    rows sent per table. DriverError when the driver fails mid-batch (nothing of it is
    committed); SQLAlchemy's errors when no connection could be had."""
    if any(r.table == "audit" for r in records):  # chained, see audit.py: the other way
        async with engine.begin() as conn:
            return await write_records(conn, records)
    async with engine.connect() as conn:
        dialect = conn.dialect
        # Off the loop: a batch's merge and rows are ~10 ms of Python at 2,000 records.
        statements, sent = await asyncio.to_thread(driver_rows, dialect, records)
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        try:
            if dialect.name == "postgresql":  # asyncpg
                await _pg_copy(driver, dialect, statements)
            else:  # aiosqlite: one thread hop a statement
                await driver.execute("BEGIN IMMEDIATE")
                for table, names, out in statements:
                    await driver.executemany(compiled(dialect, table, names)[0], out)
                await driver.commit()
        except BaseException as exc:
            # Its state is unknown (mid-transaction, or an operation cut by a timeout):
            # closed, which rolls back; the pool opens a new one.
            with contextlib.suppress(Exception):
                await conn.invalidate()
            if isinstance(exc, Exception):
                raise DriverError(f"{exc.__class__.__name__}: {exc}") from exc
            raise
    return sent
