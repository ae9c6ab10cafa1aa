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
owners.
"""

from __future__ import annotations

import asyncio
import atexit
import heapq
import json
import sys
import time
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

    asyncio.Handle._run = timed_run  # type: ignore[method-assign]
    asyncio.BaseEventLoop._run_once = timed_run_once  # type: ignore[attr-defined]
    atexit.register(lambda: print(summary(), file=sys.stderr, flush=True))


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
