"""The CPU probe's grouping of slow units into clusters (tests/bench/cpu_probe.py)."""

from __future__ import annotations

from tests.bench.cpu_probe import CLUSTER_GAP, Cluster, clusters


def test_slow_units_close_together_are_one_cluster_with_its_worst() -> None:
    slow = [(1.0, 0.004), (1.05, 0.009), (1.05 + CLUSTER_GAP * 0.9, 0.003), (2.5, 0.005)]
    assert clusters(slow) == [
        Cluster(start=1.0, last=1.05 + CLUSTER_GAP * 0.9, units=3, worst=0.009),
        Cluster(start=2.5, last=2.5, units=1, worst=0.005),
    ]


def test_no_slow_unit_no_cluster() -> None:
    assert clusters([]) == []


def test_windows_slow_on_average_are_spells_and_runs_of_them_merge() -> None:
    from tests.bench.cpu_probe import WINDOW, Spell, spells

    median = 0.0001
    units = [(i * 0.001, median) for i in range(1000)]  # 1 s of units at the median
    # 60-160 ms: every unit 4 times dearer (the 150-200 ms window, a fifth of it so, stays
    # under 2x); 500-550 ms: 2.5 times
    units = [(at, took * 4 if 0.06 <= at < 0.16 else took) for at, took in units]
    units = [(at, took * 2.5 if 0.5 <= at < 0.55 else took) for at, took in units]
    found = spells(units, median)
    assert [(round(s.start, 3), round(s.end, 3)) for s in found] == [(0.05, 0.15), (0.5, 0.55)]
    assert found[0].factor == 4.0 and found[1].factor == 2.5
    assert WINDOW == 0.05 and isinstance(found[0], Spell)


def test_one_slow_unit_in_a_window_is_no_spell() -> None:
    from tests.bench.cpu_probe import spells

    median = 0.0001
    units = [(i * 0.001, median) for i in range(100)]
    units[10] = (0.010, 0.002)  # 20 times the median, once: the window's mean is ~1.4x
    assert spells(units, median) == []


def test_a_spell_is_shared_when_every_cpu_has_one_overlapping_it() -> None:
    from tests.bench.cpu_probe import Spell, shared

    cpu0 = [Spell(1.0, 1.1, 3.0), Spell(2.5, 2.6, 4.0)]
    cpu1 = [Spell(1.05, 1.15, 3.5), Spell(4.0, 4.1, 2.0)]
    assert shared([cpu0, cpu1]) == [Spell(1.0, 1.1, 3.0)]
    assert shared([cpu0]) == cpu0
    assert shared([]) == []
