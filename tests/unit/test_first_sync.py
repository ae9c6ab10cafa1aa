"""A bridge takes calls only after its first sync of every site it reaches (issue 15): the
AGI guard's health check (a real HAProxy, the rendered haproxy.cfg) fails until then and
/readyz says `sites_synced: false`; a site that is down or hung at start does not hold
the bridge back, and a later resync of one site does not take the bridge out again."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccbridge.agi import health as agi_health
from ccbridge.ami.client import LinkState
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import Config, load_config
from ccbridge.config.model import AgiGuard, HostPort
from ccbridge.render import render_site
from tests.agiclient import ask_route
from tests.amifake import FakeAmi
from tests.polling import until, until_async

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
BANGALORE = "127.0.1.1"  # the guard's (and so the checks') source address: allowed


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, FakeAmi]]:
    """Bangalore and manila as fake AMI servers answering an empty QueueStatus; dhaka is
    a port nobody listens on (a site down)."""
    out = {name: FakeAmi("ccbridge", "x") for name in ("bangalore", "manila")}
    for fake in out.values():
        fake.script_list("QueueStatus", "QueueStatusComplete", [])
        await fake.start()
    try:
        yield out
    finally:
        for fake in out.values():
            await fake.close()


def config_for(
    fakes: dict[str, FakeAmi], monkeypatch: pytest.MonkeyPatch, action_timeout: float = 5.0
) -> Config:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    base = load_config(REPO / "examples" / "lab.yaml")
    down = free_port()
    sites = tuple(
        dataclasses.replace(
            s,
            ami=dataclasses.replace(
                s.ami,
                host="127.0.0.1",
                port=fakes[s.name].port if s.name in fakes else down,
                action_timeout=action_timeout,
            ),
        )
        for s in base.sites
    )
    agi = HostPort("127.0.0.1", free_port())
    guard = AgiGuard(
        port=free_port(BANGALORE), lookup_port=free_port(BANGALORE), check_interval=0.1
    )
    bridge = dataclasses.replace(
        base.bridge,
        agi_listen=agi,
        agi_url_host=agi,
        http_listen=HostPort("127.0.0.1", 0),
        agi_guard=guard,
        agi_allow=("127.0.0.1",),  # the test asks a route directly too
    )
    return dataclasses.replace(base, sites=sites, bridge=bridge, edge=None)


@asynccontextmanager
async def started(config: Config) -> AsyncIterator[Bridge]:
    bridge = Bridge(config, Clock(T0))
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()


@asynccontextmanager
async def guard(config: Config, folder: Path) -> AsyncIterator[AgiGuard]:
    """Bangalore's AGI guard: the real HAProxy on the haproxy.cfg rendered for it."""
    assert config.bridge.agi_guard is not None
    cfg = folder / "haproxy.cfg"
    cfg.write_text(render_site(config, config.site("bangalore"))["haproxy.cfg"])
    proc = await asyncio.create_subprocess_exec(
        shutil.which("haproxy") or "/usr/sbin/haproxy",
        *("-db", "-f", str(cfg)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield config.bridge.agi_guard
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 5)


def health_through(host: str, port: int) -> str:
    """What a guard check's request through the guard gets back: the bridge's first
    line, or "" when the guard has no bridge in service (it closes at once)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            s.settimeout(1.0)
            s.sendall(agi_health.check_request().encode())
            got = b""
            while b"\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    return ""
                got += chunk
            s.sendall((agi_health.REPLY + "\n").encode())
            return got.decode().strip()
    except OSError:
        return ""


def readyz(bridge: Bridge) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{bridge.http_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def through(port: int) -> str:
    return await asyncio.to_thread(health_through, BANGALORE, port)


async def forwarded(port: int) -> bool:
    return await through(port) == agi_health.COMMAND


async def test_the_guard_forwards_only_after_the_first_sync_of_every_reachable_site(
    fakes: dict[str, FakeAmi], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fakes["bangalore"].hold("QueueStatus")  # bangalore's sync is slow; dhaka is down
    config = config_for(fakes, monkeypatch)
    async with started(config) as bridge, guard(config, tmp_path) as g:
        links = bridge.links
        await until(
            lambda: links["manila"].ready and links["dhaka"].state is LinkState.DOWN,
            5,
            "manila synced and dhaka's first connect refused",
        )
        await until(lambda: bool(fakes["bangalore"].actions_named("QueueStatus")), 5, "a sync")
        # The guard has checked the bridge several times (every 0.1 s) and keeps it out.
        checks = bridge.agi.stats.sessions_total
        await until(
            lambda: bridge.agi.stats.sessions_total >= checks + 3, 5, "three more guard checks"
        )
        assert await through(g.port) == ""  # no bridge in service: closed at once
        status, body = await asyncio.to_thread(readyz, bridge)
        assert status == 503 and body["checks"] == {
            "config_loaded": True,
            "fastagi_listening": True,
            "site_connected": True,
            "sites_synced": False,
        }, body
        assert bridge.sessions_served == 0  # the checks are not calls
        # Asked directly (no guard), the bridge still answers; /readyz counts such calls.
        port = config.bridge.agi_listen.port
        await ask_route("127.0.0.1", port, "+918000000001", "+919812345678", "bangalore")
        status, body = await asyncio.to_thread(readyz, bridge)
        assert body["detail"]["routing"] == {"sessions_before_first_sync": 1}, body

        fakes["bangalore"].release()
        await until(lambda: links["bangalore"].ready, 5, "bangalore synced")
        await until_async(
            lambda: forwarded(g.port), 5, "the guard forwarding to the bridge", interval=0.05
        )
        status, body = await asyncio.to_thread(readyz, bridge)
        assert status == 200 and body["checks"]["sites_synced"] is True, body

        # A resync of one site later (its link dropped) keeps the bridge in service.
        await fakes["bangalore"].cut()
        fakes["bangalore"].hold("QueueStatus")
        await until(lambda: not links["bangalore"].ready, 5, "bangalore's link dropped")
        assert bridge.first_sync_done()
        assert await through(g.port) == agi_health.COMMAND


async def test_a_site_hung_at_start_does_not_keep_the_bridge_out(
    fakes: dict[str, FakeAmi], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bangalore accepts the connection and never says a word (a SIGSTOPped Asterisk): its
    first attempt ends at the action timeout, and the bridge is ready without it."""
    fakes["bangalore"].hang()
    config = config_for(fakes, monkeypatch, action_timeout=0.5)
    async with started(config) as bridge:
        assert not bridge.first_sync_done()
        await until(bridge.first_sync_done, 5, "the first sync done without bangalore")
        assert not bridge.links["bangalore"].connected and bridge.links["manila"].ready
        status, body = await asyncio.to_thread(readyz, bridge)
        assert status == 200 and body["checks"]["sites_synced"] is True, body
    fakes["bangalore"].hang(False)  # its connection can end: a quick teardown


async def test_the_synced_state_is_frozen_out_of_the_collector_once_every_site_is_in(
    fakes: dict[str, FakeAmi], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody asks (no guard check, no call): the last site's sync itself ends the first
    sync, and what the bridge holds then moves to the collector's permanent generation."""
    config = config_for(fakes, monkeypatch)
    gc.unfreeze()
    try:
        async with started(config) as bridge:
            frozen_at_start = gc.get_freeze_count()
            assert frozen_at_start > 0  # Bridge.start froze what start-up built
            links = bridge.links
            await until(
                lambda: links["bangalore"].ready and links["manila"].ready, 5, "both synced"
            )
            await until(lambda: bridge._first_sync_done, 5, "the first sync done, unasked")
            assert gc.get_freeze_count() > frozen_at_start
    finally:
        gc.unfreeze()
