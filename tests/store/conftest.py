"""Store fixtures: every store test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.config.model import SecretValue
from ccbridge.config.store import StoreSettings
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from tests.store.access_world import BOOTSTRAP, World, make_world
from tests.store.pg import PASSWORD, PgCluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@dataclass
class Db:
    """One empty database on one engine, and a real way to take it away and back."""

    kind: str  # 'sqlite' or 'postgresql'
    settings: StoreSettings
    tmp: Path
    cluster: PgCluster | None = None
    _engines: list[AsyncEngine] = field(default_factory=list)
    _lock: sqlite3.Connection | None = None

    def engine(self) -> AsyncEngine:
        e = make_engine(self.settings)
        self._engines.append(e)
        return e

    async def upgrade(self) -> None:
        e = make_engine(self.settings)
        try:
            await upgrade(e)
        finally:
            await e.dispose()

    def down(self) -> None:
        """PostgreSQL: the server stops. SQLite: another process-like connection holds
        the write lock, so every write fails with 'database is locked'."""
        if self.cluster is not None:
            self.cluster.stop()
        else:
            assert self.settings.url.startswith("sqlite+aiosqlite:///")
            path = self.settings.url.removeprefix("sqlite+aiosqlite:///")
            self._lock = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._lock.execute("BEGIN EXCLUSIVE")

    def up(self) -> None:
        if self.cluster is not None:
            if not self.cluster.running():
                self.cluster.start()
        elif self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()
            self._lock = None

    async def dispose(self) -> None:
        self.up()
        for e in self._engines:
            await e.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    if request.param == "sqlite":
        path = tmp_path / "db" / "records.db"
        path.parent.mkdir()
        settings = StoreSettings(
            url=f"sqlite+aiosqlite:///{path}", journal=str(tmp_path / "records.journal")
        )
        return Db("sqlite", settings, tmp_path)
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    settings = StoreSettings(
        url=cluster.url(cluster.createdb()),
        password=SecretValue(PASSWORD, "test"),
        journal=str(tmp_path / "records.journal"),
    )
    return Db("postgresql", settings, tmp_path, cluster)


@pytest.fixture
async def db(db_target: Db) -> AsyncIterator[Db]:
    try:
        yield db_target
    finally:
        await db_target.dispose()


@pytest.fixture
async def migrated(db: Db) -> Db:
    await db.upgrade()
    return db


@pytest.fixture
async def access_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    """A started bridge over a migrated SQLite store with one user per role and a token
    each (tests/store/access_world.py), its secrets in the environment."""
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", BOOTSTRAP)
    w = await make_world(tmp_path)
    try:
        yield w
    finally:
        await w.bridge.stop()
