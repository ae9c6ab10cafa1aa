"""bench_e2e_records: the records-on minus records-off ratio per round, and its two-sided
verdict against 0.02."""

from __future__ import annotations

import pytest

from tests.bench import bench_e2e
from tests.bench.bench_e2e_records import differences, judge
from tests.bench.verdict import MET, MISSED, NOT_RESOLVED


def _step(seq: int, variant: str, rnd: int, ms: float, failed: int = 0) -> bench_e2e.Step:
    step = bench_e2e.Step(variant, 150.0, rnd, seq, 900, 900 - failed, failed, 2.0, 0, 7.0)
    step.cpu_ms_per_call = {"asterisk": ms}
    return step


def test_the_difference_pairs_each_round_and_skips_a_round_with_a_failed_path() -> None:
    steps = [
        _step(0, "static", 0, 2.0),
        _step(1, "routed", 0, 2.2),
        _step(2, "static", 0, 2.0),
        _step(3, "routed-records", 0, 2.25),
        _step(4, "static", 0, 2.0),
        _step(5, "routed-records", 1, 2.3, failed=3),  # not clean: round 1 has no pair
        _step(6, "static", 1, 2.0),
        _step(7, "routed", 1, 2.2),
        _step(8, "static", 1, 2.0),
    ]
    got = differences(steps)
    assert got["routed"] == pytest.approx([2.0 / 2.2, 2.0 / 2.2])
    assert got["routed-records"] == pytest.approx([2.0 / 2.25])
    assert got["difference"] == pytest.approx([2.0 / 2.25 - 2.0 / 2.2])


def test_records_on_may_cost_at_most_the_bound() -> None:
    assert judge([0.001, -0.004, 0.003, 0.0, -0.002, 0.005]).verdict == MET
    assert judge([0.05, 0.04, 0.045, 0.06, 0.035]).verdict == MET  # cheaper: noise, no miss
    assert judge([-0.001, -0.03, 0.015, -0.012, 0.019, -0.025]).verdict == NOT_RESOLVED
    assert judge([-0.05, -0.04, -0.045, -0.06, -0.035]).verdict == MISSED
