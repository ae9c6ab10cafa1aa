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
