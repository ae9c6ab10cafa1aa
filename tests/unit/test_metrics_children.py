"""Labelled children looked up from a dict (metrics.Children): the same series as labels()."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from ccbridge.metrics import Children
from ccbridge.routing.reasons import Reason


def test_a_cached_child_is_the_labels_child_and_counts_in_the_same_series() -> None:
    registry = CollectorRegistry()
    counter = Counter("c_total", "c", ["site", "reason"], registry=registry)
    child = Children(counter)
    assert child("a", "x") is counter.labels("a", "x")
    assert child("a", "x") is child("a", "x")
    child("a", "x").inc()
    counter.labels("a", "x").inc()
    child("b", Reason.HOME_SITE_OPEN).inc(2)
    assert registry.get_sample_value("c_total", {"site": "a", "reason": "x"}) == 2
    # An enum value labels as its plain value, as labels() does.
    reason = Reason.HOME_SITE_OPEN.value
    assert registry.get_sample_value("c_total", {"site": "b", "reason": reason}) == 2
    hist = Histogram("h_seconds", "h", ["route"], buckets=(0.1, 1.0), registry=registry)
    Children(hist)("route").observe(0.5)
    assert registry.get_sample_value("h_seconds_count", {"route": "route"}) == 1
