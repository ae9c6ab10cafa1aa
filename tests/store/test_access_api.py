"""The API's access rules on a started bridge with a real store: who may do what, the
401s and 403s and that they change nothing, failed logins slowed per address, the audit
trail read back, and HTTPS with a CA made for the test."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from sqlalchemy import insert

from ccbridge.access.passwords import hash_password_sync
from ccbridge.access.roles import Principal
from ccbridge.access.users import User, issue_token, revoke_token, set_disabled
from ccbridge.loopdebug import report_slow_callbacks, stop_reporting
from ccbridge.store.audit import erase_details, verify
from ccbridge.store.engine import make_engine
from ccbridge.store.schema import calls as calls_table
from tests.polling import until
from tests.store.access_world import BOOTSTRAP, PASSWORD, T0, World, make_world


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", BOOTSTRAP)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await make_world(tmp_path)
    try:
        yield w
    finally:
        await w.bridge.stop()


async def call(
    w: World, method: str, path: str, user: str | None, **kw: Any
) -> tuple[int, Any, Any]:
    headers = dict(kw.pop("headers", {}))
    if user is not None:
        headers.update(w.auth(user))
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, w.base + path, headers=headers, **kw) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, r.headers


async def audited(w: World, n: int) -> list[dict[str, Any]]:
    """The audit rows once at least ``n`` are in the database."""
    trail = w.bridge.access.trail
    assert trail is not None
    await until(lambda: trail.writer.status().written >= n, 10, f"{n} audit rows written")
    return await w.audit_rows()


async def test_a_supervisor_of_dhaka_runs_dhaka_and_nothing_else(world: World) -> None:
    st, body, _ = await call(world, "POST", "/api/v1/sites/dhaka/drain", "sue")
    assert (st, body) == (200, {"site": "dhaka", "drained": True})
    st, body, _ = await call(world, "POST", "/api/v1/sites/bangalore/drain", "sue")
    assert (st, body["error"]) == (403, "forbidden")
    assert not world.bridge.state.sites["bangalore"].drained  # nothing changed
    st, body, _ = await call(world, "GET", "/api/v1/sites", "sue")
    assert st == 200 and [s["name"] for s in body["sites"]] == ["dhaka"]
    st, body, _ = await call(world, "GET", "/api/v1/trunks", "sue")
    assert st == 200 and {t["site"] for t in body["trunks"]} == {"dhaka"}
    # dhaka's agents: allowed (the AMI link is down here: 503, not 403); bangalore's: 403
    body_ = {"reason": "break", "site": "dhaka"}
    st, body, _ = await call(world, "POST", "/api/v1/agents/dac-agent1/pause", "sue", json=body_)
    assert st == 503 and body["error"] == "site-down"
    st, _, _ = await call(world, "POST", "/api/v1/agents/blr-agent1/pause", "sue", json=body_)
    assert st == 403
    assert (await call(world, "GET", "/api/v1/audit", "sue"))[0] == 403
    rows = await audited(world, 5)
    denied = [(r["action"], r["object"]) for r in rows if r["result"] == "denied"]
    assert denied == [
        ("POST /api/v1/sites/{name}/drain", "site:bangalore"),
        ("POST /api/v1/agents/{agent}/pause", "agent:blr-agent1"),
        ("GET /api/v1/audit", None),
    ]
    ok = [r for r in rows if r["result"] == "ok"]
    assert [(r["actor"], r["site"], r["status"]) for r in ok] == [("sue", "dhaka", 200)]


async def test_an_agent_acts_on_itself_only(world: World) -> None:
    me = "dac-agent1"
    body = {"site": "dhaka", "queues": ["orders-bn"]}
    assert (await call(world, "POST", f"/api/v1/agents/{me}/login", me, json=body))[0] == 503
    assert (await call(world, "POST", "/api/v1/agents/dac-agent2/login", me, json=body))[0] == 403
    assert (await call(world, "POST", "/api/v1/sites/dhaka/drain", me))[0] == 403
    assert (await call(world, "GET", "/api/v1/sites", me))[0] == 403
    assert (await call(world, "GET", "/api/v1/agents", me))[0] == 200


async def test_an_agent_lists_its_own_calls_and_no_one_elses(world: World) -> None:
    """The agent role's ``ccb.agents.me.#`` reads the calls the user's agent answered
    (``agent=me`` names it), masked; other calls are not there, and asked for, 403."""
    start = T0 - timedelta(hours=1)  # the bridge's clock: the default range is the last day
    rows = [
        ("a1", "dhaka", "dac-agent1"),
        ("a2", "bangalore", "dac-agent1"),  # an agent's own call at another site
        ("b1", "dhaka", "dac-agent2"),
        ("b2", "dhaka", None),
    ]
    engine = make_engine(world.config.store)
    try:
        async with engine.begin() as conn:
            for i, (cid, site, agent) in enumerate(rows):
                at = start + timedelta(minutes=i)
                await conn.execute(
                    insert(calls_table).values(
                        call_id=cid,
                        entry_site=site,
                        target_site=site,
                        arrived_at=at,
                        caller_number="+8801712345678",
                        agent=agent,
                    )
                )
    finally:
        await engine.dispose()
    me = "dac-agent1"
    for query in ("", "?agent=me", "?agent=dac-agent1"):
        st, body, _ = await call(world, "GET", f"/api/v1/calls{query}", me)
        assert st == 200, body
        assert [c["call_id"] for c in body["calls"]] == ["a1", "a2"]
        assert {c["caller_number"] for c in body["calls"]} == {"+88*********78"}
    st, body, _ = await call(world, "GET", "/api/v1/calls?site=bangalore", me)
    assert [c["call_id"] for c in body["calls"]] == ["a2"]
    st, body, _ = await call(world, "GET", "/api/v1/calls?agent=dac-agent2", me)
    assert st == 403 and body["error"] == "forbidden"
    assert (await call(world, "GET", "/api/v1/calls/a2", me))[0] == 200
    st, body, _ = await call(world, "GET", "/api/v1/calls/b1", me)
    assert st == 404 and body["error"] == "no-such-call"  # not "forbidden": it would tell
    # Someone bound to no agent asking for their own: a clear 400, not an empty list.
    st, body, _ = await call(world, "GET", "/api/v1/calls?agent=me", "ada")
    assert st == 400 and body["error"] == "no-agent"
    # The supervisor of dhaka still sees dhaka's calls only (not dac-agent1's at bangalore).
    st, body, _ = await call(world, "GET", "/api/v1/calls", "sue")
    assert [c["call_id"] for c in body["calls"]] == ["a1", "b1", "b2"]


async def test_a_viewer_reads_everything_and_changes_nothing(world: World) -> None:
    st, body, _ = await call(world, "GET", "/api/v1/sites", "vic")
    assert st == 200 and len(body["sites"]) == 3
    preview = {"did": "+918000000001", "caller": "+919812345678"}
    assert (await call(world, "POST", "/api/v1/route/preview", "vic", json=preview))[0] == 200
    for path in ("/api/v1/sites/dhaka/drain", "/api/v1/agents/dac-agent1/pause"):
        assert (await call(world, "POST", path, "vic", json={}))[0] == 403
    assert (await call(world, "POST", "/api/v1/calls", "vic", json={"to": "+9198"}))[0] == 403
    assert not any(s.drained for s in world.bridge.state.sites.values())
    assert not _as(world, "viewer", []).can("ccb.numbers.read")  # numbers masked
    assert _as(world, "supervisor", ["dhaka"]).can("ccb.numbers.read")


def _as(w: World, role: str, sites: list[str]) -> Principal:
    user = User("x", "user", role, tuple(sites), None, False, datetime.now(UTC))
    return w.bridge.access.principal(user, None)


async def test_a_service_account_reads_its_site(world: World) -> None:
    st, body, _ = await call(world, "GET", "/api/v1/sites", "crm")
    assert st == 200 and [s["name"] for s in body["sites"]] == ["bangalore"]
    assert (await call(world, "POST", "/api/v1/sites/bangalore/drain", "crm"))[0] == 403


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, "missing-token"),
        ("Basic YWRhOnB3", "malformed-token"),
        ("Bearer", "malformed-token"),
        ("Bearer not-a-token", "invalid-token"),
        ("Bearer ccb_0123456789ab_guessed", "invalid-token"),
    ],
)
async def test_a_missing_or_bad_token_is_401_and_changes_nothing(
    world: World, header: str | None, error: str
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    st, body, h = await call(world, "POST", "/api/v1/sites/dhaka/drain", None, headers=headers)
    assert (st, body["error"]) == (401, error)
    assert h["WWW-Authenticate"].startswith('Bearer realm="ccbridge"')
    assert not world.bridge.state.sites["dhaka"].drained


async def test_expired_revoked_and_disabled_tokens_are_401(world: World) -> None:
    engine = make_engine(world.config.store)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            old = await issue_token(
                conn, "ada", now=now - timedelta(days=2), lifetime=timedelta(days=1), label=None
            )
            await revoke_token(conn, world.tokens["sue"].split("_")[1], now)
            await set_disabled(conn, "vic", True)
    finally:
        await engine.dispose()
    for token in (old.token, world.tokens["sue"], world.tokens["vic"]):
        headers = {"Authorization": f"Bearer {token}"}
        st, body, h = await call(world, "POST", "/api/v1/sites/dhaka/drain", None, headers=headers)
        assert (st, body["error"]) == (401, "invalid-token") and "invalid_token" in h[
            "WWW-Authenticate"
        ]
    assert not world.bridge.state.sites["dhaka"].drained
    rows = await audited(world, 3)
    whys = [r["details"]["why"] for r in rows if r["action"] == "token.use"]
    assert whys == ["expired", "revoked", "user-disabled"]
    assert all(t not in str(rows) for t in (old.token, world.tokens["sue"]))  # no secrets


async def test_failed_logins_are_slowed_per_address_and_others_are_served(world: World) -> None:
    bad = {"user": "sue", "password": "wrong"}
    for _ in range(5):
        st, body, _ = await call(world, "POST", "/api/v1/login", None, json=bad)
        assert (st, body["error"]) == (401, "bad-login")
    good = {"user": "sue", "password": PASSWORD}
    st, body, h = await call(world, "POST", "/api/v1/login", None, json=good)
    assert (st, body["error"]) == (429, "rate-limited") and int(h["Retry-After"]) >= 1
    # Another address is served meanwhile, and its token works.
    conn = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with (
        aiohttp.ClientSession(connector=conn) as http,
        http.post(world.base + "/api/v1/login", json=good) as r,
    ):
        assert r.status == 200
        token = (await r.json())["token"]
    # A valid token works from the slowed address too (an office shares one address).
    headers = {"Authorization": f"Bearer {token}"}
    assert (await call(world, "GET", "/api/v1/sites", None, headers=headers))[0] == 200
    rows = await audited(world, 7)
    logins = [(r["source"], r["result"]) for r in rows if r["action"] == "login"]
    assert logins == [("127.0.0.1", "failed")] * 5 + [("127.0.0.1", "limited"), ("127.0.0.2", "ok")]
    assert PASSWORD not in str(rows)


async def test_the_audit_trail_reads_back_as_json_and_csv(world: World) -> None:
    await call(world, "POST", "/api/v1/sites/dhaka/drain", "ada")
    await call(world, "POST", "/api/v1/sites/dhaka/undrain", "bootstrap")
    await audited(world, 2)
    st, body, _ = await call(
        world, "GET", "/api/v1/audit?action=POST+/api/v1/sites/{name}/drain", "ada"
    )
    assert st == 200 and [(r["actor"], r["site"]) for r in body["rows"]] == [("ada", "dhaka")]
    st, text, h = await call(world, "GET", "/api/v1/audit?format=csv", "ada")
    assert st == 200 and h["Content-Type"].startswith("text/csv")
    lines = text.strip().splitlines()
    assert lines[0].startswith("seq,at,actor,source,action")
    assert any(",bootstrap,127.0.0.1,POST /api/v1/sites/{name}/undrain" in x for x in lines)
    st, body, _ = await call(world, "GET", "/api/v1/audit?since=yesterday", "ada")
    assert (st, body["error"]) == (400, "invalid-field")


async def test_the_api_speaks_https_with_the_configured_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "api.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "api.key"))
    w = await make_world(tmp_path, "https", tls=(tmp_path / "api.pem", tmp_path / "api.key"))
    try:
        client = ssl.create_default_context()
        ca.configure_trust(client)
        async with (
            aiohttp.ClientSession() as http,
            http.get(w.base + "/api/v1/sites", headers=w.auth("ada"), ssl=client) as r,
        ):
            assert r.status == 200
        # Plain HTTP to the TLS port gets nothing useful; an untrusting client refuses.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with aiohttp.ClientSession() as http:
                await http.get(w.base + "/healthz", ssl=ssl.create_default_context())
    finally:
        await w.bridge.stop()


async def test_login_hashing_never_blocks_the_loop(world: World) -> None:
    """argon2 runs in a thread: four logins at once, and the loop's debug mode reports
    no callback as long as three quarters of one hash measured now (a hash on the loop
    would be one such callback; measured now, the limit follows the machine's load)."""
    t = time.perf_counter()
    await asyncio.to_thread(hash_password_sync, PASSWORD)
    limit_ms = max(100.0, 750 * (time.perf_counter() - t))
    loop = asyncio.get_running_loop()
    found = report_slow_callbacks(loop, limit_ms)
    try:
        good = {"user": "ada", "password": PASSWORD}
        got = await asyncio.gather(
            *(call(world, "POST", "/api/v1/login", None, json=good) for _ in range(4))
        )
    finally:
        stop_reporting(loop, found)
    assert [g[0] for g in got] == [200] * 4
    assert found.lines == [], (limit_ms, found.lines)


async def test_a_supervisor_acts_on_a_shared_agent_only_at_their_own_site(world: World) -> None:
    """roam1 works at bangalore and dhaka: dhaka's supervisor may act on it at dhaka only."""
    at_blr = {"site": "bangalore", "queues": ["orders-en"]}
    st, body, _ = await call(world, "POST", "/api/v1/agents/roam1/login", "sue", json=at_blr)
    assert (st, body["error"]) == (403, "forbidden")
    st, body, _ = await call(world, "POST", "/api/v1/agents/roam1/pause", "sue", json={})
    assert (st, body["error"]) == (400, "site-required")
    st, body, _ = await call(
        world, "POST", "/api/v1/agents/roam1/pause", "sue", json={"site": "dhaka"}
    )
    assert st == 503  # allowed; dhaka's AMI link is down in this test
    rows = await audited(world, 3)
    assert [(r["result"], r["status"]) for r in rows] == [
        ("denied", 403),
        ("failed", 400),
        ("failed", 503),
    ]


async def test_exports_and_call_lists_are_audited_and_a_number_can_be_erased(world: World) -> None:
    """A CSV is an export and a call list a sensitive read: both audited with what was
    asked; erasing the caller's number from the audit details keeps the chain whole."""
    number = "+8801712345678"
    st, _, h = await call(world, "GET", f"/api/v1/calls?caller=%2B{number[1:]}&format=csv", "ada")
    assert st == 200 and h["Content-Type"].startswith("text/csv")
    st, _, _ = await call(world, "GET", "/api/v1/calls?site=dhaka", "sue")
    assert st == 200
    st, _, _ = await call(
        world,
        "GET",
        "/api/v1/reports/intervals?site=bangalore&from=2026-11-25&to=2026-11-26",
        "sue",
    )
    assert st == 403  # not her site
    rows = await audited(world, 3)
    got = [(r["actor"], r["action"], r["result"], r["site"]) for r in rows]
    assert got == [
        ("ada", "GET /api/v1/calls csv", "ok", None),
        ("sue", "GET /api/v1/calls", "ok", "dhaka"),
        ("sue", "GET /api/v1/reports/intervals", "denied", "bangalore"),
    ]
    assert rows[0]["details"] == {"query": {"caller": number, "format": "csv"}}
    engine = make_engine(world.config.store)
    try:
        async with engine.begin() as conn:
            assert await erase_details(conn, number, datetime.now(UTC)) == 1
        async with engine.connect() as conn:
            assert (await verify(conn)).ok
    finally:
        await engine.dispose()
    assert number not in str(await world.audit_rows())
