"""Opening-hours evaluation: is a service open at a site at a given UTC instant."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ccbridge.config.model import Schedule, TimeRange
from ccbridge.routing import holidaycal
from ccbridge.routing.reasons import Skip

__all__ = ["OpenState", "holiday_name", "is_open"]

# Reasons: open -> 'open' | 'special_hours'; closed -> a Skip: 'closed_hours' | 'holiday' |
# 'closed_date' (the routing engine passes a closed site over with that reason).
OPEN = "open"
SPECIAL_HOURS = "special_hours"
CLOSED_HOURS = Skip.CLOSED_HOURS
HOLIDAY = Skip.HOLIDAY
CLOSED_DATE = Skip.CLOSED_DATE

_ONE_DAY = timedelta(days=1)
_ALL_DAY = (TimeRange(time(0), time(0)),)  # end <= start: a full 24 h shift from midnight

# Pure memoisation: building a holidays calendar is slow, looking a date up is not.
_HOLIDAY_CACHE: dict[tuple[str, str | None], Any] = {}
# ZoneInfo's own cache keeps only 8 zones strongly; more sites than that re-read tzdata.
_ZONES: dict[str, ZoneInfo] = {}


@dataclass(frozen=True, slots=True)
class OpenState:
    """Whether a schedule is open, and the rule that decided it."""

    open: bool
    reason: str  # 'open' | 'special_hours' when open; always a Skip when closed


def _calendar(country: str, subdiv: str | None) -> Any:
    key = (country, subdiv)
    cal = _HOLIDAY_CACHE.get(key)
    if cal is None:
        # years=() plus the library's default expand=True: years fill in on first lookup.
        cal = holidaycal.calendar(country, subdiv)
        _HOLIDAY_CACHE[key] = cal
    return cal


def warm_calendars(schedules: Iterable[Schedule], years: Iterable[int]) -> None:
    """Build the holiday calendars ``schedules`` observe and fill in ``years``: a year
    fills in on its first lookup and takes tens of ms (79 ms seen in a held-route pass),
    so the bridge calls this in a thread before its loop routes anything."""
    wanted = list(years)
    for schedule in schedules:
        if schedule.observe_holidays and schedule.holidays_country is not None:
            cal = _calendar(schedule.holidays_country, schedule.holidays_subdivision)
            for year in wanted:
                _ = date(year, 1, 1) in cal  # a lookup fills the year in


def holiday_name(schedule: Schedule, day: date) -> str | None:
    """The national holiday the schedule observes on ``day``, if any."""
    if not schedule.observe_holidays or schedule.holidays_country is None:
        return None
    name = _calendar(schedule.holidays_country, schedule.holidays_subdivision).get(day)
    return None if name is None else str(name)


def _closure(schedule: Schedule, day: date) -> Skip | None:
    if day in schedule.closed_dates:
        return CLOSED_DATE
    if holiday_name(schedule, day) is not None:
        return HOLIDAY
    return None


def _shifts(schedule: Schedule, day: date) -> tuple[tuple[TimeRange, ...], str]:
    """The ranges of the shifts that start on ``day`` and the reason they open with."""
    special = schedule.special_for(day)
    if special is not None:
        return special, SPECIAL_HOURS
    if schedule.always_open:
        return _ALL_DAY, OPEN
    wd = day.weekday()
    return tuple(r.hours for r in schedule.weekly if wd in r.days), OPEN


def is_open(schedule: Schedule, tz: str, now: datetime) -> OpenState:
    """Evaluate ``schedule`` at the aware instant ``now`` in the IANA zone ``tz``.

    Semantics (chosen deliberately, documented for PBX admins):

    * Weekly rules are local wall-clock ranges. An overnight range (``end <= start``)
      listed on Monday runs from Monday ``start`` to Tuesday ``end``; unlike Asterisk's
      GotoIfTime, which would read it as Monday 00:00-end plus Monday start-24:00.
      ``start == end`` is a full 24 h shift.
    * A shift belongs to the local date on which it *starts*: holidays, closed dates and
      special hours of that date decide it. So a Monday 22:00-06:00 shift is open at
      03:00 on a Tuesday holiday, and closed all night after a Monday holiday.
    * ``always_open`` is a 00:00-24:00 shift every day; holidays, closed dates and special
      hours still apply to it (leave the country unset or observe_holidays off to avoid).
    * Special hours replace the weekly ranges for the shifts starting on that date.
    * DST: comparisons use the local wall clock. A range inside the skipped spring hour
      starts at the first existing minute after it; in the repeated autumn hour both
      passes count, so an overnight shift is an hour shorter or longer on those nights.
    """
    zone = _ZONES.get(tz)
    if zone is None:
        zone = _ZONES[tz] = ZoneInfo(tz)
    local = now.astimezone(zone)
    today = local.date()
    t = local.time().replace(tzinfo=None, fold=0)
    closed_reason: Skip | None = None

    # Shifts that started yesterday and run past midnight into today.
    yesterday = today - _ONE_DAY
    ranges, opened = _shifts(schedule, yesterday)
    for r in ranges:
        if r.end <= r.start and t < r.end:
            closure = _closure(schedule, yesterday)
            if closure is None:
                return OpenState(True, opened)
            closed_reason = closure
            break

    ranges, opened = _shifts(schedule, today)
    for r in ranges:
        if r.start <= t and (t < r.end or r.end <= r.start):
            closure = _closure(schedule, today)
            if closure is None:
                return OpenState(True, opened)
            return OpenState(False, closure)
    if closed_reason is not None:
        return OpenState(False, closed_reason)
    # Outside any shift: say why the day is closed if it is a closed day at all.
    closure = _closure(schedule, today)
    return OpenState(False, closure if closure is not None else CLOSED_HOURS)
