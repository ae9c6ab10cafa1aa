"""Schema migrations on both engines: up from empty, the result matches schema.py, and a
schema this code does not know is refused with a message (never migrated or used)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from ccbridge.config.store import StoreSettings
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import (
    SchemaError,
    SchemaState,
    alembic_config,
    check_schema,
    head_revision,
    revisions,
    schema_status,
    upgrade,
)
from ccbridge.store.schema import metadata
from tests.store.conftest import Db


def _diff(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, metadata))


async def test_upgrade_from_empty_gives_the_schema_of_schema_py(db: Db) -> None:
    engine = db.engine()
    assert (await schema_status(engine)).state is SchemaState.EMPTY
    before, after = await upgrade(engine)
    assert before.state is SchemaState.EMPTY and before.current is None
    assert after.state is SchemaState.CURRENT and after.current == head_revision()
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
        tables = set(metadata.tables)
        names = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
    assert tables | {"alembic_version"} == names
    assert (await check_schema(engine)).current == head_revision()


async def test_upgrade_twice_changes_nothing(db: Db) -> None:
    engine = db.engine()
    await upgrade(engine)
    before, after = await upgrade(engine)
    assert before == after and after.state is SchemaState.CURRENT


async def test_an_unknown_revision_is_refused_and_left_alone(db: Db) -> None:
    engine = db.engine()
    await upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    status = await schema_status(engine)
    assert status.state is SchemaState.UNKNOWN
    for attempt in (check_schema, upgrade):
        try:
            await attempt(engine)
        except SchemaError as exc:
            assert "revision f00d, which this ccbridge does not know" in str(exc)
        else:
            raise AssertionError(f"{attempt.__name__} accepted an unknown schema")
    async with engine.connect() as conn:
        got = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert got == "f00d"


async def test_foreign_tables_without_a_version_are_refused(db: Db) -> None:
    engine = db.engine()
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    status = await schema_status(engine)
    assert status.state is SchemaState.UNKNOWN and status.current is None
    assert "no ccbridge schema version" in status.message
    try:
        await upgrade(engine)
    except SchemaError:
        pass
    else:
        raise AssertionError("upgrade migrated a database holding another application's tables")


def test_the_revision_graph_read_from_the_scripts_is_alembics() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert head_revision() == script.get_current_head()
    theirs = {}
    for rev in script.walk_revisions():
        down = rev.down_revision
        theirs[rev.revision] = (down,) if isinstance(down, str) else tuple(down or ())
    assert revisions() == theirs


async def test_an_older_revision_is_behind_and_upgraded(db: Db) -> None:
    engine = db.engine()
    await upgrade(engine)
    older = revisions()[head_revision()][0]
    async with engine.begin() as conn:
        await conn.execute(text(f"UPDATE alembic_version SET version_num = '{older}'"))
    status = await schema_status(engine)
    assert status.state is SchemaState.BEHIND and status.current == older
    assert "run `ccbridge db upgrade CONFIG`" in status.message


def test_the_start_up_check_loads_neither_alembic_nor_cryptography(tmp_path: Path) -> None:
    """What a running bridge imports is what it holds in RSS (BENCHMARKS.md section 4)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    asyncio.run(_upgrade(url))
    script = (
        "import asyncio, sys\n"
        "import ccbridge.app\n"
        "from ccbridge.config.store import StoreSettings\n"
        "from ccbridge.store.engine import make_engine\n"
        "from ccbridge.store.migrate import check_schema\n"
        f"engine = make_engine(StoreSettings(enabled=True, url={url!r}))\n"
        "print(asyncio.run(check_schema(engine)).state)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'cryptography'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")
    assert out[:2] == ["current", "[]"], out


async def _upgrade(url: str) -> None:
    engine = make_engine(StoreSettings(enabled=True, url=url))
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
