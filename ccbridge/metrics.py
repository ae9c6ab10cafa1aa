"""Prometheus metrics: one registry per bridge, counters fed by events, gauges read at scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from ccbridge.agi.server import SessionOutcome
from ccbridge.config.model import Config, queue_name
from ccbridge.routing.engine import Decision
from ccbridge.routing.reasons import Outcome, Reason
from ccbridge.routing.state import LiveState, Member, ewt, initial_state
from ccbridge.scrape import Deferred
from ccbridge.variables import AGI_ROUTES

AGI_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Pre-created so error ratios exist before errors do.
AGI_OUTCOMES = tuple(o.value for o in SessionOutcome)

# The reason that means the call left its home site because of load (routing.reasons);
# a closed, down or drained home is a hand-over with a home_* reason of its own.
OVERFLOW_REASONS = frozenset({Reason.OVERFLOW_EWT})
# kind of a failover: "trunk" = the next trunk of the same route was tried (a trunk
# failed); "site" = the call went to another site because the chosen one failed.
FAILOVER_KINDS = ("trunk", "site")
BREAKER_STATES = ("closed", "open", "half_open")
AGENT_STATES = ("available", "busy", "paused", "logged_out")
OTHER = "other"


M = TypeVar("M", bound=MetricWrapperBase)


class Children(Generic[M]):
    """A labelled metric's children by their label values, from a dict.

    client_python's ``labels()`` checks and converts every value and takes the metric's
    lock on each call, about 2 us; a routed call looks up five to eight children
    (decision, reasons, skips, FastAGI session and latency). The children are the same
    objects ``labels()`` returns, so a scrape sees no difference; the callers bound the
    label values as before (a child is never removed from these metrics).
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


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
    bad_input: int = 0  # AMI lines and messages dropped, framing errors
    tls_failures: int = 0  # TLS handshakes that failed (e.g. a certificate not verified)


@dataclass(frozen=True, slots=True)
class TrunkSnapshot:
    """One trunk's health as the bridge sees it, read at scrape time."""

    name: str
    site: str
    kind: str  # intersite | carrier
    peer: str  # peer site, or "" for carriers
    up: bool
    breaker: str  # one of BREAKER_STATES


TrunkSource = Callable[[], Iterable[TrunkSnapshot]]


def trunks_from_state(config: Config, state: LiveState) -> list[TrunkSnapshot]:
    """Default trunk view: configured trunks, down when the live state marks them unhealthy.

    Without a circuit breaker the only knowledge is the unhealthy set, so an unhealthy
    trunk shows as breaker "open" and a healthy one as "closed".
    """
    bad = state.unhealthy_trunks
    return [
        TrunkSnapshot(
            t.name,
            t.site,
            t.kind.value,
            t.peer_site or "",
            t.name not in bad,
            "open" if t.name in bad else "closed",
        )
        for t in config.trunks
    ]


def agent_state(m: Member) -> str:
    """One of AGENT_STATES for a queue membership."""
    if not m.logged_in:
        return "logged_out"
    if m.paused:
        return "paused"
    return "available" if m.available else "busy"


def site_agent_states(members: Iterable[Member]) -> dict[str, str]:
    """interface -> state of each distinct agent, over all the queues it is a member of.

    Device state is per agent, so any membership tells busy from free; an agent counts
    as paused only when paused in every queue it is logged in to (it still takes calls
    from the others).
    """
    per_agent: dict[str, list[str]] = {}
    for m in members:
        per_agent.setdefault(m.interface, []).append(agent_state(m))
    out: dict[str, str] = {}
    for iface, states in per_agent.items():
        active = [s for s in states if s != "logged_out"]
        if not active:
            out[iface] = "logged_out"
        elif all(s == "paused" for s in active):
            out[iface] = "paused"
        elif "busy" in active:
            out[iface] = "busy"
        else:
            out[iface] = "available"
    return out


def occupancy(counts: Mapping[str, int]) -> float | None:
    """Busy share of agents ready to work (busy + available); None when nobody is."""
    ready = counts.get("busy", 0) + counts.get("available", 0)
    return counts.get("busy", 0) / ready if ready else None


class BridgeMetrics:
    """Counters the bridge increments, plus a collector over its live state and links.

    Trunk health and breaker state are read at scrape time from ``trunk_source`` (by
    default derived from the config and the live state's unhealthy trunks); a trunk
    health component replaces it with ``set_trunk_source`` and counts failovers with
    ``failover(site, kind)``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        state: Callable[[], LiveState],
        links: Callable[[], Iterable[LinkSnapshot]],
        *,
        config: Config | None = None,
        trunks: TrunkSource | None = None,
    ) -> None:
        self.registry = registry
        sites = [s.name for s in config.sites] if config else []
        self._sites = frozenset(sites)
        if trunks is None and config is not None:
            cfg = config
            trunks = lambda: trunks_from_state(cfg, state())  # noqa: E731
        self.trunk_source: TrunkSource = trunks or (lambda: ())
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
        self.skips = Counter(
            "ccbridge_route_skips_total",
            "Sites passed over by routing decisions, by site and why (a Skip reason).",
            ["site", "reason"],
            registry=registry,
        )
        queue_labels = ["receiving_site", "site", "service", "language", "queue"]
        self.overflowed = Counter(
            "ccbridge_calls_overflowed_total",
            "Calls routed away from their home site because of load (overflow reasons).",
            queue_labels,
            registry=registry,
        )
        self.after_hours = Counter(
            "ccbridge_calls_after_hours_total",
            "Calls that arrived when no site was open for them, by after-hours action.",
            [*queue_labels, "action"],
            registry=registry,
        )
        self.failovers = Counter(
            "ccbridge_failovers_total",
            "Failovers: kind=trunk (next trunk tried), kind=site (another site chosen).",
            ["site", "kind"],
            registry=registry,
        )
        self.agi_sessions = Counter(
            "ccbridge_fastagi_sessions_total",
            "FastAGI sessions by route and outcome.",
            ["route", "outcome"],
            registry=registry,
        )
        self.agi_forbidden = Counter(
            "ccbridge_fastagi_forbidden_total",
            "FastAGI connections dropped because their source address is neither a "
            "configured site's nor in bridge.agi_allow.",
            registry=registry,
        )
        self.agi_latency = Histogram(
            "ccbridge_fastagi_session_seconds",
            "FastAGI session duration from connect to close.",
            ["route"],
            buckets=AGI_BUCKETS,
            registry=registry,
        )
        # The hot path's children (every routed call), looked up without labels().
        self.decision = Children(self.decisions)
        self.reason = Children(self.reasons)
        self.skip = Children(self.skips)
        self._overflowed = Children(self.overflowed)
        self._after_hours = Children(self.after_hours)
        self._agi_session = Children(self.agi_sessions)
        self._agi_latency = Children(self.agi_latency)
        # Known label sets exist at zero from the start, so ratios and alerts have data
        # before the first error or failover (absent would read as "not exported").
        for site in sites:
            for kind in FAILOVER_KINDS:
                self.failovers.labels(site, kind)
        for route in AGI_ROUTES:
            self.agi_latency.labels(route)
            for outcome in AGI_OUTCOMES:
                self.agi_sessions.labels(route, outcome)
        known = (
            frozenset(
                (site.name, queue_name(o.service, lang))
                for site in config.sites
                for o in site.offerings
                for lang in o.languages
            )
            if config
            else None
        )
        registry.register(_StateCollector(state, links, lambda: self.trunk_source(), known))

    def set_trunk_source(self, trunks: TrunkSource) -> None:
        """Read trunk health and breaker state from ``trunks`` at every scrape from now on."""
        self.trunk_source = trunks

    def failover(self, site: str, kind: str) -> None:
        """Count one failover at ``site``; ``kind`` is one of FAILOVER_KINDS."""
        label_site = site if not self._sites or site in self._sites else OTHER
        self.failovers.labels(label_site, kind if kind in FAILOVER_KINDS else OTHER).inc()

    def record_decision(self, receiving_site: str, decision: Decision) -> None:
        """Count overflowed and after-hours calls; labels come from the decision only."""
        labels = (
            receiving_site or "unknown",
            decision.site or "none",
            decision.service or "none",
            decision.language or "none",
            decision.queue or "none",
        )
        if decision.outcome == Outcome.AFTER_HOURS:
            self._after_hours(*labels, decision.action or "none").inc()
        elif OVERFLOW_REASONS.intersection(decision.reasons):
            self._overflowed(*labels).inc()
        for site, why in decision.skipped:
            label_site = site if not self._sites or site in self._sites else OTHER
            self.skip(label_site, why).inc()

    def agi_session_end(self, route: str, outcome: str, seconds: float) -> None:
        # Unknown paths would make the label unbounded: fold them into one value.
        label = route if route in AGI_ROUTES or not route else OTHER
        self._agi_session(label or "none", str(outcome)).inc()
        self._agi_latency(label or "none").observe(seconds)


class _StateCollector(Collector):
    """The live state, links and trunks as gauge and counter families, built at scrape time."""

    def __init__(
        self,
        state: Callable[[], LiveState],
        links: Callable[[], Iterable[LinkSnapshot]],
        trunks: TrunkSource,
        known_queues: frozenset[tuple[str, str]] | None,
    ) -> None:
        self._state = state
        self._links = links
        self._trunks = trunks
        self._known = known_queues

    def _queue_label(self, site: str, queue: str) -> str:
        # Queue names come from Asterisk: only configured ones become label values.
        if self._known is None or (site, queue) in self._known:
            return queue
        return OTHER

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        return self._families(self._state(), self._trunks(), self._links())

    def snapshot(self) -> Collector:
        """On the loop: the state snapshot (immutable; reading it finishes the bridge's
        open MapMutations, which only the loop may touch), trunks and links (small
        frozen dataclasses) copied into tuples. The families over them, the costly part
        with thousands of members, are built by whoever collects the result (a worker
        thread): ``_families`` reads nothing else but ``_known``, a frozenset."""
        st, trunks, links = self._state(), tuple(self._trunks()), tuple(self._links())
        return Deferred(lambda: self._families(st, trunks, links))

    def describe(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        """The families without samples. The registry learns the collector's names from
        this: without it a filtered scrape (``/metrics?name[]=ccbridge_site_up``) finds no
        collector for the name and returns nothing."""
        return self._families(initial_state(()), (), ())

    def _families(
        self, st: LiveState, trunks: Iterable[TrunkSnapshot], links: Iterable[LinkSnapshot]
    ) -> list[GaugeMetricFamily | CounterMetricFamily]:
        return [
            *self._sites(st),
            *self._agents(st),
            *self._trunk_families(trunks),
            *self._link_families(links),
        ]

    def _sites(self, st: LiveState) -> Iterable[GaugeMetricFamily]:
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
            "Expected wait for a new caller; -1 when nobody is logged in.",
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
            sums: dict[str, list[int]] = {}
            for qname, q in s.queues.items():
                label = self._queue_label(name, qname)
                row = sums.setdefault(label, [0, 0, 0, 0])
                for i, v in enumerate((q.waiting, q.logged_in, q.available, q.paused)):
                    row[i] += v
                if label == qname:  # an expected wait of several queues means nothing
                    e = ewt(q)
                    expected.add_metric([name, qname], e if e != float("inf") else -1.0)
            for label, (n_wait, n_in, n_avail, n_paused) in sorted(sums.items()):
                waiting.add_metric([name, label], n_wait)
                logged_in.add_metric([name, label], n_in)
                available.add_metric([name, label], n_avail)
                paused.add_metric([name, label], n_paused)
        yield from (site_up, drained, synced, waiting, expected, logged_in, available, paused)

    def _agents(self, st: LiveState) -> Iterable[GaugeMetricFamily]:
        by_queue = GaugeMetricFamily(
            "ccbridge_queue_agents",
            "Queue members by state (available, busy, paused, logged_out).",
            labels=["site", "queue", "state"],
        )
        by_site = GaugeMetricFamily(
            "ccbridge_site_agents",
            "Distinct agents at the site by state, over all their queues.",
            labels=["site", "state"],
        )
        q_occ = GaugeMetricFamily(
            "ccbridge_queue_occupancy_ratio",
            "Busy share of the queue's members that are ready to work (busy + available).",
            labels=["site", "queue"],
        )
        s_occ = GaugeMetricFamily(
            "ccbridge_site_occupancy_ratio",
            "Busy share of the site's agents that are ready to work (busy + available).",
            labels=["site"],
        )
        for name, s in st.sites.items():
            queues: dict[str, dict[str, int]] = {
                self._queue_label(name, q): dict.fromkeys(AGENT_STATES, 0) for q in s.queues
            }
            for (qname, _), m in s.members.items():
                label = self._queue_label(name, qname)
                queues.setdefault(label, dict.fromkeys(AGENT_STATES, 0))[agent_state(m)] += 1
            for qname, counts in sorted(queues.items()):
                for state in AGENT_STATES:
                    by_queue.add_metric([name, qname, state], counts[state])
                occ = occupancy(counts)
                if occ is not None:
                    q_occ.add_metric([name, qname], occ)
            site_counts = dict.fromkeys(AGENT_STATES, 0)
            for state in site_agent_states(s.members.values()).values():
                site_counts[state] += 1
            for state in AGENT_STATES:
                by_site.add_metric([name, state], site_counts[state])
            occ = occupancy(site_counts)
            if occ is not None:
                s_occ.add_metric([name], occ)
        yield from (by_queue, by_site, q_occ, s_occ)

    def _trunk_families(self, trunks: Iterable[TrunkSnapshot]) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "ccbridge_trunk_up",
            "1 when the trunk is usable.",
            labels=["site", "trunk", "kind", "peer"],
        )
        breaker = GaugeMetricFamily(
            "ccbridge_trunk_breaker_state",
            "1 for the trunk's current circuit-breaker state (closed, open, half_open).",
            labels=["site", "trunk", "state"],
        )
        for t in trunks:
            up.add_metric([t.site, t.name, t.kind, t.peer or "none"], 1.0 if t.up else 0.0)
            for state in BREAKER_STATES:
                breaker.add_metric([t.site, t.name, state], 1.0 if t.breaker == state else 0.0)
        yield from (up, breaker)

    def _link_families(self, links: Iterable[LinkSnapshot]) -> Iterable[CounterMetricFamily]:
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
        bad = CounterMetricFamily(
            "ccbridge_ami_bad_input",
            "AMI input dropped: lines without a colon, messages too large or run together, "
            "framing errors (each drops the connection).",
            labels=["site"],
        )
        tls = CounterMetricFamily(
            "ccbridge_ami_tls_failures",
            "AMI TLS handshakes that failed (a certificate not verified, no TLS at the port); "
            "the link never falls back to plain text.",
            labels=["site"],
        )
        for link in links:
            tls.add_metric([link.site], link.tls_failures)
            reconnects.add_metric([link.site], link.reconnects)
            timeouts.add_metric([link.site], link.action_timeouts)
            auth.add_metric([link.site], link.auth_failures)
            pings.add_metric([link.site], link.ping_timeouts)
            bad.add_metric([link.site], link.bad_input)
        yield from (reconnects, timeouts, auth, pings, bad, tls)
