"""The ceiling bench's SpellWatch: the host's slow spells and the calls they touched
(tests/bench/spellwatch.py), its pure parts, and one short real watch."""

from __future__ import annotations

import os
import time

from tests.bench.cpu_probe import Spell
from tests.bench.spellwatch import SpellWatch, clear, local_spells


def units_at(
    t0: float, seconds: float, took: float, every: float = 0.005
) -> list[tuple[float, float]]:
    return [(t0 + i * every, took) for i in range(int(seconds / every))]


def test_a_slow_window_is_held_against_the_units_around_it_not_the_whole_run() -> None:
    # 0-3 s at 100 us a unit, 3-6 s at 200 us (the bench's load moved the baseline), and
    # 4.50-4.60 s at 800 us: only that is a spell, not the whole second half.
    units = units_at(0.0, 3.0, 1e-4) + units_at(3.0, 3.0, 2e-4)
    units = [(at, 8e-4 if 4.5 <= at < 4.6 else took) for at, took in units]
    found = local_spells(units)
    assert [(round(s.start, 3), round(s.end, 3)) for s in found] == [(4.5, 4.6)]
    assert round(found[0].factor, 1) == 4.0


def test_no_units_no_spells() -> None:
    assert local_spells([]) == []


def test_calls_whose_span_touched_a_spell_are_set_apart() -> None:
    spells = [Spell(10.0, 10.1, 4.0), Spell(20.0, 20.05, 3.0), Spell(99.0, 99.1, 5.0)]
    starts = [9.0, 9.995, 10.05, 10.2, 19.9, 30.0]
    latencies = [0.001, 0.010, 0.001, 0.001, 0.2, 0.002]  # the 19.9 one lasts into 20.0
    split = clear(starts, latencies, spells)
    assert split.clear == [0.001, 0.001, 0.002]
    assert split.touched == 3
    assert split.spells == 2  # the one at 99 s is after the calls


def test_a_short_watch_runs_a_process_a_cpu_and_returns_spells_on_the_clock() -> None:
    began = time.monotonic()
    with SpellWatch() as watch:
        time.sleep(0.5)
    ended = time.monotonic()
    # what this host does in half a second is not the test's to say; each spell found
    # lies within the watch, on the monotonic clock
    assert all(began - 0.1 <= s.start < s.end <= ended + 0.1 for s in watch.spells)
    assert watch._procs == []
    # one process a CPU, each timing a unit about every 5 ms meanwhile (0.8 s in all)
    assert len(watch.units) == len(os.sched_getaffinity(0))
    assert all(n >= 40 for n in watch.units), watch.units
