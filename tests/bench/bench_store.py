"""Record ingest into SQLite and PostgreSQL: can RecordWriter take the records of >= 2,000
calls/s without its queue growing?

    .venv/bin/python -m tests.bench.bench_store                      # 2,000 calls/s, 10 s
    .venv/bin/python -m tests.bench.bench_store --rate 3000 --seconds 5 --json out.json

Per engine, in the same run: the floor is the database alone (the same rows, merged and
upserted in batches of ``batch_size`` straight through write_records, no journal, no
queue); then the writer at a fixed offered rate (records put on the loop every 10 ms, as
an AMI reader would) with the queue depth and the journal backlog sampled every 100 ms;
then the writer flat out (everything put at once, paced only by the memory queue). Each
call is 5 records (its calls row in two parts, a leg, two events). PostgreSQL is a
throwaway cluster (tests/store/pg.py) with its default durability (fsync on);
SQLite runs WAL with synchronous=FULL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ccbridge.config.model import SecretValue
from ccbridge.config.store import StoreSettings
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.records import Record, check_record
from ccbridge.store.write import write_records
from ccbridge.store.writer import RecordWriter
from tests.polling import until
from tests.store.pg import PASSWORD, PgCluster
from tests.store.records_factory import call_records

PER_CALL = len(call_records(0))


def _records(first: int, n: int) -> list[Record]:
    return [check_record(t, v) for i in range(first, first + n) for t, v in call_records(i)]


async def floor(settings: StoreSettings, calls: int, batch: int) -> float:
    """Calls/s the database takes with no writer in front of it."""
    engine = make_engine(settings)
    recs = _records(10_000_000, calls)
    start = time.perf_counter()
    for i in range(0, len(recs), batch):
        async with engine.begin() as conn:
            await write_records(conn, recs[i : i + batch])
    took = time.perf_counter() - start
    await engine.dispose()
    return calls / took


async def offered(settings: StoreSettings, rate: int, seconds: float, first: int) -> dict[str, Any]:
    """The writer at ``rate`` calls/s for ``seconds``: queue depth over time, and how
    long after the last put the database held everything."""
    engine = make_engine(settings)
    writer = RecordWriter.from_settings(settings, engine)
    await writer.start()
    depth: list[int] = []
    backlog: list[int] = []
    lag: list[float] = []
    stop = False

    async def sample() -> None:
        while not stop:
            st = writer.status()
            depth.append(st.queue_depth)
            backlog.append(st.journal_backlog_bytes)
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    per_tick = rate / 100
    n = first
    owed = 0.0
    start = time.perf_counter()
    next_tick = start
    put_time = 0.0
    refused = 0
    while (now := time.perf_counter()) - start < seconds:
        owed += per_tick
        t0 = time.perf_counter()
        while owed >= 1:
            for table, values in call_records(n):
                refused += not writer.put(table, values)
            n += 1
            owed -= 1
        put_time += time.perf_counter() - t0
        next_tick += 0.01
        lag.append(max(0.0, now - (next_tick - 0.01)))
        await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
    offered_s = time.perf_counter() - start
    calls = n - first
    await until(lambda: writer.status().caught_up, 600, "the writer to catch up", 0.005)
    drain_s = time.perf_counter() - start - offered_s
    stop = True
    await sampler
    st = writer.status()
    await writer.stop()
    await engine.dispose()
    half = len(depth) // 2
    return {
        "calls": calls,
        "offered_calls_per_s": round(calls / offered_s),
        "records_per_s": round(calls * PER_CALL / offered_s),
        "written": st.written,
        "refused": refused,
        "queue_depth_max": max(depth),
        "queue_depth_p50": int(statistics.median(depth)),
        "queue_depth_first_half_max": max(depth[:half] or [0]),
        "queue_depth_second_half_max": max(depth[half:] or [0]),
        "journal_backlog_bytes_max": max(backlog),
        "drain_after_last_put_s": round(drain_s, 3),
        "put_us_per_record": round(put_time / max(1, calls * PER_CALL) * 1e6, 2),
        "tick_lag_p99_ms": round(sorted(lag)[int(len(lag) * 0.99)] * 1000, 1),
    }


async def flat_out(settings: StoreSettings, calls: int, first: int) -> float:
    """Calls/s from the first put to the database holding all of them, puts as fast as
    the memory queue allows."""
    engine = make_engine(settings)
    writer = RecordWriter.from_settings(settings, engine)
    await writer.start()
    start = time.perf_counter()
    for n in range(first, first + calls):
        for table, values in call_records(n):
            if not writer.put(table, values):  # memory full: wait for the journal
                await until(lambda t=table, v=values: writer.put(t, v), 60, "room", 0.001)
        if n % 100 == 0:
            await asyncio.sleep(0)
    await until(lambda: writer.status().caught_up, 600, "the writer to catch up", 0.005)
    took = time.perf_counter() - start
    await writer.stop()
    await engine.dispose()
    return calls / took


async def run_engine(
    name: str, settings: StoreSettings, args: argparse.Namespace
) -> dict[str, Any]:
    engine = make_engine(settings)
    await upgrade(engine)
    await engine.dispose()
    out: dict[str, Any] = {"engine": name}
    out["floor_calls_per_s"] = round(await floor(settings, args.floor_calls, settings.batch_size))
    out["offered"] = await offered(settings, args.rate, args.seconds, 0)
    out["flat_out_calls_per_s"] = round(await flat_out(settings, args.flat_calls, 20_000_000))
    out["flat_out_to_floor"] = round(out["flat_out_calls_per_s"] / out["floor_calls_per_s"], 2)
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ccbridge-bench-store-"))
    results: dict[str, Any] = {"rate": args.rate, "seconds": args.seconds, "engines": []}
    try:
        if "sqlite" in args.engines:
            s = StoreSettings(
                url=f"sqlite+aiosqlite:///{tmp}/bench.db", journal=str(tmp / "sq.journal")
            )
            results["engines"].append(await run_engine("sqlite", s, args))
        if "postgresql" in args.engines:
            cluster = await asyncio.to_thread(PgCluster)
            try:
                await asyncio.to_thread(cluster.start)
                db = await asyncio.to_thread(cluster.createdb)
                s = StoreSettings(
                    url=cluster.url(db),
                    password=SecretValue(PASSWORD, "bench"),
                    journal=str(tmp / "pg.journal"),
                )
                results["engines"].append(await run_engine("postgresql", s, args))
            finally:
                await asyncio.to_thread(cluster.remove)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_average"] = os.getloadavg()
    return results


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rate", type=int, default=2000, help="offered calls/s (default 2000)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--floor-calls", type=int, default=10_000)
    p.add_argument("--flat-calls", type=int, default=20_000)
    p.add_argument("--engines", default="sqlite,postgresql")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    results = asyncio.run(main_async(args))
    for e in results["engines"]:
        o = e["offered"]
        print(
            f"{e['engine']:<10} floor {e['floor_calls_per_s']:>6,} calls/s | offered "
            f"{o['offered_calls_per_s']:,} calls/s ({o['records_per_s']:,} records/s): queue "
            f"p50 {o['queue_depth_p50']:,} max {o['queue_depth_max']:,} (1st half max "
            f"{o['queue_depth_first_half_max']:,}, 2nd half {o['queue_depth_second_half_max']:,}), "
            f"journal backlog max {o['journal_backlog_bytes_max']:,} B, drained "
            f"{o['drain_after_last_put_s']} s after the last put, "
            f"put {o['put_us_per_record']} us/record, "
            f"tick lag p99 {o['tick_lag_p99_ms']} ms, refused {o['refused']} | flat out "
            f"{e['flat_out_calls_per_s']:,} calls/s ({e['flat_out_to_floor']} of the floor)"
        )
    print(f"load average {results['load_average']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
