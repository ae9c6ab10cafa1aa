"""Opening-hours tests: overnight shifts, holidays by country, DST nights, the date line."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from ccbridge.config.model import Schedule
from ccbridge.routing.schedule import OpenState, holiday_name, is_open
from tests.unit.routing_factories import schedule


def local(tz: str, wall: str) -> datetime:
    """A local wall-clock time (unambiguous ones only) as the UTC instant is_open takes."""
    return datetime.fromisoformat(wall).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


def utc(wall: str) -> datetime:
    return datetime.fromisoformat(wall).replace(tzinfo=UTC)


DHAKA = "Asia/Dhaka"
MON_NIGHT = schedule({"mon": "22:00-06:00"})  # 2025-01-06 is a Monday
FRI_LATE = schedule({"fri": "20:00-02:00"})
MON_ALLDAY = schedule({"mon": "00:00-00:00"})
BD_NIGHTS = schedule({"tue,wed": "22:00-06:00", "wed": "09:00-18:00"}, country="BD")
SPECIAL_MON = schedule({"mon": "22:00-06:00"}, special={date(2025, 1, 6): ["10:00-12:00"]})
SHUT_MON = schedule({"mon": "09:00-18:00"}, special={date(2025, 1, 6): []})
CLOSED_WED = schedule({"mon-fri": "09:00-18:00"}, closed=[date(2025, 1, 8)])

CASES: list[tuple[str, Schedule, str, datetime, bool, str]] = [
    ("overnight-before", MON_NIGHT, DHAKA, local(DHAKA, "2025-01-06 21:59"), False, "closed_hours"),
    ("overnight-start", MON_NIGHT, DHAKA, local(DHAKA, "2025-01-06 22:00"), True, "open"),
    ("overnight-midnight", MON_NIGHT, DHAKA, local(DHAKA, "2025-01-07 00:00"), True, "open"),
    ("overnight-tue-3am", MON_NIGHT, DHAKA, local(DHAKA, "2025-01-07 03:00"), True, "open"),
    ("overnight-last-min", MON_NIGHT, DHAKA, local(DHAKA, "2025-01-07 05:59"), True, "open"),
    ("overnight-end", MON_NIGHT, DHAKA, local(DHAKA, "2025-01-07 06:00"), False, "closed_hours"),
    # Not GotoIfTime's reading (Monday 00:00-06:00): Monday early morning is closed.
    ("not-gotoiftime", MON_NIGHT, DHAKA, local(DHAKA, "2025-01-06 03:00"), False, "closed_hours"),
    ("sunday-night", MON_NIGHT, DHAKA, local(DHAKA, "2025-01-05 23:00"), False, "closed_hours"),
    ("fri-wrap-sat", FRI_LATE, DHAKA, local(DHAKA, "2025-01-11 01:59"), True, "open"),
    ("fri-wrap-end", FRI_LATE, DHAKA, local(DHAKA, "2025-01-11 02:00"), False, "closed_hours"),
    ("24h-start", MON_ALLDAY, DHAKA, local(DHAKA, "2025-01-06 00:00"), True, "open"),
    ("24h-late", MON_ALLDAY, DHAKA, local(DHAKA, "2025-01-06 23:59"), True, "open"),
    ("24h-over", MON_ALLDAY, DHAKA, local(DHAKA, "2025-01-07 00:00"), False, "closed_hours"),
    # 2025-03-26 (Wed) is Bangladesh's Independence Day. A shift belongs to its start date:
    ("bd-tue-night-into-holiday", BD_NIGHTS, DHAKA, local(DHAKA, "2025-03-26 03:00"), True, "open"),
    ("bd-holiday-day", BD_NIGHTS, DHAKA, local(DHAKA, "2025-03-26 10:00"), False, "holiday"),
    ("bd-holiday-evening", BD_NIGHTS, DHAKA, local(DHAKA, "2025-03-26 23:00"), False, "holiday"),
    (
        "bd-night-after-holiday",
        BD_NIGHTS,
        DHAKA,
        local(DHAKA, "2025-03-27 03:00"),
        False,
        "holiday",
    ),
    ("bd-day-after", BD_NIGHTS, DHAKA, local(DHAKA, "2025-03-27 10:00"), False, "closed_hours"),
    ("closed-date", CLOSED_WED, DHAKA, local(DHAKA, "2025-01-08 10:00"), False, "closed_date"),
    ("closed-date-next", CLOSED_WED, DHAKA, local(DHAKA, "2025-01-09 10:00"), True, "open"),
    ("special-open", SPECIAL_MON, DHAKA, local(DHAKA, "2025-01-06 11:00"), True, "special_hours"),
    (
        "special-outside",
        SPECIAL_MON,
        DHAKA,
        local(DHAKA, "2025-01-06 09:30"),
        False,
        "closed_hours",
    ),
    # The special day replaces Monday's overnight shift, so Tuesday 03:00 is closed too.
    (
        "special-replaces",
        SPECIAL_MON,
        DHAKA,
        local(DHAKA, "2025-01-07 03:00"),
        False,
        "closed_hours",
    ),
    ("special-normal-week", SPECIAL_MON, DHAKA, local(DHAKA, "2025-01-14 03:00"), True, "open"),
    ("special-shut", SHUT_MON, DHAKA, local(DHAKA, "2025-01-06 10:00"), False, "closed_hours"),
    ("always", schedule(always=True), DHAKA, utc("2025-03-26 05:00"), True, "open"),
    (
        "always-holiday",
        schedule(always=True, country="BD"),
        DHAKA,
        local(DHAKA, "2025-03-26 05:00"),
        False,
        "holiday",
    ),
    (
        "always-holiday-ignored",
        schedule(always=True, country="BD", observe=False),
        DHAKA,
        local(DHAKA, "2025-03-26 05:00"),
        True,
        "open",
    ),
]

# One date, two countries: Bangladesh's Independence Day and India's Republic Day.
WEEKDAYS_IN = schedule({"mon-fri": "09:00-18:00"}, country="IN")
WEEKDAYS_BD = schedule({"mon-fri": "09:00-18:00"}, country="BD")
KOL = "Asia/Kolkata"
CASES += [
    ("in-open-bd-day", WEEKDAYS_IN, KOL, local(KOL, "2025-03-26 10:00"), True, "open"),
    ("bd-closed-bd-day", WEEKDAYS_BD, DHAKA, local(DHAKA, "2025-03-26 10:00"), False, "holiday"),
    ("in-republic-day", WEEKDAYS_IN, KOL, local(KOL, "2026-01-26 10:00"), False, "holiday"),
    ("bd-open-republic", WEEKDAYS_BD, DHAKA, local(DHAKA, "2026-01-26 10:00"), True, "open"),
    (
        "bd-not-observing",
        schedule({"mon-fri": "09:00-18:00"}, country="BD", observe=False),
        DHAKA,
        local(DHAKA, "2025-03-26 10:00"),
        True,
        "open",
    ),
]

# DST, Europe/London 2025: 30 Mar 01:00 UTC clocks go 01:00 GMT -> 02:00 BST;
# 26 Oct 01:00 UTC they go 02:00 BST -> 01:00 GMT. Wall-clock comparison throughout.
LON = "Europe/London"
LON_SAT_NIGHT = schedule({"sat": "22:00-06:00"})
LON_GAP = schedule({"sun": "01:30-03:00"})
LON_REPEAT = schedule({"sun": "01:00-02:00"})
CASES += [
    ("lon-spring-gmt", LON_SAT_NIGHT, LON, utc("2025-03-30 00:59"), True, "open"),
    ("lon-spring-bst", LON_SAT_NIGHT, LON, utc("2025-03-30 01:00"), True, "open"),
    ("lon-spring-last", LON_SAT_NIGHT, LON, utc("2025-03-30 04:59"), True, "open"),
    ("lon-spring-end", LON_SAT_NIGHT, LON, utc("2025-03-30 05:00"), False, "closed_hours"),
    ("lon-gap-before", LON_GAP, LON, utc("2025-03-30 00:59"), False, "closed_hours"),
    ("lon-gap-opens", LON_GAP, LON, utc("2025-03-30 01:00"), True, "open"),
    ("lon-gap-closes", LON_GAP, LON, utc("2025-03-30 02:00"), False, "closed_hours"),
    ("lon-fall-first", LON_SAT_NIGHT, LON, utc("2025-10-26 00:30"), True, "open"),
    ("lon-fall-second", LON_SAT_NIGHT, LON, utc("2025-10-26 01:30"), True, "open"),
    ("lon-fall-last", LON_SAT_NIGHT, LON, utc("2025-10-26 05:59"), True, "open"),
    ("lon-fall-end", LON_SAT_NIGHT, LON, utc("2025-10-26 06:00"), False, "closed_hours"),
    ("lon-repeat-before", LON_REPEAT, LON, utc("2025-10-25 23:59"), False, "closed_hours"),
    ("lon-repeat-bst", LON_REPEAT, LON, utc("2025-10-26 00:30"), True, "open"),
    ("lon-repeat-gmt", LON_REPEAT, LON, utc("2025-10-26 01:30"), True, "open"),
    ("lon-repeat-end", LON_REPEAT, LON, utc("2025-10-26 02:00"), False, "closed_hours"),
]

# DST, America/New_York 2025: 9 Mar 07:00 UTC (02:00 EST -> 03:00 EDT);
# 2 Nov 06:00 UTC (02:00 EDT -> 01:00 EST).
NY = "America/New_York"
NY_WEEKDAYS = schedule({"mon-fri": "09:00-17:00"})
NY_NIGHT = schedule({"sat": "23:00-04:00"})
CASES += [
    ("ny-fri-est", NY_WEEKDAYS, NY, utc("2025-03-07 14:00"), True, "open"),
    ("ny-mon-edt-open", NY_WEEKDAYS, NY, utc("2025-03-10 13:30"), True, "open"),
    ("ny-mon-edt-closed", NY_WEEKDAYS, NY, utc("2025-03-10 21:00"), False, "closed_hours"),
    ("ny-mon-est-closed", NY_WEEKDAYS, NY, utc("2025-11-03 13:30"), False, "closed_hours"),
    ("ny-mon-est-open", NY_WEEKDAYS, NY, utc("2025-11-03 21:30"), True, "open"),
    ("ny-spring-est", NY_NIGHT, NY, utc("2025-03-09 06:59"), True, "open"),
    ("ny-spring-edt", NY_NIGHT, NY, utc("2025-03-09 07:00"), True, "open"),
    ("ny-spring-last", NY_NIGHT, NY, utc("2025-03-09 07:59"), True, "open"),
    ("ny-spring-end", NY_NIGHT, NY, utc("2025-03-09 08:00"), False, "closed_hours"),
    ("ny-fall-edt", NY_NIGHT, NY, utc("2025-11-02 05:30"), True, "open"),
    ("ny-fall-est", NY_NIGHT, NY, utc("2025-11-02 06:30"), True, "open"),
    ("ny-fall-last", NY_NIGHT, NY, utc("2025-11-02 08:59"), True, "open"),
    ("ny-fall-end", NY_NIGHT, NY, utc("2025-11-02 09:00"), False, "closed_hours"),
]

# The date line: at 2025-01-06 20:00 UTC it is Tuesday 09:00 in Auckland (+13) and
# Monday 09:00 in Pago Pago (-11). 6 Feb is Waitangi Day in New Zealand only.
AKL, PPG = "Pacific/Auckland", "Pacific/Pago_Pago"
MON_DAY = schedule({"mon": "08:00-17:00"})
TUE_DAY = schedule({"tue": "08:00-17:00"})
NZ_WEEK = schedule({"mon-fri": "08:00-17:00"}, country="NZ")
AS_WEEK = schedule({"mon-fri": "08:00-17:00"}, country="AS")
CASES += [
    ("akl-mon-rule", MON_DAY, AKL, utc("2025-01-06 20:00"), False, "closed_hours"),
    ("ppg-mon-rule", MON_DAY, PPG, utc("2025-01-06 20:00"), True, "open"),
    ("akl-tue-rule", TUE_DAY, AKL, utc("2025-01-06 20:00"), True, "open"),
    ("ppg-tue-rule", TUE_DAY, PPG, utc("2025-01-06 20:00"), False, "closed_hours"),
    ("akl-waitangi", NZ_WEEK, AKL, utc("2025-02-05 21:00"), False, "holiday"),
    ("ppg-same-instant", AS_WEEK, PPG, utc("2025-02-05 21:00"), True, "open"),
    ("akl-day-after", NZ_WEEK, AKL, utc("2025-02-06 21:00"), True, "open"),
    ("ppg-their-feb-6", AS_WEEK, PPG, utc("2025-02-06 21:00"), True, "open"),
]


@pytest.mark.parametrize(
    ("sched", "tz", "now", "is_open_", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_is_open(sched: Schedule, tz: str, now: datetime, is_open_: bool, reason: str) -> None:
    assert is_open(sched, tz, now) == OpenState(is_open_, reason)


def test_case_ids_unique() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_same_answer_for_any_input_zone() -> None:
    # now may arrive in any aware zone; only the instant matters.
    instant = local(DHAKA, "2025-01-07 03:00")
    assert is_open(MON_NIGHT, DHAKA, instant.astimezone(ZoneInfo("America/New_York"))) == (
        OpenState(True, "open")
    )


def test_holiday_name() -> None:
    assert holiday_name(WEEKDAYS_BD, date(2025, 3, 26)) == "Independence Day"
    assert holiday_name(WEEKDAYS_IN, date(2025, 3, 26)) is None
    assert holiday_name(schedule({}), date(2025, 12, 25)) is None
