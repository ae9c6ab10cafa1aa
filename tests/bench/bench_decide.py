"""Benchmark: routing decisions per second over 10 sites, 100 queues and 2,000 agents.

Run: ``.venv/bin/python -m tests.bench.bench_decide [--count N] [--seconds S] [--json F]``
(or ``.venv/bin/python tests/bench/bench_decide.py``). Single-threaded, one core.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ccbridge.config.model import Country, RoutingSettings, queue_name
from ccbridge.routing.engine import CallRequest, Router
from ccbridge.routing.state import (
    LiveState,
    apply_event,
    begin_sync,
    complete_sync,
    initial_state,
    set_site_up,
)
from tests.unit.routing_factories import (
    after_hours,
    config,
    full_mesh,
    number,
    offering,
    schedule,
    site,
)

ZONES = [
    ("blr", "Asia/Kolkata", "IN"),
    ("dac", "Asia/Dhaka", "BD"),
    ("mnl", "Asia/Manila", "PH"),
    ("khi", "Asia/Karachi", "PK"),
    ("lon", "Europe/London", "GB"),
    ("nyc", "America/New_York", "US"),
    ("akl", "Pacific/Auckland", "NZ"),
    ("ppg", "Pacific/Pago_Pago", "AS"),
    ("ber", "Europe/Berlin", "DE"),
    ("tyo", "Asia/Tokyo", "JP"),
]
LANGS = ("en", "hi", "bn", "ur", "tl")
SERVICES = ("orders", "returns")
AGENTS_PER_SITE = 200
T0 = datetime(2025, 1, 8, 6, 0, tzinfo=UTC)  # a Wednesday: some sites open, some closed


def build() -> tuple[Router, LiveState, list[CallRequest]]:
    rng = random.Random(7)
    hours = [
        schedule({"mon-fri": "08:00-20:00"}, country="IN"),
        schedule({"sun-thu": "09:00-18:00", "mon": "22:00-06:00"}, country="BD"),
        schedule(always=True),
        schedule({"mon-sat": "07:00-23:00"}),
    ]
    sites = [
        site(
            name,
            [offering(s, LANGS, hours[(i + j) % 4]) for j, s in enumerate(SERVICES)],
            tz=tz,
            n=i + 1,
        )
        for i, (name, tz, _) in enumerate(ZONES)
    ]
    numbers = [
        number(f"+9180000{i:05d}", SERVICES[i % 2], ZONES[i % 10][0], country="IN")
        for i in range(40)
    ]
    cfg = config(
        sites,
        numbers,
        trunks=full_mesh([z[0] for z in ZONES], per_pair=2),
        routing=RoutingSettings(after_hours=after_hours("site", "mnl")),
        countries=(
            Country("IN", "91", "hi"),
            Country("BD", "880", "bn"),
            Country("PK", "92", "ur"),
            Country("PH", "63", "tl"),
            Country("GB", "44", "en"),
        ),
    )
    state = initial_state(z[0] for z in ZONES)
    queues = [queue_name(s, lang) for s in SERVICES for lang in LANGS]
    now = T0.timestamp() - 3600
    n_events = 0
    t_start = time.perf_counter_ns()
    for name, _, _ in ZONES:
        state = set_site_up(state, name, True, now)
        state = begin_sync(state, name)
        for q in queues:
            ev = {"Event": "QueueParams", "Queue": q, "Calls": "0", "TalkTime": "120"}
            state = apply_event(state, name, ev, now)
        state = complete_sync(state, name)
        for a in range(AGENTS_PER_SITE):
            for q in (queues[a % 10], queues[(a + 3) % 10]):
                ev = {
                    "Event": "QueueMemberAdded",
                    "Queue": q,
                    "MemberName": f"{name}-agent{a}",
                    "Interface": f"PJSIP/{name}-agent{a}",
                    "Status": rng.choice("1122225"),
                    "Paused": rng.choice("0001"),
                }
                state = apply_event(state, name, ev, now)
                n_events += 1
        for q in queues:  # callers waiting, so that home sites are often busy
            for c in range(rng.randrange(0, 9)):
                ev = {
                    "Event": "QueueCallerJoin",
                    "Queue": q,
                    "Uniqueid": f"{name}.{q}.{c}",
                    "Position": str(c + 1),
                    "Count": str(c + 1),
                }
                state = apply_event(state, name, ev, now)
                n_events += 1
    elapsed = (time.perf_counter_ns() - t_start) / 1e9
    print(f"reducer: {n_events} events in {elapsed:.3f} s = {n_events / elapsed:,.0f} events/s")
    callers = [
        "+447700900123",
        "+919812345678",
        "+8801712345678",
        "+923001234567",
        "+639171234567",
        "anonymous",
    ]
    calls = [
        CallRequest(
            n.did, rng.choice(callers), rng.choice(ZONES)[0], rng.choice([None, None, "en", "tl"])
        )
        for n in cfg.numbers
        for _ in range(25)
    ]
    rng.shuffle(calls)
    return Router(cfg), state, calls


def run(
    label: str,
    fn: Callable[[CallRequest, LiveState, datetime], object],
    calls: list[CallRequest],
    state: LiveState,
    count: int,
    seconds: float,
    jump: timedelta,
) -> dict[str, float]:
    """Time ``fn`` per call; ``jump`` is how far the clock moves between decisions."""
    samples: list[int] = []
    now = T0
    n_calls = len(calls)
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    start = clock()
    i = 0
    while i < count:
        c = calls[i % n_calls]
        t = clock()
        fn(c, state, now)
        samples.append(clock() - t)
        i += 1
        now += jump
        if i & 1023 == 0 and clock() > deadline:
            break
    total = (clock() - start) / 1e9
    samples.sort()
    rate = i / total
    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
    print(
        f"{label}: {i:,} calls in {total:.2f} s = {rate:,.0f}/s; "
        f"p50 {p50 / 1000:.2f} us, p99 {p99 / 1000:.2f} us"
    )
    return {"per_s": round(rate), "p50_us": p50 / 1000, "p99_us": p99 / 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=300_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", help="write the figures here too (make bench)")
    args = ap.parse_args()
    router, state, calls = build()
    outcomes: dict[str, int] = {}
    for c in calls:
        d = router.decide(c, state, T0)
        key = f"{d.outcome}:{d.reasons[-1]}"
        outcomes[key] = outcomes.get(key, 0) + 1
    print("decision mix:", dict(sorted(outcomes.items())))

    def baseline(call: CallRequest, state: LiveState, now: datetime) -> object:
        return call

    base = run("baseline call", baseline, calls, state, args.count, args.seconds, timedelta(0))
    live = run(
        "decide (clock +1 ms/call)",
        router.decide,
        calls,
        state,
        args.count,
        args.seconds,
        timedelta(milliseconds=1),
    )
    cold = run(
        "decide (clock +97 s/call, schedule memo misses)",
        router.decide,
        calls,
        state,
        args.count // 4,
        args.seconds,
        timedelta(seconds=97),
    )
    b, hit, miss = base["per_s"], live["per_s"], cold["per_s"]
    print(f"ratio baseline/decide: {b / hit:.1f}x (memo hit), {b / miss:.1f}x (memo miss)")
    print(f"target >= 50,000 decisions/s: {'met' if hit >= 50_000 else 'NOT met'}")
    if args.json:
        result = {"baseline": base, "memo_hit": live, "memo_miss": cold, "mix": outcomes}
        result["met"] = hit >= 50_000
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
