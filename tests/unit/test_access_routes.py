"""Every route of the app declares its permission (ccbridge/http/access.py), and every
declared permission is one of the vocabulary's (ccbridge/access/roles.py).

A route added without ``@requires(...)`` or ``@public`` fails here by name: declare it
(see the docstring of ccbridge/http/access.py), do not add it to an allow list.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Formatter

import pytest
from aiohttp import web

from ccbridge.access.acl import overlaps
from ccbridge.access.roles import TEMPLATES
from ccbridge.app import Bridge
from ccbridge.config import load_config
from ccbridge.http.access import declared

REPO = Path(__file__).resolve().parents[2]
# Public on purpose: probes and scrapes carry no token, login is how one gets a token.
# /agent: the agent page (static; it logs in through /api/v1/login like any client).
PUBLIC = {"/healthz", "/readyz", "/metrics", "/api/v1/login", "/agent", "/agent/agent.js"}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> web.Application:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "the-token")
    return Bridge(load_config(REPO / "examples" / "lab.yaml")).http_app()


def _routes(app: web.Application) -> list[tuple[str, str, object]]:
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = str(info.get("formatter") or info.get("path"))
        out.append((route.method, path, route.handler))
    return out


def test_every_route_declares_a_permission(app: web.Application) -> None:
    routes = _routes(app)
    assert len(routes) >= 15  # the walk sees the whole app, not an empty router
    missing = [f"{m} {p}" for m, p, h in routes if declared(h) is None]
    assert not missing, f"routes that declare no permission: {missing}"


def test_public_routes_are_only_the_known_ones(app: web.Application) -> None:
    public = {p for _, p, h in _routes(app) if (d := declared(h)) and d.permission is None}
    assert public == PUBLIC


def test_declared_permissions_are_in_the_vocabulary(app: web.Application) -> None:
    for method, path, handler in _routes(app):
        d = declared(handler)
        if d is None or d.permission is None:
            continue
        for permission in d.permissions:  # the declared one and its alternatives
            fields = {f for _, f, _, _ in Formatter().parse(permission) if f}
            in_path = set(re.findall(r"{(\w+)}", path))
            # A placeholder the path does not give means "some site", "some agent" or
            # (the supervision routes) "some mode".
            assert fields <= in_path | {"site", "agent", "mode"}, (method, path, permission)
            concrete = re.sub(r"{\w+}", "x", permission)
            assert any(overlaps(concrete, t) for t in TEMPLATES), (method, path, permission)


def test_mutating_routes_are_not_public(app: web.Application) -> None:
    for method, path, handler in _routes(app):
        d = declared(handler)
        if method not in ("GET", "HEAD") and path != "/api/v1/login":
            assert d is not None and d.permission is not None, (method, path)
