"""200,000 events through two real SiteLink sockets: none lost or reordered, RSS flat.

The million-event run is the bench (tests/bench/bench_ami_stream.py, in BENCHMARKS.md):
this one keeps make test's run short. The receiving end is a Bridge's own event bus
(reducer, KPIs, agent mirror) with a checker of each site's ``Seq`` beside them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from tests.bench.bench_ami_stream import run_stream

REPO = Path(__file__).resolve().parents[2]
EVENTS_PER_SITE = 100_000
RSS_SLACK = 8 * 1024 * 1024  # bytes the process may grow after the first quarter


async def test_a_long_stream_arrives_whole_in_order_with_flat_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    config = load_config(REPO / "examples" / "lab.yaml")
    bridge = Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    result = await run_stream(bridge, EVENTS_PER_SITE)
    assert list(result.received.values()) == [EVENTS_PER_SITE, EVENTS_PER_SITE]
    assert result.out_of_order == 0
    assert (result.bad_input, result.reconnects) == (0, 0)
    assert result.rss_growth < RSS_SLACK, result
    # The stream reached the bridge's parts, not only the checker.
    assert bridge.bus.handler_errors == 0
    site = bridge.state.sites[config.sites[0].name]
    assert sum(q.completed for q in site.queues.values()) > 0
