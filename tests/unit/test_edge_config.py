"""The SIP edge's config (and garbage in it) and what `ccbridge render` writes for it:
kamailio.cfg checked by the real Kamailio, dispatcher.list, the sites' carrier identify."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ccbridge.config import Config, ConfigError, parse_config
from ccbridge.config.edge import EDGE_DIR, EdgeAlgorithm
from ccbridge.config.model import HostPort
from ccbridge.edge.view import edge_view, serving_sites
from ccbridge.render import EDGE_CONFIG, EDGE_LIST, render_all, render_edge, render_site
from ccbridge.variables import EDGE_SITE_LOST

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"
LAB_EDGE = "edge:\n  enabled: false\n  sip: 127.0.9.1:5060\n  rpc: 127.0.9.1:5080\n"


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "ami-secret")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "token")


def with_edge(lines: str) -> str:
    """The lab config with its whole edge section replaced by ``lines``."""
    text = LAB.read_text()
    assert LAB_EDGE in text, "examples/lab.yaml's edge section changed"
    start = text.index(LAB_EDGE)
    return text[:start] + lines + text[text.index("\n\n", start) :]


def without_edge() -> str:
    return with_edge("")


def parse(text: str) -> Config:
    return parse_config(text, "deploy.yaml", REPO / "examples")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


# -- config ------------------------------------------------------------------------------


def test_lab_config_has_the_edge_off_with_its_addresses() -> None:
    edge = parse(LAB.read_text()).edge
    assert edge is not None and not edge.enabled
    assert edge.sip == HostPort("127.0.9.1", 5060) and edge.rpc == HostPort("127.0.9.1", 5080)
    assert edge.rpc_url == "http://127.0.9.1:5080/RPC"
    assert edge.algorithm is EdgeAlgorithm.ROUND_ROBIN and edge.carrier_sources == ("127.0.0.1",)


def test_edge_false_or_absent_is_no_edge() -> None:
    assert parse(with_edge("edge: false")).edge is None
    assert parse(without_edge()).edge is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("edge: [127.0.9.1]\n", "edge: expected a mapping, got a list"),
        ("edge:\n  sip: 127.0.9.1:5060\n", "edge: missing required key 'rpc'"),
        (
            "edge:\n  sip: 127.0.9.1:5060\n  rpc: 127.0.9.1:5080\n  colour: red\n",
            "edge.colour: unknown key 'colour'",
        ),
        (
            "edge:\n  sip: 127.0.9.1:5060\n  rpc: 10.0.0.5:5080\n",
            "edge.rpc: the JSON-RPC listener has no authentication: it must be on a loopback "
            "address (127.0.0.0/8), not '10.0.0.5'",
        ),
        (
            "edge:\n  sip: 127.0.9.1:5060\n  rpc: localhost:5080\n",
            "must be on a loopback address",
        ),
        (
            "edge:\n  sip: 127.0.9.1:5060\n  rpc: 127.0.9.1:5060\n",
            "edge.rpc: 127.0.9.1:5060 is the edge's SIP address",
        ),
        (
            "edge:\n  sip: 127.0.2.1:5060\n  rpc: 127.0.9.1:5080\n",
            "edge.sip: 127.0.2.1:5060 is site dhaka's own SIP address",
        ),
        ("edge:\n  sip: nowhere\n  rpc: 127.0.9.1:5080\n", "edge.sip: expected HOST:PORT"),
        (
            "edge:\n  sip: edge.example:5060\n  rpc: 127.0.9.1:5080\n",
            "edge.sip: expected an IPv4 address (the sites identify the edge's calls by it), "
            "not 'edge.example'",
        ),
        ("edge:\n  sip: 127.0.9.1:5060\n  rpc: ::1:5080\n", "must be on a loopback address"),
        (
            "edge:\n  sip: 127.0.9.1:5060\n  rpc: 127.0.9.1:5080\n  algorithm: random\n",
            "edge.algorithm: algorithm must be one of round_robin, priority, got 'random'",
        ),
        (
            "edge:\n  sip: 127.0.9.1:5060\n  rpc: 127.0.9.1:5080\n  ring_timeout: 60\n",
            "edge.ring_timeout: 60s would cut calls waiting in bangalore's orders queues "
            "(max_wait 300s)",
        ),
        (
            "edge:\n  sip: 127.0.9.1:5060\n  rpc: 127.0.9.1:5080\n  invite_timeout: 0\n",
            "edge.invite_timeout: 0 is out of range 0.1..32",
        ),
        (
            "edge:\n  sip: 127.0.9.1:5060\n  rpc: 127.0.9.1:5080\n  install_dir: etc\n",
            "edge.install_dir: expected an absolute path without quotes, got 'etc'",
        ),
        (
            "edge:\n  sip: 127.0.9.1:5060\n  rpc: 127.0.9.1:5080\n  enabled: yes please\n",
            "edge.enabled: expected true or false",
        ),
        (
            'edge:\n  sip: 127.0.9.1:5060\n  rpc: 127.0.9.1:5080\n  carrier_sources: ["1.2.3.x"]\n',
            "edge.carrier_sources[0]: not an IP address or network: '1.2.3.x'",
        ),
        (
            "edge:\n  sip: 127.0.9.1:5060\n  rpc: 127.0.9.1:5080\n  carrier_sources: [127.0.0.1]\n"
            "  carrier_sources: [10.0.0.1]\n",
            "duplicate key 'carrier_sources'",
        ),
    ],
)
def test_garbage_in_the_edge_section_is_refused_with_its_key(lines: str, message: str) -> None:
    text = with_edge(lines)
    found = problems(text)
    assert any(message in p for p in found), found
    # every problem names the file and a line inside the edge section
    first = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("edge"))
    lines_named = [int(m.group(1)) for p in found if (m := re.match(r"deploy\.yaml:(\d+):", p))]
    assert lines_named and all(first <= n <= first + 6 for n in lines_named), found


# -- what is rendered ----------------------------------------------------------------------


def test_numbers_go_to_the_sites_that_serve_them_own_site_first() -> None:
    config = parse(LAB.read_text())
    view = edge_view(config)
    assert view is not None
    number = config.number("+8809600000001")
    assert number is not None
    assert serving_sites(config, number) == ("dhaka", "bangalore", "manila")
    care = config.number("+918000000004")
    assert care is not None and serving_sites(config, care) == ("bangalore", "dhaka")
    sets = {s.sites: s.id for s in view.sets}
    assert dict(view.numbers)["+918000000001"] == sets[("bangalore", "dhaka", "manila")]
    assert dict(view.numbers)["+918000000002"] == sets[("bangalore", "dhaka", "manila")]
    assert view.sets_of("manila") == tuple(s.id for s in view.sets if "manila" in s.sites)
    assert view.uris["dhaka"] == "sip:127.0.2.1:5060"


def test_dispatcher_list_has_every_set_with_priorities_in_order() -> None:
    config = parse(LAB.read_text())
    files = render_edge(config, install_dir="/srv/edge")
    rows = [line.split() for line in files[EDGE_LIST].splitlines() if line[:1].isdigit()]
    view = edge_view(config)
    assert view is not None
    expected = [
        [str(s.id), view.uris[site], "0", str(len(s.sites) - i), f"duid={site}"]
        for s in view.sets
        for i, site in enumerate(s.sites)
    ]
    assert rows == expected
    cfg = files[EDGE_CONFIG]
    assert 'modparam("dispatcher", "list_file", "/srv/edge/dispatcher.list")' in cfg
    for did, set_id in view.numbers:
        assert re.search(rf'case "{re.escape(did)}":\n\t+\$var\(set\) = {set_id};', cfg)
    assert 'ds_select_domain("$var(set)", "4")' in cfg
    assert 'modparam("tm", "fr_timer", 1000)' in cfg  # the lab's invite_timeout: 1.0
    assert 'is_in_subnet("$si", "127.0.0.1/32")' in cfg  # the lab's carrier source


def test_priority_algorithm_and_no_carrier_filter() -> None:
    text = with_edge("edge:\n  sip: 192.0.2.10:5060\n  rpc: 127.0.0.1:5080\n  algorithm: priority")
    cfg = render_edge(parse(text))[EDGE_CONFIG]
    assert 'ds_select_domain("$var(set)", "8")' in cfg
    assert "FROM_CARRIER" not in cfg
    assert 'list_file", "/etc/kamailio/dispatcher.list"' in cfg


def test_calls_in_setup_are_tracked_and_a_lost_site_moves_them_on() -> None:
    """Every branch to a site records its provisional replies (onreply_route SITE_REPLY),
    the failover path too; a lost site, told by the bridge or seen by the edge itself,
    runs SITE_LOST; the htables outlive ring_timeout; the 503 goes to the edge's own SIP
    address."""
    text = with_edge("edge:\n  sip: 192.0.2.10:5060\n  rpc: 127.0.0.1:5080\n  ring_timeout: 600.5")
    cfg = render_edge(parse(text))[EDGE_CONFIG]
    relays = cfg.count("route(RELAY);\n")
    assert cfg.count('t_on_reply("SITE_REPLY");') == cfg.count('t_on_failure("NEXT_SITE");') == 2
    assert relays >= 2 and "onreply_route[SITE_REPLY]" in cfg
    assert cfg.count("autoexpire=661") == 4  # ceil(600.5) + 60
    dst_down = cfg.split("event_route[dispatcher:dst-down]", 1)[1].split("}", 1)[0]
    assert "route(SITE_LOST);" in dst_down
    assert f'if ($hu == "{EDGE_SITE_LOST}")' in cfg
    assert 'send_data("sip:192.0.2.10:5060", ' in cfg
    # a lost call fails over whatever its branch's final reply was
    assert "$var(lost) != $null || t_branch_timeout()" in cfg


def test_every_site_takes_carrier_calls_from_the_edge() -> None:
    config = parse(LAB.read_text())  # the edge is off: the sites are ready for it anyway
    for site in config.sites:
        pjsip = render_site(config, site)["pjsip.conf"]
        identify = pjsip.split("[carrier-in-identify]", 1)[1].split("\n\n", 1)[0]
        assert "match=127.0.9.1" in identify and "match=127.0.0.1" in identify


def test_without_an_edge_nothing_is_rendered_for_it(tmp_path: Path) -> None:
    config = parse(without_edge())
    assert render_edge(config) == {}
    render_all(config, tmp_path)
    assert not (tmp_path / EDGE_DIR).exists()
    pjsip = render_site(config, config.sites[0])["pjsip.conf"]
    assert "127.0.9.1" not in pjsip


def test_kamailio_accepts_the_rendered_config(tmp_path: Path) -> None:
    kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
    assert Path(kamailio).exists(), "Kamailio is missing: make test installs it (apt kamailio)"
    config = parse(LAB.read_text())
    written = render_all(config, tmp_path)
    edge_dir = tmp_path / EDGE_DIR
    assert {edge_dir / EDGE_CONFIG, edge_dir / EDGE_LIST} <= set(written)
    # The list where the config looks for it (a real install puts both in install_dir).
    cfg = edge_dir / EDGE_CONFIG
    cfg.write_text(render_edge(config, install_dir=str(edge_dir))[EDGE_CONFIG])
    out = subprocess.run(
        [kamailio, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "config file ok" in (out.stdout + out.stderr).lower()


def test_kamailio_refuses_a_broken_template(tmp_path: Path) -> None:
    """The check above is a real one: a typo in the template fails it."""
    kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
    config = parse(LAB.read_text())
    text = render_edge(config, install_dir=str(tmp_path))[EDGE_CONFIG]
    (tmp_path / EDGE_LIST).write_text(render_edge(config)[EDGE_LIST])
    cfg = tmp_path / EDGE_CONFIG
    cfg.write_text(text.replace("ds_next_domain()", "ds_next_domian()"))
    out = subprocess.run(
        [kamailio, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False
    )
    assert out.returncode != 0 and "ds_next_domian" in out.stderr
