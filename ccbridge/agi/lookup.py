"""FastAGI `lookup` handler: the digits a caller keyed in -> the backend -> channel variables."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Protocol

from ccbridge import variables as v
from ccbridge.agi.server import AgiSession
from ccbridge.config.ivr import IvrSettings
from ccbridge.logs import ctx, mask_number
from ccbridge.selfservice import LookupResult

log = logging.getLogger("ccbridge.lookup")

_DIGITS_RE = re.compile(r"^[0-9*]{1,64}$")


class Backend(Protocol):
    async def lookup(self, name: str, digits: str, site: str) -> LookupResult: ...


def lookup_variables(result: LookupResult, answers: frozenset[str]) -> dict[str, str]:
    """Variables for the dialplan; RESULT last so a cut session reads as a failure."""
    if not result.ok:
        return {v.LOOKUP_ANSWER: "", v.LOOKUP_SAY: "", v.LOOKUP_RESULT: v.LOOKUP_FAILED}
    answer = result.answer if result.answer in answers else v.LOOKUP_DEFAULT_ANSWER
    return {
        v.LOOKUP_ANSWER: answer,
        v.LOOKUP_SAY: result.say or "",
        v.LOOKUP_RESULT: v.LOOKUP_OK,
    }


def make_lookup_handler(
    ivr: IvrSettings,
    backend: Backend | None,
    on_result: Callable[[str, LookupResult], None] | None = None,
) -> Callable[[AgiSession], Awaitable[None]]:
    async def lookup(session: AgiSession) -> None:
        q = session.request.query
        name, digits, site = q.get("name", ""), q.get("digits", ""), q.get("site", "")
        spec = ivr.lookup(name)
        if spec is None or backend is None:
            result = LookupResult(False, "not_configured")
        elif not _DIGITS_RE.match(digits):
            result = LookupResult(False, "bad_digits")
        else:
            result = await backend.lookup(name, digits, site)
        if on_result is not None:
            on_result(name, result)
        answers = frozenset(a for a, _ in spec.answers) if spec else frozenset()
        # One command per round trip: Asterisk stalls on pipelined AGI commands.
        for var, value in lookup_variables(result, answers).items():
            await session.set_variable(var, value)
        log.info(
            "lookup",
            extra=ctx(
                lookup=name,
                site=site,
                digits=mask_number(digits),
                caller=mask_number(session.request.callerid),
                result=result.reason,
                answer=result.answer,
            ),
        )

    return lookup
