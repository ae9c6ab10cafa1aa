"""GET /api/v1/events (server-sent events of screen pops) and the agent page /agent.

The stream is plain HTTP (``text/event-stream``) behind the same bearer token as the
rest of the API: a browser reads it with ``fetch`` (``EventSource`` cannot send a
header, and a token in the URL would land in access logs). Each pop is one SSE message
``id:``/``event:``/``data:`` (JSON); the first message, ``hello``, says who the stream
belongs to; a comment line every ``KEEPALIVE`` seconds keeps proxies from closing an
idle stream. A stream too slow to keep up gets ``event: closed`` and ends.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from ccbridge.http.access import can_read_numbers, principal, public, requires
from ccbridge.http.base import SERVICES
from ccbridge.screenpop.stream import CLOSED, STOPPING

KEEPALIVE: Final = 15.0
GONE_CHECK: Final = 1.0  # seconds between checks that the client is still there
_PAGE_DIR = Path(__file__).resolve().parent.parent / "screenpop" / "page"
# Read once at import (before the loop runs): serving them is then no file work.
_PAGE: Final = {
    "agent.html": ((_PAGE_DIR / "agent.html").read_bytes(), "text/html"),
    "agent.js": ((_PAGE_DIR / "agent.js").read_bytes(), "text/javascript"),
}
# The page runs only its own script and talks only to this bridge.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' "
    "'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def sse(kind: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@requires("ccb.agents.{agent}.calls.read")
async def stream(request: web.Request) -> web.StreamResponse:
    """An agent sees the pops of their own calls, a supervisor those of their sites."""
    p = principal(request)
    numbers = can_read_numbers(request)
    events = request.app[SERVICES].events
    sub = events.subscribe(p, numbers)
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        hello = {"user": p.name, "agent": p.agent, "sites": list(p.sites), "numbers": numbers}
        await response.write(b"retry: 2000\n\n" + sse("hello", hello))
        idle = 0.0
        while True:
            try:
                event = await asyncio.wait_for(sub.queue.get(), GONE_CHECK)
            except TimeoutError:
                # aiohttp does not cancel a handler whose client left: look every second,
                # or a closed page would hold its subscription until the next pop.
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                idle += GONE_CHECK
                if idle >= KEEPALIVE:
                    idle = 0.0
                    await response.write(b": keep-alive\n\n")
                continue
            if event is CLOSED or event is STOPPING:
                await response.write(sse("closed", {"why": event["why"]}))
                break
            await response.write(sse(str(event["type"]), event, str(event["id"])))
    except ConnectionResetError:
        pass  # the client went away while we wrote
    finally:
        events.unsubscribe(sub)
    return response


@public
async def agent_page(request: web.Request) -> web.Response:
    name = "agent.js" if request.path.endswith(".js") else "agent.html"
    body, kind = _PAGE[name]
    return web.Response(body=body, content_type=kind, charset="utf-8", headers=_PAGE_HEADERS)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/events", stream)
    app.router.add_get("/agent", agent_page)
    app.router.add_get("/agent/agent.js", agent_page)
