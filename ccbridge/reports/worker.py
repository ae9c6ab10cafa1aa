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

The jobs run in the record writer's child process (ccbridge/store/writeproc.py, its job
channel and thread) when ``store.writer_process`` is on: no second interpreter and no
multiprocessing resource tracker beside the bridge (they were ~65 MB of RSS,
BENCHMARKS.md §4). With it off, the worker starts that same program for its jobs alone,
on first use. Each job opens an engine on the job thread's own loop and disposes of it.
Failures come back as ``WorkerFault`` values; a child that ends under a job is started
again and the job run once more, and a second end is a ``store`` fault that says so.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Iterator
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
    from ccbridge.store.writeproc import WriteProcess

Kind = Literal["intervals", "agents"]

log = logging.getLogger("ccbridge.reports")


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
    return Encoded("application/json", json_body(columns, rows, incomplete), len(rows), incomplete)


JSON_CHUNK = 500  # rows a json.dumps call


def json_body(columns: tuple[str, ...], rows: list[dict[str, object]], incomplete: bool) -> bytes:
    """``json.dumps({"columns", "rows", "incomplete"})``, byte for byte, encoded
    ``JSON_CHUNK`` rows a call: json's C encoder holds the GIL for a whole call, and in one
    call a month's agent report (46,000 rows, 17 MB) held it 1-2 s, in which the record
    writer's batches (the same child process, ccbridge/store/writeproc.py) waited."""
    parts = [json.dumps(r)[1:-1] for r in _chunks(rows)]
    head = json.dumps({"columns": list(columns), "rows": []})[:-2]  # up to the rows' "["
    tail = json.dumps({"incomplete": incomplete})[1:]
    return f"{head}{', '.join(parts)}], {tail}".encode()


def _chunks(rows: list[dict[str, object]]) -> Iterator[list[dict[str, object]]]:
    for i in range(0, len(rows), JSON_CHUNK):
        yield rows[i : i + JSON_CHUNK]


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

    missing = await _missing_sqlite(settings)
    if missing is not None:
        return missing
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


async def _missing_sqlite(settings: StoreSettings) -> WorkerFault | None:
    """A store fault for an SQLite file that is not there, else None. Opening it would
    create an empty one (the records reader refuses it likewise), and a failed connect
    leaves aiosqlite stopping its thread with a future on this loop, which a loop closed
    right after (``asyncio.run`` of a job) makes an exception in that thread."""
    from ccbridge.store.engine import missing_sqlite_file

    path = await missing_sqlite_file(settings)
    if path is not None:
        return WorkerFault("store", f"no such database file: {path}")
    return None


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

    missing = await _missing_sqlite(settings)
    if missing is not None:
        return missing
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

    missing = await _missing_sqlite(settings)
    if missing is not None:
        return missing
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


class ReportWorker:
    """Where reports run off the loop; ``run`` awaits one report, ``plan`` one staffing
    plan, ``roll`` one round of the rollup, ``close`` stops a process of its own. One is
    shared by the report and staffing services.

    ``process``: the record writer's child (``store.writer_process``), whose job channel
    runs them; it is the writer's to start and stop. Without it the worker starts one
    such child of its own on the first job and ends it on ``close``."""

    def __init__(self, settings: StoreSettings, process: WriteProcess | None = None) -> None:
        self._settings = settings
        self._shared = process
        self._own: WriteProcess | None = None

    @property
    def process(self) -> WriteProcess | None:
        """The child the jobs go to (None: none started yet)."""
        return self._shared if self._shared is not None else self._own

    def _process(self) -> WriteProcess:
        if self._shared is not None:
            return self._shared
        if self._own is None:
            from ccbridge.store.writeproc import WriteProcess

            self._own = WriteProcess(self._settings)
        return self._own

    async def _job(self, name: str, *args: object) -> object:
        from ccbridge.store.writeproc import WriteProcessGone

        why = ""
        for attempt in (1, 2):
            process = self._process()
            if process.closed:
                return WorkerFault("store", "the bridge is stopping")
            try:
                return await process.job(name, args)
            except WriteProcessGone as exc:
                why = str(exc)
                if attempt == 1:
                    log.warning("report process ended under a %s job (%s): run again", name, why)
        return WorkerFault("store", f"the report process ended twice under the job: {why}")

    async def run(
        self, config: Config, kind: Kind, q: ReportQuery, now: datetime
    ) -> Encoded | WorkerFault:
        got = await self._job("report", self._settings, config, kind, q, now)
        assert isinstance(got, Encoded | WorkerFault)
        return got

    async def plan(
        self,
        config: Config,
        days: list[date],
        targets: Targets,
        now: datetime,
        weeks: int,
        until: datetime | None = None,
    ) -> PlanResult | WorkerFault:
        got = await self._job("plan", self._settings, config, days, targets, now, weeks, until)
        return got  # type: ignore[return-value]  # the child's plan job: one of the two

    async def roll(
        self, config: Config, now: datetime, bridge: str, every: float
    ) -> Round | WorkerFault:
        got = await self._job("roll", self._settings, config, now, bridge, every)
        return got  # type: ignore[return-value]  # the child's roll job: one of the two

    async def close(self) -> None:
        """End the worker's own child (a job still running is cut: its caller gets a
        fault); the writer's child is the writer's to end."""
        own, self._own = self._own, None
        if own is not None:
            await own.close()
