"""IVR and self-service config: the lab's menus load; mistakes name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccbridge.checks import prompt_problems, prompt_report
from ccbridge.config import Config, ConfigError, parse_config
from ccbridge.config.ivr import Destination, DestKind

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "ami")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "tok")


@pytest.fixture
def lab_text() -> str:
    return LAB.read_text()


def parse(text: str) -> Config:
    return parse_config(text, "deploy.yaml", REPO / "examples")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def line_of(text: str, needle: str) -> int:
    return text.splitlines().index(next(x for x in text.splitlines() if needle in x)) + 1


def test_lab_menus_lookups_and_backend_load(lab_text: str) -> None:
    c = parse(lab_text)
    lang = c.ivr.menu("language")
    assert lang is not None and lang.retries == 2 and lang.timeout == 3
    assert dict(lang.options)["2"] == Destination(DestKind.MENU, "main", "bn")
    assert lang.final == Destination(DestKind.SERVICE, "orders", "en")
    main = c.ivr.menu("main")
    assert main is not None and dict(main.options)["9"].kind is DestKind.REPEAT
    lookup = c.ivr.lookup("order-status")
    assert lookup is not None and lookup.min_digits == 4 and dict(lookup.answers)["shipped"]
    assert c.self_service is not None and c.self_service.budget == pytest.approx(2.2)
    assert c.number("+918000000003").menu == "language"  # type: ignore[union-attr]
    assert c.number("+918000000001").menu is None  # type: ignore[union-attr]


def test_a_config_without_ivr_has_empty_settings(lab_text: str) -> None:
    text = lab_text.split("\nself_service:")[0].replace(", menu: language", "")
    c = parse(text)
    assert c.ivr.menus == () and c.self_service is None


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        (
            '"2": {language: bn, menu: main}',
            '"2": {language: bn, menu: mian}',
            "options.2.menu",
            "no menu 'mian' in ivr.menus",
        ),
        (
            '"2": {language: bn, menu: main}',
            '"22": {language: bn, menu: main}',
            "options.22",
            "single keypad keys",
        ),
        (
            '"2": {language: bn, menu: main}',
            '"2": {language: xx, menu: main}',
            "options.2.language",
            "language 'xx' is not in the top-level languages",
        ),
        (
            '"2": {language: bn, menu: main}',
            '"2": {language: bn}',
            "options.2",
            "exactly one of menu, service, lookup or action",
        ),
        (
            '"0": operator\n    main:',
            '"0": opertor\n    main:',
            "options.0.action",
            "unknown action 'opertor'",
        ),
        (
            "final: operator",
            "final: repeat",
            "menus.main.final.action",
            "'repeat' only makes sense as a menu option",
        ),
        ("greeting: [hello]", "greeting: [hello&world]", "greeting[0]", "invalid prompt name"),
        (
            '"1": {service: orders}',
            '"1": {service: sales}',
            "options.1.service",
            "no service 'sales' in services",
        ),
        ("retries: 2", "retries: 20", "menus.language.retries", "out of range 0..10"),
        ("min_digits: 4", "min_digits: 9", "order-status.min_digits", "above max_digits 8"),
        (
            "menu: language}",
            "menu: langauge}",
            "numbers.+918000000003.menu",
            "no menu 'langauge' in ivr.menus",
        ),
        (
            "url: http://127.0.0.1:8099/lookup",
            "url: ftp://x/lookup",
            "self_service.url",
            "http:// or https://",
        ),
        (
            "timeout: 1.0  ",
            "timeout: 3.0  ",
            "self_service",
            "must stay under bridge.agi_session_timeout (5 s)",
        ),
    ],
)
def test_ivr_mistakes_name_file_line_and_key(
    lab_text: str, old: str, new: str, key: str, message: str
) -> None:
    assert old in lab_text, old
    text = lab_text.replace(old, new, 1)
    found = problems(text)
    assert any(key in p and message in p for p in found), found
    assert all(p.startswith("deploy.yaml:") for p in found)


def test_the_line_is_the_option_s_line(lab_text: str) -> None:
    text = lab_text.replace('"3": {lookup: order-status}', '"3": {lookup: order-stat}')
    (p,) = problems(text)
    assert p.startswith(f"deploy.yaml:{line_of(text, 'order-stat}')}:")


def test_a_lookup_needs_the_backend(lab_text: str) -> None:
    start = lab_text.index("\nself_service:")
    end = lab_text.index("\n# IVR menus")
    text = lab_text[:start] + lab_text[end:]
    assert any("a lookup needs a top-level self_service section" in p for p in problems(text))


def _sounds(tmp_path: Path) -> Path:
    sounds = tmp_path / "sounds"
    for name in (
        "hello",
        "vm-press",
        "please-try-again",
        "dir-pls-enter",
        "vm-then-pound",
        "one-moment-please",
        "sorry",
        "auth-thankyou",
        *(f"digits/{d}" for d in range(10)),
    ):
        f = sounds / "en" / f"{name}.gsm"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    return sounds


def test_check_reports_prompts_in_no_language(lab_text: str, tmp_path: Path) -> None:
    text = lab_text.replace("greeting: [hello]", "greeting: [welcome-acme]")
    c = parse(text)
    sounds = _sounds(tmp_path)
    (problem,) = prompt_problems(c, sounds)
    assert "prompt 'welcome-acme' (menu language) exists in no language" in problem
    # A custom English recording makes it exist: other languages fall back to it.
    custom = tmp_path / "prompts" / "en"
    custom.mkdir(parents=True)
    (custom / "welcome-acme.wav").write_bytes(b"x")
    c2 = parse(text.replace("ivr:\n", f"ivr:\n  prompts_dir: {tmp_path / 'prompts'}\n"))
    assert prompt_problems(c2, sounds) == []
    report = prompt_report(c2, sounds)
    assert report.english_only["welcome-acme"] == {"hi", "bn", "ur", "tl"}


def test_check_refuses_a_configured_sounds_dir_that_is_missing(lab_text: str) -> None:
    c = parse(lab_text.replace("ivr:\n", "ivr:\n  sounds_dir: /nonexistent/sounds\n"))
    assert prompt_problems(c) == [
        "ivr.sounds_dir: /nonexistent/sounds is not a folder of Asterisk sounds"
    ]
