"""IVR dialplan rendering: entry points, menus, lookups, prompts and the bridge-down routes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccbridge.config import Config, load_config
from ccbridge.ivr_render import PromptResolver, choice_fallbacks, custom_prompts
from ccbridge.render import render_site

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> Config:
    mp = pytest.MonkeyPatch()
    mp.setenv("CCBRIDGE_AMI_SECRET", "x")
    mp.setenv("CCBRIDGE_API_TOKEN", "t")
    try:
        return load_config(REPO / "examples" / "lab.yaml")
    finally:
        mp.undo()


def test_only_numbers_with_a_menu_enter_the_ivr(config: Config) -> None:
    text = render_site(config, config.site("bangalore"))["extensions.conf"]
    assert "#include ivr.conf" in text
    # (each number's first priority gives the call its ID: ccbridge/records/callid.py)
    menu = text.split("exten => +918000000003,1,")[1].split("exten =>")[0]
    plain = text.split("exten => +918000000001,1,")[1].split("exten =>")[0]
    assert " same => n,Goto(ccb-ivr-entry,${EXTEN},1)" in menu
    assert " same => n,Goto(ccb-route,${EXTEN},1)" in plain
    assert "?site=bangalore&lang=${CCB_IVR_LANGUAGE}&service=${CCB_IVR_SERVICE}&callid=" in text
    assert "?ccb-ivr-fallback,${CCB_IVR_SERVICE}-${CCB_IVR_LANGUAGE},1)" in text


def test_a_language_choice_sets_the_channel_language_and_the_variable(config: Config) -> None:
    ivr = render_site(config, config.site("bangalore"))["ivr.conf"]
    two = ivr.split("exten => 2,1,")[1].split("exten =>")[0]
    assert "Set(CHANNEL(language)=bn)" in two and "Set(CCB_IVR_LANGUAGE=bn)" in two
    assert "Goto(ccb-ivr-m-main,s,1)" in two
    assert " same => n,GotoIf($[${CCB_IVR_TRIES} > 2]?final,1)" in ivr
    final = ivr.split("[ccb-ivr-m-language]")[1].split("exten => final,1,")[1].split("\n\n")[0]
    assert "Set(CCB_IVR_SERVICE=orders)" in final and "Goto(ccb-route,${CCB_DID},1)" in final


def test_the_lookup_offers_an_agent_when_the_answer_is_missing(config: Config) -> None:
    ivr = render_site(config, config.site("bangalore"))["ivr.conf"]
    # through the AGI guard beside the site (bridge.agi_guard): its lookup listener
    assert "AGI(agi://127.0.1.1:4581/lookup?name=order-status&site=bangalore&digits=" in ivr
    assert '"${AGISTATUS}"!="SUCCESS" | "${CCB_LOOKUP_RESULT}"!="ok"]?failed,1)' in ivr
    failed = ivr.split("exten => failed,1,")[1].split("\n\n")[0]
    assert failed.startswith("Playback(sorry&one-moment-please)")
    assert "Goto(ccb-route,${CCB_DID},1)" in failed
    assert "exten => answer-default,1," in ivr


def test_static_routes_per_choice_cross_a_trunk_when_needed(config: Config) -> None:
    views = {f.key: f for f in choice_fallbacks(config, config.site("bangalore"))}
    assert views["orders-hi"].trunks == ()
    assert (
        views["orders-bn"].trunks == ("blr-dac", "blr-dac-2")
        and views["orders-bn"].queue == "orders-bn"
    )
    assert "orders-ur" not in views  # served nowhere: the number's own fallback


def test_custom_recordings_play_by_path_so_asterisk_adds_the_language(tmp_path: Path) -> None:
    (tmp_path / "bn").mkdir()
    (tmp_path / "bn" / "welcome-acme.wav").write_bytes(b"x")
    (tmp_path / "bn" / "notes.txt").write_text("not a sound")
    custom = custom_prompts(tmp_path)
    assert custom == {"welcome-acme": {"bn"}}
    resolve = PromptResolver(custom, "/var/lib/asterisk/sounds/ccbridge")
    assert resolve(["welcome-acme", "digits/1"]) == (
        "/var/lib/asterisk/sounds/ccbridge/welcome-acme&digits/1"
    )
