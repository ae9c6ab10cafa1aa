"""The bridge's side of access: the store engine users and tokens are read from, and the
audit trail's writer (a RecordWriter with a journal of its own, beside the records').

Start-up: a database whose schema is not this version's (never upgraded, or newer)
turns users and the audit trail off with one warning: the bootstrap token still works
and audit rows go to the log. An unreachable database does not: tokens answer 503
until it is back, and audit rows wait in the journal.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.access.audit import AuditTrail
from ccbridge.config.model import Config
from ccbridge.config.store import StoreSettings
from ccbridge.store.engine import make_engine, missing_sqlite_file
from ccbridge.store.migrate import SchemaError, check_schema
from ccbridge.store.writer import RecordWriter

log = logging.getLogger("ccbridge.access")


def audit_journal(settings: StoreSettings) -> Path:
    """The audit writer's journal: the records journal's path with ``-audit``."""
    p = Path(settings.journal)
    return p.with_name(p.name + "-audit")


class AccessStore:
    def __init__(self, config: Config) -> None:
        self.settings = config.store
        self.engine: AsyncEngine | None = make_engine(config.store)  # connects lazily
        # Its own registry: the records writer's metric names are the records'.
        writer = RecordWriter(
            self.engine,
            audit_journal(config.store),
            queue_size=max(1000, config.store.queue_size // 10),
            batch_size=min(200, config.store.batch_size),
            flush_interval=config.store.flush_interval,
            fsync_interval=config.store.fsync_interval,
        )
        self.trail: AuditTrail | None = AuditTrail(writer)
        self._started = False

    async def start(self) -> None:
        path = await missing_sqlite_file(self.settings)
        if path is not None:
            self._off(f"no database file {path}: run `ccbridge db upgrade CONFIG`")
            return
        assert self.engine is not None
        try:
            await check_schema(self.engine)
        except SchemaError as exc:
            # The check's pooled connection would otherwise outlive the bridge.
            await self.engine.dispose()
            self._off(str(exc))
            return
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning(
                "user store unreachable at start (%s): tokens answer 503 until it is back",
                type(exc).__name__,
            )
        assert self.trail is not None
        await self.trail.start()
        self._started = True

    def _off(self, why: str) -> None:
        log.warning(
            "users and the audit trail are off (%s): only bridge.api_token works, "
            "audit rows go to the log",
            why,
        )
        self.engine = None
        self.trail = None

    async def stop(self) -> None:
        if self._started and self.trail is not None:
            await self.trail.stop()
        self._started = False
        if self.engine is not None:
            await self.engine.dispose()
