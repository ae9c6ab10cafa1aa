"""Schema versions: apply the packaged alembic migrations, and check a database's revision."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaState(StrEnum):
    CURRENT = "current"  # at this code's head revision
    EMPTY = "empty"  # no ccbridge tables yet
    BEHIND = "behind"  # an older revision this code can upgrade
    UNKNOWN = "unknown"  # a revision (or tables) this code does not know


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    state: SchemaState
    current: str | None  # the database's revision
    head: str  # this code's newest revision

    @property
    def message(self) -> str:
        upgrade = "run `ccbridge db upgrade CONFIG`"
        if self.state is SchemaState.CURRENT:
            return f"schema at revision {self.head} (current)"
        if self.state is SchemaState.EMPTY:
            return f"the database has no ccbridge schema yet: {upgrade}"
        if self.state is SchemaState.BEHIND:
            return (
                f"the database schema is at revision {self.current}, this ccbridge needs "
                f"{self.head}: {upgrade}"
            )
        if self.current is None:
            return (
                "the database has tables but no ccbridge schema version: refusing to use "
                "it (another application's database?)"
            )
        return (
            f"the database schema is at revision {self.current}, which this ccbridge does "
            f"not know (written by a newer version?): refusing to use it"
        )


class SchemaError(Exception):
    """The database's schema is not the one this code writes: the message says what to do."""

    def __init__(self, status: SchemaStatus) -> None:
        super().__init__(status.message)
        self.status = status


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # env.py migrates on the connection it is given: the engine (and its secret
    # password) stay in ccbridge, never in an alembic.ini.
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def _status(connection: Connection) -> SchemaStatus:
    head = head_revision()
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        tables = set(inspect(connection).get_table_names())
        state = SchemaState.UNKNOWN if tables else SchemaState.EMPTY
        return SchemaStatus(state, None, head)
    if current == head:
        return SchemaStatus(SchemaState.CURRENT, current, head)
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    state = SchemaState.BEHIND if current in known else SchemaState.UNKNOWN
    return SchemaStatus(state, current, head)


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    """Where the database stands; connection errors propagate (the database is down)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_status)


async def check_schema(engine: AsyncEngine) -> SchemaStatus:
    """The status when the schema is current; SchemaError otherwise."""
    status = await schema_status(engine)
    if status.state is not SchemaState.CURRENT:
        raise SchemaError(status)
    return status


async def upgrade(engine: AsyncEngine) -> tuple[SchemaStatus, SchemaStatus]:
    """Apply every migration the database lacks; (before, after). A schema this code does
    not know is refused (SchemaError), never migrated."""
    async with engine.begin() as conn:
        before = await conn.run_sync(_status)
        if before.state is SchemaState.UNKNOWN:
            raise SchemaError(before)
        if before.state is not SchemaState.CURRENT:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
        after = await conn.run_sync(_status)
    return before, after
