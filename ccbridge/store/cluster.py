"""Several bridges on one store: heartbeat rows, who is alive, and jobs that run once.

Every bridge of a deployment rewrites its row of ``bridges`` each heartbeat; the ones
seen within the alive window and not stopped are the cluster (GET /api/v1/cluster).

A job that must run once per interval whatever the number of bridges (the retention
purge) goes through ``run_once``: on PostgreSQL it takes a session advisory lock named
after the job (``pg_try_advisory_lock``: a bridge that finds it taken skips the round,
and a bridge that dies mid-job releases it with its connection), then reads in
``cluster_jobs`` when the job last ran anywhere and skips it when that was less than
half an interval ago. On SQLite there is one bridge (a file cannot be shared across
hosts): no lock is taken, only the last run is noted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Executable, Table, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ccbridge.store import dialects
from ccbridge.store.schema import bridges, cluster_jobs

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BridgeBeat:
    """One bridge as its last heartbeat said."""

    identity: str
    version: str
    started_at: datetime
    seen_at: datetime
    sites: tuple[str, ...]  # AMI links up
    sessions: int  # FastAGI route and lookup sessions served since it started
    stopped_at: datetime | None = None


def _upsert(conn: AsyncConnection, table: Table, key: str, values: dict[str, Any]) -> Executable:
    """INSERT ... ON CONFLICT (key) DO UPDATE, the same statement on both engines."""
    ins = dialects.insert(conn.dialect.name, table).values(**values)
    return ins.on_conflict_do_update(
        index_elements=[key], set_={k: ins.excluded[k] for k in values if k != key}
    )


async def beat(engine: AsyncEngine, b: BridgeBeat) -> None:
    """Write (or replace) the bridge's row: one upsert, one round trip."""
    values = {
        "identity": b.identity,
        "version": b.version,
        "started_at": b.started_at,
        "seen_at": b.seen_at,
        "stopped_at": None,
        "sites": list(b.sites),
        "sessions": b.sessions,
    }
    async with engine.begin() as conn:
        await conn.execute(_upsert(conn, bridges, "identity", values))


async def stopped(engine: AsyncEngine, identity: str, at: datetime) -> None:
    """A clean stop: the bridge leaves the cluster at once, not when its row ages out."""
    async with engine.begin() as conn:
        await conn.execute(
            update(bridges)
            .where(bridges.c.identity == identity)
            .values(stopped_at=at, seen_at=at, sites=[])
        )


async def alive(engine: AsyncEngine, now: datetime, within: float) -> list[BridgeBeat]:
    """The bridges seen in the last ``within`` seconds and not stopped, by identity."""
    since = now - timedelta(seconds=within)
    c = bridges.c
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(bridges)
                .where(c.seen_at >= since, c.stopped_at.is_(None))
                .order_by(c.identity)
            )
        ).all()
    return [
        BridgeBeat(
            r.identity,
            r.version,
            r.started_at,
            r.seen_at,
            tuple(str(s) for s in (r.sites or ()) if isinstance(s, str)),
            int(r.sessions),
        )
        for r in rows
    ]


def lock_key(name: str) -> int:
    """The job's advisory lock: a signed 64-bit number from its name (stable across
    bridges and versions, apart from any other application's keys by the prefix)."""
    digest = hashlib.sha256(f"ccbridge.job.{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def run_once(
    engine: AsyncEngine,
    name: str,
    every: float,
    now: Callable[[], datetime],
    bridge: str,
    job: Callable[[], Awaitable[T]],
) -> tuple[bool, T | None]:
    """Run ``job`` unless another bridge holds the job's lock or ran it less than
    ``every / 2`` seconds ago; ``(True, result)`` when it ran here, ``(False, None)``."""
    async with engine.connect() as conn:
        pg = conn.dialect.name == "postgresql"
        key = lock_key(name)
        if pg:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
            await conn.commit()
            if not got:
                return False, None
        try:
            last = (
                await conn.execute(select(cluster_jobs.c.ran_at).where(cluster_jobs.c.name == name))
            ).scalar()
            await conn.commit()
            started = now()
            if last is not None and (started - last).total_seconds() < every / 2:
                return False, None
            result = await job()
            values = {"name": name, "ran_at": started, "bridge": bridge}
            await conn.execute(_upsert(conn, cluster_jobs, "name", values))
            await conn.commit()
            return True, result
        finally:
            if pg:
                await conn.rollback()  # whatever failed above: the unlock must run
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()
