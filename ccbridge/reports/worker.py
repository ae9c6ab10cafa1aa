"""Reports, staffing plans and the interval rollup's rounds run in a worker process, so
the bridge's event loop never holds a month of rows.

Why a process (BENCHMARKS.md §10, "loop stall"): a month's 15-minute report is ~25,000
answer rows; SQLAlchemy's row processing, the assembly and the JSON encoding are ~1 s of
Python. On the bridge's loop that held it 70-170 ms at a time; on a reader thread with
its own loop the loop still stalled 50-220 ms, because that thread holds the GIL (and,
on a busy two-core machine, the core) whenever the loop wants it. A process shares
neither: the loop awaits a future and receives the encoded answer as bytes.

The staffing plan (the gauges' refresh and GET /api/v1/staffing) runs here too: read
from the store on the loop, its first plan held the loop 60-80 ms under load (statement
compilation, row processing, the holiday calendars), failing the 50 ms gate.

One worker, started on first use (``spawn``: nothing of the bridge's state or sockets is
inherited) and kept; each job opens an engine on the worker's own loop and disposes of
it. Failures come back as ``WorkerFault`` values, never as exceptions the pickling
between processes might not carry.
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal

from ccbridge.config.model import Config
from ccbridge.config.store import StoreSettings
from ccbridge.reports.query import ReportQuery

if TYPE_CHECKING:
    from ccbridge.reports.rollup import Round
    from ccbridge.staffing.plan import Targets
    from ccbridge.staffing.planning import PlanResult

Kind = Literal["intervals", "agents"]


@dataclass(frozen=True, slots=True)
class Encoded:
    """A report as the HTTP answer's body."""

    content_type: str  # "application/json" or "text/csv"
    body: bytes
    rows: int
    incomplete: bool  # some interval touches a coverage gap


@dataclass(frozen=True, slots=True)
class WorkerFault:
    """What went wrong in the worker: ``query`` (the parameters: 400), ``store`` (the
    database: 503), ``no-history`` (no records to plan staffing from)."""

    kind: Literal["query", "store", "no-history"]
    message: str


def encode(columns: tuple[str, ...], rows: list[dict[str, object]], fmt: str) -> Encoded:
    """The JSON answer ({"columns", "rows", "incomplete"}) or the CSV with the same columns."""
    from ccbridge.reports.csvout import to_csv

    incomplete = any(r["incomplete"] for r in rows)
    if fmt == "csv":
        return Encoded("text/csv", to_csv(columns, rows).encode(), len(rows), incomplete)
    body = {"columns": list(columns), "rows": rows, "incomplete": incomplete}
    return Encoded("application/json", json.dumps(body).encode(), len(rows), incomplete)


@contextmanager
def collections_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: a report allocates ~5 objects per answer row
    (500,000 for a month of an agent report by quarter hour), none of them in a cycle,
    and each of the collections those allocations trigger walked all of them; in the
    worker (one job at a time, nothing else running) they cost as much as building the
    rows: the month's agent report by quarter hour 0.64-0.68 s with them paused against
    1.45-1.80 s without (SQLite, the same process, shared machine; BENCHMARKS.md §10).
    What the job leaves is collected once collection resumes."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


async def build(
    settings: StoreSettings, config: Config, kind: Kind, q: ReportQuery, now: datetime
) -> Encoded | WorkerFault:
    """Build and encode one report on the running loop, on an engine of its own, with
    garbage collection paused (collections_paused)."""
    from sqlalchemy.exc import DBAPIError

    from ccbridge.reports.build import agent_report, interval_report
    from ccbridge.reports.intervals import IntervalError
    from ccbridge.store.engine import make_engine

    engine = make_engine(settings)
    try:
        fn = interval_report if kind == "intervals" else agent_report
        with collections_paused():
            report = await fn(engine, config, q, now)
            return encode(report.columns, report.rows, q.format)
    except IntervalError as exc:
        return WorkerFault("query", str(exc))
    except (OSError, TimeoutError, DBAPIError) as exc:
        return _store_fault(exc)
    finally:
        await engine.dispose()


def _store_fault(exc: BaseException) -> WorkerFault:
    why = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    return WorkerFault("store", why or type(exc).__name__)


def _job(
    settings: StoreSettings, config: Config, kind: Kind, q: ReportQuery, now: datetime
) -> Encoded | WorkerFault:
    return asyncio.run(build(settings, config, kind, q, now))


async def plan(
    settings: StoreSettings,
    config: Config,
    days: list[date],
    targets: Targets,
    now: datetime,
    weeks: int,
    until: datetime | None = None,
) -> PlanResult | WorkerFault:
    """The staffing plan of ``days`` on the running loop, on an engine of its own; with
    ``until``, only the rows of slots from ``now`` to then go back to the bridge."""
    from sqlalchemy.exc import DBAPIError

    from ccbridge.staffing.history import NoHistory
    from ccbridge.staffing.plan import slots_between
    from ccbridge.staffing.storehistory import plan_from_store
    from ccbridge.store.engine import make_engine

    engine = make_engine(settings)
    try:
        result = await plan_from_store(engine, config, days, targets, now=now, weeks=weeks)
        if until is None:
            return result
        return replace(result, rows=slots_between(result.rows, now, until))
    except NoHistory as exc:
        return WorkerFault("no-history", str(exc))
    except (OSError, TimeoutError, DBAPIError) as exc:
        return _store_fault(exc)
    finally:
        await engine.dispose()


def _plan_job(
    settings: StoreSettings,
    config: Config,
    days: list[date],
    targets: Targets,
    now: datetime,
    weeks: int,
    until: datetime | None,
) -> PlanResult | WorkerFault:
    return asyncio.run(plan(settings, config, days, targets, now, weeks, until))


async def roll(
    settings: StoreSettings, config: Config, now: datetime, bridge: str, every: float
) -> Round | WorkerFault:
    """One round of the interval rollup (ccbridge/reports/rollup.py) on an engine of
    its own: its statements and their rows never touch the bridge's loop."""
    from sqlalchemy.exc import DBAPIError

    from ccbridge.reports.rollup import roll_round
    from ccbridge.store.engine import make_engine
    from ccbridge.store.migrate import SchemaError

    engine = make_engine(settings)
    try:
        with collections_paused():  # the agent rollup's rows of 200 site-days, at most
            return await roll_round(engine, config, now, bridge, every)
    except (OSError, TimeoutError, DBAPIError, SchemaError) as exc:
        return _store_fault(exc)
    finally:
        await engine.dispose()


def _roll_job(
    settings: StoreSettings, config: Config, now: datetime, bridge: str, every: float
) -> Round | WorkerFault:
    return asyncio.run(roll(settings, config, now, bridge, every))


def _started_pool() -> ProcessPoolExecutor:
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    pool.submit(int).result()  # the process is up and has imported what a job needs
    return pool


class ReportWorker:
    """The worker process; ``run`` awaits one report, ``plan`` one staffing plan,
    ``roll`` one round of the rollup, ``close`` stops the process. One is shared by the
    report and staffing services."""

    def __init__(self, settings: StoreSettings) -> None:
        self._settings = settings
        self._pool: ProcessPoolExecutor | None = None

    async def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # Starting the process (fork and exec, the pickled preparation data) takes
            # tens of milliseconds: in a thread, not on the loop.
            pool = await asyncio.to_thread(_started_pool)
            if self._pool is None:
                self._pool = pool
            else:  # another caller started one meanwhile
                await asyncio.to_thread(pool.shutdown, True)
        return self._pool

    async def run(
        self, config: Config, kind: Kind, q: ReportQuery, now: datetime
    ) -> Encoded | WorkerFault:
        pool = await self._started()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, _job, self._settings, config, kind, q, now)

    async def plan(
        self,
        config: Config,
        days: list[date],
        targets: Targets,
        now: datetime,
        weeks: int,
        until: datetime | None = None,
    ) -> PlanResult | WorkerFault:
        pool = await self._started()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            pool, _plan_job, self._settings, config, days, targets, now, weeks, until
        )

    async def roll(
        self, config: Config, now: datetime, bridge: str, every: float
    ) -> Round | WorkerFault:
        pool = await self._started()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            pool, _roll_job, self._settings, config, now, bridge, every
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # Joining the process blocks: in a thread. A report still running is let
            # finish (cancel_futures drops the queued ones).
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
