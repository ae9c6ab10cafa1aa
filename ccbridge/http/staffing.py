"""Staffing API resources: validate the query, call the staffing service, serialise."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from aiohttp import web

from ccbridge.http.access import requires
from ccbridge.http.base import SERVICES, ApiError
from ccbridge.staffing.coverage import SunRow
from ccbridge.staffing.plan import IntervalPlan, Targets
from ccbridge.staffing.planning import number, parse_target, parse_volume

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


def _date(q: Mapping[str, str], name: str) -> date:
    if name not in q:
        raise ApiError(400, "missing-field", f"'{name}' is required (YYYY-MM-DD)", field=name)
    try:
        return date.fromisoformat(q[name])
    except ValueError:
        raise ApiError(
            400, "invalid-field", f"'{name}' is not YYYY-MM-DD: {q[name][:40]!r}", field=name
        ) from None


def _targets(q: Mapping[str, str]) -> Targets:
    """The what-if knobs, as `ccbridge staffing` takes them."""
    field = "volume"
    try:
        volume = parse_volume(q.get("volume", "+0%"))
        field = "target"
        sl, threshold = parse_target(q.get("target", "80/20"))
        field = "aht"
        aht = q.get("aht")
        aht_s = number("aht", aht) if aht else 180.0
        field = "max_occupancy"
        occ = number("max_occupancy", q.get("max_occupancy", "85")) / 100
        field = "shrinkage"
        shrink = number("shrinkage", q.get("shrinkage", "30")) / 100
        field = "targets"
        return Targets(
            threshold_s=threshold,
            service_level=sl,
            max_occupancy=occ,
            shrinkage=shrink,
            volume=volume,
            aht_s=aht_s,
            aht_from_history=not aht,
        )
    except ValueError as exc:
        raise ApiError(400, "invalid-field", str(exc), field=field) from None


def _plan_row(r: IntervalPlan) -> dict[str, Any]:
    return {
        "site": r.key.site,
        "queue": r.key.queue,
        "service": r.key.service,
        "language": r.key.language,
        "start_local": r.slot_label,
        "start": None if r.utc_start is None else _z(r.utc_start),
        "seconds": r.seconds,
        "open": r.open,
        "forecast_calls": None if r.calls is None else round(r.calls, 2),
        "basis": r.basis,
        "aht_seconds": round(r.aht_s, 1),
        "required_agents": r.required,
        "rostered_agents": r.rostered,
        "staffed_agents": r.staffed,
        "service_level_required": r.service_level,
        "service_level_staffed": r.staffed_service_level,
        "recorded_calls": r.recorded,
        "recorded_complete": None if r.recorded is None else r.recorded_complete,
        "status": r.status,
    }


@requires("ccb.staffing.read")
async def plan(request: web.Request) -> web.Response:
    q = request.query
    first, last = _date(q, "from"), _date(q, "to")
    weeks_s = q.get("weeks", "8")
    if not weeks_s.isdigit() or len(weeks_s) > 3:
        raise ApiError(400, "invalid-field", "'weeks' must be a whole number", field="weeks")
    targets = _targets(q)
    result = await request.app[SERVICES].staffing.plan(first, last, targets, weeks=int(weeks_s))
    t = result.targets

    def body() -> str:
        # Up to 62 days x 48 slots x every queue: serialised off the event loop.
        return json.dumps(
            {
                "from": first.isoformat(),
                "to": last.isoformat(),
                "weeks": result.weeks,
                "targets": {
                    "service_level": t.service_level,
                    "threshold_seconds": t.threshold_s,
                    "aht_seconds": t.aht_s,
                    "aht_from_history": t.aht_from_history,
                    "max_occupancy": t.max_occupancy,
                    "shrinkage": t.shrinkage,
                    "volume": t.volume,
                },
                "staffed_by": "configured agents (queue members in the config)",
                "notes": result.notes,
                "intervals": [_plan_row(r) for r in result.rows],
            }
        )

    return web.Response(text=await asyncio.to_thread(body), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/staffing/coverage", coverage)
    app.router.add_get("/api/v1/staffing", plan)
