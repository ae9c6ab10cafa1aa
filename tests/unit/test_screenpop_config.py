"""The `screen_pop:` section: defaults, a full section, every bad value named at its line; and
the README's signature check run against the bridge's own signing."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from ccbridge.config import ConfigError, parse_config
from ccbridge.config.model import Config
from ccbridge.screenpop.webhooks import sign

REPO = Path(__file__).resolve().parents[2]
LAB = (REPO / "examples" / "lab.yaml").read_text()

GOOD = """
screen_pop:
  history_days: 14
  history_timeout: 0.25
  history_cache: 0
  webhooks:
    crm:
      url: https://crm.example.com/hooks/ccbridge
      secret: {env: CCB_TEST_WEBHOOK_SECRET}
      timeout: 2
      max_age: 120
      backoff: 0.5
      max_backoff: 30
      queue: 50
      concurrency: 4
    audit-log:
      url: http://127.0.0.1:9000/pops
      secret: {env: CCB_TEST_WEBHOOK_SECRET}
"""


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "y")
    monkeypatch.setenv("CCB_TEST_WEBHOOK_SECRET", "whsec")


def parse(extra: str) -> Config:
    return parse_config(LAB + extra, "deploy.yaml", REPO / "examples")


def problems(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(extra)
    return [str(p) for p in info.value.problems]


def test_without_the_section_pops_go_to_the_stream_only() -> None:
    s = parse("").screen_pop
    assert (s.history_days, s.history_timeout, s.history_cache, s.webhooks) == (30, 0.5, 30.0, ())


def test_a_full_section() -> None:
    s = parse(GOOD).screen_pop
    assert (s.history_days, s.history_timeout, s.history_cache) == (14, 0.25, 0.0)
    crm, log = s.webhooks
    assert (crm.name, crm.url, crm.secret.reveal()) == (
        "crm",
        "https://crm.example.com/hooks/ccbridge",
        "whsec",
    )
    assert (crm.timeout, crm.max_age, crm.backoff, crm.max_backoff) == (2, 120, 0.5, 30)
    assert (crm.queue, crm.concurrency) == (50, 4)
    assert (log.name, log.timeout, log.max_age, log.queue, log.concurrency) == (
        "audit-log",
        5.0,
        300.0,
        1000,
        2,
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("\nscreen_pop: []\n", "screen_pop: expected a mapping, got a list"),
        ("\nscreen_pop: {history_dayz: 3}\n", "unknown key 'history_dayz' (did you mean"),
        ("\nscreen_pop: {history_days: 0}\n", "screen_pop.history_days: 0 is out of range"),
        ("\nscreen_pop: {history_timeout: fast}\n", "history_timeout: expected a number"),
        ("\nscreen_pop: {webhooks: [http://x]}\n", "screen_pop.webhooks: expected a mapping"),
        (
            "\nscreen_pop: {webhooks: {crm: {url: ftp://x/y, secret: {env: E}}}}\n",
            "screen_pop.webhooks.crm.url: expected an http:// or https:// URL, got 'ftp://x/y'",
        ),
        (
            "\nscreen_pop: {webhooks: {crm: {url: 'http://', secret: {env: E}}}}\n",
            "expected an http:// or https:// URL",
        ),
        (
            "\nscreen_pop: {webhooks: {crm: {url: 'http://x', secret: hunter2}}}\n",
            "screen_pop.webhooks.crm.secret: secrets must not be written in the config",
        ),
        ("\nscreen_pop: {webhooks: {crm: {url: 'http://x'}}}\n", "missing required key 'secret'"),
        (
            "\nscreen_pop: {webhooks: {Bad.Name: {url: 'http://x', secret: {env: E}}}}\n",
            "invalid name 'Bad.Name'",
        ),
        (
            "\nscreen_pop: {webhooks: {crm: {url: 'http://x', secret: {env: E}, queue: 0}}}\n",
            "screen_pop.webhooks.crm.queue: 0 is out of range 1..1000000",
        ),
        (
            "\nscreen_pop: {webhooks: {crm: {url: 'http://x', secret: {env: E}, backoff: 9,"
            " max_backoff: 2}}}\n",
            "max_backoff 2.0 is below backoff 9.0",
        ),
        (
            "\nscreen_pop: {webhooks: {crm: {url: 'http://x', secret: {env: E}, timeout: -1}}}\n",
            "timeout: -1 is out of range",
        ),
    ],
)
def test_bad_values_are_named_with_their_key(extra: str, expected: str) -> None:
    found = problems(extra)
    assert any(expected in p for p in found), found


def test_a_secret_that_gives_nothing_is_a_problem_when_secrets_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CCB_TEST_WEBHOOK_SECRET")
    found = problems(GOOD)
    assert any("screen_pop.webhooks.crm.secret: secret not found" in p for p in found), found


def test_the_readme_verification_example_checks_the_bridges_signature() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    [example] = [b for b in blocks if "def verify(" in b and "CCBridge-Signature" in b]
    scope: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), scope)  # our own README's example
    verify = scope["verify"]
    body = b'{"id":"evt_1","type":"agent_ringing"}'
    header = sign(b"whsec", int(time.time()), body)
    assert verify(b"whsec", header, body) is True  # type: ignore[operator]
    assert verify(b"whsec", header, body.replace(b"1", b"2")) is False  # type: ignore[operator]
    assert verify(b"other", header, body) is False  # type: ignore[operator]
    old = sign(b"whsec", int(time.time()) - 3600, body)
    assert verify(b"whsec", old, body) is False  # type: ignore[operator]
