"""The record store as the read-side services see it: one lazily opened engine, schema
checked, its faults turned into ``records-unavailable``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from ccbridge.services.errors import ServiceError
from ccbridge.services.ports import Runtime

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


class RecordsReader:
    """Reads the record store with its own engine (read-only, never through the writer),
    opened on first use."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._engine: AsyncEngine | None = None

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncEngine]:
        """The records store's engine, schema checked; faults inside the block become
        records-unavailable (a ServiceError raised inside passes unchanged)."""
        from sqlalchemy.exc import DBAPIError

        from ccbridge.store.engine import make_engine, missing_sqlite_file
        from ccbridge.store.migrate import SchemaError
        from ccbridge.store.readcheck import ensure_current

        # Opening a missing SQLite file would create an empty one: say so instead.
        path = await missing_sqlite_file(self._rt.config.store)
        if path is not None:
            raise ServiceError(
                "records-unavailable",
                f"no such database file: {path} (the bridge has recorded no calls there)",
            )
        if self._engine is None:
            # Connects lazily, but the first engine of a kind imports its driver (asyncpg:
            # tens of ms): built off the event loop.
            self._engine = await asyncio.to_thread(make_engine, self._rt.config.store)
        try:
            await ensure_current(self._engine)  # the head read once, off the loop
            yield self._engine
        except SchemaError as exc:
            raise ServiceError("records-unavailable", str(exc)) from None
        except (OSError, TimeoutError, DBAPIError) as exc:
            why = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
            raise ServiceError(
                "records-unavailable",
                f"the records store cannot be read: {why or type(exc).__name__}",
            ) from None
