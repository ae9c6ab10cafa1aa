"""Memory: the bridge's RSS with 1,000 concurrent calls across 5 sites, and its growth over a soak.

The bridge runs as `ccbridge run` in a subprocess on a generated 5-site config. This
process plays every site: a fake AMI server per site (tests/amifake.py) answering the
bridge's resync and pushing queue traffic for 200 calls in progress per site (callers
joining, agents connecting and completing, member status), and a synthetic Asterisk
FastAGI client holding 1,000 route sessions open at once (each answers its first SET
VARIABLE only after ``--hold`` seconds). RSS is read from /proc/PID/status every 5 s;
growth is the last sample minus the first one after warm-up.

    .venv/bin/python -m tests.bench.bench_memory --minutes 3     # quick
    .venv/bin/python -m tests.bench.bench_memory --minutes 30    # the soak
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.amifake import FakeAmi

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


def config_yaml(ami_ports: list[int], agi_port: int, http_port: int) -> str:
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
        "sites:",
    ]
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
    "agi_network: yes\nagi_network_script: route?site={site}\n"
    "agi_request: agi://127.0.0.1/route?site={site}\nagi_channel: PJSIP/carrier-in-{n:08x}\n"
    "agi_language: en\nagi_type: PJSIP\nagi_uniqueid: {n}.1\nagi_version: 22.10.1\n"
    "agi_callerid: +919812345678\nagi_calleridname: Bench\nagi_dnid: {did}\n"
    "agi_context: ccb-route\nagi_extension: {did}\nagi_priority: 4\n\n"
)


async def agi_session(port: int, n: int, hold: float, stats: dict[str, int]) -> None:
    i = n % len(SITES)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        stats["refused"] += 1
        return
    stats["open"] += 1
    try:
        writer.write(HEADER.format(site=SITES[i], n=n, did=f"+9180000000{i}").encode())
        first = True
        while line := await reader.readline():
            if first:
                await asyncio.sleep(hold)  # Asterisk holding the call between commands
                first = False
            writer.write(b"200 result=1\n")
            if b"CCB_ROUTE" in line:  # EXEC MSet "...,CCB_ROUTE=..." (or SET VARIABLE)
                stats["routed"] += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        stats["errors"] += 1
    finally:
        stats["open"] -= 1
        writer.close()


async def agi_load(port: int, concurrent: int, hold: float, stop: asyncio.Event) -> dict[str, int]:
    stats = {"open": 0, "routed": 0, "refused": 0, "errors": 0, "started": 0, "peak_open": 0}
    tasks: set[asyncio.Task[None]] = set()
    n = 0
    while not stop.is_set():
        while stats["open"] + (len(tasks) - stats["open"]) < concurrent and not stop.is_set():
            t = asyncio.create_task(agi_session(port, n, hold, stats))
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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def soak(
    proc: subprocess.Popen[bytes],
    ami_ports: list[int],
    agi_port: int,
    log_file: Path,
    minutes: float,
    concurrent: int,
    hold: float,
    warmup: float,
) -> dict[str, object]:
    fakes = [FakeAmi(secret=SECRET) for _ in SITES]
    for f, port, site in zip(fakes, ami_ports, SITES, strict=True):
        f.port = port
        f.script_list("QueueStatus", "QueueStatusComplete", queue_status(site))
        await f.start()
    stop = asyncio.Event()
    samples: list[tuple[float, float]] = []
    try:
        deadline = time.monotonic() + 30
        while not all(f.logins_ok for f in fakes):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bridge did not log in to every fake site: see {log_file}")
            await asyncio.sleep(0.1)
        idle = rss_mb(proc.pid)
        traffic = [
            asyncio.create_task(ami_traffic(f, s, stop, per_s=20))
            for f, s in zip(fakes, SITES, strict=True)
        ]
        agi = asyncio.create_task(agi_load(agi_port, concurrent, hold, stop))
        t0 = time.monotonic()
        end = t0 + minutes * 60
        while time.monotonic() < end:
            await asyncio.sleep(5)
            if proc.poll() is not None:
                raise SystemExit(f"the bridge exited ({proc.returncode}) during the soak")
            samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
        stop.set()
        agi_stats = await agi
        events = sum(await asyncio.gather(*traffic))
    finally:
        stop.set()
        for f in fakes:
            await f.close()
    after = [mb for t, mb in samples if t >= warmup] or [samples[-1][1]]
    peak = max(mb for _, mb in samples)
    growth = after[-1] - after[0]
    return {
        "bench": "memory",
        "minutes": minutes,
        "sites": len(SITES),
        "agents": len(SITES) * AGENTS_PER_SITE,
        "calls_in_progress_ami": len(SITES) * CALLS_PER_SITE,
        "agi_concurrent_target": concurrent,
        "agi_peak_open": agi_stats["peak_open"],
        "agi_sessions_routed": agi_stats["routed"],
        "agi_refused": agi_stats["refused"],
        "ami_calls_pushed": events,
        "rss_idle_mb": round(idle, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_after_warmup_mb": round(after[0], 1),
        "rss_final_mb": round(after[-1], 1),
        "growth_mb": round(growth, 1),
        "samples": [(round(t), round(mb, 1)) for t, mb in samples],
        "target_mb": TARGET_MB,
        "met": peak < TARGET_MB and growth < 5.0,
    }


def run(minutes: float, concurrent: int, hold: float, warmup: float) -> dict[str, object]:
    ami_ports = [free_port() for _ in SITES]
    agi_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="ccb-mem-") as wd:
        cfg = Path(wd) / "bench.yaml"
        cfg.write_text(config_yaml(ami_ports, agi_port, http_port))
        log_file = Path(wd) / "bridge.log"
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ccbridge.cli", "run", str(cfg)],
                env={**os.environ, "CCB_BENCH_AMI": SECRET},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            return asyncio.run(
                soak(proc, ami_ports, agi_port, log_file, minutes, concurrent, hold, warmup)
            )
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
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    warmup = min(args.warmup, args.minutes * 60 / 3)
    r = run(args.minutes, args.concurrent, args.hold, warmup)
    print(
        f"memory: RSS idle {r['rss_idle_mb']} MB, peak {r['rss_peak_mb']} MB with "
        f"{r['agi_peak_open']} FastAGI sessions open and {r['calls_in_progress_ami']} calls in "
        f"progress over AMI; growth {r['growth_mb']} MB over {args.minutes:g} min after warm-up "
        f"(target < {TARGET_MB:g} MB, flat): {'met' if r['met'] else 'MISSED'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0 if r["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
