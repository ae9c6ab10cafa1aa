"""A real Prometheus scrapes the bridge during lab calls: dashboard and rule queries have data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry

from ccbridge.app import Bridge
from ccbridge.config import Config
from ccbridge.config.model import HostPort
from ccbridge.config.store import StoreSettings
from ccbridge.lab.sipp import Agent, place_calls
from ccbridge.lab.sites import Lab
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.writer import RecordWriter
from tests.integration.conftest import BridgeFactory, fresh_queue_stats
from tests.integration.recordingcfg import recording_config
from tests.polling import until
from tests.unit.test_metrics_labels import bad_labels

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "ccbridge.json"
RULES = REPO / "docker" / "prometheus" / "rules.yml"
PROMETHEUS = "/usr/bin/prometheus"

# Wednesday 25 Nov 2026 05:00 UTC: orders open at every site (as in test_route_end_to_end).
WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
# 13:00 UTC: returns closed everywhere, so a returns call goes to manila after hours.
WEDNESDAY_EVENING = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
BENGALI_CALLER = "+8801712345678"
HINDI_CALLER = "+919812345678"
ENGLISH_CALLER = "+447700900123"
ORDERS_IN = "+918000000001"  # bangalore; home bangalore, which serves no Bengali
RETURNS_IN = "+918000000002"

# Grafana variables as the dashboard's "All" would expand them; windows long enough to
# span the whole test, so ratios over it are defined.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__range": "10m", "$site": ".*", "$queue": ".*"}
# An alert expression is `<signal> <comparison> <number>` (the rules file's convention).
ALERT = re.compile(r"(?s)^(?P<signal>.+\S)\s*(==|!=|<=|>=|<|>)\s*(?P<threshold>[-+0-9.eE]+)\s*$")
LABEL_VALUES = re.compile(r"(?s)^label_values\((?P<selector>.+),\s*\w+\)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and template variable of the dashboard."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = []
    for var in dash["templating"]["list"]:
        m = LABEL_VALUES.match(var["query"]["query"])
        assert m, f"variable {var['name']}: only label_values(selector, label) is supported"
        out.append((f"variable {var['name']}", m["selector"]))
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    return [(where, expand(expr)) for where, expr in out]


def expand(expr: str) -> str:
    # Longest names first: $__range must not eat part of $__rate_interval.
    for name in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARS[name])
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def rule_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every recording rule, and the signal of every alert.

    Alerts are quiet on a healthy lab, so their full expression returns nothing; the
    signal they compare (its metrics, recording rules and labels) must have data instead,
    which proves the alert watches something the bridge exports.
    """
    out = []
    for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                out.append((f"record {rule['record']}", rule["expr"]))
                out.append((f"recorded {rule['record']}", rule["record"]))
            else:
                m = ALERT.match(rule["expr"])
                assert m, f"alert {rule['alert']}: expression is not '<signal> <op> <number>'"
                out.append((f"alert {rule['alert']} signal", m["signal"]))
    return out


def alert_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [(r["alert"], r["expr"]) for g in rules for r in g["rules"] if "alert" in r]


@contextlib.contextmanager
def prometheus(target: str, workdir: Path) -> Iterator[str]:
    """A real Prometheus scraping ``target`` every second with the stack's rules; its URL."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        group["interval"] = "1s"  # the same rules, evaluated fast enough for a test
    (workdir / "rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [{"job_name": "ccbridge", "static_configs": [{"targets": [target]}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


@contextlib.asynccontextmanager
async def prometheus_off_loop(target: str, workdir: Path) -> AsyncIterator[str]:
    """``prometheus()`` with its start and stop (a fork; a wait of up to 15 s) in a thread:
    the bridge under test shares this loop and must not be held up (no slow callbacks)."""
    stack = contextlib.ExitStack()
    url = await asyncio.to_thread(stack.enter_context, prometheus(target, workdir))
    try:
        yield url
    finally:
        await asyncio.to_thread(stack.close)


class PromApi:
    """The few Prometheus HTTP API calls the test needs."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.url}/api/v1/query", params={"query": expr}) as r:
            body = await r.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def total(self, expr: str) -> float:
        return sum(float(s["value"][1]) for s in await self.query(expr))

    async def wait(self, expr: str, at_least: float, within: float) -> float:
        deadline = time.monotonic() + within
        got = 0.0
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                got = await self.total(expr)
                if got >= at_least:
                    return got
            await asyncio.sleep(0.5)
        raise AssertionError(f"{expr} reached {got} < {at_least} within {within}s")


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in result)


@pytest.fixture
async def api() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def calls(
    did: str, caller: str, n: int, duration_ms: int = 1500, local_port: int = 6140
) -> None:
    result = await asyncio.to_thread(
        place_calls,
        "127.0.1.1:5060",
        did,
        caller=caller,
        calls=n,
        rate=n,
        duration_ms=duration_ms,
        max_seconds=30,
        local_port=local_port,
    )
    assert result.ok, result.output[-2000:]


async def load_overflow(bridge: Bridge) -> None:
    """One English call overflows from a busy bangalore (overflow_ewt), as in
    test_routing_lab: both of bangalore's English agents take a long call first, one
    after the other (a second caller still waiting would itself overflow)."""
    english = lambda: bridge.state.sites["bangalore"].queues["orders-en"]  # noqa: E731
    await until(lambda: english().available == 2, 15, "bangalore's English agents free")
    long_calls = []
    for busy, port in ((1, 6150), (0, 6155)):
        long_calls.append(asyncio.create_task(calls(ORDERS_IN, ENGLISH_CALLER, 1, 9000, port)))
        await until(
            lambda busy=busy: english().available == busy,  # type: ignore[misc]
            15,
            f"{2 - busy} English agents busy at bangalore",
        )
    await calls(ORDERS_IN, ENGLISH_CALLER, 1, local_port=6160)
    await asyncio.gather(*long_calls)


async def seed_staffing_history(store: StoreSettings, now: datetime) -> None:
    """Migrate the store and write, through the RecordWriter, 20 calls in the half hour
    of ``now`` on each of the four weeks before, for bangalore's English and dhaka's
    Bengali orders."""
    engine = make_engine(store)
    try:
        await upgrade(engine)
        writer = RecordWriter(engine, store.journal, registry=CollectorRegistry())
        await writer.start()
        n = 0
        for week in range(1, 5):
            for site, queue in (("bangalore", "orders-en"), ("dhaka", "orders-bn")):
                for i in range(20):
                    n += 1
                    at = now - timedelta(days=7 * week) + timedelta(seconds=60 * i)
                    assert writer.put(
                        "calls",
                        {
                            "call_id": f"seed-{n}",
                            "entry_site": site,
                            "arrived_at": at,
                            "queued_at": at,
                            "target_site": site,
                            "queue": queue,
                        },
                    )
        await until(lambda: writer.status().written >= n, 30, "seed records written")
        await writer.stop()
    finally:
        await engine.dispose()


async def test_every_dashboard_and_rule_query_has_data(
    lab: Lab,
    agents: dict[str, Agent],
    lab_config: Config,
    bridge_at: BridgeFactory,
    api: aiohttp.ClientSession,
) -> None:
    http = HostPort("127.0.0.1", free_port())
    tmp = await asyncio.to_thread(tempfile.mkdtemp, prefix="ccb-prom-")
    # A records store with four past Wednesdays of calls: the staffing gauges (and the
    # dashboard's staffing panels and the understaffing alert's signal) have a plan.
    store = replace(
        lab_config.store,
        enabled=True,
        url=f"sqlite+aiosqlite:///{tmp}/records.db",
        journal=f"{tmp}/records.journal",
    )
    config = replace(lab_config, bridge=replace(lab_config.bridge, http_listen=http), store=store)
    # Recording on (no service recorded): its metrics, which two alerts watch, exist.
    recording = recording_config(lab, config, Path(tmp), policy=()).recording
    config = replace(config, recording=recording)
    try:
        await seed_staffing_history(store, WEDNESDAY_MORNING)
        await fresh_queue_stats(lab, "bangalore")  # load_overflow needs a real expected wait
        async with bridge_at(WEDNESDAY_MORNING, config) as bridge:
            assert bridge.http_port == http.port
            async with prometheus_off_loop(f"127.0.0.1:{http.port}", Path(tmp)) as url:
                prom = PromApi(api, url)
                await prom.wait('up{job="ccbridge"}', 1, within=30)
                # Bangalore serves no Bengali: routed to dhaka by language (home_unserved),
                # which is no load overflow.
                await calls(ORDERS_IN, BENGALI_CALLER, 2)
                await calls(ORDERS_IN, HINDI_CALLER, 2)  # stays at bangalore
                await load_overflow(bridge)  # one English call leaves a busy bangalore
                # Jump the bridge's (shifted) clock to the evening for an after-hours call.
                bridge.clock.offset += (WEDNESDAY_EVENING - WEDNESDAY_MORNING).total_seconds()
                await calls(RETURNS_IN, HINDI_CALLER, 1)

                # The calls reach the KPIs, as Prometheus sees them.
                await prom.wait("sum(ccbridge_calls_answered_total)", 8, within=30)
                await prom.wait("sum(ccbridge_queue_talk_seconds_count)", 8, within=30)
                bn = 'site="dhaka", queue="orders-bn"'
                assert await prom.total(f"ccbridge_calls_offered_total{{{bn}}}") == 2
                assert await prom.total(f"ccbridge_calls_answered_within_sl_total{{{bn}}}") == 2
                overflow = 'ccbridge_calls_overflowed_total{receiving_site="bangalore"}'
                assert await prom.total(overflow) == 1
                unserved = 'ccbridge_route_reasons_total{reason="home_unserved"}'
                assert await prom.total(unserved) == 2
                after_hours = 'ccbridge_calls_after_hours_total{site="manila", action="site"}'
                assert await prom.total(after_hours) == 1
                routed = 'ccbridge_fastagi_sessions_total{route="route", outcome="ok"}'
                assert await prom.total(routed) == 8
                # The staffing plan: required agents for the queues the history has.
                await prom.wait('count(ccbridge_agents_required{site="dhaka"})', 1, within=30)
                # Recording rules are evaluated every second here: wait for a value.
                await prom.wait("count(ccbridge:queue_service_level:ratio_15m >= 0)", 1, 30)

                empty = []
                for where, expr in [*dashboard_queries(), *rule_queries()]:
                    result = await prom.query(expr)
                    if not finite(result):
                        empty.append(f"{where}: {expr} -> {result}")
                assert empty == [], "queries without data:\n" + "\n".join(empty)
                for _, expr in alert_expressions():
                    await prom.query(expr)  # valid PromQL; quiet or not, it must evaluate
                async with api.get(f"{url}/api/v1/rules") as r:
                    groups = (await r.json())["data"]["groups"]
                unhealthy = [
                    (rule["name"], rule.get("lastError"))
                    for g in groups
                    for rule in g["rules"]
                    if rule["health"] != "ok"
                ]
                in_file = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
                loaded = sum(len(g["rules"]) for g in groups)
                assert loaded == sum(len(g["rules"]) for g in in_file)
                assert unhealthy == []

            async with api.get(f"http://127.0.0.1:{http.port}/metrics") as r:
                exposition = await r.text()
            assert bad_labels(exposition) == []
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)
