"""Arrival instants and coverage gaps into local slots: the store's side of ArrivalHistory."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ccbridge.staffing.bucket import bucket_arrivals
from ccbridge.staffing.history import Observation
from ccbridge.staffing.slots import Slot

D = date(2026, 12, 7)
NOW = datetime(2026, 12, 8, tzinfo=UTC)


def utc(h: int, m: int = 0, day: date = D) -> datetime:
    return datetime(day.year, day.month, day.day, h, m, tzinfo=UTC)


def test_counts_per_local_half_hour_in_a_half_hour_zone() -> None:
    # Kolkata is UTC+5:30: 03:29 UTC is 08:59 (slot 08:30), 03:30 UTC is 09:00
    obs = bucket_arrivals(
        "Asia/Kolkata", [utc(3, 29), utc(3, 30), utc(3, 59), utc(4, 0)], [], D, D, now=NOW
    )
    assert obs == [
        Observation(Slot(D, 17), 1),
        Observation(Slot(D, 18), 2),
        Observation(Slot(D, 19), 1),
    ]


def test_arrivals_outside_the_dates_are_left_out() -> None:
    # 19:00 UTC on the 6th is 00:30 local on the 7th; 18:29 UTC on the 7th is 23:59
    obs = bucket_arrivals(
        "Asia/Kolkata", [utc(19, 0, date(2026, 12, 6)), utc(18, 29), utc(18, 30)], [], D, D, now=NOW
    )
    assert [(o.slot.index, o.count) for o in obs] == [(1, 1), (47, 1)]


def test_both_passes_of_the_repeated_hour_land_in_one_slot() -> None:
    day = date(2026, 10, 25)  # London: 01:00-02:00 local happens twice
    obs = bucket_arrivals(
        "Europe/London",
        [utc(0, 10, day), utc(1, 10, day)],  # 01:10 BST, 01:10 GMT
        [],
        day,
        day,
        now=NOW,
    )
    assert obs == [Observation(Slot(day, 2), 2)]


def test_gap_slots_are_incomplete_and_an_open_gap_runs_to_now() -> None:
    # Dhaka is UTC+6. A link down 04:20-04:40 UTC (10:20-10:40 local) touches two
    # slots; one call arrived during it (a lower bound, not the demand)
    obs = bucket_arrivals(
        "Asia/Dhaka",
        [utc(4, 25)],
        [(utc(4, 20), utc(4, 40)), (utc(17, 50), None)],
        D,
        D,
        now=utc(18, 5),
    )
    assert obs == [
        Observation(Slot(D, 20), 1, complete=False),
        Observation(Slot(D, 21), 0, complete=False),
        Observation(Slot(D, 47), 0, complete=False),  # 23:50 local
    ]  # 17:50 UTC onward crosses into the 8th: outside the dates


def test_a_gap_in_a_quarter_hour_zone() -> None:
    # Kathmandu is UTC+5:45: 04:00-04:20 UTC is 09:45-10:05 local, slots 09:30 and 10:00
    obs = bucket_arrivals("Asia/Kathmandu", [], [(utc(4, 0), utc(4, 20))], D, D, now=NOW)
    assert [o.slot.index for o in obs] == [19, 20]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="arrival 2026-12-07T04:00:00 must carry a time zone"):
        bucket_arrivals("Asia/Dhaka", [datetime(2026, 12, 7, 4)], [], D, D, now=NOW)
    with pytest.raises(ValueError, match="gap start"):
        bucket_arrivals("Asia/Dhaka", [], [(datetime(2026, 12, 7, 4), None)], D, D, now=NOW)
    with pytest.raises(ValueError, match="unknown time zone"):
        bucket_arrivals("Mars/Olympus", [], [], D, D, now=NOW)
    # an empty or reversed gap marks nothing
    assert bucket_arrivals("Asia/Dhaka", [], [(utc(5), utc(4))], D, D, now=NOW) == []


def test_handled_calls_count_in_their_arrival_slot() -> None:
    obs = bucket_arrivals(
        "Asia/Dhaka",
        [utc(4, 5), utc(4, 10), utc(4, 35)],
        [],
        D,
        D,
        now=NOW,
        handled=[(utc(4, 5), 200.0), (utc(4, 10), 160.0), (utc(4, 35), 90.5)],
    )
    assert obs == [
        Observation(Slot(D, 20), 2, True, 2, 360.0),
        Observation(Slot(D, 21), 1, True, 1, 90.5),
    ]
    with pytest.raises(ValueError, match="handle time must not be negative"):
        bucket_arrivals("Asia/Dhaka", [], [], D, D, now=NOW, handled=[(utc(4), -1.0)])
