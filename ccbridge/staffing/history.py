"""Arrivals history: the protocol the records store will implement, and an in-memory one."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from ccbridge.config.model import queue_name
from ccbridge.staffing.slots import Slot, slot_of

__all__ = [
    "ArrivalHistory",
    "MemoryHistory",
    "NoHistory",
    "Observation",
    "QueueKey",
    "history_from_pairs",
]


@dataclass(frozen=True, slots=True, order=True)
class QueueKey:
    """One demand stream: a service in a language at a site (one Asterisk queue)."""

    site: str
    service: str
    language: str

    @property
    def queue(self) -> str:
        return queue_name(self.service, self.language)

    def __str__(self) -> str:
        return f"{self.site}/{self.queue}"


@dataclass(frozen=True, slots=True)
class Observation:
    """Calls that arrived in one local slot. ``complete`` is False when the slot touches
    a coverage gap (no AMI link to the site for part of it): its count is only a lower
    bound, and forecasts leave it out instead of reading it as low demand."""

    slot: Slot
    count: int
    complete: bool = True
    # calls handled (answered and finished) in the slot and their handle time in
    # seconds, talk + hold + wrap-up: the AHT the plan uses where the history has it
    handled: int = 0
    handle_s: float = 0.0


class NoHistory(ValueError):
    """Nothing to forecast from: the message says which queue and which dates."""


class ArrivalHistory(Protocol):
    """Arrivals per local slot, as the records store will give them.

    Inside the span a source covers, a slot it gives no observation for had no calls
    (a store keeps rows for calls, not for empty half hours); outside it, nothing is
    known. Coverage gaps are observations with ``complete=False``.

    A store implements it with one query of the calls that queued at ``key.site`` for
    the service and language (arrival instants) and one of the site's coverage gaps,
    put through ``ccbridge.staffing.bucket.bucket_arrivals`` (local slots, DST, gaps).
    """

    def span(self, key: QueueKey) -> tuple[date, date] | None:
        """The first and last local dates the records cover for ``key``; None if none."""
        ...

    def arrivals(self, key: QueueKey, first: date, last: date) -> Iterable[Observation]:
        """The observations of ``key`` on local dates ``first`` to ``last`` inclusive."""
        ...


class MemoryHistory:
    """An ArrivalHistory over observations held in memory (a CSV file, a test fixture)."""

    def __init__(
        self,
        rows: Iterable[tuple[QueueKey, Observation]],
        spans: dict[QueueKey, tuple[date, date]] | None = None,
        *,
        only_spans: bool = False,
    ) -> None:
        """``spans`` gives keys their span; a key without one spans its observations'
        days, unless ``only_spans`` (a store: a key whose only observations are
        coverage gaps has no records, so nothing is known of it)."""
        self._rows: dict[QueueKey, dict[Slot, Observation]] = {}
        for key, obs in rows:
            if obs.count < 0 or obs.handled < 0 or not obs.handle_s >= 0:
                raise ValueError(f"{key} {obs.slot}: a negative count or handle time")
            per = self._rows.setdefault(key, {})
            old = per.get(obs.slot)
            if old is not None:
                # Both passes of a repeated autumn half hour land in one wall slot.
                obs = Observation(
                    obs.slot,
                    old.count + obs.count,
                    old.complete and obs.complete,
                    old.handled + obs.handled,
                    old.handle_s + obs.handle_s,
                )
            per[obs.slot] = obs
        self._spans = dict(spans or {})
        for key, per in self._rows.items():
            if key not in self._spans and per and not only_spans:
                days = [s.day for s in per]
                self._spans[key] = (min(days), max(days))

    def queues(self) -> list[QueueKey]:
        return sorted(set(self._rows) | set(self._spans))

    def span(self, key: QueueKey) -> tuple[date, date] | None:
        return self._spans.get(key)

    def arrivals(self, key: QueueKey, first: date, last: date) -> Iterable[Observation]:
        return [o for s, o in self._rows.get(key, {}).items() if first <= s.day <= last]


def history_from_pairs(
    key: QueueKey,
    pairs: Iterable[tuple[datetime, int]],
    *,
    gaps: Iterable[datetime] = (),
    span: tuple[date, date] | None = None,
) -> MemoryHistory:
    """A history of one queue from (local slot start, count) pairs; ``gaps`` are local
    slot starts that touched a coverage gap."""
    gap_slots = {slot_of(g) for g in gaps}
    rows = [(key, Observation(slot_of(t), n, slot_of(t) not in gap_slots)) for t, n in pairs]
    seen = {o.slot for _, o in rows}
    rows += [(key, Observation(s, 0, False)) for s in gap_slots - seen]
    return MemoryHistory(rows, {key: span} if span else None)


Holidays = Callable[[date], str | None]
