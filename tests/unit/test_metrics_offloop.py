"""/metrics made off the loop: consistent under live mutations, same bytes, formats, bad queries."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.http.metrics import MAX_NAMES
from ccbridge.scrape import Snapshotting, freeze, render

REPO = Path(__file__).resolve().parents[2]
SITE, QUEUE = "dhaka", "orders-bn"
BASE = 5  # agents in QUEUE before the mutations
EXTRA = 40  # agents the mutator adds and removes
PAUSE = 0.0002  # s the mutator sleeps every 8 events


def member(event: str, n: int) -> dict[str, str]:
    return {
        "Event": event,
        "Queue": QUEUE,
        "MemberName": f"dac-agent{n}",
        "Interface": f"PJSIP/dac-agent{n}",
        "Status": "2" if n % 2 else "1",  # in use / not in use: busy and available both
        "Paused": "0",
    }


@pytest.fixture
async def bridge() -> Bridge:
    b = Bridge(
        load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False),
        Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)),
    )
    for n in range(BASE):
        b.bus.dispatch(SITE, member("QueueMemberAdded", n))
    return b


@pytest.fixture
async def client(bridge: Bridge) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with TestClient(TestServer(bridge.http_app())) as c:
        yield c


def values(text: str, name: str, **labels: str) -> list[float]:
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                out.append(s.value)
    return out


async def test_scrapes_while_the_loop_mutates_state_are_consistent_and_never_fail(
    bridge: Bridge,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    # The mutator goes through the bus, as AMI events do: the bridge changes open
    # MapMutations in place between reads, which the scrape's thread must never see.
    # It pauses 0.2 ms every 8 events: many mutations still land inside each scrape's
    # formatting (~50 ms), and the formatting thread gets the GIL. A mutator that never
    # sleeps starves that thread (each of its loop turns takes the GIL back first):
    # 26 scrapes took 39 s at CPython's 5 ms switch interval and 151 s at the bridge's
    # 1 ms (ccbridge/workers.py), a load no bridge's loop carries.
    stop = asyncio.Event()

    async def mutate() -> int:
        rounds = 0
        while not stop.is_set():
            for n in range(BASE, BASE + EXTRA):
                bridge.bus.dispatch(SITE, member("QueueMemberAdded", n))
                if n % 8 == 0:
                    await asyncio.sleep(PAUSE)
            for n in range(BASE, BASE + EXTRA):
                bridge.bus.dispatch(SITE, member("QueueMemberRemoved", n))
                if n % 8 == 0:
                    await asyncio.sleep(PAUSE)
            rounds += 1
        return rounds

    task = asyncio.create_task(mutate())
    seen: set[float] = set()
    for _ in range(25):
        resp = await client.get("/metrics")
        assert resp.status == 200
        text = await resp.text()
        in_queue = sum(values(text, "ccbridge_queue_agents", site=SITE, queue=QUEUE))
        at_site = sum(values(text, "ccbridge_site_agents", site=SITE))
        # One snapshot: the queue's and the site's families count the same agents
        # (the lab's dhaka agents are members of this queue only here).
        assert in_queue == at_site, text
        assert BASE <= in_queue <= BASE + EXTRA
        seen.add(in_queue)
    stop.set()
    # Mutations landed between the scrapes' snapshots: several states were seen (5 of
    # them in 19-26 rounds of 80 events, measured).
    assert await task > 0 and len(seen) >= 2, seen
    final = await (await client.get("/metrics")).text()
    assert sum(values(final, "ccbridge_queue_agents", site=SITE, queue=QUEUE)) in (
        BASE,
        BASE + EXTRA,
    )


async def test_the_off_loop_scrape_gives_the_same_bytes_as_client_pythons(
    bridge: Bridge,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    # Quiet state: ours (snapshots, then families and text in a thread) must equal
    # prometheus_client's formatting of the same registry on the loop.
    resp = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert await resp.read() == generate_latest(bridge.registry)


async def test_every_custom_collector_of_the_bridge_hands_over_a_snapshot(bridge: Bridge) -> None:
    # A collector without snapshot() would still be collected, but on the loop: the
    # bridge's own must all be off-loop (ccbridge/scrape.py).
    custom = [
        c for c in bridge.registry._collector_to_names if type(c).__module__.startswith("ccbridge")
    ]
    assert custom
    assert [type(c).__name__ for c in custom if not isinstance(c, Snapshotting)] == []


async def test_openmetrics_is_negotiated(client: TestClient) -> None:  # type: ignore[type-arg]
    resp = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    text = await resp.text()
    assert text.endswith("# EOF\n")
    assert "ccbridge_site_up" in text


async def test_gzip_when_accepted(client: TestClient) -> None:  # type: ignore[type-arg]
    plain = await (await client.get("/metrics", headers={"Accept-Encoding": "identity"})).read()
    resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.status == 200
    assert resp.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in resp.headers["Vary"]
    assert gzip.decompress(await resp.read()) == plain


async def test_a_filtered_scrape_keeps_only_the_names_asked(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    names = ["ccbridge_site_up", "ccbridge_fastagi_sessions_total", "ccbridge_queue_agents"]
    resp = await client.get("/metrics", params=[("name[]", n) for n in names])
    assert resp.status == 200
    text = await resp.text()
    got = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert got == set(names)


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("name=ccbridge_site_up", "unknown parameter 'name'"),
        ("name[]=", "is not a metric name"),
        ("name[]=1abc", "is not a metric name"),
        ("name[]=ccbridge_site_up%7Bsite%3D%22x%22%7D", "is not a metric name"),
        ("name[]=%FF%FE", "is not a metric name"),
        ("name[]=" + "a" * 5000, "is not a metric name"),
        ("&".join(["name[]=a"] * (MAX_NAMES + 1)), f"at most {MAX_NAMES}"),
        ("x=1&name[]=ccbridge_site_up", "unknown parameter 'x'"),
    ],
)
async def test_garbage_queries_get_a_clear_error(
    client: TestClient,  # type: ignore[type-arg]
    query: str,
    why: str,
) -> None:
    resp = await client.get("/metrics?" + query)
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "invalid-query"
    assert why in body["message"]
    assert len(body["message"]) < 300  # the garbage is cut, not echoed whole


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from(["name[]", "name", "", "n[]"]), st.text()), max_size=5))
async def test_any_query_is_answered_200_or_400(
    client: TestClient,  # type: ignore[type-arg]
    params: list[tuple[str, str]],
) -> None:
    resp = await client.get("/metrics", params=params)
    assert resp.status in (200, 400)
    if resp.status == 400:
        assert (await resp.json())["error"] == "invalid-query"


class _Plain(Collector):
    """A collector with no snapshot(): collected on the loop, as before."""

    def __init__(self) -> None:
        self.calls = 0

    def collect(self) -> Iterable[GaugeMetricFamily]:
        self.calls += 1
        yield GaugeMetricFamily("plain_value", "A plain collector's value.", value=7)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # How the registry learns the name a filtered scrape looks it up by.
        yield GaugeMetricFamily("plain_value", "A plain collector's value.")


def test_a_collector_without_snapshot_is_collected_when_frozen() -> None:
    reg = CollectorRegistry()
    plain = _Plain()
    reg.register(plain)
    Counter("thread_safe", "A client_python counter.", registry=reg).inc(3)
    frozen = freeze(reg)
    assert plain.calls == 1  # at freeze time (describe() is not collect()), on the caller's thread
    text = render(frozen, generate_latest, compress=False).decode()
    assert plain.calls == 1
    assert "plain_value 7.0" in text
    assert "thread_safe_total 3.0" in text
    only = render(freeze(reg, ["plain_value"]), generate_latest, compress=False).decode()
    assert "plain_value 7.0" in only
    assert "thread_safe" not in only
