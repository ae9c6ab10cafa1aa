"""The bridge's record part: schema check, the writer, the ingest, coverage gaps, heartbeat.

Start: the database's schema is checked first; a schema this ccbridge does not know (or
none yet, or an older one) stops the start with SchemaError, whose message says what to
do (``ccbridge run`` exits 2). A database that cannot be reached is no reason to stop
routing: the writer journals records and writes them when it is back, the schema is
checked then, and /readyz detail and the logs say so meanwhile. The journal left by a
previous run is replayed (RecordWriter.start). Every site is in a coverage gap from when
the previous run was last alive until its AMI link is up.

Stop: every site's gap opens at the stop instant (the next start closes it), the writer
flushes (what the database does not take in time stays in the journal), and the
heartbeat file gets the stop instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.config.model import Config
from ccbridge.records import alive
from ccbridge.records.ingest import RecordIngest
from ccbridge.records.machine import settings_from_config
from ccbridge.store.engine import CONNECT_TIMEOUT, make_engine, missing_sqlite_file
from ccbridge.store.migrate import (
    SchemaError,
    SchemaState,
    SchemaStatus,
    check_schema,
    head_revision,
)
from ccbridge.store.writer import RecordWriter

log = logging.getLogger("ccbridge.records")

HEARTBEAT = 1.0  # seconds between heartbeat file writes (the gap's precision after a kill)
SWEEP = 1.0  # seconds between sweeps of ended calls from memory
SCHEMA_RETRY = 5.0  # seconds between schema checks while the database is unreachable
START_CHECK = 3.0  # seconds the start waits for the schema check
CLOSE_SLICE = 200  # calls whose end a link outage hid, ended a loop turn (~20 us each)


class NoDatabase(SchemaError):
    """The SQLite file is not there: ``ccbridge db upgrade`` creates it."""

    def __init__(self, path: Path) -> None:
        super().__init__(SchemaStatus(SchemaState.EMPTY, None, head_revision()))
        self.args = (f"no database file {path}: run `ccbridge db upgrade CONFIG`",)


class RecordStore:
    """One per bridge when ``store.enabled``: owns the engine, writer and ingest."""

    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.settings = config.store
        self.sites = tuple(s.name for s in config.sites)
        # Records say when things happened: real time, even under a fixed routing clock
        # (bridge.fixed_clock only changes which hours and holidays routing sees).
        self.now = now
        self.engine: AsyncEngine = make_engine(self.settings)
        self.writer = RecordWriter.from_settings(self.settings, self.engine, registry)
        self.ingest = RecordIngest(settings_from_config(config), self.writer, now, registry)
        self.alive_path = alive.path_for(self.settings.journal)
        self.schema_ok: bool | None = None  # None: not checked yet (database unreachable)
        self.schema_error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._up_at: dict[str, datetime] = {}  # site -> when its link last came up

    @property
    def where(self) -> str:
        """The database for messages: its URL without a password."""
        return make_url(self.settings.url).render_as_string(hide_password=True)

    async def start(self) -> None:
        path = await missing_sqlite_file(self.settings)
        if path is not None:
            # Checking would create an empty file (or fail on a missing folder, which
            # would read as "unreachable"): say what to do instead.
            await self.engine.dispose()
            raise NoDatabase(path)
        try:
            # Not long: FastAGI starts after this part, and until it listens every call
            # takes the fallback. A database that does not answer within this is checked
            # again in the background while the bridge routes.
            await self._check_schema(START_CHECK)
        except SchemaError:
            await self.engine.dispose()
            raise
        except Exception as exc:  # unreachable: route on, journal, check again later
            log.warning(
                "record database %s unreachable at start, routing goes on and records are "
                "kept in the journal until it is back: %s",
                self.where,
                _first_line(exc),
            )
            self._tasks.append(asyncio.create_task(self._schema_later(), name="records-schema"))
        await self.writer.start()
        last = await asyncio.to_thread(alive.read, self.alive_path)
        if last is not None:
            self.ingest.put_all(self.ingest.gaps.all_down(self.sites, last))
        self._tasks += [
            asyncio.create_task(self._heartbeat(), name="records-heartbeat"),
            asyncio.create_task(self._sweep(), name="records-sweep"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        at = self.now()
        self.ingest.put_all(self.ingest.gaps.all_down(self.sites, at))
        try:
            await self.writer.stop()
        finally:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(alive.write, self.alive_path, at)
            await self.engine.dispose()

    def link_state(self, site: str, up: bool) -> None:
        at = self.now()
        if up:
            self._up_at[site] = at
        self.ingest.put_all(
            self.ingest.gaps.up(site, at) if up else self.ingest.gaps.down(site, at)
        )

    def open_legs(self, site: str) -> bool:
        """Does the record follow a call leg at ``site`` whose end it has not seen?"""
        return site in self._up_at and self.ingest.machine.open_legs(site)

    async def close_gone(self, site: str, channels: Iterable[Mapping[str, str]]) -> int:
        """``site``'s link is back and ``channels`` is its CoreShowChannels list: end the
        calls whose channels went away while the link was down, at the gap's end (their
        ends were never seen; RecordMachine.gone, end_unseen); how many. A slice of calls
        a loop turn: a long outage's thousands of calls would otherwise hold the loop."""
        at = self._up_at.get(site)
        if at is None:
            return 0
        alive = {
            ev[key]
            for ev in channels
            if ev.get("Event") == "CoreShowChannel"
            for key in ("Linkedid", "Uniqueid")
            if key in ev
        }
        legs = self.ingest.machine.gone(site, alive, at)
        closed = 0
        for i in range(0, len(legs), CLOSE_SLICE):
            if i:
                await asyncio.sleep(0)
            closed += self.ingest.end_unseen(site, legs[i : i + CLOSE_SLICE], at)
        return closed

    def status(self) -> dict[str, Any]:
        """For /readyz detail: never a failing readiness check (routing goes on)."""
        st = self.writer.status()
        return {
            "database": self.where,
            "db_reachable": st.db_reachable,
            "db_error": st.db_error,
            "schema_ok": self.schema_ok,
            "schema_error": self.schema_error,
            "queue_depth": st.queue_depth,
            "queue_bytes": st.queue_bytes,
            "spilled": st.spilled,
            "journal_backlog_bytes": st.journal_backlog_bytes,
            "journal_error": st.journal_error,
            "caught_up": st.caught_up,
            "written": st.written,
            "rejected": st.rejected,
            "unwritten": st.unwritten,
            "open_calls": len(self.ingest.machine.calls),
            "coverage_gaps_open": sorted(self.ingest.gaps.open),
        }

    # -- tasks ---------------------------------------------------------------------
    async def _check_schema(self, within: float = CONNECT_TIMEOUT + 5) -> None:
        async with asyncio.timeout(within):
            await check_schema(self.engine)
        self.schema_ok, self.schema_error = True, None

    async def _schema_later(self) -> None:
        while True:
            await asyncio.sleep(SCHEMA_RETRY)
            try:
                await self._check_schema()
            except SchemaError as exc:
                # Too late to refuse the start: say it loudly, keep routing.
                self.schema_ok, self.schema_error = False, str(exc)
                log.error("record database %s: %s", self.where, exc)
                return
            except Exception:
                continue
            log.info("record database %s reachable, schema current", self.where)
            return

    async def _heartbeat(self) -> None:
        while True:
            try:
                await asyncio.to_thread(alive.write, self.alive_path, self.now())
            except OSError as exc:
                log.debug("heartbeat file %s not written: %s", self.alive_path, exc)
            await asyncio.sleep(HEARTBEAT)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP)
            self.ingest.sweep()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0] if text else ''}"
