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
    from ccbridge.reports.calls import CallDetail, CallPage, CallScope
    from ccbridge.reports.rollup import Round
    from ccbridge.reports.worker import Encoded, Kind, ReportWorker


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

    def __init__(self, runtime: Runtime, worker: ReportWorker) -> None:
        self._rt = runtime
        self._records = RecordsReader(runtime)
        # Reports are built in a process of their own (shared with the staffing plan): a
        # month of rows would hold the loop (ccbridge/reports/worker.py says how much).
        self._worker = worker

    async def close(self) -> None:
        await self._worker.close()
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
        self,
        params: Params,
        accept: str | None = None,
        *,
        sites: Collection[str] | None = None,
        exportable: Collection[str] | None = None,
    ) -> tuple[ReportQuery, Encoded]:
        """The interval report, encoded as asked; ``sites``: those the caller may see,
        ``exportable``: those it may have as CSV (None: all)."""
        q = self._report_query(params, accept, False, sites)
        return q, await self._built("intervals", q, exportable)

    async def agent_report(
        self,
        params: Params,
        accept: str | None = None,
        *,
        sites: Collection[str] | None = None,
        exportable: Collection[str] | None = None,
    ) -> tuple[ReportQuery, Encoded]:
        q = self._report_query(params, accept, True, sites)
        return q, await self._built("agents", q, exportable)

    async def _built(
        self, kind: Kind, q: ReportQuery, exportable: Collection[str] | None
    ) -> Encoded:
        from ccbridge.reports.worker import WorkerFault

        if q.format == "csv" and exportable is not None:
            # A CSV is an export: it needs the export permission for every site it holds.
            denied = [s for s in q.sites if s not in exportable]
            if denied:
                raise ServiceError(
                    "forbidden", f"exporting reports of {', '.join(denied)} is not allowed"
                )
        async with self._records.read():  # the file and the schema, checked here
            got = await self._worker.run(self._rt.config, kind, q, self._rt.clock.now())
        if isinstance(got, WorkerFault):
            if got.kind == "query":
                raise ServiceError("invalid-field", got.message, field="from")
            raise ServiceError(
                "records-unavailable", f"the records store cannot be read: {got.message}"
            )
        return got

    async def roll(self, bridge: str) -> Round:
        """One round of the interval rollup (ccbridge/reports/rollup.py), in the worker
        process; records-unavailable when the store cannot be read or written."""
        from ccbridge.reports.worker import WorkerFault

        c = self._rt.config
        async with self._records.read():  # the file and the schema, checked here
            got = await self._worker.roll(
                c, self._rt.clock.now(), bridge, c.records.rollup_interval
            )
        if isinstance(got, WorkerFault):
            raise ServiceError("records-unavailable", f"the rollup failed: {got.message}")
        return got

    def _call_scope(
        self, sites: Collection[str] | None, agents: Collection[str]
    ) -> CallScope | None:
        from ccbridge.reports.calls import CallScope

        if sites is None or set(sites) >= {s.name for s in self._rt.config.sites}:
            return None  # every site: nothing to narrow
        if not sites and not agents:
            raise ServiceError("forbidden", "no right to the calls of any site")
        # A caller with sites sees the calls that touched them, not their agents' calls
        # at other sites (a shared agent's): those are the other sites' data. Only a
        # caller with no site (an agent user) sees calls by who answered them.
        return CallScope(tuple(sites), () if sites else tuple(agents))

    async def list_calls(
        self,
        params: Params,
        accept: str | None = None,
        *,
        numbers: bool,
        sites: Collection[str] | None = None,
        agents: Collection[str] = (),
    ) -> tuple[CallQuery, CallPage]:
        """A page of calls; without ``numbers`` caller numbers are masked, and a caller
        filter (which would tell whether a number called) is refused; ``sites``: the
        sites whose calls the caller may see (None: all), ``agents``: the agents whose
        calls it may see besides (an agent user's own)."""
        from ccbridge.reports.calls import list_calls

        with _bad_query():
            q = parse_call_query(
                params,
                sites=[s.name for s in self._rt.config.sites],
                now=self._rt.clock.now(),
                accept=accept,
            )
        scope = self._call_scope(sites, agents)
        if scope is not None:
            outside = [s for s in q.sites if s not in scope.sites]
            # An agent's own calls at any site: a site filter only narrows them.
            if outside and not scope.agents:
                raise ServiceError("forbidden", f"no right to the calls of {', '.join(outside)}")
            if not scope.sites and q.agent is not None and q.agent not in scope.agents:
                raise ServiceError(
                    "forbidden", f"no right to the calls of agent {q.agent}", agent=q.agent
                )
        if q.caller is not None and not numbers:
            raise ServiceError(
                "numbers-forbidden", "filtering by caller needs the right to read numbers"
            )
        async with self._records.read() as engine, engine.connect() as conn:
            return q, await list_calls(conn, q, numbers, scope)

    async def call(
        self,
        call_id: str,
        *,
        numbers: bool,
        sites: Collection[str] | None = None,
        agents: Collection[str] = (),
    ) -> CallDetail:
        from ccbridge.reports.calls import get_call

        if not call_id or len(call_id) > 64 or not call_id.isprintable():
            raise ServiceError("invalid-field", "not a call ID", field="id")
        scope = self._call_scope(sites, agents)
        async with self._records.read() as engine, engine.connect() as conn:
            found = await get_call(conn, call_id, numbers)
        legs = (leg["site"] for leg in found.legs) if found is not None else ()
        if found is not None and scope is not None and not scope.admits(found.call, legs):
            found = None  # not "forbidden": that would tell the call exists
        if found is None:
            raise ServiceError(
                "no-such-call", f"no call {call_id!r} in the record", call_id=call_id
            )
        return found
