"""The `survey:` section: which services ask callers for a 1-5 score after the agent hangs up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ccbridge.config.reader import Reader

DEFAULT_PROMPT = ("vm-press", "digits/1", "digits/2", "digits/3", "digits/4", "digits/5")
DEFAULT_THANKS = ("auth-thankyou",)


@dataclass(frozen=True, slots=True)
class SurveySettings:
    """After an agent hangs up on a call of one of ``services``, the caller hears
    ``prompt`` and has ``timeout`` seconds to press 1-5 (pure dialplan: it works with the
    bridge down); a score sends the CCBSurvey UserEvent, anything else ends the call."""

    services: tuple[str, ...]
    prompt: tuple[str, ...] = DEFAULT_PROMPT
    thanks: tuple[str, ...] = DEFAULT_THANKS
    timeout: int = 5  # seconds for the key press


def parse_survey(r: Reader, v: Any, services: Sequence[str]) -> SurveySettings:
    # prompts are checked as the IVR's are: a sound name that cannot inject arguments
    from ccbridge.config.ivr_loader import parse_prompts

    d = r.mapping(v, {"services", "prompt", "thanks", "timeout"}, {"services"})

    def service(x: Any) -> str:
        s = r.name(x)
        if s not in services:
            raise r.fail(f"service '{s}' is not in the top-level services")
        return s

    chosen = r.req(d, "services", r.str_list(service))
    if not chosen:
        with r.at("services", d):
            raise r.fail("name at least one service, or leave the survey section out")
    if len(set(chosen)) != len(chosen):
        with r.at("services", d):
            raise r.fail("a service is listed twice")
    return SurveySettings(
        services=chosen,
        **r.given(
            d,
            {
                "prompt": lambda x: parse_prompts(r, x),
                "thanks": lambda x: parse_prompts(r, x),
                "timeout": r.integer(1, 30),
            },
        ),
    )
