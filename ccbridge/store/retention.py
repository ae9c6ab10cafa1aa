"""Retention and erasure: purge records older than ``records.retention_days`` and audit
rows older than ``records.audit_retention_days`` (a background job in the bridge, or
``ccbridge records purge``; the audit chain stays verifiable), and remove a caller's
number from every record (``ccbridge records erase --number N``), leaving an ``erased``
marker.

Both work in small transactions (``BATCH`` calls each) so the record writer, which
shares the database, is never locked out for long. Both delete the calls' recordings
(issue 14): their objects in central storage first (``delete_objects``, off the event
loop), then their index rows, so a failed delete leaves rows to retry from, never an
object nobody can find.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.config.store import StoreSettings
from ccbridge.lifecycle import Rounds, cancel_and_wait
from ccbridge.store.schema import (
    agent_activity,
    agent_rollup,
    call_events,
    calls,
    coverage_gaps,
    legs,
    report_rollup,
    report_rollup_days,
)

# Deletes recordings' objects from central storage by key; the number deleted.
DeleteObjects = Callable[[list[str]], Awaitable[int]]


async def _drop_recordings(conn: Any, ids: list[str], delete_objects: DeleteObjects | None) -> int:
    from ccbridge.recording import index

    keys = await index.keys_of_calls(conn, ids)
    if keys:
        if delete_objects is None:
            log.warning("%d recordings' files left in storage: no recording: section", len(keys))
        else:
            await delete_objects(keys)
    return await index.delete_calls(conn, ids)


log = logging.getLogger("ccbridge.store.retention")

BATCH = 2000
JOB_NAME = "retention"  # its name among the once-only jobs (cluster_jobs)
ERASED = "erased"  # what an erased number reads, in calls.caller_number and event fields


async def _purge_rollup(conn: Any, before: datetime) -> int:
    """Drop the interval and agent rollup of every day that began before ``before`` (its calls
    are purged: the day is partial now); day rows dropped."""
    d, r = report_rollup_days.c, report_rollup.c
    last: dict[str, datetime] = {}
    for site, end in (
        await conn.execute(select(d.site, d.end_at).where(d.start_at < before))
    ).all():
        last[site] = max(last.get(site, end), end)
    for site, end in last.items():
        # A site's rolled days never overlap: its rows before the last purged day's end
        # are those days' rows.
        await conn.execute(
            delete(report_rollup).where(r.site == site, r.slot < int(end.timestamp()) // 900)
        )
        a = agent_rollup.c
        await conn.execute(
            delete(agent_rollup).where(a.site == site, a.slot < int(end.timestamp()) // 900)
        )
    gone = await conn.execute(delete(report_rollup_days).where(d.start_at < before))
    return int(gone.rowcount)


def cutoff(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


async def purge(
    engine: AsyncEngine, before: datetime, delete_objects: DeleteObjects | None = None
) -> dict[str, int]:
    """Delete every call that arrived before ``before`` with its legs, events and
    recordings, the agent activity before it, and the coverage gaps that ended before it;
    rows deleted per table. The interval rollup of the days that began before it goes
    first: a report never reads a rolled day whose calls are partly gone."""
    gone = dict.fromkeys(
        (
            "calls",
            "legs",
            "call_events",
            "recordings",
            "agent_activity",
            "coverage_gaps",
            "report_rollup_days",
        ),
        0,
    )
    while True:
        async with engine.begin() as conn:
            ids: list[str] = list(
                (
                    await conn.execute(
                        select(calls.c.call_id).where(calls.c.arrived_at < before).limit(BATCH)
                    )
                )
                .scalars()
                .all()
            )
            if not ids:
                break
            for table in (call_events, legs):
                r = await conn.execute(delete(table).where(table.c.call_id.in_(ids)))
                gone[table.name] += r.rowcount
            gone["recordings"] += await _drop_recordings(conn, ids, delete_objects)
            r = await conn.execute(delete(calls).where(calls.c.call_id.in_(ids)))
            gone["calls"] += r.rowcount
    async with engine.begin() as conn:
        gone["report_rollup_days"] += await _purge_rollup(conn, before)
    async with engine.begin() as conn:
        r = await conn.execute(delete(agent_activity).where(agent_activity.c.at < before))
        gone["agent_activity"] += r.rowcount
        r = await conn.execute(
            delete(coverage_gaps).where(
                coverage_gaps.c.ended_at.is_not(None), coverage_gaps.c.ended_at < before
            )
        )
        gone["coverage_gaps"] += r.rowcount
    return gone


def _variants(number: str) -> list[str]:
    """The number as given, with and without its leading '+': how AMI and the AGI may
    each have written it."""
    bare = number.strip().lstrip("+")
    return list(dict.fromkeys([number.strip(), bare, f"+{bare}"]))


def _scrub(value: Any, digits: str) -> Any:
    """An event's fields with every text holding the number's digits replaced."""
    if isinstance(value, str):
        return ERASED if digits in "".join(ch for ch in value if ch.isdigit()) else value
    if isinstance(value, dict):
        return {k: _scrub(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, digits) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Erased:
    calls: int
    events: int
    recordings: int = 0


async def erase_number(
    engine: AsyncEngine, number: str, delete_objects: DeleteObjects | None = None
) -> Erased:
    """Replace ``number`` by ``erased`` in calls.caller_number and in the fields of those
    calls' events (found over the index calls(caller_number)), and delete the calls'
    recordings (the caller's voice)."""
    digits = "".join(ch for ch in number if ch.isdigit())
    n_calls = n_events = n_recordings = 0
    while True:
        async with engine.begin() as conn:
            ids: list[str] = list(
                (
                    await conn.execute(
                        select(calls.c.call_id)
                        .where(calls.c.caller_number.in_(_variants(number)))
                        .limit(BATCH)
                    )
                )
                .scalars()
                .all()
            )
            if not ids:
                break
            ev = call_events.c
            rows = (await conn.execute(select(ev.id, ev.fields).where(ev.call_id.in_(ids)))).all()
            for row in rows:
                scrubbed = _scrub(row.fields, digits)
                if scrubbed != row.fields:
                    await conn.execute(
                        update(call_events).where(ev.id == row.id).values(fields=scrubbed)
                    )
                    n_events += 1
            n_recordings += await _drop_recordings(conn, ids, delete_objects)
            r = await conn.execute(
                update(calls).where(calls.c.call_id.in_(ids)).values(caller_number=ERASED)
            )
            n_calls += r.rowcount
    return Erased(n_calls, n_events, n_recordings)


async def purge_all(
    engine: AsyncEngine,
    now: datetime,
    days: int,
    audit_days: int,
    actor: str,
    delete_objects: DeleteObjects | None = None,
) -> dict[str, int]:
    """One retention round: records past ``days`` and audit rows past ``audit_days``
    (0: kept for ever); rows deleted per table. ``actor`` is who the purge's own audit
    row names ("retention" for the bridge's job, "cli:USER" by hand)."""
    from ccbridge.store.audit import purge_before

    gone = await purge(engine, cutoff(now, days), delete_objects) if days > 0 else {}
    if audit_days > 0:
        source = "cli" if actor.startswith("cli") else "bridge"
        done = await purge_before(
            engine, cutoff(now, audit_days), actor=actor, source=source, now=now
        )
        gone["audit"] = done.rows
    return gone


class RetentionJob:
    """Purges every ``interval`` seconds while the bridge runs, on its own engine; a round
    with no database yet (no SQLite file, no schema) or a database down is skipped and
    said in ``last_error``: the next round tries again."""

    def __init__(
        self,
        settings: StoreSettings,
        days: int,
        interval: float,
        now: Callable[[], datetime],
        first_delay: float = 60.0,
        audit_days: int = 0,
        delete_objects: DeleteObjects | None = None,
    ) -> None:
        self.settings = settings
        self.delete_objects = delete_objects
        self.first_delay = first_delay  # the bridge settles (links, resyncs) first
        self.days = days
        self.audit_days = audit_days
        self.interval = interval
        self._now = now
        self._engine: AsyncEngine | None = None
        self._task: asyncio.Task[None] | None = None
        # Several bridges on one PostgreSQL purge once per interval between them
        # (store/cluster.py run_once): this bridge's name in cluster_jobs.
        self.identity = "bridge"
        self.skipped = 0  # rounds another bridge had done (or was doing)
        self.rounds = 0
        self.purged: dict[str, int] = {}
        self._rounds = Rounds("retention purge skipped", log)

    async def run_once(self) -> dict[str, int]:
        from ccbridge.cluster import wall_now
        from ccbridge.store.cluster import run_once
        from ccbridge.store.engine import make_engine, missing_sqlite_file
        from ccbridge.store.readcheck import ensure_current

        path = await missing_sqlite_file(self.settings)
        if path is not None:
            raise FileNotFoundError(f"no record database yet at {path}")
        if self._engine is None:
            self._engine = make_engine(self.settings)
        await ensure_current(self._engine)  # never purge a schema this code does not know
        engine = self._engine
        ran, got = await run_once(
            engine,
            JOB_NAME,
            self.interval,
            wall_now,
            self.identity,
            lambda: purge_all(
                engine,
                self._now(),
                self.days,
                self.audit_days,
                "retention",
                self.delete_objects,
            ),
        )
        if not ran or got is None:
            self.skipped += 1
            return {}
        gone = got
        self.rounds += 1
        for k, v in gone.items():
            self.purged[k] = self.purged.get(k, 0) + v
        if any(gone.values()):
            log.info("retention: purged %s", ", ".join(f"{v} {k}" for k, v in gone.items()))
        return gone

    @property
    def last_error(self) -> str | None:
        return self._rounds.last_error

    async def start(self) -> None:
        if (self.days > 0 or self.audit_days > 0) and self._task is None:
            # No database yet is the normal state of a bridge not recording: quiet.
            loop = self._rounds.run(
                self.run_once, self.first_delay, self.interval, quiet=(FileNotFoundError,)
            )
            self._task = asyncio.create_task(loop, name="records-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
