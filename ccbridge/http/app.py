"""aiohttp app: health, readiness, metrics and the v1 API routes, built over the services."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from aiohttp import web
from prometheus_client import CollectorRegistry

from ccbridge.config.model import SecretValue
from ccbridge.http import (
    access,
    agents,
    calls,
    cluster,
    desk,
    events,
    recordings,
    reports,
    staffing,
)
from ccbridge.http.access import ACCESS, access_middleware, public, requires, scope_sites
from ccbridge.http.base import (
    API_TOKEN,
    MAX_BODY,
    SERVICES,
    ApiError,
    errors_middleware,
    json_body,
    required_string,
    string_field,
)
from ccbridge.http.metrics import metrics_handler
from ccbridge.services import Services
from ccbridge.services.access import AccessService

__all__ = ["build_app"]


@public
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@public
async def readyz(request: web.Request) -> web.Response:
    sites = request.app[SERVICES].sites
    checks = sites.readiness()
    ready = all(checks.values())
    body = {"ready": ready, "checks": checks, "detail": sites.readiness_detail()}
    return web.json_response(body, status=200 if ready else 503)


@requires("ccb.sites.{site}.read")
async def sites(request: web.Request) -> web.Response:
    views, synced = request.app[SERVICES].sites.sites()
    mine = set(scope_sites(request, "ccb.sites.{site}.read"))
    return web.json_response(
        {"sites": [asdict(s) for s in views if s.name in mine], "synced": synced}
    )


@requires("ccb.sites.{site}.read")
async def queues(request: web.Request) -> web.Response:
    views = request.app[SERVICES].sites.queues()
    mine = set(scope_sites(request, "ccb.sites.{site}.read"))
    return web.json_response({"queues": [asdict(q) for q in views if q.site in mine]})


@requires("ccb.sites.{site}.read")
async def trunks(request: web.Request) -> web.Response:
    mine = set(scope_sites(request, "ccb.sites.{site}.read"))
    out = [
        {
            "name": t.name,
            "site": t.site,
            "kind": t.kind.value,
            "peer": t.peer_site,
            "order": t.order,
            "reachable": h.reachable,
            "breaker": h.breaker.value,
            "usable": usable,
            "failed_total": h.failed_total,
            "answered_total": h.answered_total,
        }
        for t, h, usable in request.app[SERVICES].sites.trunks()
        if t.site in mine
    ]
    return web.json_response({"trunks": out})


@requires("ccb.routes.preview")
async def route_preview(request: web.Request) -> web.Response:
    body = await json_body(request)
    did = required_string(body, "did")
    at_s = string_field(body, "at")
    at = None
    if at_s:
        try:
            at = datetime.fromisoformat(at_s)
        except ValueError:
            raise ApiError(
                400, "invalid-field", f"'at' is not ISO 8601: {at_s!r}", field="at"
            ) from None
        if at.tzinfo is None:
            raise ApiError(400, "invalid-field", "'at' needs an offset or Z", field="at")
    preview = request.app[SERVICES].sites.preview(
        did,
        caller=string_field(body, "caller") or "",
        at=at,
        language=string_field(body, "lang"),
        site=string_field(body, "site") or None,
        service=string_field(body, "service"),
    )
    return web.json_response({"at": preview.at.isoformat(), "decision": preview.decision.as_dict()})


@requires("ccb.sites.{name}.drain")
async def drain(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    request.app[SERVICES].sites.set_drained(name, True)
    return web.json_response({"site": name, "drained": True})


@requires("ccb.sites.{name}.drain")
async def undrain(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    request.app[SERVICES].sites.set_drained(name, False)
    return web.json_response({"site": name, "drained": False})


def build_app(
    services: Services,
    *,
    registry: CollectorRegistry,
    api_token: SecretValue | None,
    access_service: AccessService,
) -> web.Application:
    """The API over ``services``; ``/metrics`` serves ``registry``; every other route
    declares its permission (ccbridge/http/access.py), checked by ``access_service``
    (which also takes ``api_token``, the bootstrap admin token)."""
    app = web.Application(
        middlewares=[errors_middleware, access_middleware], client_max_size=MAX_BODY
    )
    app[SERVICES] = services
    app[API_TOKEN] = api_token
    app[ACCESS] = access_service
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", public(metrics_handler(registry)))
    app.router.add_get("/api/v1/sites", sites)
    app.router.add_get("/api/v1/queues", queues)
    app.router.add_post("/api/v1/route/preview", route_preview)
    app.router.add_get("/api/v1/trunks", trunks)
    app.router.add_post("/api/v1/sites/{name}/drain", drain)
    app.router.add_post("/api/v1/sites/{name}/undrain", undrain)
    calls.add_routes(app)
    desk.add_routes(app)
    agents.add_routes(app)
    staffing.add_routes(app)
    reports.add_routes(app)
    access.add_routes(app)
    recordings.add_routes(app)
    cluster.add_routes(app)
    events.add_routes(app)
    return app
