"""Call arrival instants and coverage gaps -> observations per local slot (pure): what a
records store runs over its rows to serve an ArrivalHistory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from ccbridge.staffing.history import Observation
from ccbridge.staffing.slots import Slot, slot_of, zone

__all__ = ["bucket_arrivals"]

# Every zone's offset is a whole number of quarter hours (tzdata since 1972), so stepping
# through a gap a quarter hour at a time visits every local half hour it touches.
_STEP = timedelta(minutes=15)


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
