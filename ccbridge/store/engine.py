"""The asyncio engine for a StoreSettings: driver, password from its secret, SQLite pragmas."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ccbridge.config.store import StoreSettings

CONNECT_TIMEOUT = 5.0  # seconds: an unreachable PostgreSQL fails this fast, then backs off
SQLITE_BUSY_MS = 1000  # a writer locked out this long fails its batch and retries later


def engine_url(settings: StoreSettings) -> URL:
    url = make_url(settings.url)
    if settings.password is not None and settings.password.reveal():
        url = url.set(password=settings.password.reveal())
    return url


def sqlite_path(settings: StoreSettings) -> Path | None:
    """The database file of an SQLite store, None for PostgreSQL."""
    url = make_url(settings.url)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


async def missing_sqlite_file(settings: StoreSettings) -> Path | None:
    """An SQLite store's database file when it is not there, else None (PostgreSQL, or
    the file exists); the check off the event loop. Opening a missing file would create
    an empty one (or fail on a missing folder, which reads as "unreachable"): callers
    say what to do instead."""
    path = sqlite_path(settings)
    if path is not None and not await asyncio.to_thread(path.exists):
        return path
    return None


def import_driver(settings: StoreSettings) -> None:
    """Import the dialect and driver modules ``make_engine`` would import on first use.

    Blocking (~60-90 ms of CPU for PostgreSQL's dialect and asyncpg, ~10-20 ms for
    SQLite's, on this machine): ``ccbridge run`` calls it in a thread before it builds the
    bridge on the event loop, whose parts make their engines as they are built.
    """
    dialect = make_url(settings.url).get_dialect()
    dialect.import_dbapi()


def make_engine(settings: StoreSettings) -> AsyncEngine:
    """An engine that connects lazily; creating it touches neither network nor disk."""
    url = engine_url(settings)
    args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        # No pool_pre_ping: it costs a round trip per batch, and a connection the server
        # dropped fails its batch, is discarded by the pool, and the writer retries.
        args["connect_args"] = {"timeout": CONNECT_TIMEOUT}
    engine = create_async_engine(url, **args)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: report queries read while the writer writes. synchronous=FULL: a committed
    # batch survives power loss, so the journal may be truncated once it is committed.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.close()
