"""A seeded synthetic arrivals history: a known weekly pattern, a trend, noise, outliers."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, timedelta

from ccbridge.staffing.history import MemoryHistory, Observation, QueueKey
from ccbridge.staffing.slots import SLOTS_PER_DAY, Slot

KEY = QueueKey("bangalore", "orders", "en")
FIRST_MONDAY = date(2026, 9, 7)
PEAK_RATE = 40.0  # calls per half hour at a Monday-strength peak, week 0
TREND = 0.02  # +2 % a week, compounding
WEEKDAY = (1.1, 1.0, 1.0, 1.0, 0.95, 0.7, 0.4)  # Monday .. Sunday


def interval_class(index: int) -> str:
    """peak 10:00-13:00 and 15:00-18:00, night 22:00-07:00, off-peak the rest."""
    h = index / 2
    if 10 <= h < 13 or 15 <= h < 18:
        return "peak"
    if h >= 22 or h < 7:
        return "night"
    return "off-peak"


SHAPE = {"peak": 1.0, "off-peak": 0.5, "night": 0.06}


def rate(day: date) -> list[float]:
    """The true expected calls of each slot of ``day``."""
    weeks = (day - FIRST_MONDAY).days / 7
    level = PEAK_RATE * WEEKDAY[day.weekday()] * (1 + TREND) ** weeks
    return [level * SHAPE[interval_class(i)] for i in range(SLOTS_PER_DAY)]


def poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: exact, and fast enough for the rates here (under 60)."""
    limit = math.exp(-lam)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


@dataclass(frozen=True)
class Synthetic:
    history: MemoryHistory  # the first `weeks` weeks, outliers and gaps included
    held_out: dict[Slot, int]  # the realised counts of the week after
    truth: dict[Slot, float]  # the true rate of the week after
    outliers: tuple[Slot, ...]
    gaps: tuple[Slot, ...]

    @property
    def target_days(self) -> list[date]:
        return sorted({s.day for s in self.truth})


def generate(seed: int = 16, weeks: int = 8, outliers: int = 8, gaps: int = 6) -> Synthetic:
    """``weeks`` weeks of history from FIRST_MONDAY and the week after, held out.

    Outliers multiply a peak or off-peak slot by 4 (a mailing, a redialling storm);
    coverage gaps keep only a third of a slot's calls and are flagged incomplete, as
    the store reports a slot during which an AMI link was down.
    """
    rng = random.Random(seed)
    rows: list[tuple[QueueKey, Observation]] = []
    days = [FIRST_MONDAY + timedelta(days=n) for n in range(7 * weeks)]
    day_slots = [Slot(d, i) for d in days for i in range(SLOTS_PER_DAY)]
    busy = [s for s in day_slots if interval_class(s.index) != "night"]
    spikes = set(rng.sample(busy, outliers))
    holes = set(rng.sample([s for s in busy if s not in spikes], gaps))
    for d in days:
        for i, lam in enumerate(rate(d)):
            s = Slot(d, i)
            n = poisson(rng, lam)
            if s in spikes:
                n *= 4
            if s in holes:
                rows.append((KEY, Observation(s, n // 3, complete=False)))
            elif n:
                rows.append((KEY, Observation(s, n)))  # no row for an empty slot, as a store
    target = [FIRST_MONDAY + timedelta(days=7 * weeks + n) for n in range(7)]
    truth = {Slot(d, i): lam for d in target for i, lam in enumerate(rate(d))}
    held = {s: poisson(rng, lam) for s, lam in truth.items()}
    span = (days[0], days[-1])
    return Synthetic(
        MemoryHistory(rows, {KEY: span}), held, truth, tuple(sorted(spikes)), tuple(sorted(holes))
    )
