"""Held-route passes keep to each site's slots (heldroutes.next_slot): one pass a site per
min_interval under traffic, the sites' passes spread over the interval instead of one
burst of every site's pass (the route latency's tail at 1,000 calls/s, BENCHMARKS §12)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from ccbridge.heldroutes import next_slot


def on_grid(t: float, phase: float, period: float) -> bool:
    k = (t - phase) / period
    return math.isclose(k, round(k), abs_tol=1e-6)


@given(
    period=st.floats(0.05, 60),
    phase_share=st.floats(0, 1, exclude_max=True),
    started=st.floats(0, 1e6),
    late_share=st.floats(0, 3),
    from_slot=st.booleans(),
)
def test_the_next_slot_is_on_the_grid_and_never_too_soon(
    period: float, phase_share: float, started: float, late_share: float, from_slot: bool
) -> None:
    phase = phase_share * period
    slot = None
    if from_slot:  # the slot the task slept until: on the grid, at or before the start
        slot = phase + math.floor((started - late_share * period - phase) / period) * period
    nxt = next_slot(started, slot, period, phase)
    assert on_grid(nxt, phase, period)
    assert nxt - started >= 0.75 * period - 1e-6 * period  # passes 3/4 of a period apart
    assert nxt - started <= 2 * period + 1e-6 * period  # and never held off two periods
    if slot is not None and started - slot < period / 4:
        assert math.isclose(nxt, slot + period)  # on time: the very next slot


def test_a_pass_on_time_is_followed_one_period_later_a_late_one_realigns() -> None:
    assert next_slot(10.001, 10.0, 0.25, 0.0) == 10.25
    assert next_slot(10.1, 10.0, 0.25, 0.0) == 10.5  # 0.1 late: the first slot >= 10.35
    assert next_slot(3.0, None, 0.25, 0.05) == 3.3  # off the grid: first slot >= 3.25


def passes(sites: int, period: float, cost: float, until: float) -> list[tuple[float, int]]:
    """Every site's passes under steady traffic (always a change waiting), all woken by
    the same change at t=1: a pass wakes at its slot, waits for the one-site-at-a-time
    gate, computes ``cost`` seconds, then sleeps to the slot next_slot gives. Returns
    (compute start, site) in order."""
    phases = [i * period / sites for i in range(sites)]
    wake = [1.0] * sites
    slots: list[float | None] = [None] * sites
    gate_free = 0.0
    out = []
    while True:
        i = min(range(sites), key=lambda j: (wake[j], j))
        if wake[i] > until:
            return out
        start = max(wake[i], gate_free)
        gate_free = start + cost
        out.append((start, i))
        slots[i] = next_slot(wake[i], slots[i], period, phases[i])
        wake[i] = max(slots[i] or 0.0, gate_free)  # sleep(max(0, slot - now)) after it


def test_sites_woken_together_spread_their_passes_over_the_interval() -> None:
    sites, period, cost = 20, 0.25, 0.0012  # the ceiling bench's 20 sites, ~1.2 ms a pass
    run = passes(sites, period, cost, until=4.0)
    settled = [(t, i) for t, i in run if t >= 1.0 + 2 * period]
    by_site: dict[int, list[float]] = {}
    for t, i in run:
        by_site.setdefault(i, []).append(t)
    for i, starts in by_site.items():
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) >= 0.75 * period - 1e-9, (i, gaps)
        later = [g for a, g in zip(starts, gaps, strict=False) if a >= 1.0 + 2 * period]
        assert all(math.isclose(g, period, abs_tol=1e-9) for g in later), (i, later)
    # Once settled, one site's pass at a time, ~period/sites apart (12.5 ms): the passes
    # paced from their own starts ran back to back, cost apart, every period.
    starts = [t for t, _ in settled]
    assert len(starts) >= sites * 10
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= period / sites - 1e-9, min(gaps)
