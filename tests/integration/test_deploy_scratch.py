"""`render --verify`'s scratch Asterisk on its own (no lab sites: it binds nothing they use):
what Asterisk logs while loading lands on the template line; a TLS transport whose key
files only the site has is loaded with stand-in keys instead of being refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ccbridge.cli import main
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sites import REPO_ROOT

LAB = REPO_ROOT / "examples" / "lab.yaml"


@pytest.fixture(autouse=True)
def root_and_secrets() -> None:
    if os.geteuid() != 0:
        pytest.fail("the scratch Asterisk needs root (unshare, chroot): run via make test")
    ensure_lab_secrets()


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    d = tmp_path / "dialplans"
    shutil.copytree(REPO_ROOT / "dialplans", d)
    return d


def edit(path: Path, old: str, new: str) -> int:
    text = path.read_text()
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1))
    return line


def test_a_bad_option_asterisk_logs_points_at_its_template_line(
    templates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = edit(
        templates / "queues.conf.j2", "strategy={{ q.settings.strategy }}", "strategy=bogus"
    )
    assert main(["render", str(LAB), "--verify", "--templates", str(templates)]) == 2
    err = capsys.readouterr().err
    assert (
        f"queues.conf.j2:{line}: error: [manila] asterisk: app_queue.c: 'bogus' isn't a "
        "valid strategy for queue 'orders-tl'" in err
    ), err


def test_a_tls_transport_with_the_sites_own_keys_is_checked_with_stand_ins(
    templates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = edit(
        templates / "pjsip.conf.j2",
        "; ---- Carriers delivering",
        "[verify-tls]\ntype=transport\nprotocol=tls\nbind={{ site.sip.host }}:5071\n"
        "cert_file=/etc/ccbridge-keys/{{ site.name }}.crt\n"
        "priv_key_file=/etc/ccbridge-keys/{{ site.name }}.key\nmethod=tlsv1_2\n\n"
        "; ---- Carriers delivering",
    )
    assert main(["render", str(LAB), "--verify", "-v", "--templates", str(templates)]) == 0
    err = capsys.readouterr().err
    assert (
        f"pjsip.conf.j2:{line + 4}: warning: [dhaka] keys: /etc/ccbridge-keys/dhaka.crt is "
        "the site's own" in err
    ), err
    # a transport Asterisk cannot load is still refused, at its header line
    edit(templates / "pjsip.conf.j2", "5071\n", "5071\ntos=not-a-tos\n")
    assert main(["render", str(LAB), "--verify", "--templates", str(templates)]) == 2
    err = capsys.readouterr().err
    assert (
        f"pjsip.conf.j2:{line}: error: [dhaka] pjsip: transport verify-tls did not load" in err
    ), err
