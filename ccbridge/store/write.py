"""Idempotent batch writes: one upsert per table per batch, the same SQL on both engines.

A record's values replace the row's values for the columns it gives; columns it leaves
out (or gives as None) keep what the row has. So records may arrive in parts, twice, or
from two bridges, and a row ends up the same. ``call_events`` rows never change: a second
copy of an event is ignored (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from ccbridge.store.records import COLUMNS, Record
from ccbridge.store.schema import CONFLICT_KEYS, INSERT_ONLY, TABLES

_statements: dict[tuple[str, str, tuple[str, ...]], Insert] = {}


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
        given = set().union(*rows.values())
        names = tuple(n for n in COLUMNS[table] if n in given)
        out[(table, names)] = [
            row if len(row) == len(names) else {n: row.get(n) for n in names}
            for row in rows.values()
        ]
    return out


def upsert(dialect: str, table: str, names: tuple[str, ...]) -> Insert:
    """The statement for ``table``'s columns ``names`` on ``dialect`` ('sqlite' or
    'postgresql'), built once."""
    stmt = _statements.get((dialect, table, names))
    if stmt is not None:
        return stmt
    t = TABLES[table]
    ins = postgresql.insert(t) if dialect == "postgresql" else sqlite.insert(t)
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
