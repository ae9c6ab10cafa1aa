"""Local half-hour slots: plain days, both DST nights, 30-minute DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ccbridge.staffing.slots import Slot, slot_instants, slot_of, slot_seconds, slots_between, zone


def test_slot_of_a_local_time_and_its_label() -> None:
    s = slot_of(datetime(2026, 11, 9, 9, 47))
    assert s == Slot(date(2026, 11, 9), 19)
    assert str(s) == "2026-11-09T09:30"
    assert s.local_start == datetime(2026, 11, 9, 9, 30)


def test_a_plain_day_in_a_half_hour_zone() -> None:
    # Asia/Kolkata is UTC+5:30 all year: local 09:00 is 03:30 UTC
    s = Slot(date(2026, 11, 9), 18)
    assert slot_seconds(s, "Asia/Kolkata") == 1800
    assert slot_instants(s, "Asia/Kolkata") == (datetime(2026, 11, 9, 3, 30, tzinfo=UTC),)


def test_spring_night_the_skipped_hour_has_no_real_time() -> None:
    # London 2026-03-29: clocks go 01:00 GMT -> 02:00 BST
    day = date(2026, 3, 29)
    secs = {i: slot_seconds(Slot(day, i), "Europe/London") for i in range(48)}
    assert secs[2] == secs[3] == 0  # 01:00 and 01:30 do not exist
    assert secs[1] == secs[4] == 1800
    assert sum(secs.values()) == 23 * 3600
    assert slot_instants(Slot(day, 2), "Europe/London") == ()
    assert slot_instants(Slot(day, 4), "Europe/London") == (datetime(2026, 3, 29, 1, tzinfo=UTC),)


def test_autumn_night_the_repeated_hour_holds_both_passes() -> None:
    # London 2026-10-25: clocks go 02:00 BST -> 01:00 GMT; 01:00-02:00 happens twice
    day = date(2026, 10, 25)
    secs = [slot_seconds(Slot(day, i), "Europe/London") for i in range(48)]
    assert secs[2] == secs[3] == 3600
    assert sum(secs) == 25 * 3600
    assert slot_instants(Slot(day, 2), "Europe/London") == (
        datetime(2026, 10, 25, 0, 0, tzinfo=UTC),  # 01:00 BST
        datetime(2026, 10, 25, 1, 0, tzinfo=UTC),  # 01:00 GMT
    )


def test_a_thirty_minute_dst_change() -> None:
    # Lord Howe Island moves its clocks by 30 minutes: 02:00 -> 02:30 on 2026-10-04,
    # 02:00 -> 01:30 on 2026-04-05
    spring = [slot_seconds(Slot(date(2026, 10, 4), i), "Australia/Lord_Howe") for i in range(48)]
    assert spring[4] == 0 and spring[5] == 1800 and sum(spring) == 24 * 3600 - 1800
    autumn = [slot_seconds(Slot(date(2026, 4, 5), i), "Australia/Lord_Howe") for i in range(48)]
    assert autumn[3] == 3600 and autumn[4] == 1800 and sum(autumn) == 24 * 3600 + 1800


def test_bad_slots_and_zones() -> None:
    with pytest.raises(ValueError, match=r"slot index must be in 0\.\.47"):
        Slot(date(2026, 1, 1), 48)
    with pytest.raises(ValueError, match="unknown time zone 'Asia/Calcuta'"):
        zone("Asia/Calcuta")
    with pytest.raises(ValueError, match="unknown time zone"):
        slot_seconds(Slot(date(2026, 1, 1), 0), "../etc/passwd")
    with pytest.raises(ValueError, match="before the first"):
        slots_between(date(2026, 1, 2), date(2026, 1, 1))
    assert len(slots_between(date(2026, 1, 1), date(2026, 1, 2))) == 96
