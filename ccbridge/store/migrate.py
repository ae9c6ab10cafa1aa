"""Schema versions: apply the packaged alembic migrations, and check a database's revision.

Only ``upgrade`` imports alembic. The check every bridge runs at start reads the
revision graph from the migration files' ``revision``/``down_revision`` lines and the
database's ``alembic_version`` row itself: alembic with mako and pygments holds ~10 MB
of a running bridge's RSS (BENCHMARKS.md section 4) for a check that needs neither.
``tests/store/test_migrations.py`` holds the graph read here equal to alembic's.
"""

from __future__ import annotations

import ast
import asyncio
import functools
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"  # alembic's default, which env.py keeps


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
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # env.py migrates on the connection it is given: the engine (and its secret
    # password) stay in ccbridge, never in an alembic.ini.
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def revisions() -> dict[str, tuple[str, ...]]:
    """Each packaged revision and the revisions it follows, read from the scripts'
    module-level ``revision`` and ``down_revision`` assignments (never imported)."""
    graph: dict[str, tuple[str, ...]] = {}
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        values: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    values[target.id] = ast.literal_eval(node.value)
        rev, down = values.get("revision"), values.get("down_revision")
        if not isinstance(rev, str):
            continue  # not a migration (the package's __init__.py)
        if isinstance(down, str):
            graph[rev] = (down,)
        else:  # None for the first; a tuple where branches merge
            graph[rev] = tuple(str(d) for d in down) if isinstance(down, tuple | list) else ()
    return graph


def head_revision() -> str:
    graph = revisions()
    followed = {d for downs in graph.values() for d in downs}
    heads = [rev for rev in graph if rev not in followed]
    assert len(heads) == 1, f"the package must ship one migration head, not {heads}"
    return heads[0]


def _current_revision(connection: Connection) -> str | None:
    """The database's revision as alembic stamped it; several rows (a branched history
    this code never writes) read as one name no revision has."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    result = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    stamped: list[object] = list(result.scalars())
    found = sorted(str(r) for r in stamped)
    return "+".join(found) if found else None


def _status(connection: Connection) -> SchemaStatus:
    head = head_revision()
    current = _current_revision(connection)
    if current is None:
        tables = set(inspect(connection).get_table_names())
        state = SchemaState.UNKNOWN if tables else SchemaState.EMPTY
        return SchemaStatus(state, None, head)
    if current == head:
        return SchemaStatus(SchemaState.CURRENT, current, head)
    state = SchemaState.BEHIND if current in revisions() else SchemaState.UNKNOWN
    return SchemaStatus(state, current, head)


async def load_revisions() -> None:
    """Read and parse the packaged revisions (~10-20 ms of file reads and ``ast.parse``)
    in a thread, the first time in a process: ``revisions`` keeps them, so the checks that
    follow on the loop find them read."""
    if revisions.cache_info().currsize == 0:
        await asyncio.to_thread(revisions)


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    """Where the database stands; connection errors propagate (the database is down)."""
    await load_revisions()
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
            from alembic import command

            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
        after = await conn.run_sync(_status)
    return before, after
