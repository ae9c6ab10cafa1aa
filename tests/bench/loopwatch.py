"""Bench only: what holds a bridge's event loop, without asyncio's debug mode.

Debug mode records a traceback for every handle made and so changes what it measures;
this times each callback (``Handle._run``) and each loop turn's busy part (from its first
callback to its end) on the loop thread's CPU clock (on a shared machine the wall clock
mostly measures preemption, which no code change removes), by the callback's owner: a
task by its coroutine, a transport or protocol method by its class.
``CCB_BENCH_LOOPWATCH=MS`` (read by tests/bench/gcwatch.py) installs it; at exit one
``loopwatch:`` JSON line goes to stderr with, per owner, the callbacks run, their total
and longest ms and how many took over MS; the turns over MS; the turns' busy CPU
quantiles; and the 20 longest turns, when (seconds since start) and their five dearest
owners. ``CCB_BENCH_LOOPWATCH_DUMP=FILE`` also writes every callback at exit, one line
each (the monotonic clock when it ended, its CPU in us, its owner); ``python -m
tests.bench.loopwatch FILE --since T0`` then prints it in 50 ms bins: how many callbacks,
their CPU, and the two dearest owners' count and mean CPU a callback. A bin whose
callbacks are as many as its neighbours' but each several times dearer is a CPU that ran
slower then (BENCHMARKS.md §12, sixteenth session), not more work.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import heapq
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_limit = 0.005
_by_name: dict[str, list[float]] = {}  # name: [count, total s, max s, over]
_turn: list[tuple[float, str]] = []  # this turn's callbacks: (seconds, name)
_turn_started: float | None = None
_turns = [0, 0]  # turns with callbacks, turns over the limit
_longest: list[tuple[float, int, tuple[float, list[tuple[float, str]]]]] = []  # longest turns
_seq = 0
_busy: list[float] = []  # every turn's busy CPU seconds
_installed = time.monotonic()
clock = time.thread_time
_keep_timeline = False
_timeline: list[tuple[float, float, str]] = []  # CCB_BENCH_LOOPWATCH_DUMP: (ended, s, owner)


def _dump_timeline(path: str) -> None:
    with open(path, "w") as f:
        f.writelines(f"{t:.6f} {x * 1e6:.1f} {n.replace(' ', '_')}\n" for t, x, n in _timeline)


def describe(handle: asyncio.Handle) -> str:
    cb: Any = handle._callback
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"task {getattr(coro, '__qualname__', type(coro).__name__)}"
    name = getattr(cb, "__qualname__", None) or getattr(cb, "__name__", None)
    if owner is not None and not isinstance(owner, type):
        return f"{type(owner).__qualname__}.{getattr(cb, '__name__', '?')}"
    return str(name or type(cb).__name__)


def install(limit_ms: float) -> None:
    global _limit, _installed
    _installed = time.monotonic()
    _limit = limit_ms / 1000
    run = asyncio.Handle._run
    run_once = asyncio.BaseEventLoop._run_once  # type: ignore[attr-defined]

    def timed_run(self: asyncio.Handle) -> None:
        global _turn_started
        name = describe(self)
        started = clock()
        if _turn_started is None:
            _turn_started = started
        try:
            run(self)
        finally:
            took = clock() - started
            row = _by_name.get(name)
            if row is None:
                row = _by_name[name] = [0, 0.0, 0.0, 0]
            row[0] += 1
            row[1] += took
            row[2] = max(row[2], took)
            if took > _limit:
                row[3] += 1
            _turn.append((took, name))
            if _keep_timeline:
                _timeline.append((time.monotonic(), took, name))

    def timed_run_once(self: asyncio.BaseEventLoop) -> None:
        global _turn_started, _seq
        _turn.clear()
        _turn_started = None
        run_once(self)
        if _turn_started is None:
            return
        busy = clock() - _turn_started
        _turns[0] += 1
        if busy > _limit:
            _turns[1] += 1
        _seq += 1
        _busy.append(busy)
        owners: dict[str, float] = {}
        for took, name in _turn:
            owners[name] = owners.get(name, 0.0) + took
        top = sorted(((t, n) for n, t in owners.items()), reverse=True)[:5]
        item = (busy, _seq, (time.monotonic() - _installed, top))
        if len(_longest) < 20:
            heapq.heappush(_longest, item)
        elif busy > _longest[0][0]:
            heapq.heapreplace(_longest, item)

    global _keep_timeline
    dump = os.environ.get("CCB_BENCH_LOOPWATCH_DUMP")
    _keep_timeline = bool(dump)
    asyncio.Handle._run = timed_run  # type: ignore[method-assign]
    asyncio.BaseEventLoop._run_once = timed_run_once  # type: ignore[attr-defined]
    atexit.register(lambda: print(summary(), file=sys.stderr, flush=True))
    if dump:
        atexit.register(_dump_timeline, dump)


def quantiles() -> list[float]:
    if not _busy:
        return []
    ordered = sorted(_busy)
    at = [0.5, 0.99, 0.999]
    picked = [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in at]
    return [round(x * 1000, 2) for x in [*picked, ordered[-1]]]


def summary() -> str:
    owners = sorted(_by_name.items(), key=lambda kv: -kv[1][1])[:25]
    out = {
        "limit_ms": _limit * 1000,
        "turns": _turns[0],
        "turns_over": _turns[1],
        "turn_ms_p50_p99_p999_max": quantiles(),
        "owners": [
            {
                "name": n,
                "count": int(c),
                "total_ms": round(t * 1000),
                "max_ms": round(m * 1000, 2),
                "over": int(o),
            }
            for n, (c, t, m, o) in owners
        ],
        "longest_turns": [
            {
                "ms": round(b * 1000, 2),
                "at_s": round(at, 1),
                "top": [(round(s * 1000, 2), n) for s, n in top],
            }
            for b, _, (at, top) in sorted(_longest, reverse=True)
        ],
    }
    return "loopwatch: " + json.dumps(out)


# --------------------------------------------------------------------------- the timeline

BIN = 0.05  # s


@dataclass
class Bin:
    start: float  # s since the timeline's T0
    callbacks: int = 0
    cpu: float = 0.0  # us
    owners: dict[str, list[float]] = field(default_factory=dict)  # owner: [count, us]


def bins(rows: list[tuple[float, float, str]], since: float, seconds: float) -> list[Bin]:
    """The callbacks (ended on the monotonic clock, CPU us, owner) from ``since`` for
    ``seconds``, in ``BIN``-long bins (every bin, an empty one too)."""
    out = [Bin(round(i * BIN, 6)) for i in range(round(seconds / BIN))]
    for ended, us, owner in rows:
        k = int((ended - since) // BIN)
        if 0 <= k < len(out):
            b = out[k]
            b.callbacks += 1
            b.cpu += us
            row = b.owners.setdefault(owner, [0, 0.0])
            row[0] += 1
            row[1] += us
    return out


def read_timeline(path: Path) -> list[tuple[float, float, str]]:
    rows = []
    for line in path.read_text().splitlines():
        ended, us, owner = line.split(" ", 2)
        rows.append((float(ended), float(us), owner))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A CCB_BENCH_LOOPWATCH_DUMP timeline in bins")
    ap.add_argument("timeline", type=Path)
    ap.add_argument("--since", type=float, required=True, help="T0 on the monotonic clock")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    binned = bins(read_timeline(args.timeline), args.since, args.seconds)
    totals: dict[str, float] = {}
    for b in binned:
        for owner, (_, us) in b.owners.items():
            totals[owner] = totals.get(owner, 0.0) + us
    top = sorted(totals, key=lambda o: -totals[o])[:2]
    print(f"bins of {BIN * 1e3:.0f} ms; the two dearest owners: {', '.join(top)}")
    for b in binned:
        parts = []
        for owner in top:
            n, us = b.owners.get(owner, [0, 0.0])
            parts.append(f"{int(n):4d} x {us / n if n else 0:6.1f} us")
        print(
            f"{b.start:6.2f} s  {b.callbacks:5d} callbacks {b.cpu / 1e3:6.1f} ms  "
            + "  ".join(parts)
            + "  "
            + "#" * int(b.cpu / 1e3 / 5)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
