"""Contact-centre KPIs (offered, answered, abandoned, wait, talk) counted from AMI queue events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ccbridge.config.model import Config, queue_name
from ccbridge.events import EventBus, EventHandler

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


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """What the config says about one queue at one site."""

    service: str
    language: str
    servicelevel: int  # seconds: an answer within this counts towards the service level


def queue_index(config: Config) -> dict[tuple[str, str], QueueInfo]:
    """(site, queue) -> service, language and service-level threshold, for every offering."""
    out: dict[tuple[str, str], QueueInfo] = {}
    for site in config.sites:
        for o in site.offerings:
            for lang in o.languages:
                info = QueueInfo(o.service, lang, o.queue.servicelevel)
                out[(site.name, queue_name(o.service, lang))] = info
    return out


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
    """Counts queue KPIs per (site, service, language, queue) from every site's AMI events."""

    def __init__(self, config: Config, registry: CollectorRegistry) -> None:
        self._queues = queue_index(config)
        self._sites = frozenset(s.name for s in config.sites)
        labels = list(QUEUE_LABELS)
        self.offered = Counter(
            "ccbridge_calls_offered_total",
            "Calls that joined a queue (QueueCallerJoin).",
            labels,
            registry=registry,
        )
        self.answered = Counter(
            "ccbridge_calls_answered_total",
            "Queue calls an agent answered (AgentConnect).",
            labels,
            registry=registry,
        )
        self.answered_in_sl = Counter(
            "ccbridge_calls_answered_within_sl_total",
            "Queue calls answered within the queue's service-level threshold.",
            labels,
            registry=registry,
        )
        self.abandoned = Counter(
            "ccbridge_calls_abandoned_total",
            "Callers who hung up while waiting in a queue (QueueCallerAbandon).",
            labels,
            registry=registry,
        )
        self.wait = Histogram(
            "ccbridge_queue_wait_seconds",
            "Time in queue until answered or abandoned.",
            [*labels, "outcome"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.talk = Histogram(
            "ccbridge_queue_talk_seconds",
            "Talk time of completed queue calls (AgentComplete).",
            labels,
            buckets=TALK_BUCKETS,
            registry=registry,
        )
        threshold = Gauge(
            "ccbridge_queue_service_level_threshold_seconds",
            "The queue's configured service-level threshold (queues.conf servicelevel).",
            labels,
            registry=registry,
        )
        # Every configured queue exists from the first scrape, at zero: a dashboard then
        # tells "no calls" (0) from "not exported" (no data), and rates start cleanly.
        # Its series are resolved here once: labels() per event cost more than the event.
        self._series: dict[tuple[str, str], _QueueSeries] = {}
        for (site, queue), info in self._queues.items():
            key = (site, info.service, info.language, queue)
            self._series[(site, queue)] = self._new_series(key, info.servicelevel)
            threshold.labels(*key).set(info.servicelevel)
        self._other: dict[str, _QueueSeries] = {}  # site (or OTHER) -> the folded series

    def _new_series(self, key: tuple[str, ...], servicelevel: float | None) -> _QueueSeries:
        return _QueueSeries(
            offered=self.offered.labels(*key),
            answered=self.answered.labels(*key),
            answered_in_sl=self.answered_in_sl.labels(*key),
            abandoned=self.abandoned.labels(*key),
            wait_answered=self.wait.labels(*key, "answered"),
            wait_abandoned=self.wait.labels(*key, "abandoned"),
            talk=self.talk.labels(*key),
            servicelevel=servicelevel,
        )

    def _key(self, site: str, event: Mapping[str, str]) -> tuple[tuple[str, ...], QueueInfo | None]:
        queue = event.get("Queue", "")
        info = self._queues.get((site, queue))
        if info is None:
            # Only configured names become labels: anything else is folded into one series.
            return (site if site in self._sites else OTHER, OTHER, OTHER, OTHER), None
        return (site, info.service, info.language, queue), info

    def _series_for(self, site: str, event: Mapping[str, str]) -> _QueueSeries:
        series = self._series.get((site, event.get("Queue", "")))
        if series is not None:
            return series
        folded = site if site in self._sites else OTHER
        series = self._other.get(folded)
        if series is None:
            series = self._other[folded] = self._new_series((folded, OTHER, OTHER, OTHER), None)
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
        self._series_for(site, event).offered.inc()

    def _on_connect(self, site: str, event: Mapping[str, str]) -> None:
        s = self._series_for(site, event)
        s.answered.inc()
        hold = _seconds(event, "HoldTime")
        if hold is not None:
            s.wait_answered.observe(hold)
            # app_queue counts "completed within service level" with <= too.
            if s.servicelevel is not None and hold <= s.servicelevel:
                s.answered_in_sl.inc()

    def _on_complete(self, site: str, event: Mapping[str, str]) -> None:
        talk = _seconds(event, "TalkTime")
        if talk is not None:
            self._series_for(site, event).talk.observe(talk)

    def _on_abandon(self, site: str, event: Mapping[str, str]) -> None:
        s = self._series_for(site, event)
        s.abandoned.inc()
        hold = _seconds(event, "HoldTime")
        if hold is not None:
            s.wait_abandoned.observe(hold)


@dataclass(frozen=True, slots=True)
class _QueueSeries:
    """One queue's KPI series, resolved once (prometheus_client's labels() is slow)."""

    offered: Counter
    answered: Counter
    answered_in_sl: Counter
    abandoned: Counter
    wait_answered: Histogram
    wait_abandoned: Histogram
    talk: Histogram
    servicelevel: float | None  # seconds; None for the folded "other" series
