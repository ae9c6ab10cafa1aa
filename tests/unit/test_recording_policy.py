"""The recording policy (issue 14): the `recording:` section parsed with clear errors, the
per-call sample, the bridge's CCB_RECORD, and the policy rendered into each site's
dialplan so calls follow it with the bridge down."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ccbridge import variables as v
from ccbridge.config import ConfigError, parse_config
from ccbridge.config.model import Config
from ccbridge.recording.policy import record_variable, sample
from ccbridge.render import render_site

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"
KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # base64 of 32 bytes

SECTION = """
store: {url: "sqlite:///var/test.db"}
recording:
  policy: {orders: all, returns: 25%, care: none}
  sites:
    dhaka:
      policy: {orders: "10%"}
      spool: /var/spool/asterisk/rec
      pickup: /srv/dhaka-rec
  announcement: {en: custom/recorded, hi: custom/recorded}
  storage: {dir: /srv/recordings}
  keys:
    current: k2026
    k2025: {env: CCB_TEST_KEY_OLD}
    k2026: {env: CCB_TEST_KEY}
"""


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "t")
    monkeypatch.setenv("CCB_TEST_KEY", KEY)
    monkeypatch.setenv("CCB_TEST_KEY_OLD", KEY)


def parse(extra: str) -> Config:
    return parse_config(LAB.read_text() + extra, "deploy.yaml", REPO / "examples")


def problems(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(extra)
    return [str(p) for p in info.value.problems]


def test_the_section_parses_into_policies_overrides_keys_and_storage() -> None:
    rec = parse(SECTION).recording
    assert rec is not None
    assert rec.percent("bangalore", "orders") == 100
    assert rec.percent("bangalore", "returns") == 25
    assert rec.percent("bangalore", "care") == 0
    assert rec.percent("dhaka", "orders") == 10  # the site's override
    assert rec.percent("dhaka", "returns") == 25  # not overridden: the service's
    assert rec.site("dhaka").pickup_dir == "/srv/dhaka-rec"
    assert rec.site("manila").pickup_dir == rec.site("manila").spool  # same host
    assert rec.storage_dir == "/srv/recordings"
    assert rec.current_key == "k2026" and [k.key_id for k in rec.keys] == ["k2025", "k2026"]
    assert rec.prompt("hi") == "custom/recorded" and rec.prompt("bn") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("returns: 25%", None),
        ("returns: 125%", "recording.policy.returns: a percentage is 0-100, got 125"),
        (
            "returns: some",
            "recording.policy.returns: expected all, none or a percentage like 25%, got 'some'",
        ),
        (
            "returns: true",
            "recording.policy.returns: expected all, none or a percentage like 25%, got true/false",
        ),
        ("returns: -5", "recording.policy.returns: a percentage is 0-100, got -5"),
        ("sales: all", "recording.policy.sales: service 'sales' is not in the top-level services"),
    ],
)
def test_bad_policies_are_named_with_their_key(change: str, message: str | None) -> None:
    text = SECTION.replace("returns: 25%", change)
    if message is None:
        parse(text)
        return
    assert any(message in p for p in problems(text)), problems(text)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "    dhaka:\n",
            "    dacca:\n",
            "recording.sites.dacca: site 'dacca' is not in the top-level sites",
        ),
        (
            "spool: /var/spool/asterisk/rec",
            "spool: rec; rm -rf /",
            "recording.sites.dhaka.spool: invalid folder",
        ),
        ("spool: /var/spool/asterisk/rec", "spool: /var/../etc", "invalid folder"),
        (
            "en: custom/recorded",
            "xx: custom/recorded",
            "recording.announcement.xx: language 'xx' is not in the top-level languages",
        ),
        ("en: custom/recorded", 'en: "../x"', "recording.announcement.en: invalid prompt name"),
        (
            "current: k2026",
            "current: k9",
            "recording.keys.current: current key 'k9' is not one of the keys listed here",
        ),
        ("k2026: {env: CCB_TEST_KEY}", "k2026: abc", "secrets must not be written in the config"),
        ("k2026: {env: CCB_TEST_KEY}", "k 26: {env: CCB_TEST_KEY}", "invalid key ID 'k 26'"),
        (
            "storage: {dir: /srv/recordings}",
            "storage: {bucket: x}",
            "recording.storage.bucket: unknown key 'bucket'",
        ),
        (
            "  storage:",
            "  stroage:",
            "recording.stroage: unknown key 'stroage' (did you mean 'storage'?)",
        ),
    ],
)
def test_bad_sections_are_named_with_their_key(old: str, new: str, message: str) -> None:
    found = problems(SECTION.replace(old, new, 1))
    assert any(message in p for p in found), found


def test_a_key_that_is_not_32_bytes_of_base64_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCB_TEST_KEY", "not-base64!")
    found = problems(SECTION)
    assert any(
        "recording.keys.k2026: the key from env:CCB_TEST_KEY is not base64 of 32 bytes" in p
        for p in found
    ), found
    monkeypatch.setenv("CCB_TEST_KEY", "c2hvcnQ=")  # 'short'
    assert any("not base64 of 32 bytes" in p for p in problems(SECTION))


def test_recording_needs_a_store_for_its_index() -> None:
    found = problems(SECTION.replace('store: {url: "sqlite:///var/test.db"}\n', ""))
    assert any("recording: recording needs a store: section" in p for p in found), found


def test_the_sample_follows_the_percentage() -> None:
    assert sample(100, lambda: 0.999999) and not sample(0, lambda: 0.0)
    assert sample(25, lambda: 0.2499) and not sample(25, lambda: 0.25)
    rng = random.Random(14)
    hits = sum(sample(25, rng.random) for _ in range(20_000))
    assert 4_700 < hits < 5_300  # 25 % within 1.5 points (seeded)


def test_the_bridge_sets_ccb_record_per_call() -> None:
    rec = parse(SECTION).recording
    assert record_variable(rec, "bangalore", "orders") == v.RECORD_YES
    assert record_variable(rec, "bangalore", "care") == v.RECORD_NO
    assert record_variable(rec, "dhaka", "orders", lambda: 0.05) == v.RECORD_YES
    assert record_variable(rec, "dhaka", "orders", lambda: 0.5) == v.RECORD_NO
    assert record_variable(None, "dhaka", "orders") == ""  # no recording: section
    assert record_variable(rec, None, "orders") == ""  # no queue: nothing to decide


def test_the_dialplan_carries_the_policy_for_the_static_route() -> None:
    config = parse(SECTION)
    blr = render_site(config, config.site("bangalore"))["extensions.conf"]
    dac = render_site(config, config.site("dhaka"))["extensions.conf"]
    # every queue samples only when the bridge decided nothing, with this site's policy
    assert f'ExecIf($["${{{v.RECORD}}}"=""]?Set(__{v.RECORD}=1))' in blr  # orders: all
    assert "${RAND(0,9999)} < 2500" in blr  # returns: 25%
    assert f'ExecIf($["${{{v.RECORD}}}"=""]?Set(__{v.RECORD}=0))' in blr  # care: none
    assert "${RAND(0,9999)} < 1000" in dac  # dhaka's orders: 10%
    assert "Queue(orders-en,,,,300,,ccb-record-start)" in blr
    assert "Playback(custom/recorded)" in blr
    # the file: call ID and site only (and the channel's uniqueid), never a caller string
    start = blr[blr.index("[ccb-record-start]") :].split("\n\n")[0]
    assert "CALLERID" not in start and "/var/spool/asterisk/ccb-recordings/" in start
    assert (
        "MixMonitor(${name}.part.wav,bi(CCB_RECORDING_ID),mv ${name}.part.wav ${name}.wav)" in start
    )
    assert "/var/spool/asterisk/rec/" in dac  # dhaka's own spool
    # the decision travels with a call sent to another site
    assert f"PJSIP_HEADER(add,{v.HEADER_RECORD})" in blr
    assert f"PJSIP_HEADER(read,{v.HEADER_RECORD})" in dac


def test_without_the_section_nothing_is_rendered() -> None:
    config = parse("")
    text = render_site(config, config.site("bangalore"))["extensions.conf"]
    assert "MixMonitor" not in text and v.RECORD not in text


def test_the_recording_dialplan_passes_the_static_checks() -> None:
    """Every jump, the gosub context and each CCB_ variable are known to `render --verify`
    (the lab test loads the same dialplan into a real Asterisk)."""
    from ccbridge.deploy.static import check_dialplan
    from ccbridge.deploy.verify import render_mapped

    config = parse(SECTION)
    for site in config.sites:
        render = render_mapped(config, site)
        problems = check_dialplan(render.plan, render.files, config, site)
        assert problems == [], problems
