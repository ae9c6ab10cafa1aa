"""Prometheus metrics: one registry per bridge, counters fed by events, gauges read at scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ccbridge.routing.state import LiveState, ewt

AGI_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class LinkSnapshot:
    """What the metrics need from one AMI link, read at scrape time."""

    site: str
    up: bool
    state: str
    reconnects: int
    action_timeouts: int
    auth_failures: int
    ping_timeouts: int


class BridgeMetrics:
    """Counters the bridge increments, plus a collector over its live state and links."""

    def __init__(
        self,
        registry: CollectorRegistry,
        state: Callable[[], LiveState],
        links: Callable[[], Iterable[LinkSnapshot]],
    ) -> None:
        self.registry = registry
        self.decisions = Counter(
            "ccbridge_route_decisions_total",
            "Routing decisions by receiving site, target site and outcome.",
            ["receiving_site", "site", "outcome", "service", "language"],
            registry=registry,
        )
        self.reasons = Counter(
            "ccbridge_route_reasons_total",
            "Reasons given with routing decisions.",
            ["reason"],
            registry=registry,
        )
        self.agi_sessions = Counter(
            "ccbridge_fastagi_sessions_total",
            "FastAGI sessions by route and outcome.",
            ["route", "outcome"],
            registry=registry,
        )
        self.agi_latency = Histogram(
            "ccbridge_fastagi_session_seconds",
            "FastAGI session duration from connect to close.",
            ["route"],
            buckets=AGI_BUCKETS,
            registry=registry,
        )
        registry.register(_StateCollector(state, links))

    def agi_session_end(self, route: str, outcome: str, seconds: float) -> None:
        # Unknown paths would make the label unbounded: fold them into one value.
        label = route if route in ("route", "lookup", "") else "other"
        self.agi_sessions.labels(label or "none", str(outcome)).inc()
        self.agi_latency.labels(label or "none").observe(seconds)


class _StateCollector(Collector):
    def __init__(
        self, state: Callable[[], LiveState], links: Callable[[], Iterable[LinkSnapshot]]
    ) -> None:
        self._state = state
        self._links = links

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        st = self._state()
        site_up = GaugeMetricFamily(
            "ccbridge_site_up", "1 when the site's AMI link is up.", labels=["site"]
        )
        drained = GaugeMetricFamily(
            "ccbridge_site_drained", "1 when the site is drained.", labels=["site"]
        )
        synced = GaugeMetricFamily(
            "ccbridge_site_synced", "1 when the site's queue state is synced.", labels=["site"]
        )
        waiting = GaugeMetricFamily(
            "ccbridge_queue_callers_waiting", "Callers waiting.", labels=["site", "queue"]
        )
        expected = GaugeMetricFamily(
            "ccbridge_queue_expected_wait_seconds",
            "Expected wait for a new caller.",
            labels=["site", "queue"],
        )
        logged_in = GaugeMetricFamily(
            "ccbridge_queue_agents_logged_in", "Agents logged in.", labels=["site", "queue"]
        )
        available = GaugeMetricFamily(
            "ccbridge_queue_agents_available",
            "Agents free to take a call.",
            labels=["site", "queue"],
        )
        paused = GaugeMetricFamily(
            "ccbridge_queue_agents_paused", "Agents paused.", labels=["site", "queue"]
        )
        for name, s in st.sites.items():
            site_up.add_metric([name], 1.0 if s.up else 0.0)
            drained.add_metric([name], 1.0 if s.drained else 0.0)
            synced.add_metric([name], 1.0 if s.synced else 0.0)
            for qname, q in s.queues.items():
                waiting.add_metric([name, qname], q.waiting)
                e = ewt(q)
                expected.add_metric([name, qname], e if e != float("inf") else -1.0)
                logged_in.add_metric([name, qname], q.logged_in)
                available.add_metric([name, qname], q.available)
                paused.add_metric([name, qname], q.paused)
        yield from (site_up, drained, synced, waiting, expected, logged_in, available, paused)
        reconnects = CounterMetricFamily(
            "ccbridge_ami_reconnects", "AMI reconnection attempts.", labels=["site"]
        )
        timeouts = CounterMetricFamily(
            "ccbridge_ami_action_timeouts", "AMI actions that timed out.", labels=["site"]
        )
        auth = CounterMetricFamily(
            "ccbridge_ami_auth_failures", "AMI logins refused.", labels=["site"]
        )
        pings = CounterMetricFamily(
            "ccbridge_ami_ping_timeouts", "AMI pings unanswered in time.", labels=["site"]
        )
        for link in self._links():
            reconnects.add_metric([link.site], link.reconnects)
            timeouts.add_metric([link.site], link.action_timeouts)
            auth.add_metric([link.site], link.auth_failures)
            pings.add_metric([link.site], link.ping_timeouts)
        yield from (reconnects, timeouts, auth, pings)
