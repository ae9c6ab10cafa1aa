"""Bench only: does this machine hold a busy CPU back now and then, with no network at all?

Issue 15's tail (BENCHMARKS.md §12) is made of clusters of slow calls every ~1.5 s, which
the bare FastAGI floor shows too, smaller. This takes the bridge, the load generator and
the sockets out: one process pinned to each CPU times a fixed unit of Python arithmetic
(~0.1 ms) over and over, idling between units to a chosen duty, and reports two things:

- the units that took over 3 times the median and 2 ms more: a vCPU the host takes away
  for milliseconds at a time shows as such units, a periodic cause as clusters at a
  steady gap;
- the **slow spells**: 50 ms windows whose units took on average ``SPELL_FACTOR`` times
  the median or more, runs of such windows merged. A vCPU the host *slows* (every unit
  3-10 times dearer for 50-150 ms) shows here and not above: each unit stays under 2 ms.
  A spell seen on every CPU at once is the host's, not one process's.

    .venv/bin/python -m tests.bench.cpu_probe --seconds 20 --duty 1.0
    .venv/bin/python -m tests.bench.cpu_probe --seconds 20 --duty 0.5
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue

CLUSTER_GAP = 0.1  # s: slow units closer than this are one cluster
WINDOW = 0.05  # s: the spells' windows
SPELL_FACTOR = 2.0  # a window whose units took this many times the median, or more, is slow


def unit(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i
    return x


def worker(
    cpu: int, seconds: float, n: int, duty: float, out: Queue[tuple[int, list[tuple[float, float]]]]
) -> None:
    """On ``cpu``: (start, duration) of every unit for ``seconds``, busy ``duty`` of the time."""
    os.sched_setaffinity(0, {cpu})
    units: list[tuple[float, float]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.perf_counter()
        unit(n)
        took = time.perf_counter() - began
        units.append((began, took))
        if duty < 1.0:
            time.sleep(took * (1 - duty) / duty)
    out.put((cpu, units))


@dataclass
class Cluster:
    start: float  # s into the run
    last: float
    units: int
    worst: float  # s


def clusters(slow: list[tuple[float, float]]) -> list[Cluster]:
    found: list[Cluster] = []
    for at, took in slow:
        if found and at - found[-1].last < CLUSTER_GAP:
            c = found[-1]
            c.last, c.units, c.worst = at, c.units + 1, max(c.worst, took)
        else:
            found.append(Cluster(at, at, 1, took))
    return found


@dataclass
class Spell:
    start: float  # s into the run, the first slow window's start
    end: float  # the last slow window's end
    factor: float  # the slowest window's mean unit against the run's median


def windows_of(units: list[tuple[float, float]]) -> dict[int, list[float]]:
    """The units' times (start s, seconds) by ``WINDOW``-long window: window k starts at
    k * WINDOW."""
    windows: dict[int, list[float]] = {}
    for at, took in units:
        windows.setdefault(int(at // WINDOW), []).append(took)
    return windows


def runs(windows: dict[int, list[float]], baseline: Callable[[int], float]) -> list[Spell]:
    """Runs of windows whose units took on average ``SPELL_FACTOR`` times the window's
    ``baseline`` or more, each run one spell."""
    found: list[Spell] = []
    for k in sorted(windows):
        factor = statistics.fmean(windows[k]) / baseline(k)
        if factor < SPELL_FACTOR:
            continue
        start = k * WINDOW
        if found and abs(found[-1].end - start) < WINDOW / 2:
            last = found[-1]
            last.end, last.factor = start + WINDOW, max(last.factor, factor)
        else:
            found.append(Spell(start, start + WINDOW, factor))
    return found


def spells(units: list[tuple[float, float]], median: float) -> list[Spell]:
    """Runs of ``WINDOW``-long windows whose units (start s into the run, seconds) took
    on average ``SPELL_FACTOR`` times ``median`` or more."""
    return runs(windows_of(units), lambda _: median)


def shared(per_cpu: list[list[Spell]]) -> list[Spell]:
    """The spells of the first CPU that overlap a spell on every other CPU."""
    if not per_cpu:
        return []
    return [
        s
        for s in per_cpu[0]
        if all(any(o.start < s.end and s.start < o.end for o in other) for other in per_cpu[1:])
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--duty", type=float, default=1.0, help="busy share of each CPU, 0-1")
    ap.add_argument("--unit", type=int, default=2000, help="loop turns a unit (~0.1 ms)")
    args = ap.parse_args(argv)
    if not 0 < args.duty <= 1 or not 0 < args.seconds <= 600:
        ap.error("--duty in (0, 1], --seconds in (0, 600]")
    out: Queue[tuple[int, list[tuple[float, float]]]] = mp.Queue()
    cpus = sorted(os.sched_getaffinity(0))
    procs = [
        mp.Process(target=worker, args=(c, args.seconds, args.unit, args.duty, out)) for c in cpus
    ]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=args.seconds + 60) for _ in procs)
    for p in procs:
        p.join(10)
    t0 = min(units[0][0] for _, units in results if units)
    print(f"{len(cpus)} CPUs, {args.seconds:g} s, duty {args.duty:g}, load {os.getloadavg()}")
    per_cpu: list[list[Spell]] = []
    for cpu, units in results:
        took = sorted(x for _, x in units)
        med = statistics.median(took)
        slow = [(b - t0, x) for b, x in units if x > 3 * med and x - med > 0.002]
        found = clusters(slow)
        gaps = [b.start - a.start for a, b in itertools.pairwise(found)]
        print(
            f"cpu{cpu}: {len(took)} units, median {med * 1e6:.0f} us, "
            f"p99 {took[int(len(took) * 0.99)] * 1e6:.0f} us, max {took[-1] * 1e3:.2f} ms; "
            f"slow {len(slow)} in {len(found)} clusters"
            + (f", median gap {statistics.median(gaps):.2f} s" if gaps else "")
        )
        if found:
            print(
                "   "
                + " ".join(f"{c.start:.2f}s:{c.units}x{c.worst * 1e3:.1f}ms" for c in found[:30])
            )
        mine = spells([(b - t0, x) for b, x in units], med)
        per_cpu.append(mine)
        print(f"cpu{cpu}: {describe(mine)}")
    both = shared(per_cpu)
    print(f"on every CPU at once: {describe(both)}")
    return 0


def describe(found: list[Spell]) -> str:
    gaps = [b.start - a.start for a, b in itertools.pairwise(found)]
    head = (
        f"{len(found)} slow spells (windows of {WINDOW * 1e3:.0f} ms at >= {SPELL_FACTOR:g}x "
        f"the median unit)"
    )
    if gaps:
        head += f", median gap {statistics.median(gaps):.2f} s"
    if found:
        head += "\n   " + " ".join(
            f"{s.start:.2f}s:{(s.end - s.start) * 1e3:.0f}ms@{s.factor:.1f}x" for s in found[:30]
        )
    return head


if __name__ == "__main__":
    raise SystemExit(main())
