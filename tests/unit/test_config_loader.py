"""The deployment loader: valid files become frozen objects, bad ones name file, line and key."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ccbridge.config import ConfigError, load_config, parse_config
from ccbridge.config.model import TrunkKind

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"


@pytest.fixture
def lab_text() -> str:
    return LAB.read_text()


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "ami-secret-from-env")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "token-from-env")


def parse(text: str) -> object:
    return parse_config(text, "deploy.yaml", REPO / "examples")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def test_lab_config_loads_into_frozen_objects(lab_text: str) -> None:
    config = parse(lab_text)
    assert [s.name for s in config.sites] == ["bangalore", "dhaka", "manila"]  # type: ignore[attr-defined]
    dhaka = config.site("dhaka")  # type: ignore[attr-defined]
    assert dhaka.timezone == "Asia/Dhaka"
    assert dhaka.ami.host == "127.0.2.1" and dhaka.ami.port == 5038  # merged from the anchor
    assert dhaka.ami.secret.reveal() == "ami-secret-from-env"
    assert "ami-secret" not in repr(dhaka.ami)
    orders = dhaka.offering("orders")
    assert orders.languages == ("en", "bn")
    overnight = [r for r in orders.schedule.weekly if r.hours.overnight]
    assert len(overnight) == 1 and overnight[0].days == frozenset({0})
    assert config.trunks_between("bangalore", "dhaka")[0].kind is TrunkKind.INTERSITE  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        dhaka.timezone = "UTC"  # type: ignore[misc]


def test_always_open_ignores_holidays_by_default(lab_text: str) -> None:
    manila = parse(lab_text).site("manila")  # type: ignore[attr-defined]
    schedule = manila.offering("orders").schedule
    assert schedule.always_open and not schedule.observe_holidays


def test_bad_time_zone_names_file_line_and_key(lab_text: str) -> None:
    text = lab_text.replace("Asia/Kolkata", "Asia/Calcuta")
    found = problems(text)
    line = line_of(text, "Asia/Calcuta")
    assert (
        f"deploy.yaml:{line}: sites.bangalore.timezone: unknown time zone 'Asia/Calcuta'"
        in found[0]
    )
    assert "did you mean" in found[0]


def test_unknown_key_suggests_the_right_one(lab_text: str) -> None:
    text = lab_text.replace("    rtp: [11000, 11999]", "    rtp: [11000, 11999]\n    timezon: UTC")
    (msg,) = problems(text)
    assert f"deploy.yaml:{line_of(text, 'timezon: UTC')}: sites.dhaka.timezon: unknown key" in msg
    assert "did you mean 'timezone'" in msg


def test_yaml_typo_is_a_syntax_error_with_a_line(lab_text: str) -> None:
    text = re.sub(r"^services: \[(.*)\]$", r"services: [\1", lab_text, count=1, flags=re.M)
    assert text != lab_text
    (msg,) = problems(text)
    assert msg.startswith("deploy.yaml:") and "YAML syntax" in msg


def test_duplicate_key_is_an_error(lab_text: str) -> None:
    text = lab_text.replace("languages: [en, hi, bn, ur, tl]", "languages: [en]\nlanguages: [hi]")
    (msg,) = problems(text)
    assert "duplicate key 'languages'" in msg


def test_missing_secret_says_where_it_looked(
    lab_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CCBRIDGE_AMI_SECRET")
    text = lab_text.replace("file: ../.lab/secrets/ami", "file: /nonexistent/ami")
    (msg,) = problems(text)  # one secret shared by three sites: one message
    assert "sites.bangalore.ami.secret: secret not found" in msg
    assert "env CCBRIDGE_AMI_SECRET gives nothing" in msg
    assert "file /nonexistent/ami gives nothing (no such file)" in msg
    assert "also used by sites.dhaka.ami.secret, sites.manila.ami.secret" in msg


def test_literal_secret_is_refused(lab_text: str) -> None:
    text = lab_text.replace(
        "secret: {env: CCBRIDGE_AMI_SECRET, file: ../.lab/secrets/ami}", "secret: hunter2"
    )
    assert any("must not be written in the config" in m for m in problems(text))


def test_every_problem_is_reported_at_once(lab_text: str) -> None:
    text = lab_text.replace("Asia/Manila", "Mars/Olympus").replace(
        "country: BD\n", "country: XX\n", 1
    )
    found = problems(text)
    assert any("sites.manila.timezone" in m for m in found)
    assert any("numbers.+8809600000001.country" in m or "sites.dhaka" in m for m in found)


def test_references_are_checked(lab_text: str) -> None:
    text = lab_text.replace(
        "service: returns, site: bangalore", "service: refunds, site: bangalore"
    )
    (msg,) = problems(text)
    assert "numbers.+918000000002.service: unknown service 'refunds'" in msg


def test_time_ranges_and_days_are_validated(lab_text: str) -> None:
    text = lab_text.replace(
        '{mon-sat: "09:00-21:00"}', '{mon-sat: "09:00-25:00", funday: "10:00-11:00"}'
    )
    found = problems(text)
    assert any("invalid time in '09:00-25:00'" in m for m in found)


def test_load_config_reports_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert "cannot read" in str(info.value)


def test_check_command_exits_2_with_no_traceback(tmp_path: Path, lab_text: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        lab_text.replace("Asia/Dhaka", "Asia/Dhakka").replace("../.lab", str(REPO / ".lab"))
    )
    out = subprocess.run(
        [sys.executable, "-m", "ccbridge.cli", "check", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "CCBRIDGE_AMI_SECRET": "x", "CCBRIDGE_API_TOKEN": "y"},
    )
    assert out.returncode == 2
    assert "sites.dhaka.timezone: unknown time zone 'Asia/Dhakka'" in out.stderr
    assert "Traceback" not in out.stderr


def test_check_command_accepts_the_lab_config() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ccbridge.cli", "check", str(LAB)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "CCBRIDGE_AMI_SECRET": "x", "CCBRIDGE_API_TOKEN": "y"},
    )
    assert out.returncode == 0, out.stderr
    assert "3 sites" in out.stdout


def test_held_routes_settings_load_and_are_validated(lab_text: str) -> None:
    anchor = "  held_routes: {use_without_bridge: false, fresh_age: 5, max_age: 300}\n"
    assert anchor in lab_text
    ok = lab_text.replace(anchor, "  held_routes: {use_without_bridge: true, max_age: 120}\n")
    held = parse(ok).routing.held_routes  # type: ignore[attr-defined]
    assert (held.use_without_bridge, held.max_age, held.fresh_age) == (True, 120.0, 5.0)
    bad = lab_text.replace(
        anchor,
        "  held_routes: {fresh_age: 1.5, max_age: yes, refresh: 1, maxage: 3}\n",
    )
    found = problems(bad)
    line = line_of(bad, "held_routes")
    assert any("routing.held_routes.maxage: unknown key" in p for p in found), found
    bad = lab_text.replace(anchor, "  held_routes: {fresh_age: 1.5, refresh: 1}\n")
    assert problems(bad) == [
        f"deploy.yaml:{line}: routing.held_routes.fresh_age: must be at least twice refresh (1s)"
    ]
    bad = lab_text.replace(anchor, "  held_routes: {max_age: 2}\n")
    assert problems(bad) == [
        f"deploy.yaml:{line}: routing.held_routes.max_age: must be at least fresh_age (5s)"
    ]
    bad = lab_text.replace(anchor, "  held_routes: {max_age: -1}\n")
    assert problems(bad) == [
        f"deploy.yaml:{line}: routing.held_routes.max_age: -1 is out of range 1..86400"
    ]


# -- number keys ----------------------------------------------------------------------


def test_an_unquoted_number_key_is_refused_with_its_line_and_quotes_to_use(
    lab_text: str,
) -> None:
    # YAML reads +918000000001 as the integer 918000000001: the '+' is lost and calls
    # to the number would be rejected as unknown_did while `check` said ok.
    text = lab_text.replace('"+918000000002":', "+918000000002:")
    assert text != lab_text
    (msg,) = problems(text)
    line = line_of(text, "+918000000002:")
    assert msg.startswith(f"deploy.yaml:{line}: numbers.+918000000002: ")
    assert "as the number 918000000002" in msg and 'write it in quotes, "+918000000002"' in msg


def test_a_number_key_with_a_leading_zero_is_refused_too(lab_text: str) -> None:
    # 0700 is octal to YAML 1.1: the key would silently become 448.
    text = lab_text.replace('"+6328000001":', "0700:")
    (msg,) = problems(text)
    assert "numbers.0700: YAML reads 0700 as the number 448" in msg


# -- YAML syntax errors name the key path ---------------------------------------------


def test_duplicate_key_names_the_mapping_path_and_both_lines(lab_text: str) -> None:
    text = lab_text.replace(
        "    timezone: Asia/Dhaka\n", "    timezone: Asia/Dhaka\n    timezone: UTC\n"
    )
    (msg,) = problems(text)
    first = line_of(text, "timezone: Asia/Dhaka")
    assert msg.startswith(f"deploy.yaml:{first + 1}: sites.dhaka.timezone: ")
    assert f"duplicate key 'timezone' (first written on line {first})" in msg


def test_a_tab_names_the_line_and_the_mapping_it_is_in(lab_text: str) -> None:
    text = lab_text.replace("    country: BD\n", "    country: BD\n\trtp: [1, 2]\n")
    (msg,) = problems(text)
    assert msg.startswith(f"deploy.yaml:{line_of(text, chr(9) + 'rtp')}: sites.dhaka")
    assert "YAML syntax" in msg and "'\\t'" in msg


def test_an_unclosed_quote_names_the_key_it_belongs_to(lab_text: str) -> None:
    text = lab_text.replace('hours: {mon-fri: "09:00-18:00"}', 'hours: {mon-fri: "09:00-18:00}', 1)
    assert text != lab_text
    (msg,) = problems(text)
    assert ": sites.bangalore.services.returns.hours" in msg and "YAML syntax" in msg


def test_an_impossible_date_is_an_error_at_its_key_not_a_crash(lab_text: str) -> None:
    text = lab_text.replace(
        "    rtp: [11000, 11999]\n", "    rtp: [11000, 11999]\n    closed_dates: [2026-13-45]\n"
    )
    (msg,) = problems(text)
    assert f"deploy.yaml:{line_of(text, '2026-13-45')}: sites.dhaka.closed_dates[0]: " in msg
    assert "month must be in 1..12" in msg


def test_undecodable_bytes_name_their_line(tmp_path: Path, lab_text: str) -> None:
    bad = tmp_path / "deploy.yaml"
    bad.write_bytes(lab_text.encode()[:200] + b"\n\xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "not UTF-8 text: byte 0xff" in str(info.value)
    assert f"deploy.yaml:{lab_text[:200].count(chr(10)) + 2}:" in str(info.value)


# -- defaults live in the model ----------------------------------------------------------


def test_keys_left_out_take_the_model_defaults(lab_text: str) -> None:
    from ccbridge.config.model import AmiSettings, BridgeSettings, QueueSettings, Trunk

    config = parse(lab_text)
    blr = config.site("bangalore")  # type: ignore[attr-defined]
    fields = {f.name: f.default for f in dataclasses.fields(AmiSettings)}
    assert blr.ami.ping_interval == fields["ping_interval"]
    assert blr.ami.permit == fields["permit"]
    trunk = next(t for t in config.trunks if t.name == "mnl-blr")  # type: ignore[attr-defined]
    tfields = {f.name: f.default for f in dataclasses.fields(Trunk)}
    assert (
        trunk.order == tfields["order"] and trunk.qualify_frequency == tfields["qualify_frequency"]
    )
    assert blr.offering("orders").queue == QueueSettings()
    bfields = {f.name: f.default for f in dataclasses.fields(BridgeSettings)}
    assert config.bridge.log_level == bfields["log_level"]  # type: ignore[attr-defined]


def test_no_private_imports_between_config_modules() -> None:
    for name in ("loader.py", "ivr_loader.py"):
        source = (REPO / "ccbridge" / "config" / name).read_text()
        imports = re.findall(
            r"^from ccbridge\.config\.(\w+) import ([^\n(]+|\([^)]*\))", source, re.M
        )
        for module, names in imports:
            private = [n for n in re.findall(r"\b\w+\b", names) if n.startswith("_")]
            assert not private, f"{name} imports {private} from {module}"


def test_a_complex_key_is_an_error_not_a_crash(lab_text: str) -> None:
    # Found by the junk-line property in test_check_command: `?` starts a complex key.
    text = lab_text.replace(
        "    rtp: [11000, 11999]\n", "    rtp: [11000, 11999]\n    ? [a, b]\n    : 1\n"
    )
    (msg,) = problems(text)
    assert msg.startswith(f"deploy.yaml:{line_of(text, '? [a, b]')}: sites.dhaka: ")
    assert "unsupported mapping key" in msg
