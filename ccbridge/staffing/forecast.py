"""Demand forecast per local half hour: a robust weekly profile times a trend (pure).

The method, kept simple enough to explain to a planner:

* **Window**: the last ``weeks`` whole weeks of history before the first forecast day.
* **Weekly profile**: for each weekday and half hour, a trimmed mean of that slot's
  counts over the window's same weekdays: the highest and lowest fifth dropped (one
  of each from 8 weeks), the median under 5 weeks. It ignores the odd spike (a
  marketing mailing, a stuck caller redialling) that a mean would carry into every
  future week, and at night, where counts are 0, 1 or 2, it is less coarse than a
  median (measured: test_staffing_forecast.py).
  Slots touching a coverage gap and holidays are left out, not read as low demand.
* **Trend**: each week's volume as a ratio to the profile (counts capped at the
  profile plus four Poisson standard deviations, so one spike does not tilt a week); a
  Theil-Sen line (median of pairwise slopes) through those ratios, read at the
  forecast day's week. The factor
  is held to [0.5, 2]: a short history must not extrapolate into fantasy.
* **Handle time**: where the history records handled calls, the slot's AHT is their
  pooled handle seconds over the window's same weekday and half hour (total seconds /
  calls) when at least MIN_AHT_CALLS were handled there, else the queue's over the
  whole window: a half hour with three calls says little about its handle time.
* **Holidays** of the site's calendar: the median of the same slot on past holidays in
  the history, when there are any; otherwise the weekly value, flagged
  ``holiday_unforecast`` so the planner knows it is a guess.

``method="last_week"`` and ``method="mean"`` are the naive baselines the profile is
measured against (tests/unit/test_staffing_forecast.py reports the error of each).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from ccbridge.staffing.history import ArrivalHistory, Holidays, NoHistory, Observation, QueueKey
from ccbridge.staffing.slots import SLOTS_PER_DAY, Slot

__all__ = ["Basis", "Forecast", "ForecastSlot", "Method", "forecast", "robust_level"]

Method = Literal["profile", "last_week", "mean"]
METHODS: tuple[Method, ...] = ("profile", "last_week", "mean")
TREND_LIMITS = (0.5, 2.0)
MIN_TREND_WEEKS = 3
MIN_AHT_CALLS = 20
_WEEK = timedelta(days=7)
_DAY = timedelta(days=1)


class Basis:
    """How a slot's figure was made (strings, so tables and CSV show them as they are)."""

    PROFILE = "weekly_profile"
    HOLIDAY = "holiday_history"
    HOLIDAY_UNFORECAST = "holiday_unforecast"  # a holiday with no past holiday to go by
    NO_HISTORY = "no_history"  # no usable observation of this weekday and slot


@dataclass(frozen=True, slots=True)
class ForecastSlot:
    slot: Slot
    calls: float | None  # None: nothing to go by (basis says why); never a made-up zero
    basis: str
    observations: int  # how many past slots the figure rests on
    holiday: str | None = None
    aht_s: float | None = None  # handle time from the history; None: none recorded


@dataclass(frozen=True, slots=True)
class Forecast:
    key: QueueKey
    method: Method
    window: tuple[date, date]  # the history the profile was built from
    weeks: int  # weeks of the window holding usable data
    trend_per_week: float  # the fitted ratio's slope (0.02 = +2 % a week)
    slots: tuple[ForecastSlot, ...]

    def by_slot(self) -> dict[Slot, ForecastSlot]:
        return {f.slot: f for f in self.slots}


def _weekday_dates(first: date, last: date) -> dict[int, list[date]]:
    out: dict[int, list[date]] = {wd: [] for wd in range(7)}
    d = first
    while d <= last:
        out[d.weekday()].append(d)
        d += _DAY
    return out


def _table(obs: Iterable[Observation]) -> dict[Slot, Observation]:
    return {o.slot: o for o in obs}


def _count(table: dict[Slot, Observation], slot: Slot) -> int | None:
    """The slot's count, 0 when the store has no row for it, None when it is a gap."""
    o = table.get(slot)
    if o is None:
        return 0
    return o.count if o.complete else None


def _cap(profile: float) -> float:
    return profile + 4.0 * math.sqrt(profile) + 4.0


def robust_level(counts: Sequence[int]) -> float:
    """The trimmed mean of ``counts`` (the highest and lowest fifth out), or their
    median when there are fewer than 5."""
    xs = sorted(counts)
    cut = len(xs) // 5
    if cut == 0:
        return float(statistics.median(xs))
    return statistics.fmean(xs[cut:-cut])


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Theil-Sen line (intercept, slope) through (t, ratio) points: the median of the
    pairwise slopes, then the median intercept. One odd week (a campaign, an outage
    the store did not flag) moves it far less than it would a least-squares line."""
    slopes = [
        (r2 - r1) / (t2 - t1)
        for i, (t1, r1) in enumerate(points)
        for t2, r2 in points[i + 1 :]
        if t2 != t1
    ]
    slope = statistics.median(slopes) if slopes else 0.0
    return statistics.median(r - slope * t for t, r in points), slope


def forecast(
    history: ArrivalHistory,
    key: QueueKey,
    days: Sequence[date],
    *,
    weeks: int = 8,
    holidays: Holidays | None = None,
    method: Method = "profile",
) -> Forecast:
    """The expected calls of ``key`` in every slot of the local dates ``days``.

    Raises NoHistory (a ValueError) when the history holds nothing usable before the
    first day: there is no level to forecast from, and no zero is invented.
    """
    if not days:
        raise ValueError("no days to forecast")
    if method not in METHODS:
        raise ValueError(f"unknown forecast method {method!r} (one of {', '.join(METHODS)})")
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise ValueError(f"weeks must be a whole number of at least 1, got {weeks!r}")
    is_holiday = holidays or (lambda _d: None)
    first_day = min(days)
    span = history.span(key)
    if span is None or span[0] >= first_day:
        raise NoHistory(f"{key}: no arrivals history before {first_day}: nothing to forecast from")
    end = min(span[1], first_day - _DAY)
    start = max(span[0], end - weeks * _WEEK + _DAY)
    table = _table(history.arrivals(key, start, end))
    by_wd = _weekday_dates(start, end)
    hol = {d for ds in by_wd.values() for d in ds if is_holiday(d)}

    # samples[(weekday, index)] = [(date, count)], oldest first; gaps and holidays out
    samples: dict[tuple[int, int], list[tuple[date, int]]] = {}
    for wd, ds in by_wd.items():
        for i in range(SLOTS_PER_DAY):
            row = samples.setdefault((wd, i), [])
            for d in ds:
                c = _count(table, Slot(d, i))
                if c is not None and d not in hol:
                    row.append((d, c))
    aht = _aht(table, by_wd, hol)
    if not any(samples.values()):
        raise NoHistory(
            f"{key}: no usable arrivals between {start} and {end} "
            "(every slot a coverage gap or a holiday): nothing to forecast from"
        )

    profile: dict[tuple[int, int], float] = {}
    for k, row in samples.items():
        if row:
            counts = [c for _, c in row]
            if method == "profile":
                profile[k] = robust_level(counts)
            elif method == "mean":
                profile[k] = statistics.fmean(counts)
            else:
                profile[k] = float(row[-1][1])

    weeks_with_data = {(d - start).days // 7 for row in samples.values() for d, _ in row}
    intercept, slope = 1.0, 0.0
    if method == "profile":
        intercept, slope = _trend(samples, profile, start)

    def factor(d: date) -> float:
        t = (d - start).days // 7 + 0.5
        return min(max(intercept + slope * t, TREND_LIMITS[0]), TREND_LIMITS[1])

    past = _past_holidays(history, key, span[0], end, is_holiday)
    out: list[ForecastSlot] = []
    for d in sorted(set(days)):
        name = is_holiday(d)
        wd = d.weekday()
        for i in range(SLOTS_PER_DAY):
            slot = Slot(d, i)
            if name is not None:
                hv = [c for hd, t in past.items() if (c := _count(t, Slot(hd, i))) is not None]
                if hv:
                    calls = float(statistics.median(hv))
                    out.append(
                        ForecastSlot(slot, calls, Basis.HOLIDAY, len(hv), name, aht.get((wd, i)))
                    )
                    continue
            base = profile.get((wd, i))
            if base is None:
                out.append(ForecastSlot(slot, None, Basis.NO_HISTORY, 0, name, aht.get((wd, i))))
                continue
            basis = Basis.PROFILE if name is None else Basis.HOLIDAY_UNFORECAST
            n_obs = len(samples[(wd, i)])
            out.append(ForecastSlot(slot, base * factor(d), basis, n_obs, name, aht.get((wd, i))))
    return Forecast(key, method, (start, end), len(weeks_with_data), slope, tuple(out))


def _aht(
    table: dict[Slot, Observation], by_wd: dict[int, list[date]], hol: set[date]
) -> dict[tuple[int, int], float]:
    """(weekday, slot) -> AHT in seconds from the handled calls of the window."""
    sums: dict[tuple[int, int], list[float]] = {}
    total = [0.0, 0.0]
    for wd, ds in by_wd.items():
        for d in ds:
            if d in hol:
                continue
            for i in range(SLOTS_PER_DAY):
                o = table.get(Slot(d, i))
                if o is None or not o.complete or o.handled <= 0:
                    continue
                acc = sums.setdefault((wd, i), [0.0, 0.0])
                acc[0] += o.handle_s
                acc[1] += o.handled
                total[0] += o.handle_s
                total[1] += o.handled
    if total[1] == 0 or total[0] <= 0:
        return {}  # no handled call, or none with a handle time: the caller's AHT
    queue_aht = total[0] / total[1]
    return {
        (wd, i): (
            acc[0] / acc[1]
            if acc is not None and acc[1] >= MIN_AHT_CALLS and acc[0] > 0
            else queue_aht
        )
        for wd in range(7)
        for i in range(SLOTS_PER_DAY)
        for acc in (sums.get((wd, i)),)
    }


def _trend(
    samples: dict[tuple[int, int], list[tuple[date, int]]],
    profile: dict[tuple[int, int], float],
    start: date,
) -> tuple[float, float]:
    """(intercept, slope) of each week's volume ratio to the profile, over week number."""
    num: dict[int, float] = {}
    den: dict[int, float] = {}
    for k, row in samples.items():
        p = profile.get(k, 0.0)
        if p <= 0:
            continue
        for d, c in row:
            w = (d - start).days // 7
            num[w] = num.get(w, 0.0) + min(float(c), _cap(p))
            den[w] = den.get(w, 0.0) + p
    # A week whose usable slots expect under one call says nothing about the level.
    points = [(w + 0.5, num[w] / den[w]) for w in sorted(den) if den[w] >= 1.0]
    if len(points) < MIN_TREND_WEEKS:
        return 1.0, 0.0
    return _fit(points)


def _past_holidays(
    history: ArrivalHistory, key: QueueKey, first: date, last: date, is_holiday: Holidays
) -> dict[date, dict[Slot, Observation]]:
    """Each holiday the history covers, with its observations (any weekday: a holiday
    is its own kind of day)."""
    out: dict[date, dict[Slot, Observation]] = {}
    d = first
    while d <= last:
        if is_holiday(d):
            out[d] = _table(history.arrivals(key, d, d))
        d += _DAY
    return out
