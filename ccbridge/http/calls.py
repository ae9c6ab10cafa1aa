"""POST /api/v1/calls: validate the request, call the call service, serialise the call."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from ccbridge.http.access import requires
from ccbridge.http.base import SERVICES, json_body, string_field


@requires("ccb.calls.originate")
async def originate(request: web.Request) -> web.Response:
    """Body: {"to": "+9198...", "queue": "orders-hi"} or {"to", "service", "language"},
    optional "site". The customer is dialled first; on answer the call joins the queue."""
    body = await json_body(request)
    call = await request.app[SERVICES].calls.originate(
        string_field(body, "to") or "",
        queue=string_field(body, "queue"),
        service=string_field(body, "service"),
        language=string_field(body, "language"),
        site=string_field(body, "site"),
    )
    return web.json_response(asdict(call), status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/calls", originate)
