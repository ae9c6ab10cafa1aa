"""The demand forecast: error on a held-out week of synthetic history against two naive
baselines, hand-computed trend and profile, holidays, coverage gaps, empty history."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from ccbridge.staffing.forecast import Basis, Forecast, forecast, robust_level
from ccbridge.staffing.history import (
    MemoryHistory,
    NoHistory,
    Observation,
    QueueKey,
    history_from_pairs,
)
from ccbridge.staffing.slots import Slot
from tests.unit.staffing_history import KEY, generate, interval_class

MONDAY = date(2026, 9, 7)
CLASSES = ("peak", "off-peak", "night")


def _mape(fc: Forecast, truth: dict[Slot, float]) -> dict[str, float]:
    """Mean absolute percentage error per interval class, over slots whose truth is > 0."""
    errs: dict[str, list[float]] = {c: [] for c in CLASSES}
    for f in fc.slots:
        t = truth[f.slot]
        if t > 0:
            assert f.calls is not None
            errs[interval_class(f.slot.index)].append(abs(f.calls - t) / t)
    return {c: 100 * sum(v) / len(v) for c, v in errs.items()}


def test_week_nine_from_eight_weeks_error_per_interval_class(
    capsys: pytest.CaptureFixture[str],
) -> None:
    syn = generate(seed=16)
    held = {s: float(n) for s, n in syn.held_out.items()}
    results = {}
    for method in ("profile", "last_week", "mean"):
        fc = forecast(syn.history, KEY, syn.target_days, weeks=8, method=method)
        results[method] = (_mape(fc, syn.truth), _mape(fc, held), fc)
    with capsys.disabled():
        print("\nforecast of week 9 from 8 weeks (seed 16; MAPE %, vs true rate | vs realised)")
        for method, (vs_rate, vs_held, _) in results.items():
            cells = "  ".join(f"{c} {vs_rate[c]:5.1f} | {vs_held[c]:5.1f}" for c in CLASSES)
            print(f"  {method:<9} {cells}")
    profile, last_week, mean = (results[m][0] for m in ("profile", "last_week", "mean"))
    # The bounds: what the method achieves on this seed, with room for nothing else.
    assert profile["peak"] < 6.0
    assert profile["off-peak"] < 9.0
    assert profile["night"] < 25.0  # 1 to 3 calls a half hour: Poisson noise dominates
    # Better than last week's count everywhere, better than the plain mean where the
    # volume is (the mean lags the trend and carries the outliers)
    for c in CLASSES:
        assert profile[c] < last_week[c]
    assert profile["peak"] < mean["peak"] and profile["off-peak"] < mean["off-peak"]
    # the trend it found is the generator's +2 % a week, within half a point
    assert results["profile"][2].trend_per_week == pytest.approx(0.02, abs=0.005)
    assert results["profile"][2].weeks == 8


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_profile_beats_the_baselines_on_other_seeds(seed: int) -> None:
    syn = generate(seed=seed)
    err = {
        m: _mape(forecast(syn.history, KEY, syn.target_days, method=m), syn.truth)
        for m in ("profile", "last_week", "mean")
    }
    assert err["profile"]["peak"] < min(err["last_week"]["peak"], err["mean"]["peak"])
    assert err["profile"]["peak"] < 7.0


def _flat(weeks: int, per_week: list[int] | int, **kw: object) -> MemoryHistory:
    """``weeks`` weeks from MONDAY with the same count in every slot of a week."""
    counts = per_week if isinstance(per_week, list) else [per_week] * weeks
    pairs = [
        (
            datetime.combine(MONDAY + timedelta(days=d), datetime.min.time())
            + timedelta(minutes=30 * i),
            counts[d // 7],
        )
        for d in range(7 * weeks)
        for i in range(48)
    ]
    return history_from_pairs(KEY, pairs, **kw)  # type: ignore[arg-type]


def test_trend_and_profile_by_hand() -> None:
    # Week j has 10 + j calls in every slot. Profile: trimmed mean of 10..17 without 10
    # and 17 = 13.5. Week ratios (10 + j) / 13.5 lie on a line; at week 8 it reads 18 /
    # 13.5, so the forecast is 13.5 x 18 / 13.5 = 18, the line continued.
    hist = _flat(8, [10 + j for j in range(8)])
    target = MONDAY + timedelta(weeks=8)
    fc = forecast(hist, KEY, [target])
    assert all(f.calls == pytest.approx(18.0) for f in fc.slots)
    assert fc.trend_per_week == pytest.approx(1 / 13.5)
    assert robust_level([10, 11, 12, 13, 14, 15, 16, 17]) == 13.5
    assert robust_level([3, 1, 100]) == 3  # under 5 weeks: the median
    # a week later (week 9, the same 8-week window): 10 + 9 = 19 calls
    fc2 = forecast(hist, KEY, [target + timedelta(weeks=1)])
    assert fc2.slots[0].calls == pytest.approx(19.0)


def test_trend_factor_is_held_within_limits() -> None:
    # 1, 2, 4, ... 128: a wild growth would extrapolate far; the factor stops at x2
    hist = _flat(8, [2**j for j in range(8)])
    fc = forecast(hist, KEY, [MONDAY + timedelta(weeks=8)])
    base = robust_level([2**j for j in range(8)])
    assert fc.slots[0].calls == pytest.approx(base * 2.0)


def test_one_spike_does_not_move_the_forecast() -> None:
    pairs = [(datetime(2026, 9, 7, 10, 0) + timedelta(weeks=w), 20) for w in range(8)]
    pairs[3] = (pairs[3][0], 400)  # a mailing
    hist = history_from_pairs(KEY, pairs, span=(MONDAY, MONDAY + timedelta(days=55)))
    fc = forecast(hist, KEY, [MONDAY + timedelta(weeks=8)])
    assert fc.by_slot()[Slot(MONDAY + timedelta(weeks=8), 20)].calls == pytest.approx(20.0)
    plain = forecast(hist, KEY, [MONDAY + timedelta(weeks=8)], method="mean")
    assert plain.by_slot()[Slot(MONDAY + timedelta(weeks=8), 20)].calls == pytest.approx(67.5)


def test_coverage_gaps_are_left_out_not_read_as_zero_demand() -> None:
    # 8 Mondays at 09:00 with 10 calls, but 4 of them in a coverage gap with 0 counted
    t0 = datetime(2026, 9, 7, 9, 0)
    pairs = [(t0 + timedelta(weeks=w), 10 if w % 2 else 0) for w in range(8)]
    gaps = [t0 + timedelta(weeks=w) for w in range(0, 8, 2)]
    hist = history_from_pairs(KEY, pairs, gaps=gaps, span=(MONDAY, MONDAY + timedelta(days=55)))
    target = MONDAY + timedelta(weeks=8)
    f = forecast(hist, KEY, [target]).by_slot()[Slot(target, 18)]
    assert f.calls == pytest.approx(10.0)
    assert f.observations == 4
    # the same zeros, not flagged: real quiet half hours, and the forecast follows them
    hist0 = history_from_pairs(KEY, pairs, span=(MONDAY, MONDAY + timedelta(days=55)))
    assert forecast(hist0, KEY, [target]).by_slot()[Slot(target, 18)].calls == pytest.approx(5.0)


def test_a_slot_only_ever_in_gaps_has_no_forecast_not_zero() -> None:
    t0 = datetime(2026, 9, 7, 9, 0)
    hist = history_from_pairs(
        KEY,
        [(t0 + timedelta(weeks=w, minutes=30), 7) for w in range(8)],
        gaps=[t0 + timedelta(weeks=w) for w in range(8)],
        span=(MONDAY, MONDAY + timedelta(days=55)),
    )
    target = MONDAY + timedelta(weeks=8)
    by = forecast(hist, KEY, [target]).by_slot()
    assert by[Slot(target, 18)].calls is None
    assert by[Slot(target, 18)].basis == Basis.NO_HISTORY
    assert by[Slot(target, 19)].calls == pytest.approx(7.0)
    assert by[Slot(target, 20)].calls == 0.0  # no row inside the span: no calls


def test_empty_history_is_a_clear_message() -> None:
    empty = MemoryHistory([])
    with pytest.raises(
        NoHistory, match=r"bangalore/orders-en: no arrivals history before 2026-11-02"
    ):
        forecast(empty, KEY, [date(2026, 11, 2)])
    # history only after the first forecast day: nothing to go by either
    later = _flat(1, 5)
    with pytest.raises(NoHistory, match="no arrivals history before 2026-09-07"):
        forecast(later, KEY, [MONDAY])
    # every observation a gap
    allgap = history_from_pairs(
        KEY, [], gaps=[datetime(2026, 9, 7, h) for h in range(24)], span=(MONDAY, MONDAY)
    )
    # a span of one day: the other slots of that day are real zeros, so it forecasts
    assert forecast(allgap, KEY, [MONDAY + timedelta(weeks=1)]).slots[0].calls is None
    with pytest.raises(NoHistory, match="no usable arrivals"):
        forecast(
            history_from_pairs(
                KEY,
                [],
                gaps=[datetime(2026, 9, 7, 0, 0) + timedelta(minutes=30 * i) for i in range(48)],
            ),
            KEY,
            [MONDAY + timedelta(weeks=1)],
        )


def test_bad_arguments() -> None:
    hist = _flat(1, 5)
    with pytest.raises(ValueError, match="no days to forecast"):
        forecast(hist, KEY, [])
    with pytest.raises(ValueError, match="weeks must be a whole number of at least 1"):
        forecast(hist, KEY, [MONDAY + timedelta(weeks=1)], weeks=0)
    with pytest.raises(ValueError, match="unknown forecast method 'arima'"):
        forecast(hist, KEY, [MONDAY + timedelta(weeks=1)], method="arima")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative count"):
        MemoryHistory([(KEY, Observation(Slot(MONDAY, 0), -1))])


def test_holidays_from_past_holidays_or_flagged() -> None:
    # Weekdays have 10 calls a slot; 2026-10-02 (a Friday, Gandhi Jayanti) had 3.
    holiday = date(2026, 10, 2)
    counts = {
        MONDAY + timedelta(days=d): (3 if MONDAY + timedelta(days=d) == holiday else 10)
        for d in range(56)
    }
    pairs = [
        (datetime.combine(d, datetime.min.time()) + timedelta(minutes=30 * i), n)
        for d, n in counts.items()
        for i in range(48)
    ]
    hist = history_from_pairs(KEY, pairs)
    names = {holiday: "Gandhi Jayanti", date(2026, 11, 6): "Some holiday"}
    target = date(2026, 11, 6)  # a Friday, a holiday in this calendar
    fc = forecast(hist, KEY, [target, target - timedelta(days=1)], holidays=names.get)
    by = fc.by_slot()
    assert by[Slot(target, 20)].calls == pytest.approx(3.0)
    assert by[Slot(target, 20)].basis == Basis.HOLIDAY
    assert by[Slot(target, 20)].holiday == "Some holiday"
    # the past holiday stayed out of the Friday profile: Thursday and Friday are 10
    assert by[Slot(target - timedelta(days=1), 20)].calls == pytest.approx(10.0)
    # with no past holiday in the history the weekly figure is given, flagged (the low
    # Friday now counts as a Friday: the trimmed mean drops it, and the Theil-Sen trend
    # is 0 as 21 of its 28 pairwise slopes are)
    fc2 = forecast(hist, KEY, [target], holidays={target: "Some holiday"}.get)
    f = fc2.by_slot()[Slot(target, 20)]
    assert (f.calls, f.basis) == (pytest.approx(10.0), Basis.HOLIDAY_UNFORECAST)


def test_the_repeated_autumn_half_hour_adds_both_passes() -> None:
    key = QueueKey("london", "orders", "en")
    t = datetime(2026, 10, 25, 1, 0)
    hist = history_from_pairs(key, [(t, 4), (t, 5)])
    (obs,) = hist.arrivals(key, t.date(), t.date())
    assert obs.count == 9


def test_handle_time_per_slot_from_the_history() -> None:
    # Mondays 10:00: 25 handled calls a week at 200 s each -> that slot's own AHT, 200 s.
    # Mondays 11:00: 2 handled a week at 400 s, 16 in the window: under 20, so the
    # queue's pooled AHT: (8 x 25 x 200 + 8 x 2 x 400) / (8 x 27) = 214.8 s.
    rows = []
    for w in range(8):
        d = MONDAY + timedelta(weeks=w)
        rows.append((KEY, Observation(Slot(d, 20), 25, True, 25, 25 * 200.0)))
        rows.append((KEY, Observation(Slot(d, 22), 2, True, 2, 2 * 400.0)))
        # a coverage-gap slot's handle times are left out like its count
        rows.append((KEY, Observation(Slot(d, 24), 1, False, 1, 99_999.0)))
    hist = MemoryHistory(rows, {KEY: (MONDAY, MONDAY + timedelta(days=55))})
    target = MONDAY + timedelta(weeks=8)
    by = forecast(hist, KEY, [target]).by_slot()
    assert by[Slot(target, 20)].aht_s == pytest.approx(200.0)
    assert by[Slot(target, 22)].aht_s == pytest.approx((8 * 25 * 200 + 8 * 2 * 400) / 216)
    assert by[Slot(target, 0)].aht_s == pytest.approx(46400 / 216)  # quiet slots: the queue's
    # no handled call in the history: no AHT, the plan's own is used
    assert forecast(_flat(1, 5), KEY, [MONDAY + timedelta(weeks=1)]).slots[0].aht_s is None
