"""Recordings over HTTP: pause or resume a call's recording, list them, play one with Range."""

from __future__ import annotations

import logging

from aiohttp import web

from ccbridge.http.access import can, requires, scope_sites
from ccbridge.http.base import SERVICES, error_response, json_body, required_string
from ccbridge.recording.crypto import CryptoError
from ccbridge.recording.ranges import RangeError, parse_range

log = logging.getLogger("ccbridge.http")

READ = "ccb.recordings.{site}.read"
# Pausing a recording is a control of the call, like hold: the call's agent (a card
# number read out) or a supervisor of that agent (ccbridge/http/desk.py).
CONTROL = "ccb.agents.{agent}.calls.control"


@requires(CONTROL)
async def control(request: web.Request) -> web.Response:
    """Body {"action": "pause" | "resume"}: MixMonitorMute on the call's recording."""
    body = await json_body(request)
    action = required_string(body, "action")
    result = await request.app[SERVICES].recordings.control(
        request.match_info["id"],
        action[:20],
        lambda agent: can(request, CONTROL.format(agent=agent or "-")),
    )
    return web.json_response(result)


@requires(READ, audit=True)
async def list_recordings(request: web.Request) -> web.Response:
    rows = await request.app[SERVICES].recordings.for_call(
        request.match_info["id"], scope_sites(request, READ)
    )
    return web.json_response({"recordings": rows})


@requires(READ, audit=True)
async def play(request: web.Request) -> web.StreamResponse:
    """The audio, decrypted on the fly; one byte range per request (206, 416); every
    request is audited (the access middleware, audit=True)."""
    service = request.app[SERVICES].recordings
    pb = await service.playback(
        request.match_info["id"], request.match_info["rid"], scope_sites(request, READ)
    )
    try:
        rng = parse_range(request.headers.get("Range"), pb.size)
    except RangeError as exc:
        refused = error_response(416, exc.error_id, str(exc), size=pb.size)
        refused.headers["Content-Range"] = f"bytes */{pb.size}"
        return refused
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Type": pb.content_type,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if rng is None:
        status, start, end = 200, 0, pb.size - 1
    else:
        status, start, end = 206, rng.start, rng.end
        headers["Content-Range"] = rng.content_range(pb.size)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = max(0, end - start + 1)
    await resp.prepare(request)
    if end >= start:
        try:
            async for block in service.stream(pb, start, end):
                await resp.write(block)
        except CryptoError as exc:
            # The headers are gone: cut the answer short rather than send other bytes
            # (a player sees a failed download, never audio that does not authenticate).
            log.error("recording %s failed mid-stream: %s", pb.row.recording_id, exc)
            if request.transport is not None:
                request.transport.close()
            return resp
    await resp.write_eof()
    return resp


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/calls/{id}/recording", control)
    app.router.add_get("/api/v1/calls/{id}/recordings", list_recordings)
    app.router.add_get("/api/v1/calls/{id}/recordings/{rid}", play)
