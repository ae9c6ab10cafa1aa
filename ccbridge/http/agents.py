"""Agents API resources: validate the request, call the agent service, serialise the result."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from ccbridge.http.access import can, check_site, requires, scope_sites
from ccbridge.http.base import (
    SERVICES,
    ApiError,
    int_field,
    json_body,
    names_field,
    required_string,
    string_field,
)


@requires("ccb.agents.{agent}.read")
async def list_agents(request: web.Request) -> web.Response:
    agents = request.app[SERVICES].agents.agents()
    return web.json_response({"agents": [a for a in agents if _mine(request, a)]})


def _mine(request: web.Request, agent: dict[str, Any]) -> bool:
    """An agent the caller may read by name, or one logged in at a site it may read."""
    if can(request, f"ccb.agents.{agent['id']}.read"):
        return True
    mine = set(scope_sites(request, "ccb.sites.{site}.read"))
    return any(s["site"] in mine for s in agent["sites"])


@requires("ccb.agents.{agent}.login")
async def login(request: web.Request) -> web.Response:
    body = await json_body(request)
    site = required_string(body, "site")
    check_site(request, site)
    queues = names_field(body, "queues", required=True) or []
    penalty = int_field(body, "penalty", 0, 1000, 0)
    done = await request.app[SERVICES].agents.login(
        request.match_info["agent"], site, queues, penalty
    )
    return web.json_response(asdict(done))


@requires("ccb.agents.{agent}.login")
async def logout(request: web.Request) -> web.Response:
    body = await json_body(request)
    site = string_field(body, "site")
    check_site(request, site)
    done = await request.app[SERVICES].agents.logout(
        request.match_info["agent"], site, names_field(body, "queues")
    )
    return web.json_response(asdict(done))


async def _pause(request: web.Request, paused: bool) -> web.Response:
    body = await json_body(request)
    site = string_field(body, "site")
    check_site(request, site)
    queues = names_field(body, "queues")
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 80 or any(c in reason for c in "\r\n"):
        raise ApiError(
            400,
            "invalid-field",
            "'reason' must be one line of at most 80 characters",
            field="reason",
        )
    done = await request.app[SERVICES].agents.pause(
        request.match_info["agent"], paused, site=site, queues=queues, reason=reason
    )
    return web.json_response(asdict(done))


@requires("ccb.agents.{agent}.pause")
async def pause(request: web.Request) -> web.Response:
    return await _pause(request, True)


@requires("ccb.agents.{agent}.pause")
async def unpause(request: web.Request) -> web.Response:
    return await _pause(request, False)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/agents", list_agents)
    app.router.add_post("/api/v1/agents/{agent}/login", login)
    app.router.add_post("/api/v1/agents/{agent}/logout", logout)
    app.router.add_post("/api/v1/agents/{agent}/pause", pause)
    app.router.add_post("/api/v1/agents/{agent}/unpause", unpause)
