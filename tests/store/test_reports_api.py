"""GET /api/v1/calls, /calls/{id}, /reports/intervals and /reports/agents over a real
aiohttp server, a Bridge and an SQLite store: JSON and CSV with the same columns, pages,
masked numbers, and bad input answered 400 with a message (never 500, never unbounded)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.reports.calls import CALL_COLUMNS
from ccbridge.services import ServiceError
from ccbridge.store.schema import Outcome
from tests.store.conftest import Db
from tests.store.report_world import report_config, write

T0 = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)  # 10:00 in Dhaka
NOW = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
CALLER = "+8801712345678"
ADMIN = {"Authorization": "Bearer the-token"}  # the bootstrap token: every permission


def calls(n: int) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        cid = f"k{i:03d}"
        t = T0 + timedelta(minutes=i)
        out.append(
            (
                "calls",
                {
                    "call_id": cid,
                    "entry_site": "dhaka",
                    "target_site": "dhaka",
                    "arrived_at": t,
                    "queued_at": t,
                    "caller_number": CALLER if i == 0 else f"+88017000000{i:02d}",
                    "service": "orders",
                    "language": "en",
                    "queue": "orders-en",
                    "reasons": ["home_site_open"],
                    "outcome": Outcome.ANSWERED if i % 3 else Outcome.ABANDONED,
                    "wait_s": 10.0,
                    "agent": "dac-agent1" if i % 3 else None,
                    "answered_at": t + timedelta(seconds=10) if i % 3 else None,
                },
            )
        )
    out.append(("legs", {"call_id": "k000", "site": "dhaka", "linkedid": "L0", "arrived_at": T0}))
    out.append(
        (
            "call_events",
            {
                "site": "dhaka",
                "event_key": "L0/QueueCallerJoin",
                "call_id": "k000",
                "at": T0,
                "name": "QueueCallerJoin",
                "fields": {"Queue": "orders-en", "CallerIDNum": CALLER},
            },
        )
    )
    return out


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bootstrap token ADMIN sends: set here, whatever an earlier test left behind.
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")


@pytest.fixture
async def api(db_target: Db) -> AsyncIterator[tuple[TestClient, Bridge]]:  # type: ignore[type-arg]
    await db_target.upgrade()
    await write(db_target, calls(30))
    bridge = Bridge(replace(report_config(), store=db_target.settings), Clock(NOW))
    try:
        async with TestClient(TestServer(bridge.http_app()), headers=ADMIN) as c:
            yield c, bridge
    finally:
        await bridge.services.reports.close()
        await db_target.dispose()


pytestmark = pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
RANGE = {"from": "2026-11-27T00:00:00Z", "to": "2026-11-28T00:00:00Z"}
RANGE_P = {k: [v] for k, v in RANGE.items()}


async def test_calls_are_paged_and_every_page_is_bounded(api: Any) -> None:
    c, _ = api
    seen: list[str] = []
    params: dict[str, str] = {**RANGE, "limit": "7"}
    pages = 0
    while True:
        r = await c.get("/api/v1/calls", params=params)
        assert r.status == 200, await r.text()
        body = await r.json()
        assert len(body["calls"]) <= 7
        seen += [x["call_id"] for x in body["calls"]]
        pages += 1
        if body["next"] is None:
            break
        assert r.headers["X-Next-Cursor"] == body["next"]
        params["after"] = body["next"]
    assert seen == [f"k{i:03d}" for i in range(30)] and pages == 5  # 7+7+7+7+2


async def test_call_filters(api: Any) -> None:
    c, _ = api
    r = await c.get("/api/v1/calls", params={**RANGE, "outcome": "abandoned", "limit": "100"})
    ids = [x["call_id"] for x in (await r.json())["calls"]]
    assert ids == [f"k{i:03d}" for i in range(0, 30, 3)]
    r = await c.get("/api/v1/calls", params={**RANGE, "caller": CALLER})
    assert [x["call_id"] for x in (await r.json())["calls"]] == ["k000"]
    r = await c.get("/api/v1/calls", params={**RANGE, "agent": "dac-agent1", "site": "dhaka"})
    assert len((await r.json())["calls"]) == 20
    r = await c.get("/api/v1/calls", params={**RANGE, "site": "manila"})
    assert (await r.json())["calls"] == []


async def test_csv_has_the_json_columns(api: Any) -> None:
    c, _ = api
    js = (await (await c.get("/api/v1/calls", params={**RANGE, "limit": "3"})).json())["calls"]
    for how in (
        {"params": {**RANGE, "limit": "3", "format": "csv"}},
        {"params": {**RANGE, "limit": "3"}, "headers": {"Accept": "text/csv"}},
    ):
        r = await c.get("/api/v1/calls", **how)
        assert r.status == 200 and r.content_type == "text/csv"
        lines = list(csv.DictReader(io.StringIO(await r.text())))
        assert list(lines[0]) == list(js[0]) == list(CALL_COLUMNS)
        assert [x["call_id"] for x in lines] == [x["call_id"] for x in js]
        assert lines[0]["reasons"] == '["home_site_open"]' and lines[0]["wait_s"] == "10"
    rep = {**RANGE, "site": "dhaka", "step": "60"}
    js_rep = await (await c.get("/api/v1/reports/intervals", params=rep)).json()
    r = await c.get("/api/v1/reports/intervals", params={**rep, "format": "csv"})
    lines = list(csv.DictReader(io.StringIO(await r.text())))
    assert list(lines[0]) == js_rep["columns"] and len(lines) == len(js_rep["rows"])
    ten = [x for x in lines if x["interval_start"] == "2026-11-27T10:00:00+06:00"]
    assert ten[0]["offered"] == "30" and ten[0]["answered"] == "20"
    assert ten[0]["service_level"] == "1" and ten[0]["incomplete"] == "false"


async def test_every_route_needs_a_token(api: Any) -> None:
    c, _ = api
    for path in ("/api/v1/calls", "/api/v1/calls/k000", "/api/v1/reports/intervals"):
        r = await c.get(path, params=RANGE, headers={"Authorization": "Bearer wrong"})
        assert r.status == 401, path


async def test_a_caller_scoped_to_sites_sees_only_theirs(api: Any) -> None:
    _, bridge = api
    svc = bridge.services.reports
    _, page = await svc.list_calls(RANGE_P, numbers=True, sites=["manila"])
    assert page.rows == []  # every call here is dhaka's
    with pytest.raises(ServiceError) as info:
        await svc.list_calls({**RANGE_P, "site": ["dhaka"]}, numbers=True, sites=["manila"])
    assert info.value.error_id == "forbidden"
    with pytest.raises(ServiceError) as info:
        await svc.call("k000", numbers=True, sites=["manila"])
    assert info.value.error_id == "no-such-call"  # not "forbidden": that would tell
    q, rep = await svc.interval_report({**RANGE_P, "step": ["day"]}, sites=["dhaka"])
    rows = json.loads(rep.body)["rows"]
    assert q.sites == ("dhaka",) and {r["site"] for r in rows} == {"dhaka"}


async def test_an_agent_user_sees_only_the_calls_it_answered(api: Any) -> None:
    """No site, an agent (the agent role's ``me``): the calls that agent answered, at
    any site; filters narrow them; another agent's calls are refused or not there."""
    _, bridge = api
    svc = bridge.services.reports
    own = {"sites": [], "agents": ["dac-agent1"], "numbers": False}
    _, page = await svc.list_calls({**RANGE_P, "limit": ["100"]}, **own)  # type: ignore[arg-type]
    assert [r["call_id"] for r in page.rows] == [f"k{i:03d}" for i in range(30) if i % 3]
    assert {r["agent"] for r in page.rows} == {"dac-agent1"}
    assert all("*" in r["caller_number"] for r in page.rows)  # no ccb.numbers.read
    _, page = await svc.list_calls({**RANGE_P, "site": ["manila"]}, **own)  # type: ignore[arg-type]
    assert page.rows == []  # a site filter narrows an agent's calls: not forbidden
    _, page = await svc.list_calls(RANGE_P, numbers=False, sites=[], agents=["dac-agent2"])
    assert page.rows == []
    with pytest.raises(ServiceError) as info:
        await svc.list_calls({**RANGE_P, "agent": ["dac-agent2"]}, **own)  # type: ignore[arg-type]
    assert info.value.error_id == "forbidden" and "dac-agent2" in str(info.value)
    with pytest.raises(ServiceError) as info:
        await svc.list_calls(RANGE_P, numbers=False, sites=[], agents=[])
    assert info.value.error_id == "forbidden"
    assert (await svc.call("k001", numbers=False, sites=[], agents=["dac-agent1"])).call[
        "agent"
    ] == "dac-agent1"
    with pytest.raises(ServiceError) as info:
        await svc.call("k000", numbers=False, sites=[], agents=["dac-agent1"])  # abandoned
    assert info.value.error_id == "no-such-call"
    # A supervisor's scope stays its sites, whatever agents it holds.
    _, page = await svc.list_calls(RANGE_P, numbers=True, sites=["manila"], agents=["dac-agent1"])
    assert page.rows == []


async def test_one_call_with_legs_and_events(api: Any) -> None:
    c, bridge = api
    r = await c.get("/api/v1/calls/k000")
    body = await r.json()
    assert body["call"]["caller_number"] == CALLER
    assert [leg["linkedid"] for leg in body["legs"]] == ["L0"]
    assert [e["name"] for e in body["events"]] == ["QueueCallerJoin"]
    r = await c.get("/api/v1/calls/k000", params={"format": "csv"})
    lines = list(csv.DictReader(io.StringIO(await r.text())))
    assert [x["record"] for x in lines] == ["leg", "event"]
    r = await c.get("/api/v1/calls/nope")
    assert r.status == 404 and (await r.json())["error"] == "no-such-call"
    # Without the right to read numbers (the access issue's ccb.numbers.read): masked
    detail = await bridge.services.reports.call("k000", numbers=False)
    assert detail.call["caller_number"] == "+88*********78"
    assert detail.events[0]["fields"]["CallerIDNum"] == "+88*********78"


async def test_agent_report_over_http(api: Any) -> None:
    c, _ = api
    r = await c.get("/api/v1/reports/agents", params={**RANGE, "site": "dhaka", "step": "day"})
    body = await r.json()
    assert r.status == 200 and body["incomplete"] is False
    assert [(x["agent"], x["answered"]) for x in body["rows"]] == [("dac-agent1", 20)]


@pytest.mark.parametrize(
    ("path", "params", "field", "words"),
    [
        ("/api/v1/calls", {"limit": "1000000"}, "limit", "1..1000"),
        ("/api/v1/calls", {"limit": "-1"}, "limit", "1..1000"),
        ("/api/v1/calls", {"limit": "ten"}, "limit", "whole number"),
        ("/api/v1/calls", {"from": "2026-11-28", "to": "2026-11-27"}, "to", "reversed"),
        ("/api/v1/calls", {"from": "yesterday", "to": "2026-11-27"}, "from", "neither a date"),
        ("/api/v1/calls", {"from": "2026-11-27T00:00", "to": "2026-11-28T00:00"}, "from", "offset"),
        ("/api/v1/calls", {"site": "atlantis"}, "site", "unknown site"),
        ("/api/v1/calls", {"outcome": "lost"}, "outcome", "unknown outcome"),
        ("/api/v1/calls", {"after": "garbage!"}, "after", "cursor"),
        ("/api/v1/calls", {"caller": "abc"}, "caller", "digits"),
        ("/api/v1/calls", {"pagesize": "5"}, "pagesize", "unknown parameter"),
        ("/api/v1/calls", {"format": "xml"}, "format", "json or csv"),
        ("/api/v1/reports/intervals", {}, "from", "required"),
        ("/api/v1/reports/intervals", {**RANGE, "step": "7"}, "step", "15, 30, 60"),
        ("/api/v1/reports/intervals", {**RANGE, "site": "dhaka,mars"}, "site", "unknown site"),
        ("/api/v1/reports/intervals", {"from": "2020-01-01", "to": "2026-01-01"}, "to", "year"),
        (
            "/api/v1/reports/intervals",
            {"from": "2026-11-28T00:00:00Z", "to": "2026-11-27T00:00:00Z"},
            "to",
            "reversed",
        ),
        ("/api/v1/reports/intervals", {**RANGE, "service": "pizza"}, "service", "unknown"),
        ("/api/v1/reports/intervals", {**RANGE, "agent": "x"}, "agent", "no agent filter"),
        ("/api/v1/reports/agents", {**RANGE, "by": "site"}, "service", "agent report takes"),
        ("/api/v1/reports/intervals", {**RANGE, "from": "2026-11-27"}, "to", "both be dates"),
    ],
)
async def test_bad_input_is_400_with_a_message(
    api: Any, path: str, params: dict[str, str], field: str, words: str
) -> None:
    c, _ = api
    r = await c.get(path, params=params)
    assert r.status == 400, await r.text()
    body = await r.json()
    assert body["error"] == "invalid-field"
    assert body["details"]["field"] == field and words in body["message"], body


async def test_a_repeated_parameter_and_an_overlong_value(api: Any) -> None:
    c, _ = api
    r = await c.get("/api/v1/calls?limit=5&limit=6")
    assert r.status == 400 and "give it once" in (await r.json())["message"]
    r = await c.get("/api/v1/calls", params={"agent": "a" * 5000})
    assert r.status == 400 and "longer than" in (await r.json())["message"]


async def test_no_store_is_503(db_target: Db) -> None:
    """No database file yet (the bridge recorded nothing): 503, and no empty file made."""
    bridge = Bridge(replace(report_config(), store=db_target.settings), Clock(NOW))
    path = db_target.settings.url.removeprefix("sqlite+aiosqlite:///")
    async with TestClient(TestServer(bridge.http_app()), headers=ADMIN) as c:
        r = await c.get("/api/v1/reports/intervals", params=RANGE)
        assert r.status == 503 and (await r.json())["error"] == "records-unavailable"
        assert "no such database file" in (await r.json())["message"]
    assert not await asyncio.to_thread(os.path.exists, path)
