"""The call record and reports over HTTP: validate, call the report service, serialise
as JSON or as CSV with the same columns (``Accept: text/csv`` or ``?format=csv``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from ccbridge.http.access import (
    can_read_numbers,
    principal,
    requires,
    scope_agents,
    scope_sites,
)
from ccbridge.http.base import SERVICES, ApiError
from ccbridge.reports.calls import CALL_COLUMNS, EVENT_COLUMNS, LEG_COLUMNS
from ccbridge.reports.csvout import to_csv
from ccbridge.reports.worker import Encoded


def _params(request: web.Request) -> dict[str, list[str]]:
    q = request.query
    return {k: q.getall(k) for k in q}


# A month of quarter hours is ~25,000 rows: encoding them takes longer than the loop may
# be held (the 50 ms slow-callback gate), so answers are encoded in a thread.


async def _csv(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.Response(
        text=await asyncio.to_thread(to_csv, columns, rows),
        content_type="text/csv",
        charset="utf-8",
        headers=dict(headers or {}),
    )


async def _json(body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        text=await asyncio.to_thread(json.dumps, body),
        content_type="application/json",
        headers=dict(headers or {}),
    )


CALLS_READ = "ccb.calls.{site}.read"
# An agent user's own calls (the agent role's ccb.agents.me.#): the calls it answered.
OWN_CALLS_READ = "ccb.agents.{agent}.calls.read"
REPORTS_READ = "ccb.reports.{site}.read"
REPORTS_EXPORT = "ccb.reports.{site}.export"


def _call_params(request: web.Request) -> dict[str, list[str]]:
    """The query, ``agent=me`` read as the caller's own agent."""
    params = _params(request)
    if params.get("agent") == ["me"]:
        me = principal(request).agent
        if me is None:
            raise ApiError(
                400, "no-agent", "'agent=me': this user is bound to no agent", field="agent"
            )
        params["agent"] = [me]
    return params


@requires(CALLS_READ, audit=True, alternatives=(OWN_CALLS_READ,))
async def list_calls(request: web.Request) -> web.Response:
    q, page = await request.app[SERVICES].reports.list_calls(
        _call_params(request),
        request.headers.get("Accept"),
        numbers=can_read_numbers(request),
        sites=scope_sites(request, CALLS_READ),
        agents=scope_agents(request, OWN_CALLS_READ),
    )
    nxt = page.next.encode() if page.next is not None else None
    headers = {"X-Next-Cursor": nxt} if nxt else {}
    if q.format == "csv":
        return await _csv(CALL_COLUMNS, page.rows, headers)
    return await _json({"calls": page.rows, "next": nxt}, headers)


@requires(CALLS_READ, audit=True, alternatives=(OWN_CALLS_READ,))
async def get_call(request: web.Request) -> web.Response:
    detail = await request.app[SERVICES].reports.call(
        request.match_info["id"],
        numbers=can_read_numbers(request),
        sites=scope_sites(request, CALLS_READ),
        agents=scope_agents(request, OWN_CALLS_READ),
    )
    fmt = request.query.get("format")
    if fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("Accept", "")):
        # One table: the call's legs, then its events, each line saying which it is.
        columns = ("record", *LEG_COLUMNS, *EVENT_COLUMNS)
        rows: list[Mapping[str, Any]] = [{"record": "leg", **leg} for leg in detail.legs]
        rows += [{"record": "event", **e} for e in detail.events]
        return await _csv(list(dict.fromkeys(columns)), rows)
    return await _json(
        {
            "call": detail.call,
            "legs": detail.legs,
            "events": detail.events,
            "events_cut": detail.events_cut,
        }
    )


def _answer(encoded: Encoded) -> web.Response:
    """The body the report worker encoded (JSON, or CSV with the same columns)."""
    return web.Response(body=encoded.body, content_type=encoded.content_type, charset="utf-8")


@requires(REPORTS_READ)
async def interval_report(request: web.Request) -> web.Response:
    _, encoded = await request.app[SERVICES].reports.interval_report(
        _params(request),
        request.headers.get("Accept"),
        sites=scope_sites(request, REPORTS_READ),
        exportable=scope_sites(request, REPORTS_EXPORT),
    )
    return _answer(encoded)


@requires(REPORTS_READ)
async def agent_report(request: web.Request) -> web.Response:
    _, encoded = await request.app[SERVICES].reports.agent_report(
        _params(request),
        request.headers.get("Accept"),
        sites=scope_sites(request, REPORTS_READ),
        exportable=scope_sites(request, REPORTS_EXPORT),
    )
    return _answer(encoded)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/calls", list_calls)
    app.router.add_get("/api/v1/calls/{id}", get_call)
    app.router.add_get("/api/v1/reports/intervals", interval_report)
    app.router.add_get("/api/v1/reports/agents", agent_report)
