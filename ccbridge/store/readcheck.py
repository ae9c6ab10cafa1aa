"""The schema check for readers that run on the bridge's event loop (reports, retention).

``migrate.check_schema`` inspects the database's tables for its message. Here each check
is one query against the packaged head (its scripts read once a process, in a thread:
``migrate.load_revisions``); only a schema that is not current takes the full (slower,
rare) path for its message.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.store.migrate import check_schema, head_revision, load_revisions


async def ensure_current(engine: AsyncEngine) -> None:
    """Return when the database's schema is this code's; else raise migrate.SchemaError
    (or the connection's own error when the database cannot be reached)."""
    await load_revisions()
    head = head_revision()
    async with engine.connect() as conn:
        try:
            rev = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except DBAPIError:
            rev = None  # no version table: the full check says what the database is
    if rev != head:
        await check_schema(engine)
