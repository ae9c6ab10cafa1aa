"""Encryption in transit: the TLS config keys and their errors, what they render, and the
AMI link over TLS against a real TLS server (a verified certificate or a site left down)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import ssl
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from ccbridge.ami.client import LinkState, SiteLink
from ccbridge.config import Config, ConfigError, parse_config
from ccbridge.config.model import AmiSettings, AmiTls, SecretValue
from ccbridge.lab.tls import CertPair, issue, make_ca
from ccbridge.render import render_all, render_site
from tests.amifake import FakeAmi
from tests.polling import until

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"
SECRET = "tls-test-secret"


@dataclasses.dataclass(frozen=True)
class Pki:
    ca: CertPair
    blr: CertPair
    mnl: CertPair
    other_ca: CertPair  # a CA that signed none of the sites' certificates
    localhost: CertPair  # 127.0.0.1, signed by ``ca``: the fake AMI server's


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d / "ca")
    return Pki(
        ca=ca,
        blr=issue(ca, d / "sites", "bangalore", ("127.0.1.1",)),
        mnl=issue(ca, d / "sites", "manila", ("127.0.3.1",)),
        other_ca=make_ca(d / "other", "another CA"),
        localhost=issue(ca, d / "sites", "fake-ami", ("127.0.0.1",)),
    )


def tls_lab_yaml(pki: Pki, *, mnl_key: Path | None = None, mnl_cert: Path | None = None) -> str:
    """examples/lab.yaml with bangalore and manila holding certificates, manila's AMI over
    TLS and their trunks over TLS: the YAML form of what the lab turns on in code."""
    text = LAB.read_text()

    def site_tls(name: str, pair: CertPair, cert: Path | None, key: Path | None) -> None:
        nonlocal text
        block = (
            f"    tls: {{cert: {cert or pair.cert}, key: {key or pair.key}, ca: {pki.ca.cert}}}\n"
        )
        text, n = re.subn(rf"(?m)^(  {name}:\n)", rf"\g<1>{block}", text)
        assert n == 1

    site_tls("bangalore", pki.blr, None, None)
    site_tls("manila", pki.mnl, mnl_cert, mnl_key)
    text, n = re.subn(
        r"ami: \{<<: \*ami, host: 127\.0\.3\.1\}",
        "ami: {<<: *ami, host: 127.0.3.1, tls: true}",
        text,
    )
    assert n == 1
    for trunk, far in (("blr-mnl", "127.0.3.1"), ("mnl-blr", "127.0.1.1")):
        text, n = re.subn(
            rf"(?m)^(  {trunk}: \{{.*)remote: {re.escape(far)}:5060\}}$",
            rf"\g<1>remote: {far}:5061, tls: true}}",
            text,
        )
        assert n == 1, trunk
    return text


def load(text: str) -> Config:
    return parse_config(text, "deploy.yaml", LAB.parent, resolve_secrets=False)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return [str(p) for p in caught.value.problems]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# -- config -------------------------------------------------------------------------------


def test_tls_keys_load_into_the_config(pki: Pki) -> None:
    config = load(tls_lab_yaml(pki))
    manila = config.site("manila")
    assert manila.tls is not None and manila.tls.cert == str(pki.mnl.cert)
    assert manila.sip_tls is not None and str(manila.sip_tls) == "127.0.3.1:5061"
    assert manila.ami.tls == AmiTls(ca=str(pki.ca.cert), port=5039)
    assert manila.ami.link_port == 5039
    assert config.site("bangalore").ami.tls is None  # a certificate alone changes no link
    tls_trunks = {t.name for t in config.trunks if t.tls}
    assert tls_trunks == {"blr-mnl", "mnl-blr"}


def test_a_missing_tls_file_is_file_line_key(pki: Pki, tmp_path: Path) -> None:
    gone = tmp_path / "gone.key"
    text = tls_lab_yaml(pki, mnl_key=gone)
    found = problems(text)
    line = line_of(text, str(gone))
    assert f"deploy.yaml:{line}: sites.manila.tls.key: no such file: {gone}" in found


def test_a_key_that_is_not_the_certificates_is_file_line_key(pki: Pki) -> None:
    text = tls_lab_yaml(pki, mnl_key=pki.blr.key)  # bangalore's key beside manila's cert
    found = problems(text)
    line = line_of(text, f"cert: {pki.mnl.cert}")
    assert found == [
        f"deploy.yaml:{line}: sites.manila.tls.key: {pki.blr.key} is not the key of the "
        f"certificate {pki.mnl.cert}"
    ]


def test_garbage_in_a_certificate_or_ca_file_is_an_error(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    found = problems(tls_lab_yaml(pki, mnl_cert=junk))
    assert len(found) == 1 and "sites.manila.tls.key: cannot load the certificate" in found[0]
    text = tls_lab_yaml(pki).replace(f"ca: {pki.ca.cert}}}", f"ca: {junk}}}", 1)
    found = problems(text)
    assert len(found) == 1 and "sites.bangalore.tls.ca: " in found[0], found
    assert "holds no CA certificate" in found[0]


def test_ccbridge_check_exits_2_on_a_tls_file_problem(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    cfg = tmp_path / "examples" / "lab.yaml"
    cfg.write_text(tls_lab_yaml(pki, mnl_key=pki.blr.key))
    out = subprocess.run(
        [sys.executable, "-m", "ccbridge", "check", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert re.search(r"lab\.yaml:\d+: sites\.manila\.tls\.key: .* is not the key of", out.stderr)


def test_tls_config_mistakes_are_refused(pki: Pki) -> None:
    base = tls_lab_yaml(pki)
    # AMI over TLS on a site without a certificate
    text = base.replace(
        "ami: {<<: *ami, host: 127.0.2.1}", "ami: {<<: *ami, host: 127.0.2.1, tls: true}"
    )
    assert any(
        "sites.dhaka.ami.tls: AMI over TLS needs the site's `tls`" in p for p in problems(text)
    )
    # a TLS trunk ending at the peer's UDP port
    text = base.replace("remote: 127.0.3.1:5061, tls: true", "remote: 127.0.3.1:5060, tls: true")
    assert any(
        "trunks.blr-mnl.remote: 127.0.3.1:5060 is manila's UDP SIP address" in p
        for p in problems(text)
    )
    # a TLS trunk to a site with no certificate
    text = re.sub(r"(?m)^(  blr-dac: \{.*)\}$", r"\g<1>, tls: true}", base)
    assert any("trunks.blr-dac.tls: site dhaka has no `tls`" in p for p in problems(text))
    # TLS is for site-to-site trunks; the TLS port must not be the plain one
    text = re.sub(r"(?m)^(  blr-pstn1: \{.*)\}$", r"\g<1>, tls: true}", base)
    assert any("trunks.blr-pstn1.tls: 'tls' is for intersite trunks" in p for p in problems(text))
    text = base.replace("host: 127.0.3.1, tls: true}", "host: 127.0.3.1, tls: {port: 5038}}")
    assert any(
        "sites.manila.ami.tls.port: port 5038 is the plain AMI port" in p for p in problems(text)
    )
    text = base.replace("host: 127.0.3.1, tls: true}", "host: 127.0.3.1, tls: yes-please}")
    assert any(
        "sites.manila.ami.tls: expected true, false or a mapping" in p for p in problems(text)
    )


# -- rendering ----------------------------------------------------------------------------


def test_tls_renders_ami_tls_a_tls_transport_and_srtp_trunks(pki: Pki, tmp_path: Path) -> None:
    config = load(tls_lab_yaml(pki))
    manila = render_site(config, config.site("manila"))
    manager = manila["manager.conf"]
    assert "tlsenable=yes" in manager and "tlsbindaddr=127.0.3.1:5039" in manager
    assert "tlscertfile=/etc/asterisk/keys/site.crt" in manager
    assert "tlsprivatekey=/etc/asterisk/keys/site.key" in manager
    pjsip = manila["pjsip.conf"]
    transport = pjsip.split("[transport-tls]", 1)[1].split("\n\n", 1)[0]
    for line in (
        "protocol=tls",
        "bind=127.0.3.1:5061",
        "ca_list_file=/etc/asterisk/keys/ca.crt",
        "verify_server=yes",
        "verify_client=yes",
        "require_client_cert=yes",
    ):
        assert line in transport.splitlines(), line
    trunk = pjsip.split("[mnl-blr]\ntype=endpoint", 1)[1].split("\n\n[", 1)[0]
    assert "transport=transport-tls" in trunk and "media_encryption=sdes" in trunk
    assert "media_encryption_optimistic=no" in trunk
    assert "contact=sip:127.0.1.1:5061;transport=tls" in pjsip
    plain = pjsip.split("[mnl-dac]\ntype=endpoint", 1)[1].split("\n\n[", 1)[0]
    assert "transport=transport-udp" in plain and "media_encryption" not in plain
    assert "load => res_srtp.so" in manila["modules.conf"]
    dhaka = render_site(config, config.site("dhaka"))
    assert "tlsenable" not in dhaka["manager.conf"] and "transport-tls" not in dhaka["pjsip.conf"]
    assert "res_srtp" not in dhaka["modules.conf"]

    written = render_all(config, tmp_path / "out")
    keys = tmp_path / "out" / "manila" / "keys"
    assert {p.name for p in written if p.parent == keys} == {"site.crt", "site.key", "ca.crt"}
    assert (keys / "site.key").read_bytes() == pki.mnl.key.read_bytes()
    assert (keys / "site.key").stat().st_mode & 0o077 == 0


# -- the AMI link over TLS ------------------------------------------------------------------


def server_context(pair: CertPair) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pair.cert, pair.key)
    return ctx


def link_settings(port: int, ca: Path | None) -> AmiSettings:
    return AmiSettings(
        host="127.0.0.1",
        port=1,  # the plain port: never dialled while TLS is on
        username="ccbridge",
        secret=SecretValue(SECRET, "test"),
        ping_interval=0.2,
        ping_timeout=0.5,
        action_timeout=1.0,
        reconnect_min=0.05,
        reconnect_max=0.2,
        tls=AmiTls(ca=str(ca), port=port) if ca is not None else None,
    )


def no_event(site: str, event: Mapping[str, str]) -> None:
    del site, event


wait_until = functools.partial(until, within=5.0, interval=0.01)


async def test_the_link_verifies_the_site_certificate_and_logs_in_over_tls(pki: Pki) -> None:
    fake = FakeAmi(secret=SECRET, tls=server_context(pki.localhost))
    port = await fake.start()
    link = SiteLink("manila", link_settings(port, pki.ca.cert), no_event)
    try:
        await link.start()
        await wait_until(lambda: link.connected, what="the TLS link up")
        assert link.tls_version in ("TLSv1.2", "TLSv1.3")
        reply = await link.action("Ping")
        assert reply.get("Response") == "Success"
        assert fake.logins_ok == 1 and link.tls_failures == 0
    finally:
        await link.stop()
        await fake.close()


@pytest.mark.parametrize("case", ["wrong CA", "plain server"])
async def test_a_certificate_not_verified_leaves_the_site_down_with_a_clear_error(
    pki: Pki, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing is sent in clear: the fake never sees a Login, the link never comes UP."""
    server = None if case == "plain server" else server_context(pki.localhost)
    ca = pki.other_ca.cert if case == "wrong CA" else pki.ca.cert
    fake = FakeAmi(secret=SECRET, tls=server)
    port = await fake.start()
    states: list[LinkState] = []
    link = SiteLink("manila", link_settings(port, ca), no_event, lambda _s, st: states.append(st))
    caplog.set_level(logging.ERROR, logger="ccbridge")
    try:
        await link.start()
        await wait_until(lambda: link.tls_failures >= 3, what="three failed TLS attempts")
        assert not link.connected and LinkState.UP not in states
        assert fake.logins_ok == 0 and fake.received == []
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert errors and all("manila: AMI TLS with 127.0.0.1:" in e for e in errors)
        if case == "wrong CA":
            assert (
                "certificate verify failed" in errors[0]
                or "unable to get local issuer" in errors[0]
            )
        assert SECRET not in caplog.text
    finally:
        await link.stop()
        await fake.close()


def test_the_lab_tls_yaml_loads_with_tls_between_its_pair(pki: Pki, tmp_path: Path) -> None:
    from ccbridge.lab.tls import lab_tls_yaml

    certs = {"ca": pki.ca, "bangalore": pki.blr, "manila": pki.mnl}
    dirs = {"bangalore": "/etc/ast-bangalore/keys", "manila": "/etc/ast-manila/keys"}
    path = tmp_path / "lab-tls.yaml"
    path.write_text(lab_tls_yaml(LAB, certs, dirs))
    config = parse_config(path.read_text(), str(path), tmp_path, resolve_secrets=False)
    assert {s.name for s in config.sites if s.ami.tls} == {"bangalore", "manila"}
    assert {(t.name, str(t.remote)) for t in config.trunks if t.tls} == {
        ("blr-mnl", "127.0.3.1:5061"),
        ("mnl-blr", "127.0.1.1:5061"),
    }
    manila = config.site("manila")
    assert manila.tls is not None and manila.tls.install_dir == "/etc/ast-manila/keys"
    # everything else is the lab's own deployment
    lab = load(LAB.read_text())
    assert [n.did for n in config.numbers] == [n.did for n in lab.numbers]
    assert len(config.trunks) == len(lab.trunks) and config.ivr == lab.ivr
