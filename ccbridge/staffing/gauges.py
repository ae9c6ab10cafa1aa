"""Prometheus gauges of the current half hour's required and staffed agents per queue."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ccbridge.scrape import Deferred
from ccbridge.staffing.plan import IntervalPlan

__all__ = ["StaffingCollector", "current"]


def current(rows: Iterable[IntervalPlan], now: datetime) -> list[IntervalPlan]:
    """The rows whose slot holds the instant ``now`` (one per queue: its slot's real
    start is at or before now, and less than its length ago)."""
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    out: dict[tuple[str, str], IntervalPlan] = {}
    for r in rows:
        if r.utc_start is None or r.seconds <= 0:
            continue
        age = (now - r.utc_start).total_seconds()
        if 0 <= age < r.seconds:
            out[(r.key.site, r.key.queue)] = r
    return [out[k] for k in sorted(out)]


class StaffingCollector(Collector):
    """``ccbridge_agents_required`` and ``ccbridge_agents_staffed`` {site, queue}, read
    at scrape time from ``source`` (the current rows of a plan). Labels are the config's
    sites and queues only: the plan has no row for anything else."""

    def __init__(self, source: Callable[[], Iterable[IntervalPlan]]) -> None:
        self._source = source

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families(())

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._families(self._source())

    def snapshot(self) -> Collector:
        """On the loop: the current rows (the source reads the live state, which only
        the loop may read; rows are frozen, one per configured queue)."""
        rows = tuple(self._source())
        return Deferred(lambda: self._families(rows))

    def _families(self, rows: Iterable[IntervalPlan]) -> list[GaugeMetricFamily]:
        required = GaugeMetricFamily(
            "ccbridge_agents_required",
            "Agents the current half hour's forecast needs on the phones (Erlang C).",
            labels=["site", "queue"],
        )
        staffed = GaugeMetricFamily(
            "ccbridge_agents_staffed",
            "Agents staffing the queue in the current half hour.",
            labels=["site", "queue"],
        )
        for r in rows:
            staffed.add_metric([r.key.site, r.key.queue], float(r.staffed))
            if r.required is not None:
                required.add_metric([r.key.site, r.key.queue], float(r.required))
        return [required, staffed]
