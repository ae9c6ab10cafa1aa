"""Bench only: the host's slow spells during a bench step, watched from beside it.

On the 2-vCPU VM of BENCHMARKS.md the host slows both vCPUs 3-15 times for 50-200 ms
every ~1.5 s (§12, sixteenth session; ``tests/bench/cpu_probe.py``). A call that meets
such a spell is slow whatever the server does. ``SpellWatch`` runs one small process
pinned to each CPU for the length of a step, timing a fixed ~0.1 ms unit of arithmetic
every ~5 ms (``DUTY``: ~2 % of each CPU) on its own thread's CPU clock: another process
that takes the CPU meanwhile does not count (the unit's CPU time is its own), a host
that slows the vCPU does (the guest charges the lost time to the thread running then).
The spells are ``cpu_probe.spells`` over those units, against the median of the units
within ``BASELINE_S`` around each window (the bench's own load moves the baseline
slowly), and only those seen on every CPU at once count: the host's, not one process's.

``clear`` then splits a step's calls: those whose span (start to end) touched a spell,
and the rest, whose p99 says what the server does on a host without spells.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType

from tests.bench.cpu_probe import WINDOW, Spell, runs, shared, unit, windows_of

DUTY = 0.02  # of each CPU
UNIT = 2000  # loop turns: ~0.1 ms
BASELINE_S = 2.0  # the median a window is held against: the units within +-1 s of it


def _watch(cpu: int, conn: Connection) -> None:
    """On ``cpu``: (monotonic start, thread CPU seconds) of every unit until told to stop."""
    os.sched_setaffinity(0, {cpu})
    units: list[tuple[float, float]] = []
    while not conn.poll():
        began, cpu0 = time.monotonic(), time.thread_time()
        unit(UNIT)
        took = time.thread_time() - cpu0
        units.append((began, took))
        time.sleep(max(took, 5e-5) * (1 - DUTY) / DUTY)
    conn.recv()
    conn.send(units)
    conn.close()


def local_spells(units: list[tuple[float, float]]) -> list[Spell]:
    """``cpu_probe.spells`` of ``units`` (monotonic start, seconds), each window against
    the median unit within ``BASELINE_S`` around it; the spells on the monotonic clock."""
    windows = windows_of(units)
    keys = sorted(windows)
    at = {k: i for i, k in enumerate(keys)}
    span = round(BASELINE_S / 2 / WINDOW)

    def baseline(k: int) -> float:
        i = at[k]
        return statistics.median(
            x for j in keys[max(0, i - span) : i + span + 1] for x in windows[j]
        )

    return runs(windows, baseline)


@dataclass
class Split:
    clear: list[float]  # the latencies (s) of the calls that touched no spell
    touched: int  # calls whose span touched a spell
    spells: int  # spells within the calls' time


def clear(starts: list[float], latencies: list[float], spells: list[Spell]) -> Split:
    """Split calls (start on the monotonic clock, latency s) by whether their span
    touched one of ``spells``."""
    ordered = sorted(spells, key=lambda s: s.start)
    kept: list[float] = []
    touched = 0
    for start, latency in zip(starts, latencies, strict=True):
        end = start + latency
        if any(s.start < end and start < s.end for s in ordered):
            touched += 1
        else:
            kept.append(latency)
    first = min(starts, default=0.0)
    last = max((s + x for s, x in zip(starts, latencies, strict=True)), default=0.0)
    within = sum(1 for s in ordered if s.start < last and first < s.end)
    return Split(kept, touched, within)


class SpellWatch:
    """``with SpellWatch() as watch: ...`` then ``watch.spells``: the spells seen on every
    CPU at once while the block ran."""

    def __init__(self) -> None:
        self.spells: list[Spell] = []
        self.units: list[int] = []  # the units each CPU's process timed
        self._procs: list[tuple[mp.process.BaseProcess, Connection]] = []

    def __enter__(self) -> SpellWatch:
        ctx = mp.get_context("spawn")
        for cpu in sorted(os.sched_getaffinity(0)):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_watch, args=(cpu, theirs), daemon=True)
            proc.start()
            theirs.close()
            self._procs.append((proc, mine))
        time.sleep(0.3)  # spawned and timing before the step starts
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        per_cpu: list[list[Spell]] = []
        self.units = []
        for proc, conn in self._procs:
            conn.send("stop")
            units = conn.recv() if conn.poll(30) else []
            self.units.append(len(units))
            per_cpu.append(local_spells(units))
            proc.join(5)
            if proc.is_alive():
                proc.kill()
            conn.close()
        self._procs.clear()
        self.spells = shared(per_cpu)
