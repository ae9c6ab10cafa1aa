"""The route handler's variables, the HTTP API's errors, the clock and log masking."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from ccbridge import variables as v
from ccbridge.agi.handlers import decision_variables
from ccbridge.agi.server import Script
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import Config, load_config
from ccbridge.logs import KeyValueFormatter, _mask_any, ctx, mask_number
from ccbridge.routing.engine import Decision

# Reads need a token too (issue 13): the config's bootstrap admin token.
ADMIN = {"Authorization": "Bearer the-token"}

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    return load_config(REPO / "examples" / "lab.yaml")


def test_remote_decision_lists_trunks_in_order() -> None:
    d = Decision(
        "queue", "dhaka", "orders-bn", "orders", "bn", ("blr-dac", "blr-dac2"), ("home_unserved",)
    )
    out = decision_variables(d, "bangalore")
    assert out[v.ROUTE] == v.ROUTE_REMOTE
    assert out[v.TRUNK_COUNT] == "2"
    assert (out["CCB_TRUNK_1"], out["CCB_TRUNK_2"]) == ("blr-dac", "blr-dac2")
    assert out[v.QUEUE] == "orders-bn" and out[v.REASONS] == "home_unserved"


def test_local_decision_needs_no_trunk() -> None:
    d = Decision("queue", "bangalore", "orders-hi", "orders", "hi")
    out = decision_variables(d, "bangalore")
    assert out[v.ROUTE] == v.ROUTE_QUEUE and v.TRUNK_COUNT not in out


def test_after_hours_without_a_site_plays_the_action() -> None:
    d = Decision("after_hours", None, None, "orders", "en", action="voicemail")
    out = decision_variables(d, "bangalore")
    assert out[v.ROUTE] == v.ROUTE_AFTER_HOURS and out[v.AFTER_HOURS] == "voicemail"


def test_after_hours_with_a_designated_site_routes_there() -> None:
    d = Decision("after_hours", "manila", "orders-en", "orders", "en", ("blr-mnl",), action="site")
    assert decision_variables(d, "bangalore")[v.ROUTE] == v.ROUTE_REMOTE


def test_reject_is_explicit() -> None:
    d = Decision("reject", None, None, None, None, reasons=("unknown_did",))
    assert decision_variables(d, "bangalore")[v.ROUTE] == v.ROUTE_REJECT


@pytest.fixture
async def client(config: Config) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    bridge = Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    async with TestClient(TestServer(bridge.http_app()), headers=ADMIN) as c:
        yield c


async def test_health_is_always_ok_and_readiness_says_why_not(client: TestClient) -> None:  # type: ignore[type-arg]
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["checks"] == {
        "config_loaded": True,
        "fastagi_listening": False,
        "site_connected": False,
        "sites_synced": False,
    }


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{not json", "invalid-json"),
        (b"[1, 2]", "invalid-body"),
        (b"{}", "missing-field"),
        (b'{"did": 5}', "invalid-field"),
        (b'{"did": "+918000000001", "at": "yesterday"}', "invalid-field"),
        (b'{"did": "+918000000001", "at": "2026-11-25T05:00:00"}', "invalid-field"),
    ],
)
async def test_bad_preview_requests_get_clear_errors(
    client: TestClient, payload: bytes, error: str
) -> None:  # type: ignore[type-arg]
    resp = await client.post("/api/v1/route/preview", data=payload)
    assert resp.status == 400
    assert (await resp.json())["error"] == error


async def test_oversized_body_is_refused(client: TestClient) -> None:  # type: ignore[type-arg]
    resp = await client.post("/api/v1/route/preview", data=b"x" * 100_000)
    assert resp.status == 413


async def test_unknown_path_is_json_404(client: TestClient) -> None:  # type: ignore[type-arg]
    resp = await client.get("/api/v1/nope")
    assert resp.status == 404 and (await resp.json())["error"] == "not-found"


async def test_preview_uses_live_state_and_the_bridge_clock(client: TestClient) -> None:  # type: ignore[type-arg]
    resp = await client.post(
        "/api/v1/route/preview", json={"did": "+918000000001", "caller": "+8801712345678"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["at"].startswith("2026-11-25T05:00")
    # No site is connected in this test: nothing can take the call.
    assert body["decision"]["site"] is None
    assert "site_down" in {s["reason"] for s in body["decision"]["skipped"]}


async def test_sites_and_queues_show_the_state(client: TestClient) -> None:  # type: ignore[type-arg]
    sites = await (await client.get("/api/v1/sites")).json()
    assert [s["name"] for s in sites["sites"]] == ["bangalore", "dhaka", "manila"]
    assert all(s["up"] is False for s in sites["sites"])
    assert (await (await client.get("/api/v1/queues")).json()) == {"queues": []}


async def test_trunks_api_shows_the_breakers_the_metrics_see(config: Config) -> None:
    bridge = Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    for _ in range(3):
        bridge._on_trunk_result("blr-dac", "CONGESTION")
    async with TestClient(TestServer(bridge.http_app()), headers=ADMIN) as c:
        body = await (await c.get("/api/v1/trunks")).json()
    api = {t["name"]: (t["usable"], t["breaker"]) for t in body["trunks"]}
    assert api["blr-dac"] == (False, "open")
    assert api == {s.name: (s.up, s.breaker) for s in bridge.trunk_snapshots()}


async def test_metrics_are_served(client: TestClient) -> None:  # type: ignore[type-arg]
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert 'ccbridge_site_up{site="dhaka"} 0.0' in await resp.text()


def test_shifted_clock_keeps_running() -> None:
    start = datetime(2026, 12, 25, 3, 0, tzinfo=UTC)
    clock = Clock(start)
    assert clock.fixed and abs((clock.now() - start).total_seconds()) < 1.0
    with pytest.raises(ValueError, match="time zone"):
        Clock(datetime(2026, 12, 25, 3, 0))


def test_clock_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_CLOCK", "2026-12-25T03:00:00Z")
    assert Clock.from_settings(None).now().year == 2026
    monkeypatch.setenv("CCBRIDGE_CLOCK", "2026-12-25T03:00:00")
    with pytest.raises(ValueError, match="offset"):
        Clock.from_settings(None)


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+918000000001", "+91********01"),
        ("8801712345678", "88*********78"),
        ("+44 7700 900123", "+44 **** ****23"),
        ("12345", "12*45"),
        ("1234", "****"),
        ("101", "***"),
        ("", ""),
        ("anonymous", "anonymous"),
        ("unknown", "unknown"),
    ],
)
def test_mask_number(number: str, masked: str) -> None:
    assert mask_number(number) == masked
    assert _mask_any(number) == masked  # the general path agrees with the fast one


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="+0123456789 -()x\u00b2\u0663", max_size=20))
def test_mask_number_fast_path_is_the_general_one(number: str) -> None:
    assert mask_number(number) == (_mask_any(number) if number else "")


def test_key_value_log_lines_quote_and_carry_context() -> None:
    record = logging.LogRecord("ccbridge.x", logging.INFO, __file__, 1, "routed call", None, None)
    record.ctx = ctx(site="dhaka", reasons="a b")["ctx"]
    line = KeyValueFormatter().format(record)
    assert 'msg="routed call"' in line and "site=dhaka" in line and 'reasons="a b"' in line


def _play(script: Script, *replies: str) -> list[str]:
    """Run a script handler as Asterisk would: each command line answered in turn from
    ``replies`` (then ``200 result=1``); the command lines it sent."""
    from ccbridge.agi.codec import parse_reply

    lines: list[str] = []
    answers = list(replies)
    with suppress(StopIteration):
        line = next(script)
        while True:
            lines.append(line)
            line = script.send(parse_reply(answers.pop(0) if answers else "200 result=1"))
    return lines


def test_route_variables_go_in_one_mset_round_trip() -> None:
    from ccbridge.agi.handlers import set_all

    lines = _play(
        set_all({v.QUEUE: "orders-bn", v.REASONS: "a b", v.ROUTE: "remote"}), "200 result=0"
    )
    assert lines == ['EXEC MSet "CCB_QUEUE=orders-bn,CCB_REASONS=a b,CCB_ROUTE=remote"']


def test_without_mset_each_variable_is_set_route_last() -> None:
    from ccbridge.agi.handlers import set_all

    lines = _play(set_all({v.QUEUE: "orders-bn", v.ROUTE: "queue"}), "200 result=-2")
    assert lines[1:] == [
        'SET VARIABLE CCB_QUEUE "orders-bn"',
        'SET VARIABLE CCB_ROUTE "queue"',
    ]


def test_a_comma_in_a_value_skips_mset() -> None:
    from ccbridge.agi.handlers import set_all

    lines = _play(set_all({v.QUEUE: "a,b", v.ROUTE: "queue"}))
    assert [line.split()[0] for line in lines] == ["SET", "SET"]


def test_a_refused_set_variable_fails_the_route_session() -> None:
    from ccbridge.agi.codec import AgiCommandError
    from ccbridge.agi.handlers import set_all

    with pytest.raises(AgiCommandError, match="510"):
        _play(set_all({v.QUEUE: "a,b", v.ROUTE: "queue"}), "510 Invalid or unknown command")


def test_request_supplied_names_never_become_label_values(config: Config) -> None:
    from ccbridge.routing.engine import CallRequest

    bridge = Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    for i in range(5):
        call = CallRequest("+918000000001", "", receiving_site=f"probe-{i}", service=f"svc-{i}")
        bridge._on_decision(call, bridge.decide(call))
    values = {
        value
        for metric in bridge.registry.collect()
        if metric.name == "ccbridge_route_decisions"
        for sample in metric.samples
        for value in sample.labels.values()
    }
    assert not any(v.startswith(("probe-", "svc-")) for v in values)
    assert "other" in values


async def test_held_routes_see_a_breaker_leave_open_by_its_cool_down(config: Config) -> None:
    # No event marks the end of a cool-down: while held routes carry the calls no FastAGI
    # decision refreshes the trunks, so the held state must, or the trunk stays last.
    from ccbridge.routing.trunks import BreakerPolicy
    from tests.polling import until

    bridge = Bridge(config, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    bridge.trunk_policy = BreakerPolicy(failures=3, window=30.0, cooldown=0.2)
    for _ in range(3):
        bridge._on_trunk_result("blr-dac", "CONGESTION")
    assert "blr-dac" in bridge.held_state().unhealthy_trunks
    await until(
        lambda: "blr-dac" not in bridge.held_state().unhealthy_trunks,
        5,
        "the held state to see blr-dac half-open",
        interval=0.02,
    )
