"""AMI ingestion: events/s parsed and applied to the bridge's live state, vs panoramisk's parse.

The stream is bench_ami_parse's recorded-looking one (1,000 agents, 200 queues, 7 events a
call). "ccbridge ingest" is what a live site link does per chunk: SiteLink's protocol
(AmiParser, panoramisk Message, handle_message) then the bridge's event handler — the
live-state reducer, KPI tracker and agent mirror — on a real Bridge (not started: no
sockets). The baseline is panoramisk's bare parse of the same bytes, no state at all.
Pinned to one CPU.

    .venv/bin/python -m tests.bench.bench_ami_state [--calls 20000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccbridge.ami.client import _Protocol
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sites import REPO_ROOT
from ccbridge.routing.state import begin_sync, complete_sync, set_site_up
from tests.bench.bench_ami_parse import (
    _protocol,
    chunks_of,
    generate_stream,
    run_panoramisk_bare,
)

TARGET = 20_000.0


class _BridgeFactory:
    """Stands in for panoramisk's Manager: hands every event to the bridge, as SiteLink does."""

    save_stream = None
    forgetable_actions = ("ping", "login")

    def __init__(self, bridge: Bridge, site: str) -> None:
        self.bridge, self.site, self.count = bridge, site, 0
        self.awaiting_actions: list[Any] = []

    def dispatch(self, message: Any) -> list[str]:
        self.count += 1
        self.bridge.bus.dispatch(self.site, message.ami.to_dict())
        return []


def fresh_bridge() -> tuple[Bridge, str]:
    ensure_lab_secrets()
    config = load_config(REPO_ROOT / "examples" / "lab.yaml")
    bridge = Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    site = config.sites[0].name
    now = bridge.clock.time()
    bridge.state = complete_sync(begin_sync(set_site_up(bridge.state, site, True, now), site), site)
    return bridge, site


def run_ingest(chunks: list[bytes]) -> tuple[int, Bridge, str]:
    bridge, site = fresh_bridge()
    proto, _ = _protocol(_Protocol)
    factory = _BridgeFactory(bridge, site)
    proto.factory = factory
    for chunk in chunks:
        proto.data_received(chunk)
    return factory.count, bridge, site


def best_rate(fn: Any, chunks: list[bytes], seconds: float) -> float:
    best, spent = 0.0, 0.0
    while spent < seconds or best == 0.0:
        t0 = time.perf_counter()
        out = fn(chunks)
        took = time.perf_counter() - t0
        n = out[0] if isinstance(out, tuple) else out
        spent += took
        best = max(best, n / took)
    return best


def run(calls: int, seconds: float) -> dict[str, object]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core
    stream, events = generate_stream(calls)
    chunks = chunks_of(stream)
    n, bridge, site = run_ingest(chunks)
    queues = len(bridge.state.sites[site].queues)
    if n != events or queues < 200:
        raise SystemExit(f"ingest saw {n}/{events} events, {queues} queues in the state")
    ours = best_rate(run_ingest, chunks, seconds)
    bare = best_rate(run_panoramisk_bare, chunks, seconds)
    return {
        "bench": "ami_ingest",
        "events": events,
        "queues_in_state": queues,
        "ccbridge_ingest_events_per_s": round(ours),
        "panoramisk_bare_parse_events_per_s": round(bare),
        "ratio": round(ours / bare, 3),
        "target_events_per_s": TARGET,
        "met": ours >= TARGET,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=20_000, help="calls in the stream (7 events)")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    r = run(args.calls, args.seconds)
    print(
        f"ami: ccbridge parse+apply {r['ccbridge_ingest_events_per_s']:,} events/s, panoramisk "
        f"bare parse {r['panoramisk_bare_parse_events_per_s']:,} events/s "
        f"(ratio {r['ratio']}); target >= {TARGET:,.0f}: {'met' if r['met'] else 'MISSED'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0 if r["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
