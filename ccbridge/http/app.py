"""aiohttp app: health, readiness, metrics and the v1 API; the one place errors become statuses."""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from ccbridge.routing.engine import CallRequest
from ccbridge.routing.state import ewt

if TYPE_CHECKING:
    from ccbridge.app import Bridge

log = logging.getLogger("ccbridge.http")

BRIDGE: web.AppKey[Bridge] = web.AppKey("bridge")
MAX_BODY = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error with a stable machine id; the HTTP status is chosen here, not in the domain."""

    def __init__(self, status: int, error_id: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.details = details


def error_response(status: int, error_id: str, message: str, **details: Any) -> web.Response:
    body: dict[str, Any] = {"error": error_id, "message": message}
    if details:
        body["details"] = details
    return web.json_response(body, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.error_id, str(exc), **exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_id = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}.get(
            exc.status, "http-error"
        )
        return error_response(exc.status, error_id, exc.reason)
    except Exception:
        log.exception("API handler failed for %s %s", request.method, request.path)
        return error_response(500, "internal-error", "internal error; see the bridge log")


def require_token(request: web.Request) -> None:
    """Mutating endpoints need `Authorization: Bearer <api_token>` from the config's secret."""
    token = request.app[BRIDGE].config.bridge.api_token
    if token is None or not token.reveal():
        raise ApiError(403, "api-disabled", "mutating API is disabled: no bridge.api_token set")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.reveal().encode()
    ):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token")


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "body-too-large", f"request body over {MAX_BODY} bytes")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "body-too-large", f"request body over {MAX_BODY} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid-json", f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid-body", "body must be a JSON object")
    return body


def _field(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ApiError(400, "missing-field", f"'{key}' is required", field=key)
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid-field", f"'{key}' must be a string", field=key)
    return value


# -- handlers -------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE]
    checks = bridge.readiness()
    ready = all(checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def sites(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE]
    st = bridge.state
    out = []
    for site in bridge.config.sites:
        s = st.sites.get(site.name)
        link = bridge.links.get(site.name)
        out.append(
            {
                "name": site.name,
                "timezone": site.timezone,
                "country": site.country,
                "up": bool(s and s.up),
                "synced": bool(s and s.synced),
                "drained": bool(s and s.drained),
                "up_since": s.up_since if s else None,
                "link": link.state.value if link else None,
            }
        )
    return web.json_response({"sites": out, "synced": st.synced})


async def queues(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE]
    out = []
    for name, s in bridge.state.sites.items():
        for qname, q in sorted(s.queues.items()):
            e = ewt(q)
            out.append(
                {
                    "site": name,
                    "queue": qname,
                    "logged_in": q.logged_in,
                    "available": q.available,
                    "paused": q.paused,
                    "waiting": q.waiting,
                    "expected_wait": None if math.isinf(e) else round(e, 1),
                    "avg_talk": q.avg_talk,
                    "avg_hold": q.avg_hold,
                    "completed": q.completed,
                    "abandoned": q.abandoned,
                }
            )
    return web.json_response({"queues": out})


async def route_preview(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE]
    body = await json_body(request)
    did = _field(body, "did", required=True) or ""
    at_s = _field(body, "at")
    now = bridge.clock.now()
    if at_s:
        try:
            now = datetime.fromisoformat(at_s)
        except ValueError:
            raise ApiError(
                400, "invalid-field", f"'at' is not ISO 8601: {at_s!r}", field="at"
            ) from None
        if now.tzinfo is None:
            raise ApiError(400, "invalid-field", "'at' needs an offset or Z", field="at")
    site = _field(body, "site") or _receiving_site(bridge, did)
    call = CallRequest(
        did=did,
        caller=_field(body, "caller") or "",
        receiving_site=site,
        ivr_language=_field(body, "lang"),
        service=_field(body, "service"),
    )
    decision = bridge.router.decide(call, bridge.state, now)
    return web.json_response({"at": now.isoformat(), "decision": decision.as_dict()})


def _site_name(request: web.Request) -> str:
    name = request.match_info["name"]
    bridge = request.app[BRIDGE]
    if name not in {s.name for s in bridge.config.sites}:
        raise ApiError(404, "no-such-site", f"no site named {name!r}", site=name)
    return name


async def drain(request: web.Request) -> web.Response:
    require_token(request)
    name = _site_name(request)
    request.app[BRIDGE].set_drained(name, True)
    return web.json_response({"site": name, "drained": True})


async def undrain(request: web.Request) -> web.Response:
    require_token(request)
    name = _site_name(request)
    request.app[BRIDGE].set_drained(name, False)
    return web.json_response({"site": name, "drained": False})


async def trunks(request: web.Request) -> web.Response:
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
        for t, h, usable in request.app[BRIDGE].trunks_now()
    ]
    return web.json_response({"trunks": out})


def _receiving_site(bridge: Bridge, did: str) -> str:
    number = bridge.config.number(did)
    return number.site if number else (bridge.config.sites[0].name if bridge.config.sites else "")


def build_app(bridge: Bridge) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_BODY)
    app[BRIDGE] = bridge
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(bridge.registry))
    app.router.add_get("/api/v1/sites", sites)
    app.router.add_get("/api/v1/queues", queues)
    app.router.add_post("/api/v1/route/preview", route_preview)
    app.router.add_get("/api/v1/trunks", trunks)
    app.router.add_post("/api/v1/sites/{name}/drain", drain)
    app.router.add_post("/api/v1/sites/{name}/undrain", undrain)
    from ccbridge.http.calls import add_routes as add_call_routes  # it imports this module

    add_call_routes(app)
    from ccbridge.http.agents import add_routes as add_agent_routes  # it imports this module

    add_agent_routes(app)
    return app
