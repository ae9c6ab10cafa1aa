"""The record writer's child running reports beside its writes (BENCHMARKS.md §4).

Since the eleventh session the report worker's jobs run in the record writer's child
(ccbridge/store/writeproc.py), on a thread of their own beside the write loop. This
bench measures what a heavy report costs the writes there, and what it leaves in the
child's memory:

- batch round trips (``WriteProcess.write`` of an empty batch: the child's loop, a
  connection from its pool, the answer) every 20 ms for ``--idle`` seconds with no job,
  then while the month's agent report by quarter hour of one site runs (SQLite, the
  bench_reports mix, ``--calls`` calls over 5 sites, the site's ~11,000 of 60,000 kept);
  alternated ``--rounds`` times; p50, p95 and the longest;
- the child's RSS and PSS after the first job (a day's report) and after each month
  report (the 15-minute interval report, then the agent report).

    .venv/bin/python -m tests.bench.bench_child_jobs            # ~1-2 min
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ccbridge.config.store import StoreSettings
from ccbridge.reports.intervals import Step
from ccbridge.reports.query import Period, ReportQuery
from ccbridge.reports.worker import ReportWorker
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.writeproc import WriteProcess
from tests.bench.bench_memory import pss_mb, rss_mb
from tests.bench.bench_reports import DAYS, FIRST, SITE, config, generate, load_sqlite

NOW = datetime(2026, 12, 1, tzinfo=UTC)


async def _store(path: Path, n_calls: int) -> StoreSettings:
    settings = StoreSettings(url=f"sqlite+aiosqlite:///{path}", journal=str(path) + ".j")
    engine = make_engine(settings)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    calls, activity = generate(n_calls)
    load_sqlite(
        path, [c for c in calls if SITE in (c[1], c[2])], [a for a in activity if a[0] == SITE]
    )
    return settings


async def _probe(process: WriteProcess, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await process.write([])
        out.append((time.perf_counter() - t) * 1e3)
        await asyncio.sleep(0.02)


def _line(label: str, seconds: float, trips: list[float]) -> str:
    trips = sorted(trips)
    p95 = trips[min(len(trips) - 1, int(len(trips) * 0.95))]
    return (
        f"{label}: {seconds:.2f} s, {len(trips)} batches, p50 {statistics.median(trips):.1f} ms, "
        f"p95 {p95:.1f} ms, longest {trips[-1]:.1f} ms"
    )


async def run(n_calls: int, rounds: int, idle: float) -> None:
    with tempfile.TemporaryDirectory(prefix="ccb-jobs-") as wd:
        settings = await _store(Path(wd) / "month.db", n_calls)
        cfg = replace(config(), store=settings)
        process = WriteProcess(settings)
        await process.ready()
        worker = ReportWorker(settings, process)
        month = Period(first=FIRST, last=FIRST + timedelta(days=DAYS - 1))
        q = ReportQuery(month, (SITE,), Step.M15)
        try:
            await worker.run(cfg, "intervals", replace(q, period=Period(FIRST, FIRST)), NOW)
            pid = process.pid
            assert pid is not None
            print(f"child after a day's report: RSS {rss_mb(pid):.1f} MB, PSS {pss_mb(pid):.1f}")
            for n in range(rounds):
                stop, trips = asyncio.Event(), list[float]()
                probe = asyncio.create_task(_probe(process, stop, trips))
                await asyncio.sleep(idle)
                stop.set()
                await probe
                print(_line(f"round {n + 1}, no job", idle, trips))
                stop, trips = asyncio.Event(), list[float]()
                probe = asyncio.create_task(_probe(process, stop, trips))
                t = time.perf_counter()
                got = await worker.run(cfg, "agents", q, NOW)
                took = time.perf_counter() - t
                stop.set()
                await probe
                rows = getattr(got, "rows", got)
                print(_line(f"round {n + 1}, the month's agent report ({rows} rows)", took, trips))
                await worker.run(cfg, "intervals", q, NOW)
                print(
                    f"  child after it and the month's interval report: RSS "
                    f"{rss_mb(pid):.1f} MB, PSS {pss_mb(pid):.1f}"
                )
        finally:
            await process.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=60_000, help="calls over 5 sites (one kept)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of batches with no job")
    args = ap.parse_args(argv)
    asyncio.run(run(args.calls, args.rounds, args.idle))


if __name__ == "__main__":
    main()
