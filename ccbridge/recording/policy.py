"""Whether one call is recorded: the configured share of a service's calls at a site, sampled."""

from __future__ import annotations

import random
from collections.abc import Callable

from ccbridge import variables as v
from ccbridge.config.recording import ALL, NONE, RecordingSettings


def sample(percent: float, draw: Callable[[], float] = random.random) -> bool:
    """True for about ``percent`` % of calls; ``draw`` gives a uniform number in [0, 1)."""
    if percent >= ALL:
        return True
    if percent <= NONE:
        return False
    return draw() * 100.0 < percent


def record_variable(
    settings: RecordingSettings | None,
    site: str | None,
    service: str | None,
    draw: Callable[[], float] = random.random,
) -> str:
    """The RECORD value for a call routed to a queue of ``service`` at ``site``; empty when
    recording is off or the call goes to no queue (the dialplan then decides nothing)."""
    if settings is None or not site or not service:
        return ""
    return v.RECORD_YES if sample(settings.percent(site, service), draw) else v.RECORD_NO
