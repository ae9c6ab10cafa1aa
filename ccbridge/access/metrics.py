"""The audit writer on /metrics: rows written, rows that failed, what waits for the database.

Read from the trail's RecordWriter at scrape time (the writer keeps its own registry: its
metric names are the records'). No labels but a bounded ``why``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ccbridge.access.audit import AuditTrail
from ccbridge.scrape import Deferred
from ccbridge.store.writer import WriterStatus

Family = CounterMetricFamily | GaugeMetricFamily


class AuditCollector(Collector):
    """``trail()`` is read at each scrape: the trail is set at start, and unset when the
    store's schema is not this version's (then only ``ccbridge_audit_store_on`` 0)."""

    def __init__(self, trail: Callable[[], AuditTrail | None]) -> None:
        self._trail = trail

    def describe(self) -> Iterator[Family]:
        yield from self._families(None)

    def collect(self) -> Iterator[Family]:
        yield from self._families(self._status())

    def snapshot(self) -> Collector:
        """On the loop: the writer's status, a frozen dataclass of counts the writer
        keeps on the loop."""
        status = self._status()
        return Deferred(lambda: self._families(status))

    def _status(self) -> WriterStatus | None:
        trail = self._trail()
        return trail.writer.status() if trail is not None else None

    def _families(self, st: WriterStatus | None) -> Iterator[Family]:
        on = GaugeMetricFamily(
            "ccbridge_audit_store_on",
            "1 when audit rows go to the store (0: users and the audit trail are off)",
        )
        written = CounterMetricFamily(
            "ccbridge_audit_rows_written", "Audit rows the database accepted since start"
        )
        failed = CounterMetricFamily(
            "ccbridge_audit_rows_failed",
            "Audit rows not written: refused for their content (rejected) or dropped "
            "with the memory queue full and the journal unwritable (dropped)",
            labels=["why"],
        )
        depth = GaugeMetricFamily(
            "ccbridge_audit_queue_depth", "Audit rows in memory not yet in the database"
        )
        backlog = GaugeMetricFamily(
            "ccbridge_audit_journal_backlog_bytes",
            "Audit journal bytes not yet in the database (it is down or slow)",
        )
        db_up = GaugeMetricFamily(
            "ccbridge_audit_db_up", "1 when the last audit write to the database succeeded"
        )
        if st is not None:
            on.add_metric([], 1)
            written.add_metric([], st.written)
            failed.add_metric(["rejected"], st.rejected)
            failed.add_metric(["dropped"], st.unwritten)
            depth.add_metric([], st.queue_depth)
            backlog.add_metric([], st.journal_backlog_bytes)
            if st.db_reachable is not None:
                db_up.add_metric([], 1 if st.db_reachable else 0)
        else:
            on.add_metric([], 0)
        yield from (on, written, failed, depth, backlog, db_up)
