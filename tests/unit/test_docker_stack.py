"""The docker stack, checked statically: compose, config and rendered files agree with the lab."""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from ccbridge.config import Config, load_config
from ccbridge.config.edge import EDGE_DIR
from ccbridge.config.model import HostPort, TrunkKind
from ccbridge.render import EDGE_CONFIG, EDGE_LIST, render_edge, render_site

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
SECRET = "not-a-real-secret"
# The lab runs every SIPp (agents, carriers, caller) on 127.0.0.1; compose runs them in
# `phones`. Each lab site address maps to the compose service of the same name.
LAB_PHONES = "127.0.0.1"


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", SECRET)
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", SECRET)
    monkeypatch.setenv("CCBRIDGE_DB_PASSWORD", SECRET)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    return data


def address(service: str) -> str:
    svc = compose()["services"][service]
    if "network_mode" in svc:
        return address(svc["network_mode"].removeprefix("service:"))
    ip: str = svc["networks"]["ccb"]["ipv4_address"]
    return ip


def docker_config() -> Config:
    return load_config(DOCKER / "ccbridge.yaml")


def lab_config() -> Config:
    return load_config(REPO / "examples" / "lab.yaml")


DOCKER_PERMIT = ("172.28.0.0/24",)
# The second bridge: a lab address nothing else uses, and the compose service.
LAB_BRIDGE2 = HostPort("127.0.0.99", 4573)
DOCKER_BRIDGE2 = HostPort("bridge2", 4573)


def lab_to_docker(text: str, lab: Config) -> str:
    """Lab-rendered text with lab addresses replaced by the compose ones."""
    docker = docker_config()
    text = text.replace(str(LAB_BRIDGE2), str(DOCKER_BRIDGE2))
    text = text.replace(str(lab.bridge.agi_url_host), str(docker.bridge.agi_url_host))
    if lab.edge is not None and docker.edge is not None:  # the sites take the edge's calls
        text = text.replace(f"match={lab.edge.sip.host}", f"match={docker.edge.sip.host}")
    for site in lab.sites:
        text = text.replace(site.sip.host, address(site.name))
        for lab_net in site.ami.permit:  # AMI logins come from the bridge's container
            text = text.replace(f"permit={lab_net}", "permit=" + ",".join(DOCKER_PERMIT))
    return text.replace(LAB_PHONES, address("phones"))


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), DOCKER / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_static_addresses_are_unique_and_inside_the_subnet() -> None:
    c = compose()
    subnet = ipaddress.ip_network(c["networks"]["ccb"]["ipam"]["config"][0]["subnet"])
    ips = [
        s["networks"]["ccb"]["ipv4_address"]
        for s in c["services"].values()
        if isinstance(s.get("networks"), dict)
    ]
    assert len(ips) == len(set(ips)) >= 6
    assert all(ipaddress.ip_address(ip) in subnet for ip in ips)


def test_sites_are_the_compose_services_with_the_lab_ports() -> None:
    docker, lab = docker_config(), lab_config()
    assert [s.name for s in docker.sites] == [s.name for s in lab.sites]
    for site in docker.sites:
        lab_site = lab.site(site.name)
        svc = compose()["services"][site.name]
        assert site.sip.host == site.ami.host == address(site.name)
        assert (site.sip.port, site.ami.port) == (lab_site.sip.port, lab_site.ami.port)
        assert (site.sip.port, site.ami.port) == (5060, 5038)
        assert (site.rtp_start, site.rtp_end) == (lab_site.rtp_start, lab_site.rtp_end)
        assert set(svc["expose"]) == {
            f"{site.sip.port}/udp",
            str(site.ami.port),
            f"{site.rtp_start}-{site.rtp_end}/udp",
        }
        assert svc["command"] == [f"/rendered/{site.name}/asterisk.conf"]
        assert "rendered:/rendered:ro" in svc["volumes"]
        assert site.carrier_sources == (address("caller"),)
        for agent in site.agents:
            assert f"@{address('phones')}:" in agent.contact


def test_trunks_point_at_the_peer_services() -> None:
    docker, lab = docker_config(), lab_config()
    assert [(t.name, t.site, t.kind, t.peer_site) for t in docker.trunks] == [
        (t.name, t.site, t.kind, t.peer_site) for t in lab.trunks
    ]
    for t in docker.trunks:
        if t.kind is TrunkKind.INTERSITE:
            assert t.peer_site is not None
            assert t.remote.host == address(t.peer_site)
        else:
            assert t.remote.host == address("phones")
        assert t.remote.port == lab_config().trunks[docker.trunks.index(t)].remote.port


def test_the_bridge_is_reached_by_service_name() -> None:
    b = docker_config().bridge
    services = compose()["services"]
    assert b.agi_url_host.host == "bridge" and "bridge" in services
    assert str(b.agi_url_host.port) in services["bridge"]["expose"]
    assert b.agi_listen.port == b.agi_url_host.port
    assert services["bridge"]["command"] == ["supervise", "/opt/ccbridge/docker/ccbridge.yaml"]
    prom = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    assert targets == [f"bridge:{b.http_listen.port}", f"bridge2:{b.http_listen.port}"]


def test_each_site_has_its_agi_guard_in_its_own_network() -> None:
    """The guard listens on the site's address, as in the lab: it shares the site's
    network namespace and reads the haproxy.cfg rendered for that site."""
    config, services = docker_config(), compose()["services"]
    guard = config.bridge.agi_guard
    assert guard is not None and lab_config().bridge.agi_guard == guard
    assert config.bridge.guard_servers == (config.bridge.agi_url_host, DOCKER_BRIDGE2)
    for site in config.sites:
        svc = services[f"{site.name}-guard"]
        assert svc["network_mode"] == f"service:{site.name}"
        assert svc["image"].startswith("haproxy:2.6")
        assert svc["command"][-2:] == ["-f", f"/rendered/{site.name}/haproxy.cfg"]
        assert "rendered:/rendered:ro" in svc["volumes"]
        assert svc["depends_on"]["render"] == {"condition": "service_completed_successfully"}
        assert "bridge" in svc["depends_on"]
        cfg = render_site(config, site)["haproxy.cfg"]
        assert f"bind {address(site.name)}:{guard.port}" in cfg
        assert f"bind {address(site.name)}:{guard.lookup_port}" in cfg
        assert f"server bridge1 {config.bridge.agi_url_host} check" in cfg
        assert f"server bridge2 {DOCKER_BRIDGE2} check" in cfg
        extensions = render_site(config, site)["extensions.conf"]
        assert f"CCB_AGI_URL=agi://{address(site.name)}:{guard.port}/route" in extensions
    assert len([n for n in services if n.endswith("-guard")]) == len(config.sites)


def test_rendered_stack_is_ccbridge_render_plus_the_lab_base_configs(tmp_path: Path) -> None:
    cmd = compose()["services"]["render"]["command"]
    assert cmd[0] == "/opt/ccbridge/docker/ccbridge.yaml"
    assert cmd[cmd.index("--out") + 1] == "/rendered"
    assert cmd[cmd.index("--base") + 1] == "/opt/ccbridge/asterisk"
    load_script("render_configs.py").render_stack(
        DOCKER / "ccbridge.yaml", tmp_path, REPO / "asterisk", None
    )
    config = docker_config()
    base = sorted(p.name for p in (REPO / "asterisk").glob("*.conf"))
    for site in config.sites:
        d = tmp_path / site.name
        expected = render_site(config, site)
        assert sorted(p.name for p in d.iterdir()) == sorted([*expected, *base, "asterisk.conf"])
        for name, text in expected.items():
            assert (d / name).read_text() == text, name
        for name in base:
            assert (d / name).read_bytes() == (REPO / "asterisk" / name).read_bytes()
        asterisk_conf = (d / "asterisk.conf").read_text()
        assert f"astetcdir => /rendered/{site.name}" in asterisk_conf.replace(
            str(tmp_path), "/rendered"
        )
        assert f"systemname={site.name}" in asterisk_conf
        assert ((d / "manager.conf").stat().st_mode & 0o777) == 0o600


def test_the_sip_edge_is_an_optional_profile_in_the_bridges_network(tmp_path: Path) -> None:
    """Kamailio (Debian bookworm's, as the lab's) beside the bridge: SIP on the bridge's
    address, its JSON-RPC on their shared loopback, the files `render` wrote."""
    config, lab, services = docker_config(), lab_config(), compose()["services"]
    edge, lab_edge = config.edge, lab.edge
    assert edge is not None and lab_edge is not None and edge.enabled
    svc = services["edge"]
    assert svc["profiles"] == ["edge"] and svc["network_mode"] == "service:bridge"
    assert edge.sip.host == address("bridge") and edge.rpc.host == "127.0.0.1"
    assert (edge.sip.port, edge.rpc.port) == (lab_edge.sip.port, lab_edge.rpc.port)
    assert f"{edge.sip.port}/udp" in services["bridge"]["expose"]
    assert svc["command"] == ["-f", f"/rendered/{EDGE_DIR}/{EDGE_CONFIG}"]
    assert "rendered:/rendered:ro" in svc["volumes"]
    assert svc["depends_on"]["render"] == {"condition": "service_completed_successfully"}
    dockerfile = (DOCKER / svc["build"]["context"] / "Dockerfile").read_text()
    assert "FROM debian:bookworm-slim" in dockerfile and "install" in dockerfile
    assert re.search(r"--no-install-recommends kamailio\b", dockerfile)
    assert (
        "kamailio" in (REPO / "Makefile").read_text().split("SYSTEM_PACKAGES :=")[1].split("\n")[0]
    )
    # the rendered volume holds what the edge reads, where kamailio.cfg looks for the list
    load_script("render_configs.py").render_stack(
        DOCKER / "ccbridge.yaml", tmp_path, REPO / "asterisk", None
    )
    files = render_edge(config)
    for name in (EDGE_CONFIG, EDGE_LIST):
        assert (tmp_path / EDGE_DIR / name).read_text() == files[name]
    assert f'"/rendered/{EDGE_DIR}/{EDGE_LIST}"' in files[EDGE_CONFIG]
    # the same sets and the same settings as the lab's edge, but for addresses
    assert files[EDGE_LIST] == lab_to_docker(render_edge(lab)[EDGE_LIST], lab)
    for field in dataclasses.fields(edge):
        if field.name not in ("sip", "rpc", "enabled", "install_dir", "carrier_sources"):
            assert getattr(edge, field.name) == getattr(lab_edge, field.name), field.name
    assert edge.carrier_sources == (address("phones"),)


def test_docker_renders_what_the_lab_renders_but_for_addresses() -> None:
    docker, lab = docker_config(), lab_config()
    # The stack runs two bridges (issue 15): the lab with a second bridge beside its own.
    two = (lab.bridge.agi_url_host, LAB_BRIDGE2)
    lab = replace(lab, bridge=replace(lab.bridge, cluster=replace(lab.bridge.cluster, servers=two)))
    for site in docker.sites:
        lab_files = render_site(lab, lab.site(site.name))
        for name, text in render_site(docker, site).items():
            assert text == lab_to_docker(lab_files[name], lab), f"{site.name}/{name}"


def test_ami_permits_the_bridge_container() -> None:
    bridge = ipaddress.ip_address(address("bridge"))
    for site in docker_config().sites:
        text = render_site(docker_config(), site)["manager.conf"]
        permits = [
            ipaddress.ip_network(m.replace("/", "/", 1), strict=False)
            for m in re.findall(r"^permit=(\S+)$", text, re.M)
        ]
        assert any(bridge in net for net in permits)


def test_no_secret_is_committed_under_docker() -> None:
    files = subprocess.run(
        ["git", "ls-files", "--others", "--cached", "--exclude-standard", "docker"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert files, "docker/ has no files"
    assert not any(Path(f).name == "manager.conf" or f.startswith("docker/secrets/") for f in files)
    for f in files:
        assert SECRET not in (REPO / f).read_text(errors="replace")
        assert not re.search(r"^\s*secret\s*=\s*\S", (REPO / f).read_text(errors="replace"), re.M)
    secret_files = [s["file"] for s in compose()["secrets"].values()]
    assert all(f.startswith("./secrets/") for f in secret_files)
    assert "secrets/" in (DOCKER / ".gitignore").read_text().split()
    assert "!docker/" in (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert "docker/secrets/" in (DOCKER / "Dockerfile.dockerignore").read_text().split()


def test_the_image_holds_what_the_services_run() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    for copied in ("ccbridge", "dialplans", "asterisk", "docker"):
        assert f"COPY {copied} ./{copied}" in dockerfile
    assert "CCBRIDGE_TEMPLATES=/opt/ccbridge/dialplans" in dockerfile
    # the C extensions are built in the image (the install fails if one was not)
    assert 'python -c "import ccbridge.ami._fastparse, ccbridge.agi._closer"' in dockerfile
    assert "**/*.so" in (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert "COPY pyproject.toml setup.py ./" in dockerfile  # setup.py names the extension
    assert "!setup.py" in (DOCKER / "Dockerfile.dockerignore").read_text().split()
    for script in ("phones.sh", "caller.sh", "render_configs.py"):
        assert (DOCKER / script).is_file()
    for scenario in ("agent.xml", "caller.xml"):
        assert (REPO / "ccbridge" / "lab" / "scenarios" / scenario).is_file()
    # phones.sh reads its ports from the config; the caller dials configured numbers.
    assert "load_config(sys.argv[1], resolve_secrets=False)" in (DOCKER / "phones.sh").read_text()
    config = docker_config()
    dialled = re.findall(r'"(\S+):5060 (\+\d+) \+\d+"', (DOCKER / "caller.sh").read_text())
    assert {address(site) for site in ("bangalore", "dhaka", "manila")} == {a for a, _ in dialled}
    for addr, did in dialled:
        number = config.number(did)
        assert number is not None and address(number.site) == addr


def test_the_docker_config_is_generated_from_the_lab_config() -> None:
    make_config = load_script("make_config.py")
    lab_text = (REPO / "examples" / "lab.yaml").read_text(encoding="utf-8")
    assert (DOCKER / "ccbridge.yaml").read_text(encoding="utf-8") == make_config.transform(
        lab_text
    ), "docker/ccbridge.yaml is stale: run python docker/make_config.py"


def test_dashboard_panels_query_the_provisioned_datasource() -> None:
    dash = json.loads((DOCKER / "grafana" / "dashboards" / "ccbridge.json").read_text())
    ds = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = ds["datasources"][0]["uid"]
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 25
    for p in panels:
        assert p["datasource"]["uid"] == uid
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
    assert {r["title"] for r in dash["panels"] if r["type"] == "row"} == {
        "Sites overview",
        "Queues",
        "Routing",
        "Trunks",
        "Bridge health",
        "Staffing",
    }


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_config_and_rules() -> None:
    for args in (
        ["check", "config", str(DOCKER / "prometheus" / "prometheus.yml")],
        ["check", "rules", str(DOCKER / "prometheus" / "rules.yml")],
    ):
        out = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "SUCCESS" in out.stdout + out.stderr


def test_two_bridges_share_the_postgres_service() -> None:
    """Issue 15: a second bridge on the same image, file and store, its own identity and
    address; PostgreSQL with the schema upgraded once before either starts."""
    services, config = compose()["services"], docker_config()
    one, two = services["bridge"], services["bridge2"]
    for key in ("image", "command", "secrets", "expose", "healthcheck", "depends_on"):
        assert one[key] == two[key], key
    assert one["environment"]["CCBRIDGE_BRIDGE_ID"] != two["environment"]["CCBRIDGE_BRIDGE_ID"]
    assert address("bridge") != address("bridge2") and one["ports"] != two["ports"]
    assert one["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade", "/opt/ccbridge/docker/ccbridge.yaml"]
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:")
    url = config.store.url
    assert config.store.enabled and url.startswith("postgresql") and "@postgres:5432/" in url
    assert pg["environment"]["POSTGRES_USER"] in url and url.endswith(
        "/" + pg["environment"]["POSTGRES_DB"]
    )
    secret = pg["environment"]["POSTGRES_PASSWORD_FILE"].removeprefix("/run/secrets/")
    assert secret in pg["secrets"] and secret in one["secrets"] and secret in compose()["secrets"]
    assert config.store.password is not None and "@" not in url.split("//", 1)[1].split("@")[0]
    assert config.bridge.cluster.servers == (config.bridge.agi_url_host, DOCKER_BRIDGE2)
    for name in ("bridge", "bridge2"):
        assert str(config.bridge.agi_listen.port) in services[name]["expose"]
    guard = services["bangalore-guard"]["depends_on"]
    assert "bridge" in guard and "bridge2" in guard  # both names resolve when it starts
