"""Report intervals in a site's own time zone: local 15/30/60-minute or day buckets as UTC spans.

The database groups calls by UTC quarter hour (``slot`` = epoch seconds // 900); every
local bucket boundary (xx:00, :15, :30, :45 local, or local midnight) is a UTC quarter
hour too, because every offset a zone has used since 1972 is a whole number of quarter
hours (India +5:30, Nepal +5:45, Chatham +12:45). So slots merge into local buckets
exactly, on both engines, without any time-zone support in SQL. A range in a zone whose
offset is not (an old LMT offset) is refused rather than misbucketed.

DST: the spring-forward night has a 23-hour day and no 02:00 bucket; in the fall-back
night the repeated hour gives two buckets (01:00 at each offset), each an hour long.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from math import gcd
from zoneinfo import ZoneInfo

SLOT_S = 900  # the SQL grouping unit: one UTC quarter hour
MAX_BUCKETS = 40_000  # a year of quarter hours is 35,136: the longest report allowed


class Step(StrEnum):
    M15 = "15"
    M30 = "30"
    M60 = "60"
    DAY = "day"

    @property
    def minutes(self) -> int | None:
        return None if self is Step.DAY else int(self.value)


class IntervalError(ValueError):
    """A range that cannot be bucketed; the message says why."""


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime  # aware, in the site's zone
    end: datetime

    @property
    def start_utc(self) -> datetime:
        return self.start.astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        return self.end.astimezone(UTC)


def slot_of(at: datetime) -> int:
    """The UTC quarter hour of an instant (what the SQL computes)."""
    return int(at.timestamp()) // SLOT_S


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of a local date (a zone may skip midnight: then the first
    instant after it)."""
    naive = datetime.combine(day, time())
    at = naive.replace(tzinfo=zone)
    # A non-existent local time maps, round-tripped through UTC, past the gap.
    return at.astimezone(UTC).astimezone(zone)


def buckets(start: datetime, end: datetime, zone: ZoneInfo, step: Step) -> list[Bucket]:
    """The local buckets covering [start, end) (both aware, on quarter hours), in order.

    A bucket is the run of consecutive quarter hours that share a local label: the
    local time floored to the step together with the UTC offset (so the repeated hour
    of a fall-back night is two buckets), or for days the local date alone.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise IntervalError("a report range needs aware instants")
    s, e = int(start.timestamp()), int(end.timestamp())
    if s % SLOT_S or e % SLOT_S:
        raise IntervalError("a report range starts and ends on a quarter hour")
    if e <= s:
        raise IntervalError("the range ends before it starts")
    n = (e - s) // SLOT_S
    if n > MAX_BUCKETS:
        raise IntervalError(f"the range is longer than {MAX_BUCKETS} quarter hours (a year)")
    minutes = step.minutes
    out: list[Bucket] = []
    label: object = None
    first: datetime | None = None
    for i in range(n + 1):
        local = datetime.fromtimestamp(s + i * SLOT_S, UTC).astimezone(zone)
        off = local.utcoffset()
        assert off is not None
        if int(off.total_seconds()) % SLOT_S:
            raise IntervalError(
                f"{zone.key} had the offset {off} then, not a whole number of quarter hours"
            )
        if i == n:
            break
        if minutes is None:
            key: object = local.date()
        else:
            key = (local.replace(minute=local.minute - local.minute % minutes), off)
        if key != label:
            if first is not None:
                out.append(Bucket(first, local))
            label, first = key, local
    assert first is not None
    out.append(Bucket(first, datetime.fromtimestamp(e, UTC).astimezone(zone)))
    return out


def slot_size(items: list[Bucket]) -> int:
    """The longest slot (seconds) whose UTC multiples include every bucket boundary: the
    SQL can group by it and return fewer rows (an hourly report in Dhaka, +06:00, groups
    by hour; a daily one by 6 hours; anything in a +05:30 zone by half hour at most)."""
    size = 0
    for b in items:
        size = gcd(size, int(b.start.timestamp()))
    if items:
        size = gcd(size, int(items[-1].end.timestamp()))
    assert size % SLOT_S == 0 or not items
    return size or SLOT_S


class SlotIndex:
    """Which bucket a UTC slot (of ``size`` seconds) falls in: a bisect over the buckets'
    starts."""

    def __init__(self, items: list[Bucket], size: int = SLOT_S) -> None:
        self._starts = [int(b.start.timestamp()) // size for b in items]
        self._end = int(items[-1].end.timestamp()) // size if items else 0

    def __call__(self, slot: int) -> int | None:
        if not self._starts or slot < self._starts[0] or slot >= self._end:
            return None
        return bisect_right(self._starts, slot) - 1


def day_range(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[local midnight of ``first``, local midnight after ``last``), in UTC."""
    return (
        local_midnight(first, zone).astimezone(UTC),
        local_midnight(last + timedelta(days=1), zone).astimezone(UTC),
    )
