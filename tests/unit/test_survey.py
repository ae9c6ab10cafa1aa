"""The satisfaction survey: its config (mistakes name file, line and key) and the dialplan
it renders (Queue's `c` option on surveyed queues only, one key 1-5, the UserEvent)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ccbridge import variables
from ccbridge.config import Config, ConfigError, parse_config
from ccbridge.config.survey import DEFAULT_PROMPT, SurveySettings
from ccbridge.render import render_site

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "ami")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "tok")


def without_survey() -> str:
    text = LAB.read_text()
    return text[: text.index("\nsurvey:")] + "\n"


def parse(text: str) -> Config:
    return parse_config(text, "deploy.yaml", REPO / "examples")


def with_survey(body: str) -> tuple[str, int]:
    """The lab's file with ``body`` as its survey section, and the section's line."""
    base = without_survey()
    return base + "survey:\n" + body, base.count("\n") + 1


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def test_the_lab_surveys_care_and_the_defaults_fill_in() -> None:
    assert parse(LAB.read_text()).survey == SurveySettings(
        ("care",), ("vm-press", "digits/1", "digits/5"), ("auth-thankyou",), 4
    )
    assert parse(without_survey()).survey is None
    text, _ = with_survey("  services: [orders, returns]\n")
    assert parse(text).survey == SurveySettings(("orders", "returns"), DEFAULT_PROMPT)


@pytest.mark.parametrize(
    ("body", "offset", "message"),
    [
        ("  services: [sales]\n", 1, "survey.services[0]: service 'sales' is not in the "),
        ("  services: []\n", 1, "survey.services: name at least one service"),
        ("  services: [care, care]\n", 1, "survey.services: a service is listed twice"),
        ("  prompt: [x]\n", 0, "survey: missing required key 'services'"),
        (
            "  services: [care]\n  prompt: 'welcome,1'\n",
            2,
            "survey.prompt: invalid prompt name 'welcome,1'",
        ),
        (
            "  services: [care]\n  thanks: ['../../etc/x']\n",
            2,
            "survey.thanks[0]: invalid prompt name",
        ),
        ("  services: [care]\n  timeout: 0\n", 2, "survey.timeout: 0 is out of range 1..30"),
        ("  services: [care]\n  timeout: 5s\n", 2, "survey.timeout: expected a whole number"),
        ("  services: [care]\n  timout: 5\n", 2, "unknown key 'timout' (did you mean 'timeout'?)"),
        ("  [care]\n", 0, "survey: expected a mapping, got a list"),
    ],
)
def test_mistakes_name_the_file_line_and_key(body: str, offset: int, message: str) -> None:
    text, line = with_survey(body)
    got = problems(text)
    assert len(got) == 1, got
    assert got[0].startswith(f"deploy.yaml:{line + offset}: "), got
    assert message in got[0], got


def _ext(config: Config, site: str) -> str:
    return render_site(config, config.site(site))["extensions.conf"]


def test_only_surveyed_queues_continue_into_the_survey() -> None:
    config = parse(LAB.read_text())
    blr = _ext(config, "bangalore")
    queue_lines = dict(re.findall(r"same => n,Queue\(([a-z]+-[a-z]+),([^,]*),", blr))
    assert queue_lines == {
        "orders-en": "",
        "orders-hi": "",
        "returns-en": "",
        "returns-hi": "",
        "care-en": "c",
    }
    assert "exten => CONTINUE,1,Goto(ccb-survey,s,1)" in blr
    survey = blr[blr.index("[ccb-survey]") :].split("\n\n")[0].splitlines()
    assert survey[1:] == [
        "exten => s,1,Read(score,vm-press&digits/1&digits/5,1,,1,4)",
        ' same => n,GotoIf($["${READSTATUS}"!="OK" | "${score}"="" | '
        '"${FILTER(12345,${score})}"!="${score}"]?done)',
        f" same => n,UserEvent({variables.EVENT_SURVEY},CallID: ${{{variables.CALLID}}},"
        f"Score: ${{score}},Queue: ${{{variables.QUEUE}}},Site: bangalore)",
        " same => n,Playback(auth-thankyou)",
        " same => n(done),Hangup()",
    ]
    assert variables.EVENT_SURVEY == "CCBSurvey"  # the name the record ingest consumes
    # manila serves no care: nothing of the survey is rendered there
    mnl = _ext(config, "manila")
    assert "[ccb-survey]" not in mnl and "exten => CONTINUE" not in mnl
    assert re.findall(r"Queue\([a-z]+-[a-z]+,c,", mnl) == []
    # and without the section, no site has any of it
    plain = parse(without_survey())
    for site in plain.sites:
        assert "survey" not in _ext(plain, site.name)


def test_check_reports_a_survey_prompt_found_nowhere(tmp_path: Path) -> None:
    from ccbridge.checks import prompt_problems

    sounds = tmp_path / "sounds"
    (sounds / "en" / "digits").mkdir(parents=True)
    for name in ("vm-press", "digits/1", "digits/5", "auth-thankyou"):
        (sounds / "en" / f"{name}.gsm").write_bytes(b"")
    text, _ = with_survey("  services: [care]\n  prompt: [vm-press, rate-us]\n")
    got = [p for p in prompt_problems(parse(text), sounds) if "(survey)" in p]
    assert len(got) == 1 and "prompt 'rate-us' (survey) exists in no language" in got[0], got
