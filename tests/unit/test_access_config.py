"""`access.roles` and `bridge.tls` in the config: good ones load, bad ones are
file:line:key problems and `ccbridge check` exits 2."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import trustme

from ccbridge.cli import main
from ccbridge.config import ConfigError, parse_config

REPO = Path(__file__).resolve().parents[2]
LAB = (REPO / "examples" / "lab.yaml").read_text()


def _parse(text: str, tmp: Path) -> object:
    return parse_config(text, str(tmp / "deploy.yaml"), tmp, resolve_secrets=False)


def _problems(text: str, tmp: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        _parse(text, tmp)
    return [str(p) for p in err.value.problems]


def _line_of(text: str, needle: str) -> int:
    return text.splitlines().index(next(x for x in text.splitlines() if needle in x)) + 1


ROLES = """
access:
  roles:
    crm:
      description: the CRM reads calls of its sites and their numbers
      acl: ["ccb.calls.{site}.read", "ccb.numbers.read", "ccb.agents.{site_agent}.read"]
    night-lead:
      acl: ["ccb.sites.dhaka.#", "!ccb.sites.dhaka.drain"]
"""


def test_roles_defined_in_the_config_load_beside_the_built_in_ones(tmp_path: Path) -> None:
    config = _parse(LAB + ROLES, tmp_path)
    roles = config.access.roles  # type: ignore[attr-defined]
    assert {"admin", "supervisor", "agent", "viewer", "service", "crm", "night-lead"} <= set(roles)
    assert roles["crm"].scoped and not roles["night-lead"].scoped


@pytest.mark.parametrize(
    ("acl", "message"),
    [
        ('"ccb.calls.{site}.write"', "unknown permission 'ccb.calls.{site}.write'"),
        ('"ccb.sites.dacca.drain"', "names site 'dacca', which is not in sites"),
        ('"ccb.sites.{floor}.read"', "only {site} and {site_agent} may stand for a name"),
        ('"ccb..read"', "empty segment"),
        ('"ccb.sites.dha ka.read"', "letters, digits"),
    ],
)
def test_a_role_naming_what_does_not_exist_is_refused_with_its_line(
    tmp_path: Path, acl: str, message: str
) -> None:
    text = LAB + f"\naccess:\n  roles:\n    bad:\n      acl:\n        - {acl}\n"
    (problem,) = _problems(text, tmp_path)
    line = len(text.splitlines()) - 1  # the `acl:` key's line (list items carry none)
    assert problem.startswith(f"{tmp_path / 'deploy.yaml'}:{line}: access.roles.bad.acl[0]: ")
    assert message in problem


def test_a_built_in_role_cannot_be_redefined(tmp_path: Path) -> None:
    text = LAB + '\naccess:\n  roles:\n    admin:\n      acl: ["ccb.#"]\n'
    (problem,) = _problems(text, tmp_path)
    assert "access.roles.admin: 'admin' is a built-in role" in problem


def _tls(text: str, cert: Path, key: Path) -> str:
    return text.replace("bridge:\n", f"bridge:\n  tls: {{cert: {cert}, key: {key}}}\n", 1)


def test_tls_files_that_exist_and_match_load(tmp_path: Path) -> None:
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "k.pem"))
    config = _parse(_tls(LAB, tmp_path / "c.pem", tmp_path / "k.pem"), tmp_path)
    assert config.bridge.tls is not None  # type: ignore[attr-defined]


def test_a_missing_or_mismatched_tls_file_is_refused_with_its_line(tmp_path: Path) -> None:
    ca = trustme.CA()
    one, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    one.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    other.private_key_pem.write_to_path(str(tmp_path / "other.key"))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    cases = [
        (tmp_path / "nope.pem", tmp_path / "other.key", "bridge.tls.cert: no such file"),
        (tmp_path / "c.pem", tmp_path / "other.key", "bridge.tls.key: "),
        (tmp_path / "junk.pem", tmp_path / "other.key", "is not a PEM file"),
    ]
    for cert, key, message in cases:
        text = _tls(LAB, cert, key)
        (problem,) = _problems(text, tmp_path)
        assert f"deploy.yaml:{_line_of(text, 'tls:')}: " in problem and message in problem
    text = _tls(LAB, tmp_path / "c.pem", tmp_path / "other.key")
    assert "is not the key of the certificate" in _problems(text, tmp_path)[0]


def test_ccbridge_check_exits_2_on_a_bad_role(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(LAB + '\naccess:\n  roles:\n    bad:\n      acl: ["ccb.nothing.read"]\n')
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        main(["check", str(path)])
    assert exit_.value.code == 2
    assert "access.roles.bad.acl[0]: unknown permission 'ccb.nothing.read'" in err.getvalue()
