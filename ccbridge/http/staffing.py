"""Staffing API resources: validate the query, call the staffing service, serialise."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from aiohttp import web

from ccbridge.http.access import requires
from ccbridge.http.base import SERVICES, ApiError
from ccbridge.staffing.coverage import SunRow

STEPS = (15, 30, 60)


def _z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(r: SunRow) -> dict[str, Any]:
    return {
        "start": _z(r.start),
        "end": _z(r.end),
        "open": list(r.open_sites),
        "staffed": list(r.staffed_sites),
        "gap": r.gap,
    }


@requires("ccb.staffing.read")
async def coverage(request: web.Request) -> web.Response:
    q = request.query
    day = None
    if "day" in q:
        try:
            day = date.fromisoformat(q["day"])
        except ValueError:
            raise ApiError(
                400, "invalid-field", f"'day' is not YYYY-MM-DD: {q['day'][:40]!r}", field="day"
            ) from None
    step_s = q.get("step", "60")
    if step_s not in {str(s) for s in STEPS}:
        raise ApiError(400, "invalid-field", "'step' must be 15, 30 or 60 (minutes)", field="step")
    cov = request.app[SERVICES].staffing.coverage(
        day, language=q.get("language"), service=q.get("service"), step_minutes=int(step_s)
    )
    languages: dict[str, dict[str, Any]] = {}
    for r in cov.hours:
        languages.setdefault(r.language, {"steps": [], "gaps": []})["steps"].append(_row(r))
    for g in cov.gaps:
        languages[g.language]["gaps"].append(
            {"start": _z(g.start), "end": _z(g.end), "kind": g.kind}
        )
    now = {r.language: {k: v for k, v in _row(r).items() if k != "end"} for r in cov.now}
    return web.json_response(
        {
            "day": cov.day.isoformat(),
            "staffed_by": "configured agents (queue members in the config)",
            "languages": languages,
            "now": {"at": _z(cov.at), "staffed_by": "agents logged in, not paused", **now},
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/staffing/coverage", coverage)
