"""Bench verdicts that say how sure they are: a point estimate, its interval, and the target.

A bench on a shared machine gets one figure per step or pair, and a few of them are far
off (another process took the caches or the core). Judging by the worst run calls a met
target missed whenever one run is unlucky; judging by the best hides a real miss. Here a
figure is the median of all the samples, its uncertainty a bootstrap interval of that
median (resampling the samples), and the verdict has three outcomes:

* ``met``: the estimate meets the target and the whole interval does;
* ``not resolved``: the estimate meets the target but the interval crosses it (the
  noise is larger than the margin: re-run longer or on a quieter machine);
* ``MISSED``: the estimate itself misses (a real miss shows here whatever the noise).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MET = "met"
NOT_RESOLVED = "not resolved"
MISSED = "MISSED"
RESAMPLES = 2_000
CONFIDENCE = 0.90


@dataclass(frozen=True)
class Estimate:
    """A figure, its bootstrap interval, and the verdict against a target."""

    value: float
    low: float
    high: float
    target: float
    at_least: bool  # True: the figure must be >= target; False: <= target

    @property
    def verdict(self) -> str:
        meets = self.value >= self.target if self.at_least else self.value <= self.target
        if not meets:
            return MISSED
        bound = self.low if self.at_least else self.high
        sure = bound >= self.target if self.at_least else bound <= self.target
        return MET if sure else NOT_RESOLVED

    def as_dict(self) -> dict[str, object]:
        return {
            "value": round(self.value, 4),
            "interval": [round(self.low, 4), round(self.high, 4)],
            "confidence": CONFIDENCE,
            "target": self.target,
            "at_least": self.at_least,
            "verdict": self.verdict,
        }

    def text(self, percent: bool = False) -> str:
        def fmt(x: float) -> str:
            return f"{x:.1%}" if percent else f"{x:.3f}"

        sign = ">=" if self.at_least else "<="
        return (
            f"{fmt(self.value)} [{fmt(self.low)}-{fmt(self.high)}, {CONFIDENCE:.0%} interval] "
            f"(target {sign} {fmt(self.target)}): {self.verdict}"
        )


def estimate(
    groups: Sequence[Sequence[float]],
    figure: Callable[[Sequence[float]], float],
    target: float,
    at_least: bool,
    seed: int = 1,
) -> Estimate:
    """``figure`` of the groups' medians (e.g. the spread of per-size costs), with a
    bootstrap interval: each group resampled with replacement, the figure recomputed."""
    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("every group needs at least one sample")
    value = figure([statistics.median(g) for g in groups])
    rng = random.Random(seed)
    again = sorted(
        figure([statistics.median(rng.choices(g, k=len(g))) for g in groups])
        for _ in range(RESAMPLES)
    )
    tail = (1.0 - CONFIDENCE) / 2
    low = again[int(tail * (RESAMPLES - 1))]
    high = again[int((1.0 - tail) * (RESAMPLES - 1))]
    return Estimate(value, min(low, value), max(high, value), target, at_least)


def spread(values: Sequence[float]) -> float:
    """How much the largest exceeds the smallest: max / min - 1."""
    return max(values) / min(values) - 1.0


def only(values: Sequence[float]) -> float:
    """The one value (for ``estimate`` over a single group)."""
    (value,) = values
    return value
