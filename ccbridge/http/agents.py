"""Agents API: log agents in and out of queues and pause them, on the right site, over AMI."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ccbridge.agents import agents_view, memberships
from ccbridge.ami.client import AmiActionError, AmiTimeoutError, SiteDownError
from ccbridge.config.model import Site, queue_name
from ccbridge.http.app import BRIDGE, ApiError, json_body, require_token
from ccbridge.logs import ctx

log = logging.getLogger("ccbridge.http.agents")

# Asterisk's replies that mean "already as you asked": the API is idempotent.
_ALREADY = ("already there", "not there")


def interface(agent: str) -> str:
    return f"PJSIP/{agent}"


async def list_agents(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE]
    return web.json_response({"agents": agents_view(bridge.state, bridge.agents)})


def _agent_site(request: web.Request, body: dict[str, Any], *, required: bool) -> tuple[str, Site]:
    bridge = request.app[BRIDGE]
    agent = request.match_info["agent"]
    site_name = body.get("site")
    if site_name is None:
        if required:
            raise ApiError(400, "missing-field", "'site' is required", field="site")
        return agent, _only_site(request, agent)
    if not isinstance(site_name, str):
        raise ApiError(400, "invalid-field", "'site' must be a string", field="site")
    try:
        site = bridge.config.site(site_name)
    except KeyError:
        raise ApiError(
            404, "no-such-site", f"no site named {site_name!r}", site=site_name
        ) from None
    if agent not in {a.name for a in site.agents}:
        raise ApiError(
            404,
            "no-such-agent",
            f"agent {agent!r} has no phone (PJSIP endpoint) at site {site.name}",
            agent=agent,
            site=site.name,
        )
    return agent, site


def _only_site(request: web.Request, agent: str) -> Site:
    """Without 'site': the one site the agent is logged in at."""
    bridge = request.app[BRIDGE]
    found = [s for s in bridge.config.sites if memberships(bridge.state, agent, s.name)]
    if len(found) != 1:
        where = ", ".join(s.name for s in found) or "no site"
        raise ApiError(
            400,
            "site-required",
            f"agent {agent!r} is logged in at {where}: give 'site'",
            field="site",
        )
    return found[0]


def _queues(body: dict[str, Any], site: Site, *, required: bool) -> list[str] | None:
    raw = body.get("queues")
    if raw is None:
        if required:
            raise ApiError(400, "missing-field", "'queues' is required", field="queues")
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(q, str) for q in raw):
        raise ApiError(
            400, "invalid-field", "'queues' must be a non-empty list of names", field="queues"
        )
    known = {queue_name(o.service, lang) for o in site.offerings for lang in o.languages}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ApiError(
            400,
            "no-such-queue",
            f"site {site.name} has no queue {', '.join(unknown)} "
            f"(it has {', '.join(sorted(known))})",
            queues=unknown,
        )
    return list(dict.fromkeys(raw))


def _int(body: dict[str, Any], key: str, lo: int, hi: int, default: int) -> int:
    v = body.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ApiError(
            400, "invalid-field", f"'{key}' must be a whole number {lo}..{hi}", field=key
        )
    return int(v)


async def _ami(request: web.Request, site: str, action: str, fields: dict[str, str]) -> None:
    link = request.app[BRIDGE].links.get(site)
    if link is None:
        raise ApiError(503, "site-down", f"site {site} has no AMI link", site=site)
    try:
        # QueueAdd's reply is not a list; panoramisk 1.4 hangs unless told so.
        await link.action(action, fields, as_list=False)
    except AmiActionError as exc:
        message = str(exc.response.get("Message", ""))
        if any(a in message.lower() for a in _ALREADY):
            return
        if "not dynamic" in message.lower():
            raise ApiError(
                409,
                "static-member",
                f"{fields.get('Interface')} is a static member of {fields.get('Queue')} at "
                f"{site} (queues.conf): it cannot be logged out",
                site=site,
            ) from None
        raise ApiError(502, "ami-error", f"{site}: {action} failed: {message}", site=site) from None
    except SiteDownError:
        raise ApiError(503, "site-down", f"site {site} is not connected", site=site) from None
    except AmiTimeoutError:
        raise ApiError(
            504, "ami-timeout", f"site {site} did not answer {action}", site=site
        ) from None


async def login(request: web.Request) -> web.Response:
    require_token(request)
    body = await json_body(request)
    agent, site = _agent_site(request, body, required=True)
    queues = _queues(body, site, required=True) or []
    penalty = _int(body, "penalty", 0, 1000, 0)
    for q in queues:
        fields = {
            "Queue": q,
            "Interface": interface(agent),
            "MemberName": agent,
            "Penalty": str(penalty),
            "Paused": "false",
        }
        await _ami(request, site.name, "QueueAdd", fields)
    log.info("agent login", extra=ctx(agent=agent, site=site.name, queues=",".join(queues)))
    return web.json_response({"agent": agent, "site": site.name, "queues": queues})


async def logout(request: web.Request) -> web.Response:
    require_token(request)
    body = await json_body(request)
    agent, site = _agent_site(request, body, required=False)
    queues = _queues(body, site, required=False)
    if queues is None:
        queues = sorted(memberships(request.app[BRIDGE].state, agent, site.name))
    for q in queues:
        await _ami(request, site.name, "QueueRemove", {"Queue": q, "Interface": interface(agent)})
    request.app[BRIDGE].agents.forget(site.name, interface(agent))
    log.info("agent logout", extra=ctx(agent=agent, site=site.name, queues=",".join(queues)))
    return web.json_response({"agent": agent, "site": site.name, "queues": queues})


async def _pause(request: web.Request, paused: bool) -> web.Response:
    require_token(request)
    body = await json_body(request)
    agent, site = _agent_site(request, body, required=False)
    queues = _queues(body, site, required=False)
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 80 or any(c in reason for c in "\r\n"):
        raise ApiError(
            400,
            "invalid-field",
            "'reason' must be one line of at most 80 characters",
            field="reason",
        )
    fields = {"Interface": interface(agent), "Paused": "true" if paused else "false"}
    if reason:
        fields["Reason"] = reason
    # Without 'queues', one QueuePause covers every queue of the interface at that site.
    targets: list[str | None] = list(queues) if queues else [None]
    for q in targets:
        await _ami(request, site.name, "QueuePause", {**fields, **({"Queue": q} if q else {})})
    log.info(
        "agent paused" if paused else "agent unpaused",
        extra=ctx(agent=agent, site=site.name, reason=reason),
    )
    return web.json_response(
        {"agent": agent, "site": site.name, "paused": paused, "reason": reason, "queues": queues}
    )


async def pause(request: web.Request) -> web.Response:
    return await _pause(request, True)


async def unpause(request: web.Request) -> web.Response:
    return await _pause(request, False)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/agents", list_agents)
    app.router.add_post("/api/v1/agents/{agent}/login", login)
    app.router.add_post("/api/v1/agents/{agent}/logout", logout)
    app.router.add_post("/api/v1/agents/{agent}/pause", pause)
    app.router.add_post("/api/v1/agents/{agent}/unpause", unpause)
