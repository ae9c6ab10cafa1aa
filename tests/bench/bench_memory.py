"""Memory: the bridge's RSS with 1,000 concurrent calls across 5 sites, and its growth over a soak.

The bridge runs as `ccbridge run` in a subprocess on a generated 5-site config. This
process plays every site: a fake AMI server per site (tests/amifake.py) answering the
bridge's resync and pushing queue traffic for 200 calls in progress per site (callers
joining, agents connecting and completing, member status), and a synthetic Asterisk
FastAGI client holding 1,000 route sessions open at once (each answers its first SET
VARIABLE only after ``--hold`` seconds). RSS is read from /proc/PID/status every 5 s;
growth is the last sample minus the first one after warm-up.

``--records``: the bridge keeps call records in a fresh, migrated SQLite store. Each route
session then carries a call ID (as ``ccb-inbound`` sends it) and its uniqueid is the
call's linkedid, and once routed, its site plays that call's events: the mix of a real
lab call with CEL on (tests/bench/fixtures/ami_cel_call.json through bench_ceiling's
CallEvents: 12 events a call, the one CEL type the rendered cel.conf sends among them;
``CCB_BENCH_CEL_ALL=1``: 30, every CEL type of the recording), its ``ChanVariable:
CCB_CALLID`` lines and timestamps made for the call; the part up to the answer at
once, the rest from AgentComplete to CEL LINKEDID_END ``--talk`` seconds later. At the
end every call still talking is ended, the bridge is stopped (its writer drains) and the
store is counted: a call row with an end for every call ended, its leg and its events.

    .venv/bin/python -m tests.bench.bench_memory --minutes 3     # quick
    .venv/bin/python -m tests.bench.bench_memory --minutes 30    # the soak
    .venv/bin/python -m tests.bench.bench_memory --minutes 30 --records
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ccbridge.records import callid
from ccbridge.variables import CALLID
from tests.amifake import FakeAmi
from tests.bench.pages import distinct_mb_apart

SITES = ("s1", "s2", "s3", "s4", "s5")
SERVICES = ("orders", "returns", "care", "billing")
LANGS = ("en", "hi", "bn", "tl", "ur")
AGENTS_PER_SITE = 200  # 1,000 agents
CALLS_PER_SITE = 200  # 1,000 calls in progress
TARGET_MB = 100.0
SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_yaml(
    ami_ports: list[int],
    agi_port: int,
    http_port: int,
    store: Path | None = None,
    writer_process: bool | None = None,
) -> str:
    lines = [
        "bridge:",
        f"  agi_listen: 127.0.0.1:{agi_port}",
        f"  agi_url_host: 127.0.0.1:{agi_port}",
        f"  http_listen: 127.0.0.1:{http_port}",
        "  agi_allow: [127.0.0.1]",  # the bench's FastAGI callers connect from here
        "  max_agi_sessions: 1500",
        "  agi_session_timeout: 30.0",
        "  log_level: WARNING",  # 1,000 route lines a second would measure the log file
        f"languages: [{', '.join(LANGS)}]",
        f"services: [{', '.join(SERVICES)}]",
        "countries:",
        '  IN: {calling_code: "91", default_language: hi}',
        '  GB: {calling_code: "44", default_language: en}',
    ]
    if store is not None:
        lines += ["store:", f"  url: sqlite:///{store}"]
        if writer_process is not None:
            lines.append(f"  writer_process: {str(writer_process).lower()}")
    lines.append("sites:")
    for i, (name, port) in enumerate(zip(SITES, ami_ports, strict=True)):
        lines += [
            f"  {name}:",
            "    timezone: UTC",
            "    country: IN" if i % 2 == 0 else "    country: GB",
            f"    sip: 127.0.{i + 1}.1:5060",
            f"    ami: {{host: 127.0.0.1, port: {port}, username: ccbridge,"
            " secret: {env: CCB_BENCH_AMI}}",
            f"    rtp: [{20000 + i * 1000}, {20999 + i * 1000}]",
            "    services:",
        ]
        for svc in SERVICES:
            lines.append(f"      {svc}: {{languages: [{', '.join(LANGS)}], hours: always}}")
        lines.append("    agents:")
        for a in range(AGENTS_PER_SITE):
            q = [f"{SERVICES[a % 4]}-{LANGS[a % 5]}", f"{SERVICES[(a + 1) % 4]}-{LANGS[a % 5]}"]
            lines.append(
                f'      - {{name: {name}-a{a}, contact: "sip:a@127.0.0.1:{30000 + a}",'
                f" queues: [{', '.join(q)}]}}"
            )
    lines.append("trunks:")
    for a, b in itertools.permutations(range(len(SITES)), 2):
        lines.append(
            f"  t{a}{b}: {{site: {SITES[a]}, kind: intersite, peer: {SITES[b]},"
            f" remote: 127.0.{b + 1}.1:5060}}"
        )
    lines.append("numbers:")
    for i, name in enumerate(SITES):
        lines.append(
            f'  "+9180000000{i}": {{kind: tollfree, country: IN, service: orders,'
            f" site: {name}, home_site: {name}}}"
        )
    return "\n".join(lines) + "\n"


def queue_status(site: str) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    for svc in SERVICES:
        for lang in LANGS:
            events.append({"Event": "QueueParams", "Queue": f"{svc}-{lang}", "Calls": "0"})
    for a in range(AGENTS_PER_SITE):
        for q in (f"{SERVICES[a % 4]}-{LANGS[a % 5]}", f"{SERVICES[(a + 1) % 4]}-{LANGS[a % 5]}"):
            events.append(queue_member(q, f"{site}-a{a}"))
    return events


def queue_member(queue: str, name: str) -> dict[str, str]:
    """A QueueStatus reply's item: static member ``name`` (PJSIP/name), idle."""
    return {
        "Event": "QueueMember",
        "Queue": queue,
        "Name": name,
        "Location": f"PJSIP/{name}",
        "StateInterface": f"PJSIP/{name}",
        "Membership": "static",
        "Penalty": "0",
        "CallsTaken": "0",
        "Status": "1",
        "Paused": "0",
        "InCall": "0",
    }


async def ami_traffic(fake: FakeAmi, site: str, stop: asyncio.Event, per_s: float) -> int:
    """Keep CALLS_PER_SITE calls in progress: each tick one completes and one joins."""
    rng = random.Random(site)
    live: list[tuple[str, str, int]] = []
    n = 0
    while not stop.is_set():
        q = f"{rng.choice(SERVICES)}-{rng.choice(LANGS)}"
        agent = rng.randrange(AGENTS_PER_SITE)
        uid = f"{site}.{n}"
        chan = f"PJSIP/carrier-{n:08x}"
        fake.push_event(
            "QueueCallerJoin", {"Queue": q, "Uniqueid": uid, "Channel": chan, "Position": "1"}
        )
        fake.push_event(
            "AgentConnect",
            {"Queue": q, "Uniqueid": uid, "Interface": f"PJSIP/{site}-a{agent}", "HoldTime": "3"},
        )
        fake.push_event("QueueCallerLeave", {"Queue": q, "Uniqueid": uid, "Channel": chan})
        live.append((q, uid, agent))
        if len(live) > CALLS_PER_SITE:
            q0, uid0, agent0 = live.pop(0)
            fake.push_event(
                "AgentComplete",
                {
                    "Queue": q0,
                    "Uniqueid": uid0,
                    "Interface": f"PJSIP/{site}-a{agent0}",
                    "HoldTime": "3",
                    "TalkTime": "60",
                },
            )
        n += 1
        await asyncio.sleep(1 / per_s)
    return n


HEADER = (
    "agi_network: yes\nagi_network_script: route?site={site}{query}\n"
    "agi_request: agi://127.0.0.1/route?site={site}{query}\n"
    "agi_channel: PJSIP/carrier-in-{n:08x}\n"
    "agi_language: en\nagi_type: PJSIP\nagi_uniqueid: {uid}\nagi_version: 22.10.1\n"
    "agi_callerid: +919812345678\nagi_calleridname: Bench\nagi_dnid: {did}\n"
    "agi_context: ccb-route\nagi_extension: {did}\nagi_priority: 4\n\n"
)
_LINKEDID = re.compile(rb"\r\nLinkedid: ([^\r]*)")  # app_queue's; CEL writes "LinkedID"
_CHANNEL = re.compile(rb"Event: QueueCallerJoin\r\n(?:[^\r]*\r\n)*?Channel: ([^\r]*)")
_STAMP = re.compile(rb"\r\nTimestamp: ([0-9]+\.[0-9]+)")
_ANSWERED_PART_ENDS = b"Event: AgentComplete\r\n"


def restamp(part: bytes, at: float) -> bytes:
    """``part``'s events moved in time so that its first event is at ``at`` (the spacing
    between them as recorded): the record reads Asterisk's timestamps, not arrival."""
    first = _STAMP.search(part)
    if first is None:
        return part
    shift = at - float(first.group(1))
    return _STAMP.sub(lambda m: b"\r\nTimestamp: %.6f" % (float(m.group(1)) + shift), part)


def with_call_id(text: bytes, cid: str) -> bytes:
    """Every app_queue event of the call carries its ID, as manager.conf channelvars puts
    it in each channel event (CEL events carry no channel variables)."""
    line = f"\r\nChanVariable: {CALLID}={cid}".encode()
    return _LINKEDID.sub(lambda m: m.group(0) + line, text)


class LiveChannels(list[dict[str, str]]):
    """A fake site's CoreShowChannels answer: one CoreShowChannel a call it has now (from
    its route step to its hang-up), made when the bridge asks (on each reconnect)."""

    def __init__(self) -> None:
        super().__init__()
        self.linkedids: dict[str, str] = {}  # the caller's channel: linkedid -> its name

    def _items(self) -> list[dict[str, str]]:
        return [
            {"Event": "CoreShowChannel", "Channel": name, "Uniqueid": u, "Linkedid": u}
            for u, name in sorted(self.linkedids.items())
        ]

    def __iter__(self) -> Iterator[dict[str, str]]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self.linkedids)


class RecordedCalls:
    """--records: the call behind each routed session, played by its entry site."""

    def __init__(self, fakes: list[FakeAmi], talk: float) -> None:
        from tests.bench.bench_ceiling import CallEvents

        self.events = CallEvents(records=True)
        self.fakes = fakes
        self.talk = talk
        self.rng = random.Random(12)
        self.ends: dict[int, tuple[asyncio.TimerHandle, int, bytes]] = {}
        self.started = 0
        self.ended = 0
        self.channels = [LiveChannels() for _ in fakes]
        self._linkedid: dict[int, str] = {}
        for fake, live in zip(fakes, self.channels, strict=True):
            fake.lists["coreshowchannels"] = (live, "CoreShowChannelsComplete")

    def make(self, site: int, n: int) -> tuple[str, str, bytes]:
        """(call ID, uniqueid of the caller's channel = the linkedid, the call's events)."""
        text = self.events.call(SITES[site], n, AGENTS_PER_SITE, self.rng)
        m = _LINKEDID.search(text)
        assert m is not None, "the recorded call has no app_queue event"
        cid = callid.make(SITES[site], datetime.now(UTC), n)
        linkedid = m.group(1).decode()
        channel = _CHANNEL.search(text)
        # the caller's channel is up (its name as the call's events give it)
        self.channels[site].linkedids[linkedid] = channel.group(1).decode() if channel else ""
        self._linkedid[n] = linkedid
        return cid, linkedid, with_call_id(text, cid)

    def start(self, site: int, n: int, text: bytes) -> None:
        """The call queued and answered now; the rest after ``talk`` seconds."""
        cut = text.index(_ANSWERED_PART_ENDS)
        self.fakes[site].push_raw(restamp(text[:cut], time.time()))
        self.started += 1
        handle = asyncio.get_running_loop().call_later(self.talk, self._end, n)
        self.ends[n] = (handle, site, text[cut:])

    def _end(self, n: int) -> None:
        _, site, rest = self.ends.pop(n)
        self.fakes[site].push_raw(restamp(rest, time.time()))
        self.channels[site].linkedids.pop(self._linkedid.pop(n, ""), None)
        self.ended += 1

    def end_all(self) -> None:
        """Every call still talking hangs up now (the store is checked against them all)."""
        for n in list(self.ends):
            self.ends[n][0].cancel()
            self._end(n)


async def agi_session(
    port: int, n: int, hold: float, stats: dict[str, int], calls: RecordedCalls | None
) -> None:
    i = n % len(SITES)
    did = f"+9180000000{i}"
    if calls is None:
        query, uid, text = "", f"{n}.1", b""
    else:
        cid, uid, text = calls.make(i, n)
        query = f"&callid={cid}"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        stats["refused"] += 1
        return
    stats["open"] += 1
    try:
        writer.write(HEADER.format(site=SITES[i], query=query, n=n, uid=uid, did=did).encode())
        first = True
        while line := await reader.readline():
            if first:
                await asyncio.sleep(hold)  # Asterisk holding the call between commands
                first = False
            writer.write(b"200 result=1\n")
            if b"CCB_ROUTE" in line:  # EXEC MSet "...,CCB_ROUTE=..." (or SET VARIABLE)
                stats["routed"] += 1
                if calls is not None:
                    calls.start(i, n, text)
    except (ConnectionError, asyncio.IncompleteReadError):
        stats["errors"] += 1
    finally:
        stats["open"] -= 1
        writer.close()


async def agi_load(
    port: int, concurrent: int, hold: float, stop: asyncio.Event, calls: RecordedCalls | None
) -> dict[str, int]:
    stats = {"open": 0, "routed": 0, "refused": 0, "errors": 0, "started": 0, "peak_open": 0}
    tasks: set[asyncio.Task[None]] = set()
    n = 0
    while not stop.is_set():
        while stats["open"] + (len(tasks) - stats["open"]) < concurrent and not stop.is_set():
            t = asyncio.create_task(agi_session(port, n, hold, stats, calls))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            n += 1
            stats["started"] = n
            if n % 50 == 0:
                await asyncio.sleep(0)
        stats["peak_open"] = max(stats["peak_open"], stats["open"])
        await asyncio.sleep(0.02)
    for t in list(tasks):
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats


STORE_COUNTS = {
    "calls": "SELECT count(*) FROM calls",
    "calls_ended": "SELECT count(*) FROM calls WHERE ended_at IS NOT NULL",
    "calls_answered": "SELECT count(*) FROM calls WHERE outcome = 'answered'",
    "legs_ended": "SELECT count(*) FROM legs WHERE ended_at IS NOT NULL",
    "call_events": "SELECT count(*) FROM call_events",
}


def store_counts(db: Path) -> dict[str, int]:
    """What the bridge wrote (read beside it: SQLite in WAL mode lets a reader in)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as c:
        return {k: int(c.execute(q).fetchone()[0]) for k, q in STORE_COUNTS.items()}


async def store_caught_up(db: Path, ended: int, within: float = 120.0) -> dict[str, int]:
    """The store's counts once every ended call's row has its end (or ``within`` passed)."""
    deadline = time.monotonic() + within
    while True:
        counts = await asyncio.to_thread(store_counts, db)
        if counts["calls_ended"] >= ended or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(1)


WATCHED = (
    "ccbridge_records_open_calls",
    "ccbridge_records_queue_depth",
    "ccbridge_records_journal_bytes",
    "ccbridge_records_events_skipped_total",
    "ccbridge_records_unwritten_total",
    "ccbridge_ami_reconnects_total",
    "ccbridge_ami_ping_timeouts_total",
)


async def watched_series(http_port: int) -> dict[str, float]:
    """A few of the bridge's own gauges (what holds memory when RSS grows), summed over
    their labels; {} when /metrics does not answer."""
    out: dict[str, float] = {}
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
        query = "&".join(f"name[]={name}" for name in WATCHED)
        writer.write(f"GET /metrics?{query} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
        body = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    except (OSError, TimeoutError):
        return out
    for line in body.decode(errors="replace").splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in WATCHED:
            with contextlib.suppress(ValueError, IndexError):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


async def snapshot(proc: subprocess.Popen[bytes], folder: Path, n: int, census: bool) -> Path:
    """--tracemalloc/--census: the bridge's snapshot number ``n`` (tests/bench/memtrace.py)."""
    name = f"census-{n}" if census else f"snapshot-{n}"
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not (folder / f"{name}.done").exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no {name} in {folder}")
        await asyncio.sleep(0.5)
    return folder / (f"{name}.json" if census else f"{name}.pickle")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    """The process's children (the record writer's process, store.writer_process)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def children_rss_mb(pid: int) -> float:
    """The RSS of the process's children: the bridge's memory is its processes'."""
    total = 0.0
    for child in children(pid):
        with contextlib.suppress(OSError):
            total += rss_mb(child)
    return total


def pss_mb(pid: int) -> float:
    """The process's proportional set size (/proc/PID/smaps_rollup "Pss:"): its private
    pages, and each page it shares with N processes counted 1/N. Summed over the bridge's
    processes it counts the interpreter's and the libraries' shared pages once, where the
    sum of their RSS counts them in every process."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def processes_pss_mb(pid: int) -> float:
    """The sum of the PSS of the process and its children."""
    total = 0.0
    for each in (pid, *children(pid)):
        with contextlib.suppress(OSError):
            total += pss_mb(each)
    return total


def process_list(pid: int) -> list[dict[str, object]]:
    """The bridge's processes as they are now: pid, what runs (the command line's end),
    RSS and PSS."""
    out: list[dict[str, object]] = []
    for each in (pid, *children(pid)):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{each}/cmdline").read_bytes().split(b"\0")
            what = " ".join(a.decode(errors="replace") for a in argv[1:] if a)[:80]
            out.append(
                {
                    "pid": each,
                    "what": what,
                    "rss_mb": round(rss_mb(each), 1),
                    "pss_mb": round(pss_mb(each), 1),
                }
            )
    return out


def cpu_s(pid: int) -> float:
    """The process's CPU seconds so far (user + system, /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_THREAD_HEAP = 64 * 2**20  # glibc's thread arenas: heaps of up to 64 MiB, aligned to it


def rss_split_mb(pid: int) -> dict[str, float]:
    """RSS by kind of mapping (/proc/PID/smaps): glibc's main heap, its thread arenas,
    other anonymous memory (pymalloc's arenas, mapped blocks, stacks), files."""
    out = dict.fromkeys(("main_heap", "thread_arenas", "anon_other", "files"), 0.0)
    kind = "anon_other"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = re.match(r"([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)", line)
        if head is not None:
            start, end, path = int(head[1], 16), int(head[2], 16), head[3].strip()
            if path == "[heap]":
                kind = "main_heap"
            elif path and not path.startswith("["):
                kind = "files"
            elif not path and start % _THREAD_HEAP == 0 and end - start <= _THREAD_HEAP:
                kind = "thread_arenas"
            else:
                kind = "anon_other"
        elif line.startswith("Rss:"):
            out[kind] += int(line.split()[1]) / 1024
    return {k: round(v, 1) for k, v in out.items()}


@dataclass(frozen=True)
class Settings:
    minutes: float
    concurrent: int = 1000  # FastAGI sessions open at once
    hold: float = 5.0  # seconds each session's first reply is held
    warmup: float = 60.0  # seconds before growth counts
    records: bool = False  # the bridge keeps call records (SQLite)
    writer_process: bool | None = None  # store.writer_process; None: the bridge's default
    talk: float = 5.0  # --records: seconds from a call's answer to its hang-up
    trace: Path | None = None  # --tracemalloc: snapshots here, after warm-up and at the end
    census: bool = False  # with trace: gc censuses instead of tracemalloc snapshots


async def soak(
    proc: subprocess.Popen[bytes],
    ami_ports: list[int],
    agi_port: int,
    http_port: int,
    log_file: Path,
    cfg: Settings,
    db: Path | None,
) -> dict[str, object]:
    fakes = [FakeAmi(secret=SECRET) for _ in SITES]
    for f, port, site in zip(fakes, ami_ports, SITES, strict=True):
        f.port = port
        f.script_list("QueueStatus", "QueueStatusComplete", queue_status(site))
        await f.start()
    stop = asyncio.Event()
    samples: list[tuple[float, float]] = []
    child_samples: list[float] = []  # the children's RSS at each sample
    pss_samples: list[float] = []  # the PSS of the bridge and its children, summed
    page_samples: list[float] = []  # their distinct resident pages (every 30 s: ~0.1 s each)
    listed: list[dict[str, object]] = []  # the processes, 60 s into the load
    gauges: list[tuple[float, dict[str, float]]] = []
    snapshots: list[Path] = []
    calls = RecordedCalls(fakes, cfg.talk) if cfg.records else None
    counts: dict[str, int] | None = None
    try:
        deadline = time.monotonic() + (300 if cfg.trace and not cfg.census else 30)  # tracing
        while not all(f.logins_ok for f in fakes):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bridge did not log in to every fake site: see {log_file}")
            await asyncio.sleep(0.1)
        idle = rss_mb(proc.pid)
        # Without records: queue traffic of its own, 200 calls in progress a site. With
        # records: the routed sessions' own calls (about concurrent / hold * talk).
        traffic = [
            asyncio.create_task(ami_traffic(f, s, stop, per_s=20))
            for f, s in zip(fakes, SITES, strict=True)
            if calls is None
        ]
        agi = asyncio.create_task(agi_load(agi_port, cfg.concurrent, cfg.hold, stop, calls))
        t0 = time.monotonic()
        cpu0 = cpu_s(proc.pid)
        end = t0 + cfg.minutes * 60
        while time.monotonic() < end:
            await asyncio.sleep(5)
            if proc.poll() is not None:
                raise SystemExit(f"the bridge exited ({proc.returncode}) during the soak")
            samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
            child_samples.append(children_rss_mb(proc.pid))
            pss_samples.append(processes_pss_mb(proc.pid))
            if not listed and samples[-1][0] >= 60:
                listed = process_list(proc.pid)
            if cfg.trace is not None and not snapshots and samples[-1][0] >= cfg.warmup:
                snapshots.append(await snapshot(proc, cfg.trace, 1, cfg.census))
            if len(samples) % 6 == 0:
                page_samples.append(await distinct_mb_apart([proc.pid, *children(proc.pid)]))
            if cfg.records and len(samples) % 6 == 0:
                gauges.append((samples[-1][0], await watched_series(http_port)))
        cpu = cpu_s(proc.pid) - cpu0
        split = rss_split_mb(proc.pid)
        if cfg.trace is not None:
            snapshots.append(await snapshot(proc, cfg.trace, len(snapshots) + 1, cfg.census))
        stop.set()
        agi_stats = await agi
        events = sum(await asyncio.gather(*traffic))
        if calls is not None and db is not None:
            calls.end_all()
            counts = await store_caught_up(db, calls.ended)
            samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
            child_samples.append(children_rss_mb(proc.pid))
            pss_samples.append(processes_pss_mb(proc.pid))
            page_samples.append(await distinct_mb_apart([proc.pid, *children(proc.pid)]))
            gauges.append((samples[-1][0], await watched_series(http_port)))
    finally:
        stop.set()
        for f in fakes:
            await f.close()
    after = [mb for t, mb in samples if t >= cfg.warmup] or [samples[-1][1]]
    peak = max(mb for _, mb in samples)
    # The bridge's memory is its processes': the writer's child counts (sampled together).
    total_peak = max(mb + c for (_, mb), c in zip(samples, child_samples, strict=True))
    growth = after[-1] - after[0]
    # Two readings of the bound, both printed: the routing process (the bridge that
    # routes, holds the calls and the AMI links) and every process of the bridge (the
    # record writer's child too). ``met`` is the stricter, every process.
    met_routing = peak < TARGET_MB and growth < 5.0
    met = total_peak < TARGET_MB and growth < 5.0
    result: dict[str, object] = {
        "bench": "memory",
        "minutes": cfg.minutes,
        "records": cfg.records,
        "sites": len(SITES),
        "agents": len(SITES) * AGENTS_PER_SITE,
        "calls_in_progress_ami": len(SITES) * CALLS_PER_SITE,
        "agi_concurrent_target": cfg.concurrent,
        "agi_peak_open": agi_stats["peak_open"],
        "agi_sessions_routed": agi_stats["routed"],
        "agi_refused": agi_stats["refused"],
        "ami_calls_pushed": events,
        "rss_idle_mb": round(idle, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_children_peak_mb": round(max(child_samples, default=0.0), 1),
        "rss_total_peak_mb": round(total_peak, 1),
        # The same processes' PSS summed (shared pages once): a figure beside the RSS,
        # not the verdict's (the bound is on RSS).
        "pss_total_peak_mb": round(max(pss_samples, default=0.0), 1),
        # Their distinct resident pages (tests/bench/pages.py), every 30 s: a page two of
        # them share counted once, as the kernel holds it.
        "pages_total_peak_mb": round(max(page_samples, default=0.0), 1),
        "processes": listed,
        "rss_after_warmup_mb": round(after[0], 1),
        "rss_final_mb": round(after[-1], 1),
        "growth_mb": round(growth, 1),
        "rss_split_mb": split,  # at the end of the load, before the calls talking end
        "bridge_cpu_s": round(cpu, 1),
        "bridge_cpu_ms_per_session": round(cpu * 1000 / max(1, agi_stats["routed"]), 3),
        "samples": [(round(t), round(mb, 1)) for t, mb in samples],
        "target_mb": TARGET_MB,
    }
    if calls is not None and counts is not None:
        # The store proves the writes: one ended row per call ended, its leg, its events.
        result.update(
            calls_in_progress_ami=round(agi_stats["routed"] / (cfg.minutes * 60) * cfg.talk),
            ami_calls_pushed=calls.started,
            calls_ended=calls.ended,
            events_per_call=calls.events.events_per_call,
            store=counts,
            gauges=[(round(t), g) for t, g in gauges],
        )
        stored = counts["calls_ended"] == calls.ended and counts["legs_ended"] >= calls.ended
        met, met_routing = met and stored, met_routing and stored
        if counts["calls_ended"] != calls.ended:  # what the bridge said about it
            text = await asyncio.to_thread(log_file.read_text, errors="replace")
            lines = text.splitlines()
            result["bridge_log"] = lines[-40:]  # log_level WARNING: all of it is
    if len(snapshots) == 2:
        from tests.bench.memtrace import census_diff, diff

        result["tracemalloc_growth"] = (census_diff if cfg.census else diff)(*snapshots)
    result["met_routing_process"] = met_routing
    result["met"] = met
    return result


def run(cfg: Settings) -> dict[str, object]:
    ami_ports = [free_port() for _ in SITES]
    agi_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="ccb-mem-") as wd:
        db = Path(wd) / "records.db" if cfg.records else None
        cfg_file = Path(wd) / "bench.yaml"
        cfg_file.write_text(config_yaml(ami_ports, agi_port, http_port, db, cfg.writer_process))
        env = {**os.environ, "CCB_BENCH_AMI": SECRET}
        if db is not None:
            subprocess.run(
                [sys.executable, "-m", "ccbridge.cli", "db", "upgrade", str(cfg_file)],
                env=env,
                check=True,
                capture_output=True,
            )
        log_file = Path(wd) / "bridge.log"
        with open(log_file, "wb") as log:
            probe = ["-m", "tests.bench.memtrace", str(cfg.trace)]
            traced = probe if cfg.census else ["-X", "tracemalloc=8", *probe]
            command = traced if cfg.trace else ["-m", "ccbridge.cli"]
            proc = subprocess.Popen(
                [sys.executable, *command, "run", str(cfg_file)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            return asyncio.run(soak(proc, ami_ports, agi_port, http_port, log_file, cfg, db))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--concurrent", type=int, default=1000, help="FastAGI sessions open at once")
    ap.add_argument("--hold", type=float, default=5.0, help="seconds each session is held")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before growth counts")
    ap.add_argument("--records", action="store_true", help="the bridge keeps call records")
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="--records: the record writer in the bridge's process (store.writer_process: false)",
    )
    ap.add_argument("--talk", type=float, default=5.0, help="--records: seconds a call talks")
    ap.add_argument(
        "--tracemalloc",
        metavar="DIR",
        type=Path,
        help="debug: run the bridge under tracemalloc, snapshot it after warm-up and at the "
        "end into DIR, print what grew (RSS figures are then not the bridge's own)",
    )
    ap.add_argument(
        "--census",
        metavar="DIR",
        type=Path,
        help="debug: count the bridge's gc-tracked objects by type after warm-up and at the "
        "end (full speed, no tracing), print the types that grew",
    )
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    if args.minutes <= 0 or args.concurrent < 1 or args.hold < 0 or args.talk < 0:
        ap.error("--minutes and --concurrent must be positive, --hold and --talk not negative")
    cfg = Settings(
        minutes=args.minutes,
        concurrent=args.concurrent,
        hold=args.hold,
        warmup=min(args.warmup, args.minutes * 60 / 3),
        records=args.records,
        writer_process=False if args.in_process else None,
        talk=args.talk,
        trace=args.tracemalloc or args.census,
        census=args.census is not None,
    )
    r = run(cfg)
    line = (
        f"memory: RSS idle {r['rss_idle_mb']} MB, peak {r['rss_peak_mb']} MB "
        f"(with its child processes {r['rss_total_peak_mb']} MB; their PSS summed "
        f"{r['pss_total_peak_mb']} MB, their distinct pages {r['pages_total_peak_mb']} MB) with "
        f"{r['agi_peak_open']} FastAGI sessions open and {r['calls_in_progress_ami']} calls in "
        f"progress over AMI; growth {r['growth_mb']} MB over {args.minutes:g} min after warm-up "
        f"(target < {TARGET_MB:g} MB, flat); at the end of the load {r['rss_split_mb']}; "
        f"bridge CPU {r['bridge_cpu_ms_per_session']} ms a session"
    )
    if args.records:
        line += f"; records: {r.get('calls_ended')} calls ended, store {r.get('store')}"
    for each in r.get("processes") or []:  # type: ignore[attr-defined]
        print(
            f"  process {each['pid']} {each['what']}: "
            f"RSS {each['rss_mb']} MB, PSS {each['pss_mb']} MB"
        )
    for grew in r.get("tracemalloc_growth") or []:  # type: ignore[attr-defined]
        print(f"  {grew}")
    routing = "met" if r["met_routing_process"] else "MISSED"
    print(f"{line}: the routing process {routing}, every process {'met' if r['met'] else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0 if r["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
