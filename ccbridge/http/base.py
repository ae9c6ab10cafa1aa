"""What every HTTP resource shares: app keys, errors and their statuses, token check, JSON body.

This is the one place domain errors become HTTP statuses. It imports the services'
types, never the composition root (ccbridge.app), so app.py -> http -> app cannot cycle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from ccbridge.access.roles import Principal
from ccbridge.config.model import SecretValue
from ccbridge.services import ServiceError, Services

log = logging.getLogger("ccbridge.http")

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
API_TOKEN: web.AppKey[SecretValue | None] = web.AppKey("api_token")
# Who is asking, set by the access middleware (ccbridge/http/access.py) before a handler
# of a route that declares a permission runs.
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
MAX_BODY = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The HTTP status of each domain error id (ccbridge.services); an id not listed is a
# bug in the bridge, answered 500 (tests/unit/test_http_errors.py keeps this complete).
STATUS: Final[dict[str, int]] = {
    "invalid-field": 400,
    "missing-field": 400,
    "no-such-queue": 400,
    "site-required": 400,
    "no-such-agent": 404,
    "no-such-site": 404,
    "no-such-call": 404,
    "no-such-recording": 404,
    "recording-off": 404,
    "recording-not-stored": 409,
    "recording-unreadable": 500,
    "numbers-forbidden": 403,
    "forbidden": 403,
    "no-history": 404,
    "static-member": 409,
    # the agent's desk (ccbridge/services/desk.py)
    "no-such-phone": 404,
    "no-such-session": 404,
    "call-ended": 409,
    "call-not-connected": 409,
    "supervisor-busy": 409,
    "session-ended": 409,
    "session-not-active": 409,
    "no-trunk": 503,
    "ami-error": 502,
    "records-unavailable": 503,
    "site-down": 503,
    "too-many-streams": 503,
    "no-carrier": 503,
    "originate-failed": 503,
    "ami-timeout": 504,
}


class ApiError(Exception):
    """A request refused by the HTTP layer itself (bad JSON, wrong token, bad field)."""

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
    except ServiceError as exc:
        status = STATUS.get(exc.error_id)
        if status is None:
            log.error("no HTTP status for service error %s: %s", exc.error_id, exc)
            status = 500
        return error_response(status, exc.error_id, exc.message, **exc.details)
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
    """Kept for older handlers: the access middleware authenticates every route that
    declares a permission (ccbridge/http/access.py); this only asserts it ran."""
    if PRINCIPAL not in request:
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


# -- request fields: JSON types checked here, meaning checked by the services ----------


def string_field(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ApiError(400, "missing-field", f"'{key}' is required", field=key)
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid-field", f"'{key}' must be a string", field=key)
    return value


def required_string(body: dict[str, Any], key: str) -> str:
    value = string_field(body, key, required=True)
    assert value is not None  # string_field raised otherwise
    return value


def names_field(body: dict[str, Any], key: str, *, required: bool = False) -> list[str] | None:
    """A non-empty list of strings, e.g. ``"queues": ["care-en"]``."""
    raw = body.get(key)
    if raw is None:
        if required:
            raise ApiError(400, "missing-field", f"'{key}' is required", field=key)
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(q, str) for q in raw):
        raise ApiError(
            400, "invalid-field", f"'{key}' must be a non-empty list of names", field=key
        )
    return raw


def int_field(body: dict[str, Any], key: str, lo: int, hi: int, default: int) -> int:
    v = body.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ApiError(
            400, "invalid-field", f"'{key}' must be a whole number {lo}..{hi}", field=key
        )
    return int(v)
