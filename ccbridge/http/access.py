"""Who may call what: every route declares its permission here, in one decorator, and one
middleware authenticates, authorises and audits before the handler runs.

Declaring (every handler must, or it answers 403 and tests/unit/test_access_routes.py
fails)::

    @requires("ccb.sites.{name}.drain")      # {name} is the route's own {name}
    async def drain(request): ...

    @requires("ccb.calls.{site}.read", audit=True)   # no {site} in the path: some site;
    async def list_calls(request):                    # the handler scopes its answer
        sites = scope_sites(request, "ccb.calls.{site}.read")

    @public                                   # health, metrics, login
    async def healthz(request): ...

A ``{placeholder}`` the path gives is filled from it; one it does not give means "for
at least one site" (``{site}``), "at least one agent" (``{agent}``) or "at least one
supervision mode" (``{mode}``), and the handler
narrows its answer with ``scope_sites`` / ``scope_agents`` / ``can``.
``alternatives=(...)`` lets a caller holding one of those in instead (the call list:
a site's calls, or an agent's own). ``audit=True`` marks a read of
sensitive data (call lists with numbers, exports): it is audited like every mutating
call. Permission names: ``ccbridge/access/roles.py`` VOCABULARY.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from string import Formatter
from typing import Any, TypeVar

from aiohttp import web

from ccbridge.access.audit import AuditEvent
from ccbridge.access.roles import Principal
from ccbridge.desk import modes
from ccbridge.http.base import (
    PRINCIPAL,
    STATUS,
    ApiError,
    Handler,
    json_body,
    required_string,
)
from ccbridge.services import ServiceError
from ccbridge.services.access import AccessDenied, AccessService
from ccbridge.store.audit import AuditQuery

log = logging.getLogger("ccbridge.http")

ACCESS: web.AppKey[AccessService] = web.AppKey("access", AccessService)
_ATTR = "__ccb_access__"
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REALM = 'Bearer realm="ccbridge"'

H = TypeVar("H", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Declared:
    permission: str | None  # None: public
    audit: bool = False  # audit this read (sensitive data, exports)
    # Permissions that let the caller in instead (an agent's own calls beside a site's
    # calls): the handler narrows its answer to what the caller holds.
    alternatives: tuple[str, ...] = ()

    @property
    def permissions(self) -> tuple[str, ...]:
        return () if self.permission is None else (self.permission, *self.alternatives)


def requires(
    permission: str, *, audit: bool = False, alternatives: tuple[str, ...] = ()
) -> Callable[[H], H]:
    """Declare the permission a handler needs (see the module docstring)."""

    def mark(handler: H) -> H:
        setattr(handler, _ATTR, Declared(permission, audit, alternatives))
        return handler

    return mark


def public(handler: H) -> H:
    """Declare a handler anyone may call (health, metrics, login)."""
    setattr(handler, _ATTR, Declared(None))
    return handler


def declared(handler: object) -> Declared | None:
    return getattr(handler, _ATTR, None)


def principal(request: web.Request) -> Principal:
    p = request.get(PRINCIPAL)
    if not isinstance(p, Principal):
        raise RuntimeError("principal() on a public route")
    return p


def can(request: web.Request, permission: str) -> bool:
    p = request.get(PRINCIPAL)
    return isinstance(p, Principal) and p.can(permission)


def scope_sites(request: web.Request, template: str) -> list[str]:
    """The configured sites for which the caller holds ``template`` (``{site}`` filled)."""
    return principal(request).sites_with(template, request.app[ACCESS].sites)


def scope_agents(request: web.Request, template: str) -> list[str]:
    """The agents (configured, and the caller's own) for which the caller holds
    ``template`` (``{agent}`` filled): an agent user's ``me``."""
    p = principal(request)
    agents = dict.fromkeys([*request.app[ACCESS].agents, *([p.agent] if p.agent else [])])
    return [a for a in agents if p.can(template.format(agent=a))]


def check_site(request: web.Request, site: str | None) -> None:
    """A caller responsible for some sites (a supervisor, a scoped service) acts only
    at those: an action that names no site, or another one, is refused."""
    p = principal(request)
    if not p.sites:
        return
    if site is None:
        raise ApiError(400, "site-required", f"name the site ({', '.join(p.sites)})", field="site")
    if site not in p.sites:
        raise ApiError(403, "forbidden", f"{p.name} may not act at {site}", site=site)


def can_read_numbers(request: web.Request) -> bool:
    """Whether answers and CSV may show caller numbers unmasked."""
    return can(request, "ccb.numbers.read")


def _source(request: web.Request) -> str:
    return (request.remote or "unknown")[:64]


def _object_and_site(info: web.UrlMappingMatchInfo) -> tuple[str | None, str | None]:
    for key, kind in (("name", "site"), ("site", "site"), ("agent", "agent"), ("user", "user")):
        if key in info:
            value = info[key][:100]
            return f"{kind}:{value}", value if kind == "site" else None
    return None, None


def _fields(template: str) -> list[str]:
    return [f for _, f, _, _ in Formatter().parse(template) if f]


def _is_export(request: web.Request) -> bool:
    """A CSV answer is an export: audited like a change."""
    return request.query.get("format") == "csv" or "text/csv" in request.headers.get("Accept", "")


def _authorised(
    p: Principal, template: str, info: web.UrlMappingMatchInfo, access: AccessService
) -> bool:
    fields = _fields(template)
    given = {f: info[f] for f in fields if f in info}
    missing = [f for f in fields if f not in given]
    if not missing:
        return p.can(template.format(**given))
    choices: dict[str, Iterable[str]] = {
        "site": access.sites,
        "agent": access.agents,
        "mode": modes.MODES,  # ccb.supervise.{mode}: the mode is in the body
    }
    if len(missing) != 1 or missing[0] not in choices:
        raise RuntimeError(f"permission {template!r} names an unknown placeholder")
    key = missing[0]
    values = list(choices[key])
    if key == "agent" and p.agent:
        values.append(p.agent)
    return any(p.can(template.format(**given, **{key: v})) for v in values)


def _unauthorised(exc: AccessDenied) -> web.Response:
    status = {"rate-limited": 429, "auth-unavailable": 503}.get(exc.error_id, 401)
    body = {"error": exc.error_id, "message": str(exc)}
    headers: dict[str, str] = {}
    if status == 401:
        err = "" if exc.error_id == "missing-token" else ', error="invalid_token"'
        headers["WWW-Authenticate"] = REALM + err
    if status == 429:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    info = request.match_info
    if info.http_exception is not None:  # no such route or method: nothing to guard
        return await handler(request)
    decl = declared(info.handler)
    if decl is None:
        # Fail closed: a route nobody declared is nobody's (the route test names it).
        log.error("route %s %s declares no permission", request.method, info.route.resource)
        raise ApiError(403, "no-permission-declared", "this route declares no permission")
    if decl.permission is None:
        return await handler(request)
    access = request.app[ACCESS]
    source = _source(request)
    try:
        p = await access.authenticate(request.headers.get("Authorization"), source)
    except AccessDenied as exc:
        return _unauthorised(exc)
    for key in {f for perm in decl.permissions for f in _fields(perm)}:
        if key in info and not _SEGMENT.match(info[key]):
            # A '.' would add ACL segments (and no site or agent has one): no such object.
            raise ApiError(404, "not-found", "no such object")
    action = f"{request.method} {_route_name(info)}" + (" csv" if _is_export(request) else "")
    obj, site = _object_and_site(info)
    if site is None and "site" in request.query:
        site = request.query["site"][:64]
    if not any(_authorised(p, perm, info, access) for perm in decl.permissions):
        access.audit(
            AuditEvent(p.name, source, action, "denied", obj, site, 403, {"needs": decl.permission})
        )
        raise ApiError(403, "forbidden", f"{p.name} may not do this", needs=decl.permission)
    request[PRINCIPAL] = p
    if request.method in _READ_METHODS and not decl.audit and not _is_export(request):
        try:
            return await handler(request)
        except (ApiError, ServiceError) as exc:
            # A read the handler refused for its scope (another site's report) is a
            # denial like the gate's: audited.
            code = exc.status if isinstance(exc, ApiError) else STATUS.get(exc.error_id)
            if code == 403:
                access.audit(AuditEvent(p.name, source, action, "denied", obj, site, 403))
            raise
    # What was asked (filters may hold a caller's number: details are erasable).
    details = {"query": {k: v[:200] for k, v in list(request.query.items())[:20]}}
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiError as exc:
        status = exc.status
        raise
    except ServiceError as exc:
        status = STATUS.get(exc.error_id, 500)
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        result = "ok" if status < 400 else "denied" if status == 403 else "failed"
        access.audit(
            AuditEvent(
                p.name,
                source,
                action,
                result,
                obj,
                site,
                status,
                details if request.query else None,
            )
        )


def _route_name(info: web.UrlMappingMatchInfo) -> str:
    info_ = info.route.resource.get_info() if info.route.resource is not None else {}
    path = info_.get("formatter") or info_.get("path") or "?"
    return str(path)[:70]


# -- the access API: log in, read the audit trail -----------------------------------


@public
async def login(request: web.Request) -> web.Response:
    """Body {"user", "password"}: a token for ``access.login_hours``; failures are
    audited and slowed per address."""
    body = await json_body(request)
    name = required_string(body, "user")
    password = required_string(body, "password")
    try:
        issued = await request.app[ACCESS].login(name[:64], password[:1024], _source(request))
    except AccessDenied as exc:
        return _unauthorised(exc)
    return web.json_response(
        {"token": issued.token, "token_id": issued.id, "expires_at": _z(issued.expires_at)}
    )


def _z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(q: Any, key: str) -> datetime | None:
    raw = q.get(key)
    if raw is None:
        return None
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "invalid-field", f"'{key}' is not ISO 8601", field=key) from None
    if t.tzinfo is None:
        raise ApiError(400, "invalid-field", f"'{key}' needs an offset or Z", field=key)
    return t


def _query(request: web.Request) -> AuditQuery:
    q = request.query
    try:
        after = int(q.get("after", "0"))
        limit = int(q.get("limit", "500"))
    except ValueError:
        raise ApiError(400, "invalid-field", "'after' and 'limit' are whole numbers") from None
    if not 0 <= after < 2**31 or not 1 <= limit <= 5000:
        raise ApiError(400, "invalid-field", "'after' >= 0, 'limit' 1..5000")
    return AuditQuery(
        since=_instant(q, "since"),
        until=_instant(q, "until"),
        actor=q.get("actor"),
        site=q.get("site"),
        action=q.get("action"),
        after_seq=after,
        limit=limit,
    )


CSV_COLUMNS = (
    "seq",
    "at",
    "actor",
    "source",
    "action",
    "object",
    "site",
    "result",
    "status",
    "details",
    "erased_at",
    "hash",
)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return _z(v)
    if isinstance(v, dict | list):
        import json

        return json.dumps(v, sort_keys=True)
    s = str(v)
    # A cell a spreadsheet would run as a formula is quoted as text.
    return "'" + s if s[:1] in ("=", "+", "-", "@") else s


@requires("ccb.audit.read", audit=True)
async def audit_list(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/audit (?since, until, actor, site, action, after, limit, format=csv)."""
    q = _query(request)
    access = request.app[ACCESS]
    if request.query.get("format") == "csv":
        try:
            rows = access.audit_all(q)
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/csv; charset=utf-8",
                    "Content-Disposition": 'attachment; filename="audit.csv"',
                }
            )
            first = True
            async for row in rows:
                if first:
                    await response.prepare(request)
                    await response.write(_csv_line(CSV_COLUMNS))
                    first = False
                await response.write(_csv_line([_cell(row.get(c)) for c in CSV_COLUMNS]))
            if first:
                await response.prepare(request)
                await response.write(_csv_line(CSV_COLUMNS))
            await response.write_eof()
            return response
        except AccessDenied as exc:
            return _unauthorised(exc)
    try:
        found = await access.audit_rows(q)
    except AccessDenied as exc:
        return _unauthorised(exc)
    out = [
        {c: (_z(r[c]) if isinstance(r.get(c), datetime) else r.get(c)) for c in CSV_COLUMNS}
        for r in found
    ]
    return web.json_response(
        {"rows": out, "next_after": out[-1]["seq"] if len(out) == q.limit else None}
    )


def _csv_line(cells: Iterable[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(list(cells))
    return buf.getvalue().encode()


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/login", login)
    app.router.add_get("/api/v1/audit", audit_list)
