"""The agent page (/agent) in a real headless Chromium on the lab: a SIPp call reaches the
agent's queue, the page pops the caller's masked number and their previous contacts, and
its Pause and Ready buttons change the agent's state over the agents API."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import insert

from ccbridge.access.passwords import hash_password
from ccbridge.access.users import add_user
from ccbridge.app import Bridge
from ccbridge.config import Config
from ccbridge.lab.sipp import Agent, place_calls
from ccbridge.lab.sites import Lab
from ccbridge.logs import mask_number
from ccbridge.records.callid import make
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.schema import calls
from tests.cdp import Chromium
from tests.integration.conftest import BridgeFactory, without_held_routes
from tests.integration.test_records_lab import store_config
from tests.polling import until

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
CARE_IN = "+918000000004"  # care: no static members, received at bangalore
AGENT = "roam1"
CALLER = "+919812345678"
PASSWORD = "agent page password"


async def prepare_store(config: Config) -> None:
    """The agent's user, and two earlier calls from the caller within the last 30 days."""
    engine = make_engine(config.store)
    now = datetime.now(UTC)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_user(
                conn,
                AGENT,
                kind="user",
                role="agent",
                sites=[],
                agent=AGENT,
                password_hash=await hash_password(PASSWORD),
                now=now,
            )
            await conn.execute(
                insert(calls),
                [
                    {
                        "call_id": make("bangalore", now - timedelta(days=d), d),
                        "entry_site": "bangalore",
                        "arrived_at": now - timedelta(days=d),
                        "caller_number": CALLER,
                        "outcome": "answered",
                        "agent": "blr-agent1",
                    }
                    for d in (2, 9)
                ],
            )
    finally:
        await engine.dispose()


async def agents_api(bridge: Bridge, path: str, body: dict[str, Any]) -> None:
    token = bridge.config.bridge.api_token
    assert token is not None
    url = f"http://127.0.0.1:{bridge.http_port}/api/v1/agents/{AGENT}/{path}"
    auth = {"Authorization": f"Bearer {token.reveal()}"}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=auth) as r:
        assert r.status == 200, await r.text()


def care(bridge: Bridge) -> tuple[int, int]:
    q = bridge.state.sites["bangalore"].queues.get("care-en")
    return (q.logged_in, q.paused) if q else (0, 0)


async def test_the_agent_page_pops_the_masked_caller_and_history_and_sets_state(
    lab: Lab,
    lab_config: Config,
    agents: dict[str, Agent],
    bridge_at: BridgeFactory,
    tmp_path: Path,
) -> None:
    _, settings = store_config(tmp_path)
    # No held routes: the call asks the bridge, and their recomputation (CPU-heavy for a
    # moment at start) does not share the two cores with Chromium starting up.
    config = without_held_routes(replace(lab_config, store=settings))
    # The pop's history is asked with a 0.5 s bound by default, and a history that misses
    # it is shown "unavailable" (by design). On a loaded 2-core machine the first query on
    # a fresh SQLite file (aiosqlite's thread starting, the schema read) took longer: this
    # test is about the page showing the history, so it gives the store 5 s.
    config = replace(config, screen_pop=replace(config.screen_pop, history_timeout=5.0))
    await prepare_store(config)
    # The browser first: its start-up burst is over before the bridge's loop is timed.
    async with (
        Chromium(tmp_path / "chromium") as page,
        bridge_at(WEDNESDAY_MORNING, config=config) as bridge,
    ):
        await agents_api(bridge, "login", {"site": "bangalore", "queues": ["care-en"]})
        try:
            await until(lambda: care(bridge) == (1, 0), 10, "the agent logged in")
            await page.goto(f"http://127.0.0.1:{bridge.http_port}/agent")
            await page.js(
                f"document.getElementById('user').value = {json.dumps(AGENT)};"
                f"document.getElementById('password').value = {json.dumps(PASSWORD)};"
                "document.getElementById('login').requestSubmit(); true"
            )
            await page.wait_js("document.getElementById('stream').textContent === 'live'", "live")

            result = await asyncio.to_thread(
                place_calls,
                "127.0.1.1:5060",
                CARE_IN,
                caller=CALLER,
                duration_ms=2000,
                max_seconds=20,
                local_port=6191,
            )
            assert result.ok, result.output[-2000:]
            shown = json.dumps(mask_number(CALLER))
            await page.wait_js(
                f"document.getElementById('caller').textContent === {shown}", "the popped caller"
            )
            assert await page.text("history-count") == "2 in 30 days"
            assert await page.text("history-last") == "answered / blr-agent1"
            assert (await page.text("queue")).startswith("care-en")
            assert await page.text("did") == "+918000000004 (tollfree)"

            await page.js("document.getElementById('pause').click(); true")
            await until(lambda: care(bridge) == (1, 1), 10, "paused from the page")
            await page.js("document.getElementById('ready').click(); true")
            await until(lambda: care(bridge) == (1, 0), 10, "ready from the page")
        finally:
            await agents_api(bridge, "logout", {"site": "bangalore"})
