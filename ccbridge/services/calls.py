"""Calls: outbound calls and callbacks through the best healthy carrier trunk."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass

from ccbridge import variables as v
from ccbridge.ami.client import AmiError
from ccbridge.config.model import queue_name
from ccbridge.logs import ctx, mask_number
from ccbridge.routing.outbound import plan_outbound
from ccbridge.services.errors import ServiceError
from ccbridge.services.ports import Runtime

log = logging.getLogger("ccbridge.services.calls")

E164 = re.compile(r"\+[1-9][0-9]{6,15}")  # fullmatch: "$" would let a trailing LF in
RING_SECONDS = 45


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """An outbound call handed to a site (Originate is asynchronous: not yet answered)."""

    id: str
    site: str
    trunks: tuple[str, ...]
    caller_id: str | None
    queue: str
    reasons: tuple[str, ...]


class CallService:
    """Places calls on the site and carrier trunks the outbound planner picks."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    async def originate(
        self,
        to: str,
        *,
        queue: str | None = None,
        service: str | None = None,
        language: str | None = None,
        site: str | None = None,
    ) -> OutboundCall:
        """Dial ``to`` first; on answer the call joins ``queue`` (or the queue of
        ``service`` in ``language``, by default the called country's language)."""
        config = self._rt.config
        if not E164.fullmatch(to):
            raise ServiceError(
                "invalid-field", "'to' must be an E.164 number like +919812345678", field="to"
            )
        if site is not None and site not in {s.name for s in config.sites}:
            raise ServiceError("no-such-site", f"no site named {site!r}", field="site")
        plan = plan_outbound(config, self._rt.state, to, site)
        if not plan.possible or plan.site is None:
            raise ServiceError(
                "no-carrier", "no site can place this call now", reasons=list(plan.reasons)
            )
        target = self._queue(plan.site, plan.country, queue, service, language)
        link = self._rt.links.get(plan.site)
        if link is None:
            raise ServiceError("site-down", f"site {plan.site} has no AMI link", site=plan.site)
        call_id = uuid.uuid4().hex
        variables = {
            f"__{v.TRUNK_COUNT}": str(len(plan.trunks)),
            **{f"__{v.trunk_var(i)}": t for i, t in enumerate(plan.trunks, 1)},
            f"__{v.CALLER_ID}": plan.caller_id or "",
            f"__{v.RING_SECONDS}": str(RING_SECONDS),
            f"__{v.QUEUE}": target,
        }
        try:
            await link.action(
                "Originate",
                {
                    "Channel": f"Local/{to}@ccb-outbound/n",
                    "Context": "ccb-queue",
                    "Exten": target,
                    "Priority": "1",
                    # The queue half's caller ID: what the agent who takes the call is
                    # shown. The carrier half presents the site's number (CALLER_ID,
                    # ccb-outbound).
                    "CallerID": to,
                    "Timeout": str((RING_SECONDS * len(plan.trunks) + 5) * 1000),
                    "Async": "true",
                    "Variable": [f"{k}={val}" for k, val in variables.items()],
                },
                as_list=False,
            )
        except (AmiError, TimeoutError) as exc:
            raise ServiceError(
                "originate-failed", f"site {plan.site} refused the call: {exc}", site=plan.site
            ) from None
        log.info(
            "outbound call",
            extra=ctx(call=call_id, to=mask_number(to), site=plan.site, queue=target),
        )
        return OutboundCall(
            call_id, plan.site, tuple(plan.trunks), plan.caller_id, target, tuple(plan.reasons)
        )

    def _queue(
        self,
        site: str,
        country: str | None,
        queue: str | None,
        service: str | None,
        language: str | None,
    ) -> str:
        config = self._rt.config
        offered = {
            queue_name(o.service, lang) for o in config.site(site).offerings for lang in o.languages
        }
        if queue is None:
            if service is None:
                raise ServiceError("missing-field", "give 'queue', or 'service' (and 'language')")
            if language is None and country:
                c = config.country(country)
                language = c.default_language if c else None
            queue = queue_name(service, str(language))
        if queue not in offered:
            raise ServiceError(
                "no-such-queue", f"site {site} has no queue {queue!r}", queues=sorted(offered)
            )
        return queue
