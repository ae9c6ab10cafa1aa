"""The schema check for readers that run on the bridge's event loop (reports, retention).

``migrate.check_schema`` asks alembic for the head revision, which reads and compiles
the migration scripts from disk: tens of milliseconds on the loop. Here the head is read
once, in a thread, and each check is one query; only a schema that is not current takes
the full (slow, rare) path for its message.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.store.migrate import check_schema, head_revision

_head: str | None = None


async def ensure_current(engine: AsyncEngine) -> None:
    """Return when the database's schema is this code's; else raise migrate.SchemaError
    (or the connection's own error when the database cannot be reached)."""
    global _head
    if _head is None:
        _head = await asyncio.to_thread(head_revision)
    async with engine.connect() as conn:
        try:
            rev = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except DBAPIError:
            rev = None  # no version table: the full check says what the database is
    if rev != _head:
        await check_schema(engine)
