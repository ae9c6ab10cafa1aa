"""GET /api/v1/cluster: validate, ask the cluster service, serialise."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from ccbridge.http.access import requires
from ccbridge.http.base import SERVICES, ApiError


def _z(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@requires("ccb.cluster.read")
async def cluster(request: web.Request) -> web.Response:
    """The bridges alive now: identity, version, sites connected, sessions served."""
    if request.query:
        name = next(iter(request.query))
        raise ApiError(
            400,
            "invalid-field",
            f"GET /api/v1/cluster takes no parameters, got {name[:40]!r}",
            field=name[:40],
        )
    view = await request.app[SERVICES].cluster.alive()
    return web.json_response(
        {
            "bridges": [
                {
                    "identity": b.identity,
                    "version": b.version,
                    "started_at": _z(b.started_at),
                    "seen_at": _z(b.seen_at),
                    "sites_connected": list(b.sites),
                    "sessions_served": b.sessions,
                    "this": b.identity == view.this,
                }
                for b in view.bridges
            ],
            "alive": len(view.bridges),
            "shared_store": view.shared,
            "alive_after_s": view.alive_after,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/cluster", cluster)
