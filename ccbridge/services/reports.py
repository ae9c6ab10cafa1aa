"""Reports and the call record: what GET /api/v1/calls and /api/v1/reports/* ask for."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from ccbridge.reports.intervals import IntervalError
from ccbridge.reports.query import (
    CallQuery,
    Params,
    QueryError,
    ReportQuery,
    parse_call_query,
    parse_report_query,
)
from ccbridge.services.errors import ServiceError
from ccbridge.services.ports import Runtime
from ccbridge.services.recordsread import RecordsReader

if TYPE_CHECKING:
    from ccbridge.reports.build import Report
    from ccbridge.reports.calls import CallDetail, CallPage


@contextmanager
def _bad_query() -> Iterator[None]:
    try:
        yield
    except QueryError as exc:
        raise ServiceError("invalid-field", str(exc), field=exc.field) from None
    except IntervalError as exc:
        raise ServiceError("invalid-field", str(exc), field="from") from None


class ReportService:
    """Reads the record store through its own RecordsReader, like the staffing plan."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._records = RecordsReader(runtime)

    async def close(self) -> None:
        await self._records.close()

    def _report_query(
        self, params: Params, accept: str | None, agents: bool, sites: Collection[str] | None
    ) -> ReportQuery:
        c = self._rt.config
        with _bad_query():
            q = parse_report_query(
                params,
                sites=[s.name for s in c.sites],
                services=c.services,
                languages=c.languages,
                accept=accept,
                agents=agents,
            )
        if sites is not None:
            asked = "site" in params
            allowed = tuple(s for s in q.sites if s in sites)
            if asked and len(allowed) < len(q.sites):
                denied = ", ".join(s for s in q.sites if s not in sites)
                raise ServiceError("forbidden", f"no right to the reports of {denied}")
            if not allowed:
                raise ServiceError("forbidden", "no right to the reports of any site")
            q = replace(q, sites=allowed)
        return q

    async def interval_report(
        self, params: Params, accept: str | None = None, *, sites: Collection[str] | None = None
    ) -> tuple[ReportQuery, Report]:
        """The interval report; ``sites``: those the caller may see (None: all)."""
        from ccbridge.reports.build import interval_report

        q = self._report_query(params, accept, False, sites)
        async with self._records.read() as engine:
            with _bad_query():
                return q, await interval_report(engine, self._rt.config, q, self._rt.clock.now())

    async def agent_report(
        self, params: Params, accept: str | None = None, *, sites: Collection[str] | None = None
    ) -> tuple[ReportQuery, Report]:
        from ccbridge.reports.build import agent_report

        q = self._report_query(params, accept, True, sites)
        async with self._records.read() as engine:
            with _bad_query():
                return q, await agent_report(engine, self._rt.config, q, self._rt.clock.now())

    async def list_calls(
        self,
        params: Params,
        accept: str | None = None,
        *,
        numbers: bool,
        sites: Collection[str] | None = None,
    ) -> tuple[CallQuery, CallPage]:
        """A page of calls; without ``numbers`` caller numbers are masked, and a caller
        filter (which would tell whether a number called) is refused; ``sites``: the
        sites whose calls the caller may see (None: all)."""
        from ccbridge.reports.calls import list_calls

        with _bad_query():
            q = parse_call_query(
                params,
                sites=[s.name for s in self._rt.config.sites],
                now=self._rt.clock.now(),
                accept=accept,
            )
        if sites is not None:
            if any(s not in sites for s in q.sites):
                denied = ", ".join(s for s in q.sites if s not in sites)
                raise ServiceError("forbidden", f"no right to the calls of {denied}")
            if not sites:
                raise ServiceError("forbidden", "no right to the calls of any site")
            if not q.sites and set(sites) != {s.name for s in self._rt.config.sites}:
                q = replace(q, sites=tuple(sites))
        if q.caller is not None and not numbers:
            raise ServiceError(
                "numbers-forbidden", "filtering by caller needs the right to read numbers"
            )
        async with self._records.read() as engine, engine.connect() as conn:
            return q, await list_calls(conn, q, numbers)

    async def call(
        self, call_id: str, *, numbers: bool, sites: Collection[str] | None = None
    ) -> CallDetail:
        from ccbridge.reports.calls import get_call

        if not call_id or len(call_id) > 64 or not call_id.isprintable():
            raise ServiceError("invalid-field", "not a call ID", field="id")
        async with self._records.read() as engine, engine.connect() as conn:
            found = await get_call(conn, call_id, numbers)
        if found is not None and sites is not None:
            touched = {found.call["entry_site"], found.call["target_site"]}
            touched |= {leg["site"] for leg in found.legs}
            if not touched & set(sites):
                found = None  # not "forbidden": that would tell the call exists
        if found is None:
            raise ServiceError(
                "no-such-call", f"no call {call_id!r} in the record", call_id=call_id
            )
        return found
