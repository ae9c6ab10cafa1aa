"""Contact-centre KPIs (offered, answered, abandoned, wait, talk) counted from AMI queue events."""

from __future__ import annotations

import copy
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from ccbridge.config.model import Config
from ccbridge.events import EventBus, EventHandler
from ccbridge.queueindex import queue_index
from ccbridge.scrape import Deferred

# Seconds. Dense where service-level thresholds usually sit (10-60 s) so quantiles are
# meaningful there; the exact "within threshold" share comes from its own counter.
WAIT_BUCKETS = (1.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
TALK_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)

# The AMI events the tracker reads (see on_event): what it subscribes to.
EVENTS: Final = frozenset(
    {"QueueCallerJoin", "AgentConnect", "AgentComplete", "QueueCallerAbandon"}
)

OTHER = "other"  # label value for a queue or site the config does not know: keeps labels bounded
QUEUE_LABELS = ("site", "service", "language", "queue")


def _seconds(event: Mapping[str, str], key: str) -> float | None:
    text = event.get(key)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 else None


class KpiTracker:
    """Counts queue KPIs per (site, service, language, queue) from every site's AMI events.

    The counts are plain numbers in one ``_QueueSeries`` per queue, updated on the event
    path, and exported by a collector at scrape time (client_python's ``Counter.inc``
    and ``Histogram.observe`` take a lock and, for a histogram, a Python loop over its
    buckets: 0.3 and 0.9 us, more than the rest of an event's KPI work). The exposition
    is what those types give: ``_total``, ``_bucket``/``_sum``/``_count`` and ``_created``.
    """

    def __init__(self, config: Config, registry: CollectorRegistry) -> None:
        self._queues = queue_index(config)
        self._sites = frozenset(s.name for s in config.sites)
        threshold = Gauge(
            "ccbridge_queue_service_level_threshold_seconds",
            "The queue's configured service-level threshold (queues.conf servicelevel).",
            list(QUEUE_LABELS),
            registry=registry,
        )
        # Every configured queue exists from the first scrape, at zero: a dashboard then
        # tells "no calls" (0) from "not exported" (no data), and rates start cleanly.
        self._series: dict[tuple[str, str], _QueueSeries] = {}
        for (site, queue), info in self._queues.items():
            key = (site, info.service, info.language, queue)
            self._series[(site, queue)] = _QueueSeries(key, info.servicelevel)
            threshold.labels(*key).set(info.servicelevel)
        self._other: dict[str, _QueueSeries] = {}  # site (or OTHER) -> the folded series
        registry.register(_KpiCollector(self))

    def series(self) -> Iterator[_QueueSeries]:
        """Every series, configured queues first (what the collector exports)."""
        yield from self._series.values()
        yield from list(self._other.values())

    def _series_for(self, site: str, event: Mapping[str, str]) -> _QueueSeries:
        series = self._series.get((site, event.get("Queue", "")))
        if series is not None:
            return series
        # Only configured names become labels: anything else is folded into one series.
        folded = site if site in self._sites else OTHER
        series = self._other.get(folded)
        if series is None:
            series = self._other[folded] = _QueueSeries((folded, OTHER, OTHER, OTHER), None)
        return series

    def subscribe(self, bus: EventBus) -> None:
        """One handler per event name (no test of the name on the event path)."""
        for name, handler in sorted(self._handlers().items()):
            bus.subscribe(name, handler)

    def _handlers(self) -> dict[str, EventHandler]:
        return {
            "QueueCallerJoin": self._on_join,
            "AgentConnect": self._on_connect,
            "AgentComplete": self._on_complete,
            "QueueCallerAbandon": self._on_abandon,
        }

    def on_event(self, site: str, event: Mapping[str, str]) -> None:
        """One AMI event from ``site``, for the names in EVENTS (others are ignored)."""
        handler = self._handlers().get(event.get("Event", ""))
        if handler is not None:
            handler(site, event)

    def _on_join(self, site: str, event: Mapping[str, str]) -> None:
        self._series_for(site, event).offered += 1

    def _on_connect(self, site: str, event: Mapping[str, str]) -> None:
        s = self._series_for(site, event)
        s.answered += 1
        hold = _seconds(event, "HoldTime")
        if hold is not None:
            s.wait_answered[bisect_left(WAIT_BUCKETS, hold)] += 1
            s.wait_answered_sum += hold
            # app_queue counts "completed within service level" with <= too.
            if s.servicelevel is not None and hold <= s.servicelevel:
                s.answered_in_sl += 1

    def _on_complete(self, site: str, event: Mapping[str, str]) -> None:
        talk = _seconds(event, "TalkTime")
        if talk is not None:
            s = self._series_for(site, event)
            s.talk[bisect_left(TALK_BUCKETS, talk)] += 1
            s.talk_sum += talk

    def _on_abandon(self, site: str, event: Mapping[str, str]) -> None:
        s = self._series_for(site, event)
        s.abandoned += 1
        hold = _seconds(event, "HoldTime")
        if hold is not None:
            s.wait_abandoned[bisect_left(WAIT_BUCKETS, hold)] += 1
            s.wait_abandoned_sum += hold


class _QueueSeries:
    """One queue's KPI counts. A histogram is a list of counts per bucket, not cumulative
    (index ``bisect_left(bounds, value)``: the first bound >= value, as Prometheus's
    ``le``; the last is +Inf), and its sum."""

    __slots__ = (
        "abandoned",
        "answered",
        "answered_in_sl",
        "created",
        "labels",
        "offered",
        "servicelevel",
        "talk",
        "talk_sum",
        "wait_abandoned",
        "wait_abandoned_sum",
        "wait_answered",
        "wait_answered_sum",
    )

    def __init__(self, labels: tuple[str, str, str, str], servicelevel: float | None) -> None:
        self.labels = labels
        self.servicelevel = servicelevel  # seconds; None for the folded "other" series
        self.created = time.time()  # what client_python exports as *_created
        self.offered = self.answered = self.answered_in_sl = self.abandoned = 0
        self.wait_answered = [0] * (len(WAIT_BUCKETS) + 1)
        self.wait_abandoned = [0] * (len(WAIT_BUCKETS) + 1)
        self.talk = [0] * (len(TALK_BUCKETS) + 1)
        self.wait_answered_sum = self.wait_abandoned_sum = self.talk_sum = 0.0


class _KpiCollector(Collector):
    """The tracker's counts as counter and histogram families, read at scrape time."""

    def __init__(self, tracker: KpiTracker) -> None:
        self._tracker = tracker

    def describe(self) -> Iterable[Metric]:
        return _families()

    def collect(self) -> Iterable[Metric]:
        return _build(self._tracker.series())

    def snapshot(self) -> Collector:
        """On the loop: a copy of every series (the loop's event handlers change their
        counts and bucket lists in place); one per configured queue and language, plus
        a bounded "other", whatever the number of agents or calls."""
        series = [_copy_series(s) for s in self._tracker.series()]
        return Deferred(lambda: _build(series))


def _copy_series(s: _QueueSeries) -> _QueueSeries:
    out = copy.copy(s)
    out.wait_answered, out.wait_abandoned = list(s.wait_answered), list(s.wait_abandoned)
    out.talk = list(s.talk)
    return out


def _build(series: Iterable[_QueueSeries]) -> list[Metric]:
    """The families of ``series``."""
    offered, answered, in_sl, abandoned, wait, talk = families = _families()
    names, wait_names = list(QUEUE_LABELS), [*QUEUE_LABELS, "outcome"]
    for s in series:
        labels, created = list(s.labels), s.created
        offered.add_metric(labels, s.offered, created=created)
        answered.add_metric(labels, s.answered, created=created)
        in_sl.add_metric(labels, s.answered_in_sl, created=created)
        abandoned.add_metric(labels, s.abandoned, created=created)
        wait_answered, wait_abandoned = [*labels, "answered"], [*labels, "abandoned"]
        _add_histogram(
            wait, wait_names, wait_answered, WAIT_BUCKETS, s.wait_answered,
            s.wait_answered_sum, created,
        )  # fmt: skip
        _add_histogram(
            wait, wait_names, wait_abandoned, WAIT_BUCKETS, s.wait_abandoned,
            s.wait_abandoned_sum, created,
        )  # fmt: skip
        _add_histogram(talk, names, labels, TALK_BUCKETS, s.talk, s.talk_sum, created)
    return list(families)


def _families() -> tuple[
    CounterMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
    HistogramMetricFamily,
    HistogramMetricFamily,
]:
    labels = list(QUEUE_LABELS)
    return (
        CounterMetricFamily(
            "ccbridge_calls_offered", "Calls that joined a queue (QueueCallerJoin).", labels=labels
        ),
        CounterMetricFamily(
            "ccbridge_calls_answered",
            "Queue calls an agent answered (AgentConnect).",
            labels=labels,
        ),
        CounterMetricFamily(
            "ccbridge_calls_answered_within_sl",
            "Queue calls answered within the queue's service-level threshold.",
            labels=labels,
        ),
        CounterMetricFamily(
            "ccbridge_calls_abandoned",
            "Callers who hung up while waiting in a queue (QueueCallerAbandon).",
            labels=labels,
        ),
        HistogramMetricFamily(
            "ccbridge_queue_wait_seconds",
            "Time in queue until answered or abandoned.",
            labels=[*labels, "outcome"],
        ),
        HistogramMetricFamily(
            "ccbridge_queue_talk_seconds",
            "Talk time of completed queue calls (AgentComplete).",
            labels=labels,
        ),
    )


def _le(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The ``le`` label values of ``bounds`` and +Inf, spelt as client_python spells them."""
    return tuple(floatToGoString(b) for b in (*bounds, float("inf")))  # type: ignore[no-untyped-call]


_LE: Final = {WAIT_BUCKETS: _le(WAIT_BUCKETS), TALK_BUCKETS: _le(TALK_BUCKETS)}


def _add_histogram(
    family: HistogramMetricFamily,
    names: list[str],
    labels: list[str],
    bounds: tuple[float, ...],
    counts: list[int],
    total: float,
    created: float,
) -> None:
    cumulative, running = [], 0
    for le, count in zip(_LE[bounds], counts, strict=True):
        running += count
        cumulative.append((le, float(running)))
    family.add_metric(labels, cumulative, total)
    # HistogramMetricFamily has no created=, unlike CounterMetricFamily.
    family.samples.append(
        Sample(family.name + "_created", dict(zip(names, labels, strict=True)), created)
    )
