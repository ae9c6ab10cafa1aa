"""POST /api/v1/calls: outbound calls and callbacks through the best healthy carrier trunk."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from aiohttp import web

from ccbridge import variables as v
from ccbridge.ami.client import AmiError
from ccbridge.config.model import queue_name
from ccbridge.http.app import BRIDGE, ApiError, json_body, require_token
from ccbridge.logs import mask_number
from ccbridge.routing.outbound import plan_outbound

if TYPE_CHECKING:
    from ccbridge.app import Bridge

_E164 = re.compile(r"^\+[1-9][0-9]{6,15}$")
RING_SECONDS = 45


async def originate(request: web.Request) -> web.Response:
    """Body: {"to": "+9198...", "queue": "orders-hi"} or {"to", "service", "language"},
    optional "site". The customer is dialled first; on answer the call joins the queue."""
    require_token(request)
    bridge = request.app[BRIDGE]
    body = await json_body(request)
    to = body.get("to")
    if not isinstance(to, str) or not _E164.match(to):
        raise ApiError(
            400, "invalid-field", "'to' must be an E.164 number like +919812345678", field="to"
        )
    site = body.get("site")
    if site is not None and (
        not isinstance(site, str) or site not in {s.name for s in bridge.config.sites}
    ):
        raise ApiError(404, "no-such-site", f"no site named {site!r}", field="site")
    plan = plan_outbound(bridge.config, bridge.state, to, site)
    if not plan.possible or plan.site is None:
        raise ApiError(
            503, "no-carrier", "no site can place this call now", reasons=list(plan.reasons)
        )
    queue = _queue(bridge, body, plan.site, plan.country)
    link = bridge.links.get(plan.site)
    if link is None:
        raise ApiError(503, "site-down", f"site {plan.site} is not connected")
    call_id = uuid.uuid4().hex
    variables = {
        f"__{v.TRUNK_COUNT}": str(len(plan.trunks)),
        **{f"__{v.trunk_var(i)}": t for i, t in enumerate(plan.trunks, 1)},
        f"__{v.CALLER_ID}": plan.caller_id or "",
        f"__{v.RING_SECONDS}": str(RING_SECONDS),
        f"__{v.QUEUE}": queue,
    }
    try:
        await link.action(
            "Originate",
            {
                "Channel": f"Local/{to}@ccb-outbound/n",
                "Context": "ccb-queue",
                "Exten": queue,
                "Priority": "1",
                # The queue half's caller ID: what the agent who takes the call is shown.
                # The carrier half presents the site's number (CALLER_ID, ccb-outbound).
                "CallerID": to,
                "Timeout": str((RING_SECONDS * len(plan.trunks) + 5) * 1000),
                "Async": "true",
                "Variable": [f"{k}={val}" for k, val in variables.items()],
            },
            as_list=False,
        )
    except (AmiError, TimeoutError) as exc:
        raise ApiError(
            503, "originate-failed", f"site {plan.site} refused the call: {exc}"
        ) from None
    request.app.logger.info("outbound call %s to %s via %s", call_id, mask_number(to), plan.site)
    return web.json_response(
        {
            "id": call_id,
            "site": plan.site,
            "trunks": list(plan.trunks),
            "caller_id": plan.caller_id,
            "queue": queue,
            "reasons": list(plan.reasons),
        },
        status=202,
    )


def _queue(bridge: Bridge, body: dict[str, object], site: str, country: str | None) -> str:
    offered = {
        queue_name(o.service, lang)
        for o in bridge.config.site(site).offerings
        for lang in o.languages
    }
    queue = body.get("queue")
    if queue is None:
        service, language = body.get("service"), body.get("language")
        if not isinstance(service, str):
            raise ApiError(400, "missing-field", "give 'queue', or 'service' (and 'language')")
        if language is None and country:
            c = bridge.config.country(country)
            language = c.default_language if c else None
        queue = queue_name(service, str(language))
    if not isinstance(queue, str) or queue not in offered:
        raise ApiError(
            400, "no-such-queue", f"site {site} has no queue {queue!r}", queues=sorted(offered)
        )
    return queue


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/calls", originate)
