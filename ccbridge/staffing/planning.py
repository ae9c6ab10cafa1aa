"""One staffing plan from a history: forecast every configured queue, then Erlang C (pure).

What `ccbridge staffing`, `GET /api/v1/staffing` and the bridge's gauges share, so the
three show the same numbers for the same records.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from ccbridge.config.model import Config, Schedule
from ccbridge.routing.schedule import holiday_name
from ccbridge.staffing.forecast import Basis, Forecast, ForecastSlot, forecast
from ccbridge.staffing.history import ArrivalHistory, NoHistory, QueueKey
from ccbridge.staffing.plan import IntervalPlan, Targets, offering_keys, plan
from ccbridge.staffing.slots import slots_between

__all__ = [
    "MAX_DAYS",
    "PlanResult",
    "forecasts_for",
    "holiday_days",
    "make_plan",
    "number",
    "parse_target",
    "parse_volume",
    "plan_days",
]

MAX_DAYS = 62  # two months of half hours per queue: a plan, not a data export
MAX_WEEKS = 52


@dataclass(frozen=True, slots=True)
class PlanResult:
    days: tuple[date, ...]
    targets: Targets
    weeks: int
    rows: list[IntervalPlan]
    notes: list[str]  # queues without a forecast, and why


def number(flag: str, raw: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"{flag}: {raw!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{flag}: {raw!r} is not a finite number")
    return v


def parse_volume(raw: str) -> float:
    """'+20%' -> 1.2, '-10%' -> 0.9."""
    m = re.fullmatch(r"\s*([+-]?)(\d+(?:\.\d+)?)\s*%\s*", raw)
    if not m:
        raise ValueError(f"--volume: {raw!r} is not a change like +20% or -10%")
    pct = float(m.group(2)) * (-1 if m.group(1) == "-" else 1)
    if pct <= -100:
        raise ValueError(f"--volume: {raw!r} would leave no calls at all")
    return 1 + pct / 100


def parse_target(raw: str) -> tuple[float, float]:
    """'80/20' -> (0.8, 20.0)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*", raw)
    if not m:
        raise ValueError(f"--target: {raw!r} is not PERCENT/SECONDS like 80/20")
    pct, secs = float(m.group(1)), float(m.group(2))
    if not 0 < pct <= 100:
        raise ValueError(f"--target: the percentage must be in (0, 100], got {m.group(1)}")
    return pct / 100, secs


def plan_days(first: date, last: date) -> list[date]:
    """Every date of the plan; ValueError for a reversed or too long range."""
    if last < first:
        raise ValueError(f"the last date {last} is before the first {first}")
    n = (last - first).days + 1
    if n > MAX_DAYS:
        raise ValueError(f"the dates span {n} days; at most {MAX_DAYS}")
    return [first + timedelta(days=i) for i in range(n)]


def check_weeks(weeks: int) -> int:
    if isinstance(weeks, bool) or not isinstance(weeks, int) or not 1 <= weeks <= MAX_WEEKS:
        raise ValueError(f"weeks must be a whole number from 1 to {MAX_WEEKS}, got {weeks!r}")
    return weeks


def _calendar(schedule: Schedule) -> Callable[[date], str | None]:
    return lambda d: holiday_name(schedule, d)


def holiday_days(config: Config, first: date, lookback_days: int) -> set[date]:
    """The holidays of any configured offering in the ``lookback_days`` before ``first``:
    the past holidays a holiday's forecast is made from."""
    out: set[date] = set()
    schedules = [o.schedule for s in config.sites for o in s.offerings]
    for i in range(1, lookback_days + 1):
        d = first - timedelta(days=i)
        if any(holiday_name(sc, d) for sc in schedules):
            out.add(d)
    return out


def forecasts_for(
    config: Config, history: ArrivalHistory, days: list[date], weeks: int
) -> tuple[list[Forecast], list[str]]:
    """A forecast for every queue the config offers, and a note for each without one."""
    out: list[Forecast] = []
    notes: list[str] = []
    for key in offering_keys(config):
        offering = config.site(key.site).offering(key.service)
        assert offering is not None
        try:
            out.append(
                forecast(history, key, days, weeks=weeks, holidays=_calendar(offering.schedule))
            )
        except NoHistory as exc:
            notes.append(f"no forecast: {exc}")
            span = history.span(key)
            if span is not None and span[1] >= days[0] and span[0] <= days[-1]:
                # Records only in the planned days (a new queue, a fresh store): rows
                # without a forecast, so the calls recorded there still show.
                out.append(_unforecast(key, days))
    return out, notes


def _unforecast(key: QueueKey, days: list[date]) -> Forecast:
    slots = tuple(
        ForecastSlot(s, None, Basis.NO_HISTORY, 0) for s in slots_between(days[0], days[-1])
    )
    return Forecast(key, "profile", (days[0], days[0]), 0, 0.0, slots)


def make_plan(
    config: Config,
    history: ArrivalHistory,
    days: list[date],
    targets: Targets,
    weeks: int = 8,
    *,
    staffed: Mapping[tuple[str, str], int] | None = None,
) -> PlanResult:
    """The plan of ``days``; NoHistory when no configured queue has any history before
    the first day or in the days (nothing to plan from: a message, not a table of
    zeros). A queue whose records start inside the days has rows without a forecast
    (status no_forecast) that show its recorded calls."""
    check_weeks(weeks)
    forecasts, notes = forecasts_for(config, history, days, weeks)
    if not forecasts:
        raise NoHistory(
            f"no queue of the config has history before {days[0]}: nothing to plan from"
        )
    rows = plan(config, forecasts, targets, staffed, recorded=history)
    return PlanResult(tuple(days), targets, weeks, rows, notes)
