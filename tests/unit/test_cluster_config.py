"""`bridge.cluster` (issue 15): parsed with file:line errors, and rendered into the
dialplan as the FastAGI URLs ccb-route tries in order within the budget, hagi:// for
SRV, or the guard asked again when it balances over several bridges."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ccbridge import variables as v
from ccbridge.agi_guard import lookup_urls, route_urls
from ccbridge.config import Config, ConfigError, load_config
from ccbridge.config.model import HostPort
from ccbridge.render import render_site

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "t")
    return load_config(LAB)


def _with(tmp_path: Path, cluster: str, guard: bool = True) -> Path:
    text = LAB.read_text(encoding="utf-8")
    if not guard:
        text = text.replace("  agi_guard: {port: 4580, route_timeout: 1.0}\n", "")
    text = text.replace("  watchdog: {timeout: 1.0}\n", f"  watchdog: {{timeout: 1.0}}\n{cluster}")
    path = tmp_path / "lab.yaml"
    path.write_text(text.replace("../.lab/", str(REPO / ".lab") + "/"), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(path, resolve_secrets=False)
    return [str(p) for p in err.value.problems]


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("  cluster: {identity: 'has space'}\n", "bridge identity 'has space' must be"),
        ("  cluster: {identity: ''}\n", "must be 1-160"),
        ("  cluster: {identity: [1]}\n", "expected a string"),
        ("  cluster: {servers: []}\n", "non-empty list of HOST:PORT"),
        ("  cluster: {servers: [a:1, a:1]}\n", "listed twice"),
        ("  cluster: {servers: [nope]}\n", "expected HOST:PORT"),
        ("  cluster: {servers: ['a:0']}\n", "cannot be 0"),
        ("  cluster: {budget: 0}\n", "out of range 0.1..30"),
        ("  cluster: {budget: '2'}\n", "expected a number"),
        ("  cluster: {tries: 9}\n", "out of range 1..5"),
        ("  cluster: {heartbeat: 2, alive_after: 3}\n", "at least twice the heartbeat"),
        ("  cluster: {srv: bridges.example}\n", "the AGI guard is on"),
        ("  cluster: {what: 1}\n", "what"),
        ("  cluster: 7\n", "mapping"),
    ],
)
def test_bad_cluster_settings_name_the_key(tmp_path: Path, yaml: str, message: str) -> None:
    problems = _problems(_with(tmp_path, yaml))
    assert any("bridge.cluster" in p and message in p for p in problems), problems
    assert all(":" in p.split(" ", 1)[0] for p in problems)  # file:line first


def test_bad_srv_names_are_refused(tmp_path: Path) -> None:
    for bad in ("-x.example", "a..b", "has space", "x" * 70 + ".example", "a.b:4573"):
        problems = _problems(_with(tmp_path, f"  cluster: {{srv: '{bad}'}}\n", guard=False))
        assert any("expected a DNS name" in p for p in problems), (bad, problems)


def test_defaults_keep_one_bridge_as_before(lab: Config) -> None:
    c = lab.bridge.cluster
    assert c.identity is None and c.servers == () and c.srv is None
    site = lab.site("bangalore")
    assert route_urls(lab, site) == ("agi://127.0.1.1:4580/route",)  # its guard, once
    text = render_site(lab, site)["extensions.conf"]
    assert "CCB_AGI_URL=agi://127.0.1.1:4580/route" in text
    assert v.AGI_STARTED not in text and "CCB_AGI_URL_2" not in text


def _direct(lab: Config, **cluster: object) -> Config:
    return replace(
        lab,
        bridge=replace(lab.bridge, agi_guard=None, cluster=replace(lab.bridge.cluster, **cluster)),
    )


def test_a_list_is_tried_in_order_within_the_budget(lab: Config) -> None:
    servers = (HostPort("10.0.0.5", 4573), HostPort("10.0.0.6", 4573), HostPort("h", 1))
    config = _direct(lab, servers=servers, budget=1.5)
    site = config.site("bangalore")
    assert route_urls(config, site) == tuple(f"agi://{s}/route" for s in servers)
    text = render_site(config, site)["extensions.conf"]
    assert "CCB_AGI_URL=agi://10.0.0.5:4573/route" in text
    assert "CCB_AGI_URL_2=agi://10.0.0.6:4573/route" in text
    assert "CCB_AGI_URL_3=agi://h:1/route" in text
    route = text.split("[ccb-route]", 1)[1].split("exten =>", 2)[1]
    steps = [line for line in route.splitlines() if "AGI(" in line or "nobridge" in line]
    # start, then AGI 1; check the budget, AGI 2; check, AGI 3; then no bridge
    assert [("AGI(${CCB_AGI_URL" in s, "> 1500]?nobridge" in s) for s in steps] == [
        (True, False),
        (False, True),
        (True, False),
        (False, True),
        (True, False),
        (False, False),
    ], steps
    assert "n(nobridge)" in route and f"Set({v.AGI_STARTED}=" in route


def test_srv_dials_one_hagi_url(lab: Config) -> None:
    config = _direct(lab, srv="bridges.ccb.test")
    site = config.site("dhaka")
    assert route_urls(config, site) == ("hagi://bridges.ccb.test/route",) * 2
    text = render_site(config, site)["extensions.conf"]
    assert "CCB_AGI_URL=hagi://bridges.ccb.test/route" in text
    assert "CCB_AGI_URL_2=hagi://bridges.ccb.test/route" in text  # a dropped session
    one = _direct(lab, srv="bridges.ccb.test", tries=1)
    assert route_urls(one, site) == ("hagi://bridges.ccb.test/route",)
    ivr = render_site(config, site)["ivr.conf"]
    assert "hagi://bridges.ccb.test/lookup" in ivr or "lookup" not in ivr


def test_the_guard_is_asked_again_when_it_balances_several_bridges(lab: Config) -> None:
    two = (HostPort("127.0.0.1", 4573), HostPort("127.0.0.1", 4574))
    config = replace(
        lab, bridge=replace(lab.bridge, cluster=replace(lab.bridge.cluster, servers=two))
    )
    site = config.site("bangalore")
    assert route_urls(config, site) == ("agi://127.0.1.1:4580/route",) * 2
    files = render_site(config, site)
    assert "server bridge1 127.0.0.1:4573 check" in files["haproxy.cfg"]
    assert "server bridge2 127.0.0.1:4574 check" in files["haproxy.cfg"]
    assert "option redispatch" in files["haproxy.cfg"]
    assert "CCB_AGI_URL_2=agi://127.0.1.1:4580/route" in files["extensions.conf"]


def test_a_lookup_tries_the_list_in_order_within_the_budget(lab: Config) -> None:
    servers = (HostPort("10.0.0.5", 4573), HostPort("10.0.0.6", 4573))
    config = _direct(lab, servers=servers, budget=1.5)
    site = config.site("bangalore")
    assert lookup_urls(config, site) == tuple(f"agi://{s}/lookup" for s in servers)
    ivr = render_site(config, site)["ivr.conf"]
    assert "[ccb-ivr-l-" in ivr, "the lab config has a self-service lookup"
    lookup = ivr.split("[ccb-ivr-l-", 1)[1].split("exten => answer-", 1)[0]
    steps = [line for line in lookup.splitlines() if "AGI(agi://" in line or "?asked" in line]
    # AGI 1; then ask the next only while no result came and within the budget
    assert steps == [
        f" same => n,AGI(agi://10.0.0.5:4573/lookup?{steps[0].split('?', 1)[1]}",
        f' same => n,GotoIf($["${{{v.LOOKUP_RESULT}}}"!="" | ${{STRFTIME(,UTC,%s%3q)}}'
        f" - ${{{v.AGI_STARTED}}} > 1500]?asked)",
        f" same => n,AGI(agi://10.0.0.6:4573/lookup?{steps[2].split('?', 1)[1]}",
    ], steps
    assert "n(asked)" in lookup and f"Set({v.AGI_STARTED}=" in lookup
    # one bridge (the lab's guard): one AGI, as before
    one = render_site(lab, lab.site("bangalore"))["ivr.conf"]
    assert v.AGI_STARTED not in one.split("[ccb-ivr-l-", 1)[1].split("exten => answer-", 1)[0]
