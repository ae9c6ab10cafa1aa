"""FastAGI only from the sites' addresses and `bridge.agi_allow`: others dropped and counted."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import pytest

from ccbridge.agi.allow import SourceAllowlist, allowlist, site_addresses
from ccbridge.agi.server import AgiSession, FastAgiServer
from ccbridge.config import load_config
from ccbridge.config.model import Config
from tests.polling import until

REPO = Path(__file__).resolve().parents[2]
OUTSIDER = "127.0.0.9"  # on loopback, but neither a site's address nor allowed


def lab_config() -> Config:
    return load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False)


def test_the_allowlist_is_the_sites_addresses_and_agi_allow() -> None:
    config = lab_config()
    assert site_addresses(config) == ("127.0.1.1", "127.0.2.1", "127.0.3.1")
    allowed = allowlist(config)
    for host in ("127.0.1.1", "127.0.2.1", "127.0.3.1", "127.0.0.1", "::ffff:127.0.2.1"):
        assert host in allowed, host
    for host in (OUTSIDER, "10.0.0.1", "::1", "", "not-an-address", "127.0.1.1 ", None, 7):
        assert host not in allowed, host


def test_networks_and_ipv6_entries() -> None:
    allowed = SourceAllowlist(["10.1.0.0/16", "2001:db8::/32", "192.0.2.7"])
    assert "10.1.200.3" in allowed and "10.2.0.1" not in allowed
    assert "2001:db8::5" in allowed and "fe80::1%eth0" not in allowed
    assert "192.0.2.7" in allowed and "::ffff:10.1.0.9" in allowed


async def _hello(session: AgiSession) -> None:
    await session.set_variable("CCB_OK", "1")


def _connect_from(source: str, port: int, host: str = "127.0.0.1") -> bytes:
    """A FastAGI request from ``source`` (any 127/8 address is this machine's) to
    ``host:port``; what the server said before it closed (blocking: run in a thread)."""
    with socket.create_connection((host, port), timeout=3, source_address=(source, 0)) as s:
        try:
            s.sendall(
                b"agi_network: yes\nagi_network_script: route\nagi_request: agi://x/route\n\n"
            )
            got = b""
            while chunk := s.recv(4096):
                got += chunk
                if b"\n" in got:
                    s.sendall(b"200 result=1\n")
            return got
        except ConnectionResetError:
            return b"<reset>"


async def test_a_connection_from_elsewhere_is_reset_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forbidden: list[None] = []
    server = FastAgiServer(
        {"route": _hello},
        "127.0.0.1",
        0,
        allow=SourceAllowlist(["127.0.0.1"]),
        on_forbidden=lambda: forbidden.append(None),
    )
    async with server:
        got = await asyncio.to_thread(_connect_from, OUTSIDER, server.port)
        assert got in (b"", b"<reset>")  # not one byte of FastAGI
        assert server.stats.rejected_source == 1 and len(forbidden) == 1
        assert server.stats.sessions_total == 0  # no session slot taken
        ok = await asyncio.to_thread(_connect_from, "127.0.0.1", server.port)
        assert b"SET VARIABLE CCB_OK" in ok
        assert server.stats.rejected_source == 1
    assert f"last from {OUTSIDER}" in caplog.text


async def test_the_bridge_counts_forbidden_fastagi_in_its_metrics(unused_tcp_port: int) -> None:
    from ccbridge.app import Bridge
    from ccbridge.clock import Clock

    config = lab_config()
    bridge_settings = dataclasses.replace(
        config.bridge,
        agi_listen=dataclasses.replace(config.bridge.agi_listen, port=unused_tcp_port),
    )
    bridge = Bridge(dataclasses.replace(config, bridge=bridge_settings), Clock())
    await bridge.agi.start()
    try:
        for _ in range(3):
            await asyncio.to_thread(_connect_from, OUTSIDER, unused_tcp_port)
        await until(lambda: bridge.agi.stats.rejected_source == 3, 2, "three forbidden")
        value = bridge.registry.get_sample_value("ccbridge_fastagi_forbidden_total")
        assert value == 3.0
    finally:
        await bridge.agi.stop()


def test_each_sites_guard_connects_from_an_allowed_address() -> None:
    """The AGI guard binds its connections to the bridge to its site's address, which the
    allowlist holds: no need to list the guards, whatever the host's routing picks."""
    from ccbridge.render import render_site

    config = lab_config()
    allowed = SourceAllowlist(site_addresses(config))
    for site in config.sites:
        cfg = render_site(config, site)["haproxy.cfg"]
        sources = [
            line.split()[1] for line in cfg.splitlines() if line.strip().startswith("source ")
        ]
        assert sources == [site.sip.host], (site.name, sources)
        assert sources[0] in allowed


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def test_a_real_guard_reaches_the_bridge_from_its_sites_address(tmp_path: Path) -> None:
    """HAProxy on bangalore's address, the bridge's FastAGI with the lab's allowlist and
    no `agi_allow` (so 127.0.0.1, where the test and HAProxy run, is not allowed): the
    guard's health checks and a call's session arrive from 127.0.1.1 and are served."""
    import shutil

    from ccbridge.agi import health as agi_health
    from ccbridge.config.model import AgiGuard, HostPort
    from ccbridge.render import render_site

    base = lab_config()
    agi = HostPort("127.0.0.1", _free_port())
    guard = AgiGuard(port=_free_port("127.0.1.1"), lookup_port=_free_port("127.0.1.1"))
    bridge = dataclasses.replace(
        base.bridge, agi_listen=agi, agi_url_host=agi, agi_guard=guard, agi_allow=()
    )
    config = dataclasses.replace(base, bridge=bridge)
    site = config.site("bangalore")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_site(config, site)["haproxy.cfg"])
    peers: list[str] = []

    async def route(session: AgiSession) -> None:
        peers.append("route")
        await session.set_variable("CCB_OK", "1")

    server = FastAgiServer(
        {"route": route, agi_health.ROUTE: agi_health.health_route(lambda: True)},
        agi.host,
        agi.port,
        allow=allowlist(config),
    )
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    async with server:
        proc = await asyncio.create_subprocess_exec(
            haproxy,
            "-db",
            "-f",
            str(cfg),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            # The guard marks the bridge up after its first health check answered.
            await until(lambda: server.stats.sessions_total >= 1, 5, "a health check")
            got = await asyncio.to_thread(_through_guard, site.sip.host, guard.port)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 5)
    assert b"SET VARIABLE CCB_OK" in got
    assert peers == ["route"] and server.stats.rejected_source == 0


def _through_guard(host: str, port: int) -> bytes:
    deadline = 5.0
    import time

    end = time.monotonic() + deadline
    while True:
        got = _connect_from("127.0.0.1", port, host)
        if got not in (b"", b"<reset>") or time.monotonic() > end:
            return got
        time.sleep(0.1)  # the guard has not marked the bridge up yet
