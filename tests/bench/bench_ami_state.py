"""AMI ingest: events/s parsed, dispatched, applied (state, KPIs, agents) vs panoramisk's parse.

The stream is bench_ami_parse's recorded-looking one (200 queues, 7 events a call, each
agent a member of 2 queues), at 100, 1,000 and 10,000 agents. "ccbridge ingest" is what a
live site link does per chunk: SiteLink's protocol (AmiParser, events handed on as
parsed) then the event bus's dispatch to the parts that subscribe: the live-state
reducer, the KPI tracker and the agent mirror of a real Bridge (not started: no
sockets), its state first synced with every membership (a QueueStatus reply), as on a
live site. The floor is panoramisk's bare parse of the same bytes, no state at all,
measured in the same process. Pinned to one CPU.

    .venv/bin/python -m tests.bench.bench_ami_state [--calls 20000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.events import Event, EventBus
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sites import REPO_ROOT
from ccbridge.routing.state import (
    HANDLED_EVENTS,
    LiveState,
    apply_event,
    begin_sync,
    complete_sync,
    set_site_up,
)
from tests.bench.bench_ami_parse import (
    ccbridge_protocol,
    chunks_of,
    generate_stream,
    memberships,
    run_panoramisk_bare,
)

SIZES = (100, 1_000, 10_000)
TARGET_RATIO = 1.0  # ingest / panoramisk's bare parse of the same bytes
FLAT_WITHIN = 0.15  # per-event cost across SIZES


def compose(bridge: Bridge) -> EventBus:
    """The bus with the subscriptions the Bridge makes: its own when it has one."""
    own: EventBus | None = getattr(bridge, "bus", None)
    if own is not None:
        return own
    bus = EventBus()
    clock = bridge.clock.time

    def on_state_event(site: str, event: Event) -> None:
        bridge.state = apply_event(bridge.state, site, event, clock())

    for name in sorted(HANDLED_EVENTS):
        bus.subscribe(name, on_state_event)
    for name in ("QueueCallerJoin", "AgentConnect", "AgentComplete", "QueueCallerAbandon"):
        bus.subscribe(name, bridge.kpi.on_event)
    for name in ("QueueMemberAdded", "QueueMemberPause", "QueueMemberStatus"):
        bus.subscribe(name, bridge.agents.on_event)
    return bus


def synced_state(bridge: Bridge, site: str, agents: int) -> LiveState:
    """The site up and synced with a QueueStatus reply listing every membership."""
    now = bridge.clock.time()
    state = begin_sync(set_site_up(bridge.state, site, True, now), site)
    for queue, ext in memberships(agents):
        item = {
            "Event": "QueueMember",
            "Queue": queue,
            "Name": f"Agent {ext}",
            "Location": f"PJSIP/agent{ext}",
            "Status": "1",
            "Paused": "0",
            "InCall": "0",
            "Penalty": "0",
        }
        state = apply_event(state, site, item, now)
    return complete_sync(state, site)


@dataclass
class Ingest:
    """A Bridge with its subscriptions, a synced start state to reset to, and a protocol."""

    bridge: Bridge
    site: str
    start: LiveState
    bus: EventBus

    def run(self, chunks: list[bytes]) -> int:
        # The state is persistent: every run starts from the same synced snapshot.
        self.bridge.state = self.start
        count = 0
        dispatch, site = self.bus.dispatch, self.site

        def on_event(event: Event) -> None:  # SiteLink._deliver's part
            nonlocal count
            count += 1
            dispatch(site, event)

        proto = ccbridge_protocol(on_event)
        for chunk in chunks:
            proto.data_received(chunk)
        return count


def make_ingest(agents: int) -> Ingest:
    ensure_lab_secrets()
    config = load_config(REPO_ROOT / "examples" / "lab.yaml")
    bridge = Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    site = config.sites[0].name
    start = synced_state(bridge, site, agents)
    return Ingest(bridge, site, start, compose(bridge))


def best_rate(fn: Callable[[list[bytes]], int], chunks: list[bytes], seconds: float) -> float:
    best, spent = 0.0, 0.0
    while spent < seconds or best == 0.0:
        t0 = time.perf_counter()
        n = fn(chunks)
        took = time.perf_counter() - t0
        spent += took
        best = max(best, n / took)
    return best


def measure_size(agents: int, calls: int, seconds: float) -> dict[str, Any]:
    stream, events = generate_stream(calls, agents=agents)
    chunks = chunks_of(stream)
    ingest = make_ingest(agents)
    n = ingest.run(chunks)
    site_state = ingest.bridge.state.sites[ingest.site]
    members = len(site_state.members)
    if n != events or members != len(memberships(agents)):
        raise SystemExit(f"ingest saw {n}/{events} events, {members} members in the state")
    # Interleaved, so both see the same machine load.
    ours = bare = 0.0
    for _ in range(2):
        ours = max(ours, best_rate(ingest.run, chunks, seconds / 2))
        bare = max(bare, best_rate(run_panoramisk_bare, chunks, seconds / 2))
    return {
        "agents": agents,
        "members_in_state": members,
        "events": events,
        "ccbridge_ingest_events_per_s": round(ours),
        "panoramisk_bare_parse_events_per_s": round(bare),
        "ratio": round(ours / bare, 3),
        "ingest_us_per_event": round(1e6 / ours, 2),
    }


async def run(calls: int, seconds: float, sizes: tuple[int, ...]) -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core
    rows = [measure_size(agents, calls, seconds) for agents in sizes]
    costs = [r["ingest_us_per_event"] for r in rows]
    spread = max(costs) / min(costs) - 1.0
    worst = min(r["ratio"] for r in rows)
    return {
        "bench": "ami_ingest",
        "mix": "7 queue events a call",
        "sizes": rows,
        "worst_ratio": worst,
        "cost_spread": round(spread, 3),
        "target_ratio": TARGET_RATIO,
        "flat_within": FLAT_WITHIN,
        "met": worst >= TARGET_RATIO and spread <= FLAT_WITHIN,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=20_000, help="calls in the stream (7 events)")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="agent counts")
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    sizes = tuple(int(x) for x in args.sizes.split(","))
    r = asyncio.run(run(args.calls, args.seconds, sizes))
    for row in r["sizes"]:
        print(
            f"ami {row['agents']:>6} agents ({row['members_in_state']} members): ccbridge "
            f"parse+dispatch+state+KPIs+agents {row['ccbridge_ingest_events_per_s']:,} events/s "
            f"({row['ingest_us_per_event']} us/event), panoramisk bare parse "
            f"{row['panoramisk_bare_parse_events_per_s']:,} events/s: ratio {row['ratio']}"
        )
    print(
        f"worst ratio {r['worst_ratio']} (target >= {TARGET_RATIO}); per-event cost spread "
        f"{r['cost_spread']:.1%} (target <= {FLAT_WITHIN:.0%}): {'met' if r['met'] else 'MISSED'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0 if r["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
