"""Call arrival instants and coverage gaps -> observations per local slot (pure): what a
records store runs over its rows to serve an ArrivalHistory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from ccbridge.staffing.history import Observation
from ccbridge.staffing.slots import Slot, slot_of, zone

__all__ = ["QUARTER_S", "QuarterSums", "bucket_arrivals", "bucket_quarters"]

# Every zone's offset is a whole number of quarter hours (tzdata since 1972), so stepping
# through a gap a quarter hour at a time visits every local half hour it touches, and a
# UTC quarter hour lies inside one local half hour.
_STEP = timedelta(minutes=15)
QUARTER_S = 900
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class QuarterSums:
    """What a database gives per UTC quarter hour (``quarter`` = epoch seconds // 900):
    calls that arrived, how many of them were handled, their handle seconds."""

    quarter: int
    calls: int
    handled: int = 0
    handle_s: float = 0.0


def _aware(name: str, t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"{name} {t.isoformat()} must carry a time zone")
    return t.astimezone(UTC)


def bucket_arrivals(
    tz: str,
    arrivals: Iterable[datetime],
    gaps: Iterable[tuple[datetime, datetime | None]],
    first: date,
    last: date,
    *,
    now: datetime,
    handled: Iterable[tuple[datetime, float]] = (),
) -> list[Observation]:
    """Count ``arrivals`` (aware instants) per local half hour of the zone ``tz`` on the
    local dates ``first`` to ``last``; every slot a gap (start, end; an end of None is a
    gap still open at ``now``) touches is incomplete. Slots with neither calls nor a gap
    get no observation: the history reads them as no calls. ``handled`` gives, for each
    call handled, its arrival instant and handle seconds (talk + hold + wrap-up): they
    count in the slot the call arrived in, as Erlang C pairs arrivals with their AHT."""
    z = zone(tz)
    counts: Counter[Slot] = Counter()
    for t in arrivals:
        s = slot_of(_aware("arrival", t).astimezone(z))
        if first <= s.day <= last:
            counts[s] += 1
    work: dict[Slot, list[float]] = {}
    for t, secs in handled:
        s = slot_of(_aware("handled call", t).astimezone(z))
        if not secs >= 0:
            raise ValueError(f"a handle time must not be negative, got {secs!r}")
        if first <= s.day <= last:
            acc = work.setdefault(s, [0, 0.0])
            acc[0] += 1
            acc[1] += secs
    incomplete = _gap_slots(z, gaps, first, last, now)
    return [
        Observation(
            s,
            counts.get(s, 0),
            s not in incomplete,
            int(work.get(s, (0, 0.0))[0]),
            work.get(s, (0, 0.0))[1],
        )
        for s in sorted(set(counts) | incomplete | set(work))
    ]


def bucket_quarters(
    tz: str,
    quarters: Iterable[QuarterSums],
    gaps: Iterable[tuple[datetime, datetime | None]],
    first: date,
    last: date,
    *,
    now: datetime,
) -> list[Observation]:
    """``bucket_arrivals`` for sums a database grouped per UTC quarter hour: each quarter
    falls inside one local half hour of any zone (offsets are whole quarter hours), so
    the local slots are exact sums of quarters, on both engines, with no time-zone
    support in SQL."""
    z = zone(tz)
    acc: dict[Slot, list[float]] = {}
    for q in quarters:
        if q.calls < 0 or q.handled < 0 or not q.handle_s >= 0:
            raise ValueError(f"quarter {q.quarter}: a negative count or handle time")
        s = slot_of((_EPOCH + timedelta(seconds=q.quarter * QUARTER_S)).astimezone(z))
        if first <= s.day <= last:
            a = acc.setdefault(s, [0, 0, 0.0])
            a[0] += q.calls
            a[1] += q.handled
            a[2] += q.handle_s
    incomplete = _gap_slots(z, gaps, first, last, now)
    none = [0, 0, 0.0]
    return [
        Observation(
            s,
            int(acc.get(s, none)[0]),
            s not in incomplete,
            int(acc.get(s, none)[1]),
            acc.get(s, none)[2],
        )
        for s in sorted(set(acc) | incomplete)
    ]


def _gap_slots(
    z: tzinfo,
    gaps: Iterable[tuple[datetime, datetime | None]],
    first: date,
    last: date,
    now: datetime,
) -> set[Slot]:
    """Every local slot of the dates that a gap (start, end; None: still open at now)
    touches."""
    incomplete: set[Slot] = set()
    until = _aware("now", now)
    for start, end in gaps:
        a = _aware("gap start", start)
        b = until if end is None else _aware("gap end", end)
        if b <= a:
            continue
        # from the quarter hour holding the start, one step at a time, to the end
        t = a.replace(minute=a.minute - a.minute % 15, second=0, microsecond=0)
        while t < b:
            s = slot_of(t.astimezone(z))
            if first <= s.day <= last:
                incomplete.add(s)
            t += _STEP
    return incomplete
