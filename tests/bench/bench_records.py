"""Call-record ingest: AMI events of >= 2,000 calls/s through the record machine and the
RecordWriter into SQLite and PostgreSQL, without the writer's queue growing?

    .venv/bin/python -m tests.bench.bench_records                    # 2,000 calls/s, 10 s
    .venv/bin/python -m tests.bench.bench_records --in-process       # store.writer_process: false
    .venv/bin/python -m tests.bench.bench_records --rate 3000 --engines sqlite --json out.json

Each call is a real lab call's events (tests/unit/fixtures/records/answered.json: queue
join, agent rung and answering, talk, hang-up, CEL LINKEDID_END) given a new call ID,
linkedid and timestamps, plus the bridge's routing decision: the path ``ccbridge run``
takes from ``EventBus.dispatch`` on (RecordIngest -> RecordMachine -> RecordWriter.put),
minus AMI parsing (BENCHMARKS.md §3). Per engine, in one run:

* machine: the events fed as fast as they come, records counted, not written: the
  ingest's own ceiling in calls/s (CPU on the loop);
* offered: ``--rate`` calls/s for ``--seconds``, each call's events put on the loop every
  10 ms as the AMI readers would, the writer's queue depth and journal backlog sampled
  every 100 ms. "Kept up" (the verdict) is all of: the rate was offered (>= 98 %), the
  writer never spilled to the journal (a spill shows as a queue of 0 later; with the
  writer process, which holds no journaled record in memory, "spilled" is its backlog
  past the point where the in-memory writer spills: ``backlog_of_spill_point`` > 1), the queue's
  second half max is not above the first half's by more than four batches, it drained
  within 1 s of the last event, and nothing was unwritten;
* CPU: the process's CPU time (every thread: loop, journal, driver threads; not the
  PostgreSQL server) per call while offered and draining, beside the machine alone's per
  call in the same run: the figures that carry over to another (or a quieter) machine;
* steady (``--steady-calls``): the writer's own CPU a call where it never spills (see
  ``steady``), the figure to compare between two versions of the writer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccbridge.config import load_config
from ccbridge.config.model import Config, SecretValue
from ccbridge.config.store import StoreSettings
from ccbridge.records import callid
from ccbridge.records.ingest import RecordIngest
from ccbridge.records.machine import settings_from_config
from ccbridge.routing.engine import CallRequest, Decision
from ccbridge.routing.reasons import Outcome as RouteOutcome
from ccbridge.routing.reasons import Reason
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.writer import MEMORY_PER_JSON_BYTE, RecordWriter
from tests.polling import until
from tests.store.pg import PASSWORD, PgCluster

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "tests" / "unit" / "fixtures" / "records" / "answered.json"
DECISION = Decision(
    RouteOutcome.QUEUE,
    "bangalore",
    "orders-hi",
    "orders",
    "hi",
    reasons=(Reason.CALLER_PREFIX, Reason.HOME_SITE_OPEN),
)


class Calls:
    """Events of call n: the template's, with this call's ID, channels and instants."""

    def __init__(self) -> None:
        data = json.loads(TEMPLATE.read_text())
        self.events = [(d["site"], d["event"]) for d in data]
        first = self.events[0][1]
        self.t0 = float(first["Timestamp"])
        self.linkedid = first["Linkedid"]
        self.agent_uid = next(e["DestUniqueid"] for _, e in self.events if "DestUniqueid" in e)
        self.base = datetime.now(UTC).timestamp()

    def call(self, n: int, rate: float) -> tuple[CallRequest, list[tuple[str, dict[str, str]]]]:
        start = self.base + n / rate
        cid = callid.make("bangalore", datetime.fromtimestamp(start, UTC), n)
        link, agent = f"bangalore-{int(start)}.{2 * n}", f"bangalore-{int(start)}.{2 * n + 1}"
        out = []
        for site, ev in self.events:
            e = dict(ev)
            e["Timestamp"] = f"{start + float(ev['Timestamp']) - self.t0 + 0.01:.6f}"
            if "ChanVariable" in e:
                e["ChanVariable"] = f"CCB_CALLID={cid}"
            for key in ("Linkedid", "LinkedID", "DestLinkedid"):
                if key in e:
                    e[key] = link
            for key in ("Uniqueid", "UniqueID", "DestUniqueid"):
                if key in e:
                    e[key] = agent if e[key] == self.agent_uid else link
            out.append((site, e))
        req = CallRequest("+918000000001", "+919812345678", "bangalore", call_id=cid, uniqueid=link)
        return req, out


class Counter:
    def __init__(self) -> None:
        self.records = 0

    def put_built(self, table: str, values: dict[str, Any]) -> bool:
        self.records += 1
        return True


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss(pid: int) -> int:
    """A process's resident set in bytes, from /proc."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child_cpu() -> float:
    """CPU of the children waited for: the writer process (store.writer_process) once
    the writer stopped; not the PostgreSQL server (pg_ctl's daemon is no child of ours)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def machine_only(config: Config, calls: int) -> dict[str, Any]:
    gen = Calls()
    sink = Counter()
    ingest = RecordIngest(settings_from_config(config), sink, lambda: datetime.now(UTC))
    made = [gen.call(n, 2000.0) for n in range(calls)]
    cpu0 = _cpu()
    start = time.perf_counter()
    for req, events in made:
        ingest.on_decision(req, DECISION)
        for site, ev in events:
            ingest.on_event(site, ev)
    took = time.perf_counter() - start
    cpu = _cpu() - cpu0
    return {
        "cpu_us_per_call": round(cpu / calls * 1e6, 1),
        "calls_per_s": round(calls / took),
        "records_per_call": round(sink.records / calls, 2),
        "us_per_call": round(took / calls * 1e6, 1),
        "skipped": dict(ingest.machine.skipped),
    }


async def offered(
    config: Config, settings: StoreSettings, rate: int, seconds: float
) -> dict[str, Any]:
    engine = make_engine(settings)
    writer = RecordWriter.from_settings(settings, engine)
    ingest = RecordIngest(settings_from_config(config), writer, lambda: datetime.now(UTC))
    await writer.start()
    gen = Calls()
    # Warm: one call written before the clock starts, so the database connection (and
    # the writer process, started with the writer: ~0.5 s of imports) is there, as it
    # is by the time a bridge's AMI links are up; both ways alike. Not counted.
    req, events = gen.call(10**9, rate)
    ingest.on_decision(req, DECISION)
    for site, ev in events:
        ingest.on_event(site, ev)
    await until(lambda: writer.status().caught_up, 60, "the warm-up call written", 0.005)
    warm_written = writer.status().written
    depth: list[int] = []
    spilled = False
    spilled_at: float | None = None  # seconds after the first call
    backlog: list[int] = []
    held: list[int] = []  # the writer's records in memory, in bytes (estimated)
    child_rss: list[int] = []  # the writer process's RSS, bytes
    lag: list[float] = []
    stop = False

    async def sample() -> None:
        nonlocal spilled, spilled_at
        while not stop:
            st = writer.status()
            if st.spilled and not spilled:
                spilled, spilled_at = True, round(time.perf_counter() - start, 2)
            depth.append(st.queue_depth)
            backlog.append(st.journal_backlog_bytes)
            held.append(st.queue_bytes)
            pid = writer.process.pid if writer.process is not None else None
            if pid is not None:
                with contextlib.suppress(OSError):
                    child_rss.append(_rss(pid))
            await asyncio.sleep(0.1)

    async def sweep() -> None:
        while not stop:
            await asyncio.sleep(1.0)
            ingest.machine.sweep(datetime.now(UTC))

    tasks = [asyncio.create_task(sample()), asyncio.create_task(sweep())]
    per_tick = rate / 100
    n = 0
    owed = 0.0
    child0 = _child_cpu()
    cpu0 = _cpu()
    start = time.perf_counter()
    next_tick = start
    feed_time = gen_time = 0.0
    while (now := time.perf_counter()) - start < seconds:
        owed += per_tick
        while owed >= 1:
            g0 = time.perf_counter()
            req, events = gen.call(n, rate)
            t0 = time.perf_counter()
            ingest.on_decision(req, DECISION)
            for site, ev in events:
                ingest.on_event(site, ev)
            t1 = time.perf_counter()
            gen_time += t0 - g0
            feed_time += t1 - t0
            n += 1
            owed -= 1
        next_tick += 0.01
        lag.append(max(0.0, now - (next_tick - 0.01)))
        await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
    offered_s = time.perf_counter() - start
    await until(lambda: writer.status().caught_up, 600, "the writer to catch up", 0.005)
    drain_s = time.perf_counter() - start - offered_s
    cpu = _cpu() - cpu0
    stop = True
    for t in tasks:
        await t
    st = writer.status()
    await writer.stop()
    await engine.dispose()
    child = _child_cpu() - child0
    half = len(depth) // 2
    first, second = max(depth[:half] or [0]), max(depth[half:] or [0])
    offered_rate = n / offered_s
    kept_up = (
        offered_rate >= 0.98 * rate
        and not spilled
        and second <= first + 4 * settings.batch_size
        and drain_s <= 1.0
        and st.unwritten == 0
    )
    return {
        "kept_up": kept_up,
        "queue_depth_every_100ms": depth,
        "spilled_at_s": spilled_at,
        "spilled": spilled,
        "cpu_us_per_call": round(cpu / max(1, n) * 1e6, 1),
        "writer_process_cpu_us_per_call": round(child / max(1, n) * 1e6, 1),
        "calls": n,
        "offered_calls_per_s": round(n / offered_s),
        "written": st.written - warm_written,
        "rejected": st.rejected,
        "unwritten": st.unwritten,
        "skipped": dict(ingest.machine.skipped),
        "queue_depth_max": max(depth),
        "queue_depth_p50": int(statistics.median(depth)),
        "queue_depth_first_half_max": max(depth[:half] or [0]),
        "queue_depth_second_half_max": max(depth[half:] or [0]),
        "journal_backlog_bytes_max": max(backlog),
        # The in-memory writer spills at half the byte bound: the backlog's journal bytes
        # past queue_bytes / 2 / MEMORY_PER_JSON_BYTE (the verdict's "spilled").
        "backlog_of_spill_point": round(
            max(backlog) / (settings.queue_bytes / 2 / MEMORY_PER_JSON_BYTE), 2
        ),
        "memory_queue_bytes_max": max(held),
        "writer_process_rss_max_mb": round(max(child_rss) / 2**20, 1) if child_rss else None,
        "drain_after_last_event_s": round(drain_s, 3),
        "ingest_us_per_call": round(feed_time / max(1, n) * 1e6, 1),
        "generate_us_per_call": round(gen_time / max(1, n) * 1e6, 1),
        "tick_lag_p99_ms": round(sorted(lag)[int(len(lag) * 0.99)] * 1000, 1),
    }


async def steady(config: Config, settings: StoreSettings, calls: int) -> dict[str, Any]:
    """The writer's CPU a call where it never spills: calls fed as fast as the writer takes
    them while its memory queue stays under 4,000 records; the process's CPU time (every
    thread) a call, less the machine alone's, is the writer's (journal, rows, driver)."""
    engine = make_engine(settings)
    writer = RecordWriter.from_settings(settings, engine)
    ingest = RecordIngest(settings_from_config(config), writer, lambda: datetime.now(UTC))
    await writer.start()
    gen = Calls()
    made = [gen.call(n, 2000.0) for n in range(calls)]
    child0 = _child_cpu()
    cpu0 = _cpu()
    start = time.perf_counter()
    for i, (req, events) in enumerate(made):
        ingest.on_decision(req, DECISION)
        for site, ev in events:
            ingest.on_event(site, ev)
        if i % 20 == 19:
            await asyncio.sleep(0)
            if writer.status().queue_depth > 4000:
                await until(lambda: writer.status().queue_depth <= 4000, 600, "room", 0.005)
    await until(lambda: writer.status().caught_up, 600, "the writer to catch up", 0.005)
    cpu, took = _cpu() - cpu0, time.perf_counter() - start
    st = writer.status()
    await writer.stop()
    await engine.dispose()
    return {
        "calls": calls,
        "cpu_us_per_call": round(cpu / calls * 1e6, 1),
        "writer_process_cpu_us_per_call": round((_child_cpu() - child0) / calls * 1e6, 1),
        "calls_per_s": round(calls / took),
        "spilled": st.spilled,
        "unwritten": st.unwritten,
    }


async def run_engine(
    name: str, config: Config, settings: StoreSettings, args: argparse.Namespace
) -> dict[str, Any]:
    engine = make_engine(settings)
    await upgrade(engine)
    await engine.dispose()
    out: dict[str, Any] = {"engine": name}
    if args.steady_calls:
        out["steady"] = await steady(config, settings, args.steady_calls)
    out["offered"] = await offered(config, settings, args.rate, args.seconds)
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False)
    tmp = Path(tempfile.mkdtemp(prefix="ccbridge-bench-records-"))
    results: dict[str, Any] = {
        "writer_process": args.writer_process,
        "rate": args.rate,
        "seconds": args.seconds,
        "batch_size": args.batch,
        "engines": [],
    }
    results["machine"] = machine_only(config, args.machine_calls)
    try:
        if "sqlite" in args.engines:
            s = StoreSettings(
                enabled=True,
                url=f"sqlite+aiosqlite:///{tmp}/bench.db",
                journal=str(tmp / "sq.journal"),
                batch_size=args.batch,
                writer_process=args.writer_process,
            )
            results["engines"].append(await run_engine("sqlite", config, s, args))
        if "postgresql" in args.engines:
            cluster = await asyncio.to_thread(PgCluster)
            try:
                await asyncio.to_thread(cluster.start)
                db = await asyncio.to_thread(cluster.createdb)
                s = StoreSettings(
                    enabled=True,
                    url=cluster.url(db),
                    password=SecretValue(PASSWORD, "bench"),
                    journal=str(tmp / "pg.journal"),
                    batch_size=args.batch,
                    writer_process=args.writer_process,
                )
                results["engines"].append(await run_engine("postgresql", config, s, args))
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
    p.add_argument("--machine-calls", type=int, default=20_000)
    p.add_argument("--engines", default="sqlite,postgresql")
    p.add_argument(
        "--steady-calls", type=int, default=20_000, help="calls for the writer's CPU (0: skip)"
    )
    p.add_argument("--batch", type=int, default=500, help="store.batch_size (default 500)")
    p.add_argument(
        "--in-process",
        dest="writer_process",
        action="store_false",
        help="store.writer_process: false (the default is true: the writes in a child)",
    )
    p.add_argument(
        "--writer-process",
        dest="writer_process",
        action="store_true",
        help="store.writer_process: true (the default)",
    )
    p.add_argument("--json", help="write the results here")
    p.set_defaults(writer_process=StoreSettings().writer_process)
    args = p.parse_args()
    results = asyncio.run(main_async(args))
    m = results["machine"]
    print(
        f"machine alone: {m['calls_per_s']:,} calls/s ({m['us_per_call']} us/call, "
        f"{m['records_per_call']} records/call), skipped {m['skipped']}"
    )
    for e in results["engines"]:
        o = e["offered"]
        print(
            f"{e['engine']:<10} offered {o['offered_calls_per_s']:,} calls/s: queue p50 "
            f"{o['queue_depth_p50']:,} max {o['queue_depth_max']:,} (1st half max "
            f"{o['queue_depth_first_half_max']:,}, 2nd half {o['queue_depth_second_half_max']:,}),"
            f" journal backlog max {o['journal_backlog_bytes_max']:,} B, drained "
            f"{o['drain_after_last_event_s']} s after the last event, ingest "
            f"{o['ingest_us_per_call']} us/call, tick lag p99 {o['tick_lag_p99_ms']} ms, "
            f"written {o['written']:,} rejected {o['rejected']} unwritten {o['unwritten']} "
            f"skipped {o['skipped']}"
        )
    for e in results["engines"]:
        o = e["offered"]
        print(
            f"{e['engine']:<10} verdict: {'KEPT UP' if o['kept_up'] else 'FELL BEHIND'} at "
            f"{args.rate:,} calls/s (spilled {o['spilled']}, at {o['spilled_at_s']} s); "
            f"process CPU {o['cpu_us_per_call']}"
            f" us/call = {o['cpu_us_per_call'] / m['cpu_us_per_call']:.2f} x the machine alone's"
            f" {m['cpu_us_per_call']} us/call; one core's worth: "
            f"{1e6 / o['cpu_us_per_call']:,.0f} calls/s; writer process "
            f"{o['writer_process_cpu_us_per_call']} us/call, RSS max "
            f"{o['writer_process_rss_max_mb']} MB; backlog max "
            f"{o['backlog_of_spill_point']:.2f} x the spill point; records in memory max "
            f"{o['memory_queue_bytes_max'] / 2**20:.1f} MB"
        )
    for e in results["engines"]:
        if "steady" in e:
            w = e["steady"]
            print(
                f"{e['engine']:<10} steady (never spilled): process CPU {w['cpu_us_per_call']}"
                f" us/call, of it the writer {w['cpu_us_per_call'] - m['cpu_us_per_call']:.1f}"
                f" (machine alone {m['cpu_us_per_call']}); {w['calls_per_s']:,} calls/s; writer"
                f" process {w['writer_process_cpu_us_per_call']} us/call"
            )
    print(f"load average {results['load_average']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
