"""The record ingest: EventBus subscriber and decision hook feeding the machine and the writer.

Runs on the event loop inside the AMI event path: per event one machine step (dictionary
work, no I/O) and ``RecordWriter.put`` per record (never blocks, never raises). What it
counts is read at scrape time by a collector (client_python's Collector protocol).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ccbridge.events import Event, EventBus
from ccbridge.records.gaps import CoverageGaps
from ccbridge.records.machine import (
    BRIDGE_EVENTS,
    CEL,
    HOLD_EVENTS,
    QUEUE_EVENTS,
    USER_EVENTS,
    MachineSettings,
    RecordMachine,
)
from ccbridge.records.state import Leg
from ccbridge.routing.engine import CallRequest, Decision
from ccbridge.scrape import Deferred

log = logging.getLogger("ccbridge.records")

Out = tuple[str, dict[str, Any]]


class Sink(Protocol):
    """RecordWriter (``put_built``: the machine's records pass the store's checks by
    construction, proven by the fuzz test) or a test's collector."""

    def put_built(self, table: str, values: dict[str, Any]) -> bool: ...


class RecordIngest:
    """Turns every site's AMI events and the bridge's decisions into records."""

    def __init__(
        self,
        settings: MachineSettings,
        sink: Sink,
        now: Callable[[], datetime],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.machine = RecordMachine(settings)
        self.gaps = CoverageGaps()
        self.sink = sink
        self.now = now
        self.put_refused = 0  # records the writer refused (counted there by reason too)
        self.handler_errors = 0
        if registry is not None:
            registry.register(_IngestCollector(self))

    def subscribe(self, bus: EventBus) -> None:
        for name in (*QUEUE_EVENTS, *HOLD_EVENTS, *BRIDGE_EVENTS, CEL):
            bus.subscribe(name, self.on_event)
        for name in USER_EVENTS:
            bus.subscribe_user_event(name, self.on_event)

    def on_event(self, site: str, event: Event) -> None:
        try:
            out = self.machine.feed(site, event, self.now())
        except Exception:
            # A bug, not bad input (the machine counts that): the event path goes on.
            self.handler_errors += 1
            log.exception("record ingest failed on %s from %s", event.get("Event"), site)
            return
        self.put_all(out)

    def on_decision(self, call: CallRequest, decision: Decision) -> None:
        try:
            out = self.machine.decision(call, decision, self.now())
        except Exception:
            self.handler_errors += 1
            log.exception("record ingest failed on a routing decision")
            return
        self.put_all(out)

    def end_unseen(self, site: str, legs: Iterable[Leg], at: datetime) -> int:
        """The site's legs whose ends the link missed, ended (RecordMachine.end_unseen);
        how many."""
        try:
            out = self.machine.end_unseen(site, legs, at)
        except Exception:
            self.handler_errors += 1
            log.exception("record ingest failed closing %s's unseen ends", site)
            return 0
        self.put_all(out)
        return sum(1 for table, _ in out if table == "call_events")

    def sweep(self) -> None:
        self.machine.sweep(self.now())

    def put_all(self, out: Iterable[Out]) -> None:
        put = self.sink.put_built
        for table, values in out:
            if not put(table, values):
                self.put_refused += 1


# events, (skip reason, count) sorted, open calls, open coverage gaps
Counts = tuple[int, list[tuple[str, int]], int, int]


class _IngestCollector(Collector):
    def __init__(self, ingest: RecordIngest) -> None:
        self.ingest = ingest

    def describe(self) -> Iterator[Any]:
        yield from self._families(None)

    def collect(self) -> Iterator[Any]:
        yield from self._families(self._counts())

    def snapshot(self) -> Collector:
        """On the loop: the four counts (the machine's dicts change on the loop)."""
        counts = self._counts()
        return Deferred(lambda: self._families(counts))

    def _counts(self) -> Counts:
        m = self.ingest.machine
        return m.events, sorted(m.skipped.items()), len(m.calls), len(self.ingest.gaps.open)

    def _families(self, counts: Counts | None) -> Iterator[Any]:
        events = CounterMetricFamily(
            "ccbridge_records_events", "AMI events and decisions the call record used"
        )
        skipped = CounterMetricFamily(
            "ccbridge_records_events_skipped",
            "AMI events the call record could not use (no call ID, garbage fields, ...)",
            labels=["reason"],
        )
        calls = GaugeMetricFamily("ccbridge_records_open_calls", "Calls followed in memory")
        gaps = GaugeMetricFamily(
            "ccbridge_records_coverage_gaps_open", "Sites whose calls are not being seen now"
        )
        if counts is not None:
            n_events, n_skipped, n_calls, n_gaps = counts
            events.add_metric([], n_events)
            for reason, n in n_skipped:
                skipped.add_metric([reason], n)
            calls.add_metric([], n_calls)
            gaps.add_metric([], n_gaps)
        yield events
        yield skipped
        yield calls
        yield gaps
