"""The cached exposition (ccbridge/exposition.py) writes the bytes prometheus_client's
own encoders write: on the lab's registry, before and after its values change, and on
generated registries of every metric type with any label value."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client import exposition as text_format
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    StateSetMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as om_format
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from ccbridge import exposition as module
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.exposition import Exposition
from ccbridge.scrape import Collected, freeze

REPO = Path(__file__).resolve().parents[2]
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


ESCAPINGS = (om_format.UNDERSCORES, om_format.ALLOWUTF8, om_format.DOTS, om_format.VALUES)


def _both(e: Exposition, registry: Collector) -> None:
    for escaping in ESCAPINGS:
        assert e.text(registry, escaping) == text_format.generate_latest(registry, escaping)
        want = om_format.generate_latest(registry, escaping)  # type: ignore[no-untyped-call]
        assert e.openmetrics(registry, escaping) == want, escaping


def test_the_encoders_prometheus_and_the_bridge_ask_for_are_the_cached_ones() -> None:
    e = Exposition()
    reg = CollectorRegistry()
    Gauge("a_b", "A", ["l"], registry=reg).labels("x").set(1)
    assert e.encoder(choose_encoder("")[0]) == e.text  # curl, a browser
    for accept in (
        # Prometheus 2 (Debian bookworm's 2.42), then Prometheus 3.
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
        "text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        "application/openmetrics-text;version=1.0.0;escaping=dots",
        "text/plain;version=1.0.0;escaping=values",
    ):
        chosen = choose_encoder(accept)[0]
        mine = e.encoder(chosen)
        assert isinstance(mine, partial) and mine.func in (e.text, e.openmetrics), accept
        assert mine(reg) == chosen(reg), accept
    # A version this module does not write: the library's own encoder, unchanged.
    other = partial(om_format.generate_latest, escaping=om_format.UNDERSCORES, version="2.0.0")
    assert e.encoder(other) is other
    odd = partial(text_format.generate_latest, escaping="no-such-escaping")
    assert e.encoder(odd) is odd


def test_a_library_without_the_helpers_gets_its_own_encoders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert module.AVAILABLE  # the installed prometheus_client has them
    monkeypatch.setattr(module, "AVAILABLE", False)
    e = Exposition()
    for accept in ("", OPENMETRICS):
        chosen = choose_encoder(accept)[0]
        assert e.encoder(chosen) is chosen


async def test_the_lab_registry_gives_the_librarys_bytes_cold_and_warm() -> None:
    bridge = Bridge(
        load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False),
        Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)),
    )
    e = Exposition()
    frozen = freeze(bridge.registry)
    _both(e, frozen)
    assert e.text(frozen).count(b"\n") > 500  # the lab's exposition, not an empty one
    for n in range(3):  # new values and new label sets, through the bus as AMI events do
        bridge.bus.dispatch(
            "dhaka",
            {
                "Event": "QueueMemberAdded",
                "Queue": "orders-bn",
                "MemberName": f"dac-agent{n}",
                "Interface": f"PJSIP/dac-agent{n}",
                "Status": "1",
                "Paused": "0",
            },
        )
        _both(e, freeze(bridge.registry))
    assert e.fallbacks == 0


_LABEL_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: not n.startswith("__") and n not in ("le", "quantile")
)
_VALUES = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**12), 10**12).map(float)


@st.composite
def _registry(draw: st.DrawFn) -> CollectorRegistry:
    """Library metrics of every kind with drawn label values (any text) and values."""
    reg = CollectorRegistry()
    names = draw(st.lists(_LABEL_NAMES, min_size=0, max_size=3, unique=True))
    values = st.lists(st.text(max_size=12), min_size=len(names), max_size=len(names))
    kinds = draw(st.lists(st.sampled_from("cghsie"), min_size=1, max_size=6))
    for i, kind in enumerate(kinds):
        doc = draw(st.text(max_size=20))
        if kind == "c":
            c = Counter(f"m{i}_things", doc, names, registry=reg)
            for vs in draw(st.lists(values, max_size=4)):
                (c.labels(*vs) if names else c).inc(draw(st.floats(0, 1e9)))
        elif kind == "g":
            g = Gauge(f"m{i}_level", doc, names, registry=reg)
            for vs in draw(st.lists(values, max_size=4)):
                (g.labels(*vs) if names else g).set(draw(_VALUES))
        elif kind == "h":
            h = Histogram(f"m{i}_seconds", doc, names, buckets=(0.1, 1.5, 10.0), registry=reg)
            for vs in draw(st.lists(values, max_size=3)):
                (h.labels(*vs) if names else h).observe(draw(st.floats(-1e6, 1e6)))
        elif kind == "s":
            s = Summary(f"m{i}_bytes", doc, names, registry=reg)
            for vs in draw(st.lists(values, max_size=3)):
                (s.labels(*vs) if names else s).observe(draw(st.floats(0, 1e6)))
        elif kind == "i":
            info = Info(f"m{i}_build", doc, registry=reg)
            info.info(draw(st.dictionaries(_LABEL_NAMES, st.text(max_size=12), max_size=3)))
        else:
            en = Enum(f"m{i}_state", doc, states=["up", "down", "drained"], registry=reg)
            en.state(draw(st.sampled_from(["up", "down", "drained"])))
    return reg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_registry())
def test_generated_registries_give_the_librarys_bytes(reg: CollectorRegistry) -> None:
    e = Exposition()
    _both(e, reg)
    _both(e, reg)  # warm: every prefix from the cache
    assert e.fallbacks == 0


def test_custom_families_with_units_timestamps_and_openmetrics_types() -> None:
    counter = CounterMetricFamily("calls", 'Calls\\n "routed"', labels=["site"], unit="")
    counter.add_metric(["dhaka"], 3, created=1_700_000_000.5, timestamp=1_700_000_100.25)
    gauge = GaugeMetricFamily("wait_seconds", "Wait", labels=["q"], unit="seconds")
    gauge.add_metric(['a"b\\c\nd'], math.inf)
    gauge.add_metric(["é"], -0.0)
    histogram = HistogramMetricFamily("talk_seconds", "Talk", labels=["site"])
    histogram.add_metric(["manila"], [("1.0", 2), ("+Inf", 5)], sum_value=12.5)
    gh = GaugeHistogramMetricFamily("queue_depth", "Depth", labels=["q"])
    gh.add_metric(["x"], [("10.0", 1), ("+Inf", 2)], gsum_value=7.0)
    summary = SummaryMetricFamily("ring_seconds", "Ring", labels=["site"])
    summary.add_metric(["lahore"], count_value=4, sum_value=1e21)
    states = StateSetMetricFamily("breaker", "Breaker", labels=["trunk"])
    states.add_metric(["t1"], {"open": False, "closed": True})
    # Names outside the legacy character set: each escaping writes them its own way.
    dotted = GaugeMetricFamily("site.agents", "Agents", labels=["site.name", "q"])
    dotted.add_metric(["dhaka", "orders"], 4)
    plain = GaugeMetricFamily("up", "Up")
    plain.add_metric([], 1)
    e = Exposition()
    _both(e, Collected([counter, gauge, histogram, gh, summary, states, dotted, plain]))
    assert e.fallbacks == 0


def test_an_exemplar_is_written_by_the_library_and_counted() -> None:
    h = HistogramMetricFamily("talk_seconds", "Talk", labels=["site"])
    h.add_metric(
        ["dhaka"],
        [("1.0", 2, Exemplar({"call": "c1"}, 0.5)), ("+Inf", 5)],
        sum_value=3.0,
    )
    e = Exposition()
    _both(e, Collected([h]))
    assert e.fallbacks == 2 * len(ESCAPINGS)  # every format and escaping


def test_the_cache_starts_again_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "MAX_CACHED", 10)
    reg = CollectorRegistry()
    g = Gauge("agents", "Agents", ["n"], registry=reg)
    e = Exposition()
    for n in range(30):  # one label set a scrape, a new one each time (an agent id, say)
        if n:
            g.remove(str(n - 1))
        g.labels(str(n)).set(n)
        _both(e, reg)
        # Reset when over the bound before a scrape: the bound plus one scrape's lines.
        assert all(len(c) <= 10 + 1 for c in e._caches.values())
