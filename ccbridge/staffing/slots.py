"""Half-hour slots on a site's local wall clock, and what each one is in real time (DST)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "SLOTS_PER_DAY",
    "SLOT_MINUTES",
    "Slot",
    "slot_instants",
    "slot_of",
    "slot_seconds",
    "slots_between",
    "zone",
]

SLOT_MINUTES = 30
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES
_ONE_MIN = timedelta(minutes=1)
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, order=True)
class Slot:
    """A local wall-clock half hour: ``index`` 0 is 00:00-00:30 of ``day``.

    A slot is wall-clock, not elapsed time: on a DST night the skipped half hours are
    slots of 0 seconds and a repeated one is a slot of 3,600 seconds holding both passes
    (reports and forecasts line the same local hour of every day up, which is what a
    manager plans shifts by). ``slot_seconds`` says how long one really is.
    """

    day: date
    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < SLOTS_PER_DAY:
            raise ValueError(f"slot index must be in 0..{SLOTS_PER_DAY - 1}, got {self.index}")

    @property
    def start(self) -> time:
        minutes = self.index * SLOT_MINUTES
        return time(minutes // 60, minutes % 60)

    @property
    def local_start(self) -> datetime:
        """The naive local wall-clock start."""
        return datetime.combine(self.day, self.start)

    def __str__(self) -> str:
        return f"{self.day.isoformat()}T{self.start.strftime('%H:%M')}"


def zone(tz: str) -> ZoneInfo:
    """The IANA zone ``tz``, or a ValueError that names it."""
    try:
        return _zone(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {tz!r}") from None


@lru_cache(maxsize=64)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def slot_of(local: datetime) -> Slot:
    """The slot holding the local wall-clock time ``local`` (its tzinfo, if any, is the
    zone it is already expressed in: a local time, not converted)."""
    return Slot(local.date(), (local.hour * 60 + local.minute) // SLOT_MINUTES)


def _exists(wall: datetime, z: ZoneInfo, fold: int) -> datetime | None:
    """The UTC instant of the naive ``wall`` with ``fold``, when that wall time exists."""
    u = wall.replace(tzinfo=z, fold=fold).astimezone(UTC)
    return u if u.astimezone(z).replace(tzinfo=None) == wall else None


@lru_cache(maxsize=4096)
def _plain_day(tz: str, day: date) -> bool:
    """True when ``day`` has no offset change in ``tz`` (every slot is 30 real minutes)."""
    z = _zone(tz)
    a = datetime.combine(day, time())
    b = a + _DAY
    offsets = {w.replace(tzinfo=z, fold=f).utcoffset() for w in (a, b) for f in (0, 1)}
    return len(offsets) == 1


def slot_instants(slot: Slot, tz: str) -> tuple[datetime, ...]:
    """The UTC instant at which each real pass of the slot begins: one on a plain day,
    none for a slot skipped by the spring change, two for the repeated autumn half hour
    (a pass that starts inside the slot, e.g. after a 30-minute gap, starts there)."""
    z = zone(tz)
    start = slot.local_start
    if _plain_day(tz, slot.day):
        return (start.replace(tzinfo=z).astimezone(UTC),)
    out: list[datetime] = []
    prev: set[datetime] = set()
    for m in range(SLOT_MINUTES):
        wall = start + m * _ONE_MIN
        here = {u for f in (0, 1) if (u := _exists(wall, z, f)) is not None}
        # A pass begins where an instant has no instant one minute before it.
        out += [u for u in here if u - _ONE_MIN not in prev]
        prev = here
    return tuple(sorted(out))


def slot_seconds(slot: Slot, tz: str) -> int:
    """Real seconds that fall in the wall-clock slot in zone ``tz``: 1,800 on a plain
    day, 0 for a half hour the spring change skips, 3,600 for one the autumn change
    repeats (and the partial amounts zones with 30-minute changes have)."""
    z = zone(tz)
    if _plain_day(tz, slot.day):
        return SLOT_MINUTES * 60
    start = slot.local_start
    minutes = 0
    for m in range(SLOT_MINUTES):
        wall = start + m * _ONE_MIN
        minutes += len({u for f in (0, 1) if (u := _exists(wall, z, f)) is not None})
    return minutes * 60


def slots_between(first: date, last: date) -> list[Slot]:
    """Every slot of the local dates ``first`` to ``last`` inclusive."""
    if last < first:
        raise ValueError(f"the last date {last} is before the first {first}")
    out: list[Slot] = []
    d = first
    while d <= last:
        out += [Slot(d, i) for i in range(SLOTS_PER_DAY)]
        d += _DAY
    return out
