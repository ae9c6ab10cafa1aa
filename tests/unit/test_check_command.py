"""`ccbridge check` as an admin runs it: secrets absent, garbage files, `python -m ccbridge`."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccbridge.checks import check_deployment, deployment_warnings
from ccbridge.cli import main
from ccbridge.config import Config, ConfigError, load_config, parse_config
from ccbridge.config.model import HostPort, Trunk, TrunkKind

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"
NO_SECRETS = {"PATH": "/usr/bin:/bin"}  # no CCBRIDGE_* variables


def ccbridge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccbridge", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env or NO_SECRETS,
        timeout=60,
    )


@pytest.fixture
def fresh_checkout(tmp_path: Path) -> Path:
    """examples/lab.yaml where no `ccbridge lab` has run: its .lab/secrets do not exist."""
    (tmp_path / "examples").mkdir()
    copy = tmp_path / "examples" / "lab.yaml"
    copy.write_text(LAB.read_text())
    return copy


def test_python_m_ccbridge_runs_the_command_line() -> None:
    out = ccbridge("--help")
    assert out.returncode == 0, out.stderr
    assert "usage: ccbridge" in out.stdout and "check" in out.stdout


def test_check_on_a_fresh_checkout_warns_once_per_secret_and_exits_0(
    fresh_checkout: Path,
) -> None:
    out = ccbridge("check", str(fresh_checkout))
    assert out.returncode == 0, out.stderr
    assert "ok: 3 sites" in out.stdout and "2 warnings" in out.stdout
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    secrets = [w for w in warnings if "secret not found" in w]
    # The AMI secret is shared by three sites through a YAML anchor: one warning for it.
    assert len(secrets) == 2, out.stderr
    ami = next(w for w in secrets if "CCBRIDGE_AMI_SECRET" in w)
    assert "env CCBRIDGE_AMI_SECRET gives nothing" in ami
    assert f"file {fresh_checkout.parent.parent / '.lab/secrets/ami'} gives nothing" in ami
    assert "also used by sites.dhaka.ami.secret, sites.manila.ami.secret" in ami
    assert any("bridge.api_token" in w and "CCBRIDGE_API_TOKEN gives nothing" in w for w in secrets)
    assert "Traceback" not in out.stderr


def test_check_with_secrets_flag_requires_them(fresh_checkout: Path) -> None:
    out = ccbridge("check", "--secrets", str(fresh_checkout))
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("gives nothing" in e for e in errors)
    ok = ccbridge(
        "check",
        "--secrets",
        str(fresh_checkout),
        env={**NO_SECRETS, "CCBRIDGE_AMI_SECRET": "a", "CCBRIDGE_API_TOKEN": "b"},
    )
    assert ok.returncode == 0, ok.stderr
    assert "warning" not in ok.stderr


def test_run_refuses_to_start_without_its_secrets(fresh_checkout: Path) -> None:
    out = ccbridge("run", str(fresh_checkout))
    assert out.returncode == 2
    assert "secret not found" in out.stderr and "Traceback" not in out.stderr


def test_a_secret_file_that_is_a_folder_gives_nothing_with_the_reason(
    fresh_checkout: Path,
) -> None:
    (fresh_checkout.parent.parent / ".lab" / "secrets" / "ami").mkdir(parents=True)
    out = ccbridge("check", str(fresh_checkout))
    assert out.returncode == 0
    assert "secrets/ami gives nothing (Is a directory)" in out.stderr


# -- redundant inter-site paths -------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> Config:
    return load_config(LAB, resolve_secrets=False)


def test_the_lab_ships_two_trunks_for_a_site_pair_and_checks_clean(lab: Config) -> None:
    assert [t.name for t in lab.trunks_between("bangalore", "dhaka")] == ["blr-dac", "blr-dac-2"]
    second = lab.trunks_between("bangalore", "dhaka")[1]
    assert second.remote in lab.site("dhaka").sip_alternates
    assert check_deployment(lab) == []
    assert deployment_warnings(lab) == []


def test_a_second_trunk_at_another_address_is_a_path_not_a_problem(lab: Config) -> None:
    # What `check` refused before: "remote ... is not site dhaka's SIP address".
    elsewhere = Trunk(
        "blr-dac-sbc", "bangalore", TrunkKind.INTERSITE, HostPort("10.9.9.9", 5060), "dhaka"
    )
    config = replace(lab, trunks=(*lab.trunks, elsewhere))
    assert check_deployment(config) == []
    (warning,) = deployment_warnings(config)
    assert "trunks.blr-dac-sbc: remote 10.9.9.9:5060 is none of site dhaka's SIP" in warning


def test_two_trunks_on_the_same_path_or_without_a_way_back_are_refused(lab: Config) -> None:
    same = Trunk(
        "blr-dac-3", "bangalore", TrunkKind.INTERSITE, HostPort("127.0.2.1", 5060), "dhaka"
    )
    (msg,) = check_deployment(replace(lab, trunks=(*lab.trunks, same)))
    assert "trunks.blr-dac-3: trunk blr-dac already reaches dhaka at 127.0.2.1:5060" in msg
    one_way = tuple(t for t in lab.trunks if t.name != "mnl-dac")
    found = check_deployment(replace(lab, trunks=one_way))
    assert (
        "trunks.dac-mnl: site manila has no intersite trunk back to dhaka, so it cannot "
        "recognise the calls dhaka sends over this trunk"
    ) in found


def test_two_sites_on_one_address_are_refused(lab: Config) -> None:
    manila = replace(lab.site("manila"), sip_alternates=(HostPort("127.0.2.1", 5062),))
    sites = tuple(manila if s.name == "manila" else s for s in lab.sites)
    (msg,) = check_deployment(replace(lab, sites=sites))
    assert msg == "sites.manila: SIP address 127.0.2.1:5062 is also site dhaka's"


# -- garbage in: a clear message and exit 2, never a traceback -------------------------------


def run_check(path: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["check", str(path)])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


def assert_clear(code: int, err: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert lines and all(line.startswith(("error: ", "warning: ")) for line in lines), err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=400))
def test_random_bytes_get_a_clear_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("garbage") / "deploy.yaml"
    path.write_bytes(data)
    assert_clear(*run_check(path))


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("    country: BD\n", "    country: BD\n\trtp: [1, 2]\n", "sites.dhaka: YAML syntax"),
        (
            "    timezone: Asia/Dhaka\n",
            "    timezone: Asia/Dhaka\n    timezone: UTC\n",
            "sites.dhaka.timezone: YAML: duplicate key 'timezone'",
        ),
        (
            'hours: {mon-fri: "09:00-18:00"}',
            'hours: {mon-fri: "09:00-18:00}',
            "sites.bangalore.services.returns.hours: YAML syntax",
        ),
        (
            "    country: BD\n",
            "    country: BD\n    ? [rtp, sip]\n    : 1\n",
            "sites.dhaka: YAML: unsupported mapping key: keys are plain text",
        ),
    ],
    ids=["tab", "duplicate-key", "unclosed-quote", "complex-key"],
)
def test_yaml_syntax_errors_exit_2_with_file_line_and_key_path(
    fresh_checkout: Path, old: str, new: str, where: str
) -> None:
    fresh_checkout.write_text(LAB.read_text().replace(old, new, 1))
    code, err = run_check(fresh_checkout)
    assert_clear(code, err)
    (line,) = err.splitlines()
    assert re.match(rf"error: {re.escape(str(fresh_checkout))}:\d+: {re.escape(where)}", line), line


_LAB_LINES = LAB.read_text().splitlines(keepends=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    at=st.integers(0, len(_LAB_LINES) - 1),
    junk=st.text(
        alphabet=st.sampled_from(list("\t :{}[]\"'&*!|>-?#%@`,\x00\x07\u00e9")), max_size=6
    ),
)
def test_lab_config_with_junk_in_a_line_is_ok_or_a_clear_error(
    tmp_path_factory: pytest.TempPathFactory, at: int, junk: str
) -> None:
    lines = list(_LAB_LINES)
    lines[at] = junk + lines[at]
    folder = tmp_path_factory.mktemp("junk") / "examples"
    folder.mkdir()
    path = folder / "lab.yaml"
    path.write_text("".join(lines))
    code, err = run_check(path)
    if code != 0:
        assert_clear(code, err)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(list("ab1+-:,[]{}?&*!|>'\"#%@ \n\t.0<=")), max_size=80)
)
def test_yaml_punctuation_soup_is_a_config_error_or_a_config(text: str) -> None:
    # YAML's own syntax characters in any order: anchors, merges, complex keys, flows.
    try:
        parse_config(text, "deploy.yaml", REPO, resolve_secrets=False)
    except ConfigError as exc:
        assert exc.problems and all(str(p).startswith("deploy.yaml") for p in exc.problems)
