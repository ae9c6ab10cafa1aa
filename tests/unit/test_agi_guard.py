"""The AGI guard: its config (and garbage in it), the haproxy.cfg rendered per site (checked
by the real HAProxy), the URLs the dialplan dials, and the bridge's `health` route."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ccbridge.agi import health as agi_health
from ccbridge.agi.server import FastAgiServer, SessionOutcome
from ccbridge.config import Config, ConfigError, parse_config
from ccbridge.config.model import LOOKUP_GUARD_MARGIN, HostPort
from ccbridge.render import GUARD_FILE, render_site

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"
LAB_GUARD_LINE = "  agi_guard: {port: 4580, route_timeout: 1.0}"


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "ami-secret")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "token")


def with_guard(guard: str, watchdog: str | None = None) -> str:
    """The lab config with other `agi_guard` (and `watchdog`) lines."""
    text = LAB.read_text()
    assert LAB_GUARD_LINE in text
    text = text.replace(LAB_GUARD_LINE, guard)
    if watchdog is not None:
        text = text.replace("  watchdog: {timeout: 1.0}", watchdog)
    return text


def parse(text: str) -> Config:
    return parse_config(text, "deploy.yaml", REPO / "examples")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# -- config ------------------------------------------------------------------------------


def test_lab_config_has_the_guard_with_defaults_filled_in() -> None:
    config = parse(LAB.read_text())
    guard = config.bridge.agi_guard
    assert guard is not None
    assert (guard.port, guard.lookup_port, guard.route_timeout) == (4580, 4581, 1.0)
    assert config.bridge.guard_servers == (HostPort("127.0.0.1", 4573),)
    assert config.self_service is not None
    budget = config.self_service.budget
    assert config.lookup_guard_timeout() == pytest.approx(budget + LOOKUP_GUARD_MARGIN)
    assert config.bridge.watchdog.timeout == 1.0


def test_guard_off_or_absent_is_the_direct_url() -> None:
    for text in (with_guard("  agi_guard: false"), with_guard("")):
        config = parse(text)
        assert config.bridge.agi_guard is None
        files = render_site(config, config.site("bangalore"))
        assert GUARD_FILE not in files
        assert "CCB_AGI_URL=agi://127.0.0.1:4573/route" in files["extensions.conf"]
        assert "AGI(agi://127.0.0.1:4573/lookup?" in files["ivr.conf"]


def test_guard_true_takes_every_default() -> None:
    config = parse(with_guard("  agi_guard: true"))
    assert config.bridge.agi_guard is not None
    assert config.bridge.agi_guard.port == 4580 and config.bridge.agi_guard.servers == ()


@pytest.mark.parametrize(
    ("guard", "key", "message"),
    [
        ("  agi_guard: 4580", "bridge.agi_guard", "expected true, false or a mapping, got int"),
        ("  agi_guard: {port: 0}", "bridge.agi_guard.port", "0 is out of range 1..65535"),
        ("  agi_guard: {port: x}", "bridge.agi_guard.port", "expected a whole number"),
        ("  agi_guard: {prot: 1}", "bridge.agi_guard.prot", "(did you mean 'port'?)"),
        (
            "  agi_guard: {port: 4580, lookup_port: 4580}",
            "bridge.agi_guard.lookup_port",
            "needs a port of its own",
        ),
        ("  agi_guard: {route_timeout: 0}", "bridge.agi_guard.route_timeout", "out of range"),
        ("  agi_guard: {route_timeout: '1s'}", "bridge.agi_guard.route_timeout", "a number"),
        (
            "  agi_guard: {connect_timeout: 2.5}",
            "bridge.agi_guard.connect_timeout",
            "2.5 is out of range 0.01..1.9",
        ),
        ("  agi_guard: {servers: []}", "bridge.agi_guard.servers", "non-empty list"),
        ("  agi_guard: {servers: [nope]}", "bridge.agi_guard.servers[0]", "HOST:PORT"),
        (
            "  agi_guard: {servers: ['10.0.0.1:4573', '10.0.0.1:4573']}",
            "bridge.agi_guard.servers[1]",
            "listed twice",
        ),
        (
            "  agi_guard: {port: 5060}",
            "bridge.agi_guard.port",
            "port 5060 is already SIP on site bangalore's address 127.0.1.1",
        ),
        (
            "  agi_guard: {port: 4580, lookup_timeout: 1.0}",
            "bridge.agi_guard.lookup_timeout",
            "shorter than a self-service lookup's worst case (2.2s",
        ),
    ],
)
def test_bad_guard_settings_name_file_line_and_key(guard: str, key: str, message: str) -> None:
    text = with_guard(guard)
    found = problems(text)
    line = line_of(text, guard.strip())
    assert any(p.startswith(f"deploy.yaml:{line}: {key}: ") and message in p for p in found), found


@pytest.mark.parametrize(
    ("watchdog", "key", "message"),
    [
        ("  watchdog: {timeout: 0.1}", "bridge.watchdog.timeout", "out of range 0.2..600"),
        ("  watchdog: []", "bridge.watchdog", "expected a mapping, got a list"),
        ("  watchdog: {timout: 1}", "bridge.watchdog.timout", "did you mean 'timeout'?"),
        (
            "  watchdog: {restart_delay: 5, max_restart_delay: 1}",
            "bridge.watchdog.max_restart_delay",
            "shorter than restart_delay 5",
        ),
    ],
)
def test_bad_watchdog_settings_name_file_line_and_key(
    watchdog: str, key: str, message: str
) -> None:
    text = with_guard(LAB_GUARD_LINE, watchdog)
    found = problems(text)
    line = line_of(text, watchdog.strip())
    assert any(p.startswith(f"deploy.yaml:{line}: {key}: ") and message in p for p in found), found


def test_guard_and_watchdog_problems_are_reported_together() -> None:
    text = with_guard("  agi_guard: {port: -1}", "  watchdog: {timeout: 'x'}")
    found = problems(text)
    assert any("bridge.agi_guard.port" in p for p in found)
    assert any("bridge.watchdog.timeout" in p for p in found)


def test_check_command_reports_a_bad_guard_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "deploy.yaml"
    text = with_guard("  agi_guard: {route_timeout: -3}").replace(
        "../.lab/secrets", str(REPO / ".lab" / "secrets")
    )
    bad.write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "ccbridge.cli", "check", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    line = line_of(text, "agi_guard:")
    assert f"{bad}:{line}: bridge.agi_guard.route_timeout: -3 is out of range" in out.stderr
    assert "Traceback" not in out.stderr


# -- rendering ---------------------------------------------------------------------------


def test_each_site_dials_its_own_guard() -> None:
    config = parse(LAB.read_text())
    for n, site in enumerate(config.sites, 1):
        files = render_site(config, site)
        assert f"CCB_AGI_URL=agi://127.0.{n}.1:4580/route" in files["extensions.conf"]
        assert f"AGI(agi://127.0.{n}.1:4581/lookup?" in files["ivr.conf"]
        cfg = files[GUARD_FILE]
        assert f"bind 127.0.{n}.1:4580" in cfg and f"bind 127.0.{n}.1:4581" in cfg


def _backend(cfg: str, name: str) -> str:
    return cfg.split(f"\nbackend {name}\n")[1].split("\nfrontend ")[0]


def test_route_and_lookup_have_their_own_timeouts() -> None:
    config = parse(LAB.read_text())
    cfg = render_site(config, config.site("bangalore"))[GUARD_FILE]
    route, lookup = _backend(cfg, "ccb-route"), _backend(cfg, "ccb-lookup")
    assert "timeout server 1000ms" in route
    assert "timeout server 3200ms" in lookup  # the lookup's 2.2 s worst case + 1 s
    assert "server bridge1 127.0.0.1:4573 check" in route
    assert "server bridge1 127.0.0.1:4573 track ccb-route/bridge1" in lookup
    assert "on-marked-down shutdown-sessions" in cfg  # a bridge marked down frees its calls
    assert "retries 0" in cfg  # one bridge: a refused connect falls back at once
    # the check is a FastAGI request for `health`, answered as Asterisk would
    request = re.search(r"tcp-check send-binary ([0-9a-f]+)\n", route)
    assert request is not None
    assert bytes.fromhex(request.group(1)).decode() == agi_health.check_request()
    assert f"tcp-check expect string {agi_health.COMMAND.split()[-1]}" in route


def test_several_bridges_are_balanced_and_retried_elsewhere() -> None:
    config = parse(with_guard("  agi_guard: {servers: ['10.0.0.5:4573', '10.0.0.6:4573']}"))
    cfg = render_site(config, config.site("dhaka"))[GUARD_FILE]
    route = _backend(cfg, "ccb-route")
    assert "server bridge1 10.0.0.5:4573 check" in route
    assert "server bridge2 10.0.0.6:4573 check" in route
    assert "retries 1" in cfg and "option redispatch 1" in cfg


@pytest.mark.parametrize(
    "guard",
    [LAB_GUARD_LINE, "  agi_guard: {servers: ['10.0.0.5:4573', '10.0.0.6:4573']}"],
)
def test_haproxy_accepts_the_rendered_config(guard: str, tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(haproxy).exists(), "HAProxy is missing: make test installs it (apt haproxy)"
    config = parse(with_guard(guard))
    for site in config.sites:
        path = tmp_path / f"{site.name}.cfg"
        path.write_text(render_site(config, site)[GUARD_FILE])
        out = subprocess.run(
            [haproxy, "-c", "-f", str(path)], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Configuration file is valid" in out.stdout + out.stderr
        assert "WARNING" not in out.stdout + out.stderr, out.stdout + out.stderr


# -- the bridge's health route -------------------------------------------------------------


@pytest.mark.parametrize(
    ("synced", "says"), [(True, agi_health.COMMAND), (False, agi_health.SYNCING)]
)
async def test_health_route_answers_the_guards_check(synced: bool, says: str) -> None:
    """Alive once the bridge's first sync is done; before it, a line the guard's
    `expect string` does not match (the check fails: no calls for a bridge still syncing)."""
    assert agi_health.COMMAND.split()[-1] not in agi_health.SYNCING
    ends: list[tuple[str, SessionOutcome]] = []
    server = FastAgiServer(
        {agi_health.ROUTE: agi_health.health_route(lambda: synced)},
        port=0,
        on_session_end=lambda route, outcome, _s: ends.append((route, outcome)),
    )
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(agi_health.check_request().encode())
        line = await asyncio.wait_for(reader.readline(), 2)
        assert line.decode().strip() == says
        writer.write((agi_health.REPLY + "\n").encode())
        assert await asyncio.wait_for(reader.read(), 2) == b""  # done: the bridge closes
        writer.close()
        for _ in range(100):
            if ends:
                break
            await asyncio.sleep(0.01)
    assert ends == [(agi_health.ROUTE, SessionOutcome.OK)]
