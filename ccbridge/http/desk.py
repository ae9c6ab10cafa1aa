"""The agent's desk over HTTP: supervise, transfer, hold and conference a live call.

Handlers validate the body, check the permission that depends on the call (its agent, the
mode asked), call one DeskService method and serialise its answer.
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from ccbridge.desk import modes
from ccbridge.http.access import can, principal, requires
from ccbridge.http.base import SERVICES, ApiError, json_body, required_string, string_field

_CONTROL = "ccb.agents.{agent}.calls.control"


def _mode_allowed(request: web.Request, mode: str) -> None:
    if mode in modes.MODES and not can(request, modes.permission(mode)):
        raise ApiError(403, "forbidden", f"may not {mode}", needs=modes.permission(mode))


@requires("ccb.supervise.{mode}")
async def monitor(request: web.Request) -> web.Response:
    """Body {"mode": "listen"|"whisper"|"barge", "supervisor": ENDPOINT}: the agent's site
    rings the supervisor's phone and connects it with ChanSpy."""
    body = await json_body(request)
    mode = required_string(body, "mode")
    supervisor = required_string(body, "supervisor")
    _mode_allowed(request, mode)
    p = principal(request)
    session = await request.app[SERVICES].desk.monitor(
        request.match_info["id"], mode, supervisor, actor=p.name, scope=p.sites
    )
    return web.json_response(asdict(session), status=201)


@requires("ccb.supervise.{mode}")
async def monitor_mode(request: web.Request) -> web.Response:
    """Body {"mode"}: switch a running session's mode."""
    body = await json_body(request)
    mode = required_string(body, "mode")
    _mode_allowed(request, mode)
    desk = request.app[SERVICES].desk
    _own_session(request)
    session = await desk.change_mode(request.match_info["sid"], mode, actor=principal(request).name)
    return web.json_response(asdict(session))


@requires("ccb.supervise.{mode}")
async def monitor_stop(request: web.Request) -> web.Response:
    """End a session: the supervisor's phone is hung up."""
    _own_session(request)
    desk = request.app[SERVICES].desk
    session = await desk.stop_monitor(request.match_info["sid"], actor=principal(request).name)
    return web.json_response(asdict(session))


def _own_session(request: web.Request) -> None:
    """The session named is this call's."""
    s = request.app[SERVICES].desk.session(request.match_info["sid"])
    if s.call_id != request.match_info["id"]:
        raise ApiError(404, "no-such-session", "no such supervision session for this call")


async def _control(request: web.Request) -> None:
    """Transfer, hold and conference need the permission over the call's agent (an
    agent's own calls, a supervisor's agents' calls)."""
    call = await request.app[SERVICES].desk.connected(request.match_info["id"])
    if not can(request, _CONTROL.format(agent=call.agent or "-")):
        raise ApiError(403, "forbidden", "may not control this call", needs=_CONTROL)


@requires(_CONTROL)
async def transfer(request: web.Request) -> web.Response:
    """Body {"service", "language"?, "site"?, "note"?} (the agent page's transfer button),
    or {"number", "note"?} for a blind transfer over a carrier."""
    body = await json_body(request)
    service = string_field(body, "service")
    number = string_field(body, "number")
    args = {
        "language": string_field(body, "language"),
        "site": string_field(body, "site"),
        "note": string_field(body, "note"),
    }
    await _control(request)
    done = await request.app[SERVICES].desk.transfer(
        request.match_info["id"],
        service=service,
        number=number,
        actor=principal(request).name,
        **args,
    )
    return web.json_response(asdict(done), status=202)


async def _hold(request: web.Request, held: bool) -> web.Response:
    await _control(request)
    desk = request.app[SERVICES].desk
    change = desk.hold if held else desk.unhold
    done = await change(request.match_info["id"], actor=principal(request).name)
    return web.json_response(asdict(done))


@requires(_CONTROL)
async def hold(request: web.Request) -> web.Response:
    """Music on hold for the caller (the call's desk room)."""
    return await _hold(request, True)


@requires(_CONTROL)
async def unhold(request: web.Request) -> web.Response:
    return await _hold(request, False)


@requires(_CONTROL)
async def conference(request: web.Request) -> web.Response:
    """Body {"party": ENDPOINT}: a second agent or a supervisor joins the call."""
    body = await json_body(request)
    party = required_string(body, "party")
    await _control(request)
    done = await request.app[SERVICES].desk.conference(
        request.match_info["id"], party, actor=principal(request).name
    )
    return web.json_response(asdict(done), status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/calls/{id}/monitor", monitor)
    app.router.add_post("/api/v1/calls/{id}/monitor/{sid}", monitor_mode)
    app.router.add_patch("/api/v1/calls/{id}/monitor/{sid}", monitor_mode)
    app.router.add_delete("/api/v1/calls/{id}/monitor/{sid}", monitor_stop)
    app.router.add_post("/api/v1/calls/{id}/monitor/{sid}/stop", monitor_stop)
    app.router.add_post("/api/v1/calls/{id}/transfer", transfer)
    app.router.add_post("/api/v1/calls/{id}/hold", hold)
    app.router.add_post("/api/v1/calls/{id}/unhold", unhold)
    app.router.add_post("/api/v1/calls/{id}/conference", conference)
