"""/metrics scrape cost: collect vs format, and the longest event-loop step while scraped.

A Bridge (not started: no sockets to Asterisk) is given the live state of 3 or 20
sites with 100, 1,000 or 10,000 agents (each a member of two queues, synced from a
QueueStatus-like list as a real link does), and its registry is served over a real
socket by a bare aiohttp app, once with prometheus_client's handler (``before``: what
ccbridge served up to this change) and once with ccbridge's (``after``:
ccbridge/http/metrics.py, snapshots on the loop, families and text in a thread).

Per size it reports
- ``collect`` / ``format``: one full scrape's two halves timed in process
  (``list(registry.collect())``, then ``generate_latest`` over the collected families);
- ``before`` / ``after``: how late the loop ran a due callback, at worst, while a
  client thread scrapes in a loop: a ticker task on the bridge's loop sleeps 1 ms
  over and over and notes how late it woke (what a call event arriving during a
  scrape waits: the loop step in progress, and with ``after`` the GIL the formatting
  thread holds, which CPython hands over every 5 ms);
- ``after, 1 ms switch``: ``after`` with the interpreter's switch interval at 1 ms, as a
  started bridge runs (ccbridge/workers.py), not CPython's 5 ms;
- ``floor``: the same with nobody scraping, in the same run, so the figures can be
  read as a ratio on a shared, busy machine.

    .venv/bin/python -m tests.bench.bench_metrics [--scrapes 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.exposition import Exposition
from ccbridge.http.metrics import metrics_handler
from ccbridge.routing.state import apply_event, begin_sync, complete_sync, set_site_up
from ccbridge.scrape import Collected
from ccbridge.workers import SWITCH_INTERVAL
from tests.bench.bench_ceiling import deployment, queue_status, site_name

SIZES = ((3, 100), (3, 1_000), (3, 10_000), (20, 100), (20, 1_000), (20, 10_000))
AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
TICK = 0.001  # s: the ticker's timer, an idle loop's wake-up (a call event, a timer)


def make_bridge(sites: int, agents: int, folder: Path) -> Bridge:
    """A Bridge over ``sites`` sites whose live state lists ``agents`` agents, all synced."""
    os.environ.setdefault("CCB_BENCH_AMI", "bench-secret")
    cfg = folder / f"bench-{sites}-{agents}.yaml"
    cfg.write_text(deployment(sites, agents, [15038 + i for i in range(sites)], 14573, 18080, None))
    bridge = Bridge(load_config(cfg), Clock(AT))
    gc.freeze()  # as Bridge.start does with what start-up built (the live state comes later)
    now = bridge.clock.time()
    state = bridge.state
    per_site = agents // sites
    for i in range(sites):
        site = site_name(i)
        state = begin_sync(set_site_up(state, site, True, now), site)
        for n, item in enumerate(queue_status(site, per_site)):
            if item.get("Event") == "QueueMember" and n % 3 == 0:
                item = {**item, "Status": "2", "InCall": "1"}  # some busy: every state shows
            state = apply_event(state, site, item, now)
        state = complete_sync(state, site)
    bridge.state = state
    return bridge


def halves(bridge: Bridge, scrapes: int) -> dict[str, float]:
    """Median ms of collect and of format over ``scrapes`` full scrapes (format: the
    library's text and OpenMetrics encoders, and ccbridge/exposition.py's cached ones,
    warm after the first scrape), and the text's bytes."""
    times: dict[str, list[float]] = {}
    size = 0
    cached = Exposition()

    def timed(key: str, fn: Any, arg: Any) -> bytes:
        t0 = time.perf_counter()
        out: bytes = fn(arg)
        times.setdefault(key, []).append((time.perf_counter() - t0) * 1e3)
        return out

    for _ in range(scrapes):
        families = timed("collect", lambda _: list(bridge.registry.collect()), None)
        got = Collected(families)
        text = timed("format", generate_latest, got)
        size = len(text)
        om = timed("format_om", om_generate_latest, got)
        assert timed("format_cached", cached.text, got) == text
        assert timed("format_om_cached", cached.openmetrics, got) == om
    return {k: statistics.median(v) for k, v in times.items()} | {"bytes": size}


async def longest_step(app: web.Application | None, scrapes: int) -> float:
    """The longest loop step (ms) while a thread scrapes ``app`` ``scrapes`` times; with
    no app, the same span of an idle loop (the floor)."""
    runner = None
    url = ""
    if app is not None:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/metrics"
    done = threading.Event()

    def client() -> None:
        try:
            for _ in range(scrapes):
                if url:
                    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
                    with urllib.request.urlopen(req, timeout=60) as resp:
                        resp.read()
                else:
                    time.sleep(0.02)
        finally:
            done.set()

    worst = 0.0
    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    while not done.is_set():
        due = time.perf_counter() + TICK
        await asyncio.sleep(TICK)
        worst = max(worst, time.perf_counter() - due)
    thread.join()
    if runner is not None:
        await runner.cleanup()
    return worst * 1e3


def app_with(handler: Any) -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app


async def measure(sites: int, agents: int, scrapes: int, folder: Path) -> dict[str, Any]:
    bridge = make_bridge(sites, agents, folder)
    took = halves(bridge, scrapes)
    floor = await longest_step(None, scrapes)
    before = await longest_step(app_with(make_aiohttp_handler(bridge.registry)), scrapes)
    after = await longest_step(app_with(metrics_handler(bridge.registry)), scrapes)
    # The same with the switch interval a started bridge runs with (ccbridge/workers.py).
    default = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        after_switch = await longest_step(app_with(metrics_handler(bridge.registry)), scrapes)
    finally:
        sys.setswitchinterval(default)
    return {
        "sites": sites,
        "agents": agents,
        "bytes": int(took["bytes"]),
        "collect_ms": round(took["collect"], 2),
        "format_ms": round(took["format"], 2),
        "format_cached_ms": round(took["format_cached"], 2),
        "format_om_ms": round(took["format_om"], 2),
        "format_om_cached_ms": round(took["format_om_cached"], 2),
        "floor_ms": round(floor, 2),
        "before_ms": round(before, 2),
        "after_ms": round(after, 2),
        "after_1ms_switch_ms": round(after_switch, 2),
        "before_x_floor": round(before / floor, 1) if floor else None,
        "after_x_floor": round(after / floor, 1) if floor else None,
        "after_1ms_switch_x_floor": round(after_switch / floor, 1) if floor else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scrapes", type=int, default=20)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for sites, agents in SIZES:
            rows.append(asyncio.run(measure(sites, agents, args.scrapes, Path(tmp))))
            if not args.json:
                r = rows[-1]
                print(
                    f"{r['sites']:>2} sites {r['agents']:>6} agents {r['bytes']:>8} B: "
                    f"collect {r['collect_ms']:7.2f} ms  format {r['format_ms']:7.2f} ms"
                    f" (cached {r['format_cached_ms']:6.2f}), OpenMetrics {r['format_om_ms']:7.2f}"
                    f" (cached {r['format_om_cached_ms']:6.2f}) | "
                    f"longest loop step: floor {r['floor_ms']:6.2f}  before {r['before_ms']:7.2f}"
                    f"  after {r['after_ms']:6.2f}"
                    f"  after, 1 ms switch {r['after_1ms_switch_ms']:6.2f} ms",
                    flush=True,
                )
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
