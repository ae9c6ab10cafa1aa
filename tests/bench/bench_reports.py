"""Report speed: 30 days, 1,000,000 calls, 5 sites, on SQLite and PostgreSQL.

    .venv/bin/python -m tests.bench.bench_reports                  # both engines
    .venv/bin/python -m tests.bench.bench_reports --engines sqlite --calls 200000

Targets (issue 12): the 15-minute interval report for one site and the month < 1 s; the
agent report < 2 s. The interval report is timed with the quarter-hour rollup filled
(every day rolled, as the bridge's job leaves it; ``rollup_fill_s`` is what that took)
and, as ``..._raw``, from raw rows alone (``rollup=False``), in the same run.

The data: 5 sites in five zones (one with DST), 3 services x 2 languages, 40 agents a
site, 10 % of calls overflowed to another site, outcomes mixed (answered, abandoned,
short abandons, timeouts, after hours), a third scored; one ``called`` activity row per
offered call, ring-no-answers, and each agent's shift logins and pauses: ~2.6 million
rows. Loaded in bulk (sqlite3 executemany; asyncpg COPY), in arrival order as the ingest
writes them, and ANALYZEd: loading is not what is measured.
The SQLite file is kept between runs (``--cache``) since building it takes minutes.

``--loop-stall``: how long the report holds the caller's event loop, run on it and on
a ``ReaderThread`` (what the bridge does), against an idle floor in the same run.

Per engine, in the same run, two floors: the index scan alone (``count(*)`` of the
site's calls in the range over calls(target_site, arrived_at)) and one pass reading those
rows (``count(outcome), sum(wait_s)``, no grouping); each report is timed best of
``--repeat`` runs, and the query plans are printed to name the indexes used.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ccbridge.config.model import Config, SecretValue
from ccbridge.config.store import StoreSettings
from ccbridge.reports import queries
from ccbridge.reports.build import agent_report, interval_report
from ccbridge.reports.intervals import Step
from ccbridge.reports.query import Period, ReportQuery
from ccbridge.reports.rollup import roll
from ccbridge.reports.worker import collections_paused
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.schema import calls
from tests.store.pg import PASSWORD, PgCluster

FIRST = date(2026, 10, 1)
DAYS = 30
SITES = {
    "bangalore": "Asia/Kolkata",
    "dhaka": "Asia/Dhaka",
    "manila": "Asia/Manila",
    "newyork": "America/New_York",
    "london": "Europe/London",
}
QUEUES = [f"{s}-{lang}" for s in ("orders", "returns", "care") for lang in ("en", "hi")]
SITE = "dhaka"  # the site reported on
CALL_COLS = [
    "call_id",
    "entry_site",
    "target_site",
    "service",
    "language",
    "queue",
    "arrived_at",
    "queued_at",
    "answered_at",
    "ended_at",
    "wait_s",
    "talk_s",
    "hold_s",
    "wrapup_s",
    "agent",
    "outcome",
    "satisfaction",
    "static_fallback",
    "after_hours_action",
    "caller_number",
]
ACT_COLS = ("site", "agent", "queue", "kind", "at")


def config() -> Config:
    """The lab config with five sites (the bench only needs names, zones and queues)."""
    from ccbridge.config import load_config

    os.environ.setdefault("CCBRIDGE_AMI_SECRET", "x")
    os.environ.setdefault("CCBRIDGE_API_TOKEN", "x")
    lab = load_config(Path(__file__).resolve().parents[2] / "examples" / "lab.yaml")
    base = lab.sites[0]
    sites = tuple(replace(base, name=n, timezone=z) for n, z in SITES.items())
    return replace(lab, sites=sites)


def generate(n_calls: int, seed: int = 12) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(calls rows, agent_activity rows) as tuples in CALL_COLS / ACT_COLS order."""
    rnd = random.Random(seed)
    t0 = datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=UTC) - timedelta(hours=12)
    span = DAYS * 86400
    names = list(SITES)
    call_rows: list[tuple[Any, ...]] = []
    act: list[tuple[Any, ...]] = []
    for i in range(n_calls):
        entry = names[i % 5]
        target = entry if rnd.random() > 0.1 else names[(i + 1 + rnd.randrange(4)) % 5]
        at = t0 + timedelta(seconds=rnd.random() * span)
        queue = QUEUES[rnd.randrange(6)]
        service, _, lang = queue.partition("-")
        r = rnd.random()
        wait = rnd.expovariate(1 / 25)
        agent = answered = talk = hold = wrap = sat = None
        ah = None
        queued: datetime | None = at + timedelta(seconds=3)
        if r < 0.75:
            outcome = "answered"
            agent = f"{target}-agent{rnd.randrange(40)}"
            answered = queued + timedelta(seconds=wait)
            talk, hold, wrap = rnd.expovariate(1 / 180), rnd.choice([0.0, 0.0, 30.0]), 5.0
            sat = rnd.randint(1, 5) if rnd.random() < 0.33 else None
        elif r < 0.85:
            outcome = "abandoned"
        elif r < 0.9:
            outcome, wait = "short_abandon", rnd.random() * 5
        elif r < 0.95:
            outcome, wait = "timeout", 300.0
        else:
            outcome, target, queued, wait, ah = "after_hours_voicemail", None, None, 0.0, "vm"
        ended = at + timedelta(seconds=wait + (talk or 0) + 10)
        call_rows.append(
            (
                f"b{i:08d}",
                entry,
                target,
                service,
                lang,
                queue if queued else None,
                at,
                queued,
                answered,
                ended,
                wait,
                talk,
                hold,
                wrap,
                agent,
                outcome,
                sat,
                rnd.random() < 0.01,
                ah,
                f"+8801{rnd.randrange(10**9):09d}",
            )
        )
        if agent is not None:
            act.append((target, agent, queue, "called", answered - timedelta(seconds=2)))
            if rnd.random() < 0.15:
                other = f"{target}-agent{rnd.randrange(40)}"
                act.append((target, other, queue, "ring_no_answer", queued + timedelta(seconds=1)))
    for site in names:  # shifts: 40 agents, 8 h a day in two queues, a 30 min pause
        for d in range(DAYS + 1):
            day0 = t0 + timedelta(days=d)
            for a in range(40):
                start = day0 + timedelta(hours=(a % 3) * 8, minutes=rnd.randrange(10))
                for queue in (QUEUES[a % 6], QUEUES[(a + 1) % 6]):
                    act.append((site, f"{site}-agent{a}", queue, "login", start))
                    act.append(
                        (site, f"{site}-agent{a}", queue, "pause", start + timedelta(hours=4))
                    )
                    act.append(
                        (
                            site,
                            f"{site}-agent{a}",
                            queue,
                            "unpause",
                            start + timedelta(hours=4, minutes=30),
                        )
                    )
                    act.append(
                        (site, f"{site}-agent{a}", queue, "logout", start + timedelta(hours=8))
                    )
    # In arrival order, as the ingest writes them: rows of an interval sit together.
    call_rows.sort(key=lambda r: r[6])
    act.sort(key=lambda r: r[4])
    return call_rows, act


def _sqlite_text(v: Any) -> Any:
    """As UtcDateTime stores an instant on SQLite."""
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return v


def load_sqlite(path: Path, call_rows: list[tuple[Any, ...]], act: list[tuple[Any, ...]]) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        q = ",".join("?" * len(CALL_COLS))
        db.executemany(
            f"INSERT INTO calls ({','.join(CALL_COLS)}) VALUES ({q})",
            ([_sqlite_text(v) for v in r] for r in call_rows),
        )
        db.executemany(
            f"INSERT INTO agent_activity ({','.join(ACT_COLS)}) VALUES (?,?,?,?,?)",
            ([_sqlite_text(v) for v in r] for r in act),
        )
        db.commit()
        db.execute("ANALYZE")
        db.commit()
    finally:
        db.close()


async def load_pg(
    engine: AsyncEngine, call_rows: list[tuple[Any, ...]], act: list[tuple[Any, ...]]
) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg: Any = raw.driver_connection
        await pg.copy_records_to_table("calls", records=call_rows, columns=CALL_COLS)
        await pg.copy_records_to_table("agent_activity", records=act, columns=list(ACT_COLS))
        await pg.execute("ANALYZE")


async def plans(conn: AsyncConnection, cfg: Config) -> dict[str, list[str]]:
    """The engine's plan of each report statement, to name the indexes it uses."""
    d = conn.dialect.name
    start = datetime(2026, 10, 1, tzinfo=UTC)
    end = start + timedelta(days=DAYS)
    stmts = {
        "queue_sums": queries.queue_sums(d, SITE, start, end, {}, 20, 5.0),
        "entry_sums": queries.entry_sums(d, SITE, start, end, {}, 20, 5.0),
        "agent_call_sums": queries.agent_call_sums(d, SITE, start, end, None),
        "agent_ring_counts": queries.agent_ring_counts(d, SITE, start, end, None),
        "agent_states": queries.agent_states(SITE, start, end, None),
        "rollup_sums": queries.rollup_sums(
            SITE, [(int(start.timestamp()) // 900, int(end.timestamp()) // 900)]
        ),
        "agent_rollup_sums": queries.agent_rollup_sums(
            SITE, [(int(start.timestamp()) // 900, int(end.timestamp()) // 900)], None
        ),
    }
    out: dict[str, list[str]] = {}
    for name, stmt in stmts.items():
        sql = str(stmt.compile(conn.sync_connection, compile_kwargs={"literal_binds": True}))
        prefix = "EXPLAIN QUERY PLAN " if d == "sqlite" else "EXPLAIN "
        rows = (await conn.execute(text(prefix + sql))).all()
        out[name] = [str(r[-1]) for r in rows]
    return out


async def fill_rollup(engine: AsyncEngine, cfg: Config) -> dict[str, Any]:
    """Roll every day of the data (all closed by the bench's now) as the bridge's job
    would over its rounds; the seconds it took and the site-days."""
    now = datetime(2026, 12, 1, tzinfo=UTC)
    t = time.perf_counter()
    done = await roll(engine, cfg, now, limit=None, since=FIRST - timedelta(days=1))
    return {"rollup_fill_s": round(time.perf_counter() - t, 1), "rollup_site_days": done.total}


async def measure(engine: AsyncEngine, cfg: Config, repeat: int) -> dict[str, Any]:
    month = Period(first=FIRST, last=FIRST + timedelta(days=DAYS - 1))
    cases = {
        "interval_15min_site_month": ("i", ReportQuery(month, (SITE,), Step.M15)),
        "interval_15min_site_month_raw": ("r", ReportQuery(month, (SITE,), Step.M15)),
        "interval_60min_all_sites_month": ("i", ReportQuery(month, tuple(SITES), Step.M60)),
        "interval_60min_all_sites_month_raw": ("r", ReportQuery(month, tuple(SITES), Step.M60)),
        "agent_15min_site_month": ("a", ReportQuery(month, (SITE,), Step.M15)),
        "agent_15min_site_month_raw": ("ar", ReportQuery(month, (SITE,), Step.M15)),
        "agent_30min_site_month": ("a", ReportQuery(month, (SITE,), Step.M30)),
        "agent_60min_site_month": ("a", ReportQuery(month, (SITE,), Step.M60)),
        "agent_day_site_month": ("a", ReportQuery(month, (SITE,), Step.DAY)),
        "agent_day_site_month_raw": ("ar", ReportQuery(month, (SITE,), Step.DAY)),
    }
    now = datetime(2026, 12, 1, tzinfo=UTC)
    out: dict[str, Any] = {}
    async with engine.connect() as conn:
        start, end = month.utc(__import__("zoneinfo").ZoneInfo(SITES[SITE]))
        best = 1e9
        for _ in range(repeat):
            t = time.perf_counter()
            n = (
                await conn.execute(
                    select(func.count())
                    .select_from(calls)
                    .where(
                        calls.c.target_site == SITE,
                        calls.c.arrived_at >= start,
                        calls.c.arrived_at < end,
                    )
                )
            ).scalar_one()
            best = min(best, time.perf_counter() - t)
        out["floor_index_count_s"] = round(best, 4)
        out["site_month_calls"] = n
        # A second floor: one pass reading the same rows' columns (no grouping).
        best = 1e9
        for _ in range(repeat):
            t = time.perf_counter()
            await conn.execute(
                select(func.count(calls.c.outcome), func.sum(calls.c.wait_s)).where(
                    calls.c.target_site == SITE,
                    calls.c.arrived_at >= start,
                    calls.c.arrived_at < end,
                )
            )
            best = min(best, time.perf_counter() - t)
        out["floor_row_pass_s"] = round(best, 4)
        for name, (kind, q) in cases.items():
            best = 1e9
            rows = 0
            for _ in range(repeat):
                t = time.perf_counter()
                # As the bridge's report worker builds it (ccbridge/reports/worker.py).
                with collections_paused():
                    if kind in ("a", "ar"):  # "ar": raw rows only, as before the agent rollup
                        r = await agent_report(engine, cfg, q, now, rollup=kind == "a")
                    else:  # "r": raw rows only, as before the rollup
                        r = await interval_report(engine, cfg, q, now, rollup=kind == "i")
                best = min(best, time.perf_counter() - t)
                rows = len(r.rows)
                del r.rows[:]  # collected before the next run, outside the timed part
                gc.collect()
            out[name] = {
                "seconds": round(best, 3),
                "rows": rows,
                "to_floor": round(best / max(out["floor_index_count_s"], 1e-6), 1),
                "to_row_pass": round(best / max(out["floor_row_pass_s"], 1e-6), 1),
            }
        out["plans"] = await plans(conn, cfg)
    return out


async def _worst_stall(stop: asyncio.Event) -> float:
    """The longest the loop was held (ms), from a 5 ms ticker's lateness."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.005)
        worst = max(worst, (loop.time() - t - 0.005) * 1000)
    return worst


async def _stalled(work: Any) -> tuple[float, float]:
    """(seconds, worst loop stall in ms) of awaiting ``work()`` beside the ticker."""
    stop = asyncio.Event()
    ticker = asyncio.create_task(_worst_stall(stop))
    await asyncio.sleep(0.05)
    t = time.perf_counter()
    await work()
    took = time.perf_counter() - t
    stop.set()
    return took, await ticker


T = TypeVar("T")


class ReaderThread:
    """The alternative measured and not taken (loop_stall): ``fn(engine)`` on a thread
    with its own loop and engine (an asyncpg connection belongs to the loop that opened
    it), started on first use."""

    def __init__(self, settings: StoreSettings, name: str = "ccb-store-reader") -> None:
        self._settings = settings
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: AsyncEngine | None = None  # touched on the thread's loop only

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _with_engine(self, fn: Callable[[AsyncEngine], Awaitable[T]]) -> T:
        if self._engine is None:
            self._engine = make_engine(self._settings)  # connects lazily
        return await fn(self._engine)

    async def run(self, fn: Callable[[AsyncEngine], Awaitable[T]]) -> T:
        """``fn``'s result; its exception is raised here. Cancelling the caller cancels
        ``fn`` on the thread (a client that went away stops its report)."""
        future = asyncio.run_coroutine_threadsafe(self._with_engine(fn), self._started())
        return await asyncio.wrap_future(future)

    async def close(self) -> None:
        """Dispose of the engine and stop the thread (a no-op when never started)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def dispose() -> None:
            if self._engine is not None:
                await self._engine.dispose()
                self._engine = None

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(dispose(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)
        loop.close()


async def loop_stall(settings: StoreSettings, cfg: Config, repeat: int) -> dict[str, Any]:
    """The 15-minute interval report for the site and month, built and encoded as JSON:
    on the caller's loop with the encoding in a thread (as the bridge did), on a thread
    with its own loop and engine, and in the worker process (as the bridge does); the
    loop's worst stall for each, and with nothing running (the floor), in the same run."""
    from ccbridge.reports.worker import ReportWorker, encode

    month = Period(first=FIRST, last=FIRST + timedelta(days=DAYS - 1))
    q = ReportQuery(month, (SITE,), Step.M15)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    engine = make_engine(settings)
    reader = ReaderThread(settings)
    worker = ReportWorker(settings)

    async def on_the_loop() -> None:
        r = await interval_report(engine, cfg, q, now)
        await asyncio.to_thread(encode, r.columns, r.rows, "json")

    async def in_thread(e: AsyncEngine) -> None:
        r = await interval_report(e, cfg, q, now)
        encode(r.columns, r.rows, "json")

    await worker.run(cfg, "intervals", q, now)  # the process started (once per bridge)
    out: dict[str, Any] = {}
    try:
        cases = {
            "idle_floor": lambda: asyncio.sleep(1.0),
            "on_the_loop": on_the_loop,
            "reader_thread": lambda: reader.run(in_thread),
            "worker_process": lambda: worker.run(cfg, "intervals", q, now),
        }
        for name, work in cases.items():
            runs = [await _stalled(work) for _ in range(repeat)]
            out[name] = {
                "seconds": round(min(r[0] for r in runs), 3),
                "worst_stall_ms": [round(r[1], 1) for r in runs],
            }
    finally:
        await worker.close()
        await reader.close()
        await engine.dispose()
    return out


def cache_file(args: argparse.Namespace) -> Path:
    """The cached SQLite file, named by the schema's head: a file of an older schema is
    never reused (alembic cannot migrate the bench's bulk-loaded tables)."""
    from ccbridge.store.migrate import head_revision

    return Path(args.cache) / f"reports-{args.calls}-{head_revision()}.db"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config()
    if args.loop_stall:
        cache = cache_file(args)
        if not cache.exists():
            raise SystemExit(f"no cached database {cache}: run the bench once without it")
        settings = StoreSettings(url=f"sqlite+aiosqlite:///{cache}", journal=str(cache) + ".j")
        return {"loop_stall": await loop_stall(settings, cfg, args.repeat)}
    # Generated when an engine needs loading, and dropped once loaded: two million live
    # tuples beside the reports made every garbage collection in them walk them all (the
    # bridge's report worker holds no such data; the timings were inflated 2-6x).
    data: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = []
    result: dict[str, Any] = {"calls": args.calls, "engines": []}

    def rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        if not data:
            t = time.perf_counter()
            data.append(generate(args.calls))
            result["generate_s"] = round(time.perf_counter() - t, 1)
            result["activity_rows"] = len(data[0][1])
        return data[0]

    def dropped() -> None:
        data.clear()
        gc.collect()

    for eng in args.engines.split(","):
        if eng == "sqlite":
            cache = cache_file(args)
            cache.parent.mkdir(parents=True, exist_ok=True)
            settings = StoreSettings(url=f"sqlite+aiosqlite:///{cache}", journal=str(cache) + ".j")
            engine = make_engine(settings)
            t = time.perf_counter()
            fresh = not cache.exists()
            await upgrade(engine)  # a cached file of an older schema gains the rollup
            if fresh:
                await asyncio.to_thread(load_sqlite, cache, *rows())
            load_s = time.perf_counter() - t
            dropped()
            filled = await fill_rollup(engine, cfg)
            res = await measure(engine, cfg, args.repeat)
            await engine.dispose()
            result["engines"].append(
                {"engine": "sqlite", "load_s": round(load_s, 1), **filled, **res}
            )
        else:
            cluster = await asyncio.to_thread(PgCluster)
            try:
                await asyncio.to_thread(cluster.start)
                name = await asyncio.to_thread(cluster.createdb)
                settings = StoreSettings(
                    url=cluster.url(name),
                    password=SecretValue(PASSWORD, "bench"),
                    journal="/dev/null",
                )
                engine = make_engine(settings)
                await upgrade(engine)
                t = time.perf_counter()
                await load_pg(engine, *rows())
                load_s = time.perf_counter() - t
                dropped()
                filled = await fill_rollup(engine, cfg)
                res = await measure(engine, cfg, args.repeat)
                await engine.dispose()
                result["engines"].append(
                    {"engine": "postgresql", "load_s": round(load_s, 1), **filled, **res}
                )
            finally:
                await asyncio.to_thread(cluster.remove)
    return result


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--calls", type=int, default=1_000_000)
    p.add_argument("--engines", default="sqlite,postgresql")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "ccbridge-bench"))
    p.add_argument("--fresh", action="store_true", help="rebuild the cached SQLite file")
    p.add_argument("--json", help="write the results here")
    p.add_argument(
        "--loop-stall",
        action="store_true",
        help="only: the loop's worst stall during the report, on the loop and on a "
        "ReaderThread (the cached SQLite file)",
    )
    args = p.parse_args()
    if args.fresh:
        shutil.rmtree(args.cache, ignore_errors=True)
    out = asyncio.run(run(args))
    text_out = json.dumps(out, indent=2)
    print(text_out)
    if args.json:
        Path(args.json).write_text(text_out)


if __name__ == "__main__":
    main()
