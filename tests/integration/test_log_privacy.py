"""The bridge's logs carry no full caller number, token, password or secret.

A `ccbridge run` bridge (at INFO, its default) takes calls into every site, over
a plain and a TLS trunk, AMI over TLS and plain, agent changes with the API token, refused
tokens and a route preview with a caller number; then its whole output, and every bridge
log of the session so far, is scanned (tests/logscan.py). The lab fixture scans the whole
session's bridge logs once more when the run ends.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import aiohttp
import pytest

from ccbridge.config import Config
from ccbridge.lab.demo import BridgeProcess
from ccbridge.lab.sipp import Agent, place_calls
from ccbridge.lab.sites import Lab
from ccbridge.logs import mask_number
from tests.integration.conftest import SessionLogs, guards_forward
from tests.logscan import caller_needles, deployment_secrets, scan

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # every site open
# (receiving site, DID, caller): to dhaka over UDP, to manila over TLS, local, dhaka's own.
CALLS = (
    ("127.0.1.1:5060", "+918000000001", "+8801719283746"),
    ("127.0.1.1:5060", "+918000000001", "+639178273645"),
    ("127.0.1.1:5060", "+918000000001", "+919823746501"),
    ("127.0.2.1:5060", "+8809600000001", "+8801556473829"),
)
PREVIEW_CALLER = "+447700900123"
AGENT = "roam1"


@pytest.fixture
def bridge_process(lab: Lab) -> Iterator[BridgeProcess]:
    # INFO, as `ccbridge run` logs by default. (At DEBUG, asyncio's own debug lines about
    # every socket, under the slow-callback gate's debug loop, made callbacks pass 50 ms
    # on this shared machine; they carry no call data.)
    proc = BridgeProcess(lab, WEDNESDAY_MORNING, log_level="INFO")
    try:
        yield proc
    finally:
        proc.stop()


async def _post(url: str, body: dict[str, object], token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        await r.read()
        return r.status


async def test_a_lab_run_with_calls_logs_no_caller_number_token_or_secret(
    lab: Lab,
    lab_config: Config,
    agents: dict[str, Agent],
    bridge_process: BridgeProcess,
    session_logs: SessionLogs,
) -> None:
    await bridge_process.start(ready_within=30)
    await guards_forward(lab)
    assert lab_config.bridge.api_token is not None
    token = lab_config.bridge.api_token.reveal()
    wrong = secrets.token_hex(16)
    api = bridge_process.base + "/api/v1"

    for i, (site, did, caller) in enumerate(CALLS):
        result = await asyncio.to_thread(
            place_calls,
            site,
            did,
            caller=caller,
            calls=1,
            duration_ms=1200,
            local_port=6180 + 2 * i,
            max_seconds=20,
        )
        assert result.ok, result.output[-2000:]
    login = f"{api}/agents/{AGENT}/login"
    assert await _post(login, {"site": "bangalore", "queues": ["care-en"]}, token) == 200
    logout = {"site": "bangalore", "queues": ["care-en"]}
    assert await _post(f"{api}/agents/{AGENT}/logout", logout, token) == 200
    for bad in (wrong, f"{token}x", "", token[:-1]):
        assert await _post(login, {"site": "bangalore", "queues": ["care-en"]}, bad) == 401
    preview = {"did": "+918000000001", "caller": PREVIEW_CALLER}
    assert await _post(f"{api}/route/preview", preview, token) == 200
    bridge_process.stop()

    own = bridge_process.log_text()
    callers = [c for _, _, c in CALLS] + [PREVIEW_CALLER]
    # Not vacuous: each call was logged, masked, by the bridge that routed it.
    for caller in callers[:-1]:
        assert mask_number(caller) in own, f"no log line for the call from {mask_number(caller)}"
    assert "AMI logged in" in own and deployment_secrets(lab_config)
    needles = {
        **caller_needles(callers),
        "a refused token": wrong,
        "the API token with a character added": f"{token}x",
    }
    leaks = scan("this bridge's log", own, lab_config, needles)
    for name, text in session_logs.texts():
        leaks += scan(name, text, lab_config, needles)
    assert not leaks, "\n".join(str(leak) for leak in leaks[:20])
