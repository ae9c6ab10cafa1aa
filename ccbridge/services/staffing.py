"""Staffing: the follow-the-sun coverage of a UTC day and of the present moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ccbridge.reports.worker import ReportWorker, WorkerFault
from ccbridge.services.errors import ServiceError
from ccbridge.services.ports import Runtime
from ccbridge.services.recordsread import RecordsReader
from ccbridge.staffing.coverage import Gap, SunRow, coverage_at, follow_the_sun, gaps
from ccbridge.staffing.live import live_staff
from ccbridge.staffing.plan import IntervalPlan, Targets
from ccbridge.staffing.planning import PlanResult, check_weeks, plan_days


@dataclass(frozen=True, slots=True)
class Coverage:
    day: date
    at: datetime  # the bridge's now
    hours: list[SunRow]  # the day, staffed by the configured agents
    gaps: list[Gap]
    now: list[SunRow]  # this instant, staffed by the agents logged in and not paused


# The slots a bridge keeps for its staffing gauges: the plan is recomputed every 15
# minutes (staffing/refresher.py) and a failed refresh empties it, so two hours ahead
# outlast any refresh that succeeds.
PLAN_AHEAD = timedelta(hours=2)


class StaffingService:
    """Which sites take each language when, and the plan per half hour from the records."""

    def __init__(self, runtime: Runtime, worker: ReportWorker) -> None:
        self._rt = runtime
        self._records = RecordsReader(runtime)
        self._worker = worker  # shared with the report service

    async def close(self) -> None:
        await self._worker.close()
        await self._records.close()

    async def plan_around(self, now: datetime) -> list[IntervalPlan]:
        """The slots from ``now`` to ``PLAN_AHEAD`` later of the plan of the UTC dates
        around it (every site's current local slot is in them) under the default
        targets: what the staffing gauges show. The worker plans the three days; only
        these rows come back (the three days were 10,800 rows in the bridge's heap for
        75 queues, ~5 MB: BENCHMARKS.md §4)."""
        day = now.date()
        first, last = day - timedelta(days=1), day + timedelta(days=1)
        result = await self.plan(first, last, Targets(), until=now + PLAN_AHEAD)
        return result.rows

    async def plan(
        self,
        first: date,
        last: date,
        targets: Targets,
        *,
        weeks: int = 8,
        until: datetime | None = None,
    ) -> PlanResult:
        """The staffing plan of the local dates ``first``..``last`` from the records:
        forecast, recorded calls, required and configured agents per queue and slot."""
        try:
            days = plan_days(first, last)
            check_weeks(weeks)
        except ValueError as exc:
            raise ServiceError("invalid-field", str(exc)) from None
        async with self._records.read():  # the file and the schema, checked here
            # The read, the forecast and Erlang C run in the worker process: on the loop
            # the first plan held it 60-80 ms (ccbridge/reports/worker.py).
            got = await self._worker.plan(
                self._rt.config, days, targets, self._rt.clock.now(), weeks, until
            )
        if isinstance(got, WorkerFault):
            if got.kind == "no-history":
                raise ServiceError("no-history", got.message)
            raise ServiceError(
                "records-unavailable", f"the records store cannot be read: {got.message}"
            )
        return got

    def coverage(
        self,
        day: date | None = None,
        *,
        language: str | None = None,
        service: str | None = None,
        step_minutes: int = 60,
    ) -> Coverage:
        config = self._rt.config
        if language is not None and language not in config.languages:
            raise ServiceError(
                "invalid-field", f"no language {language!r} in the config", field="language"
            )
        if service is not None and service not in config.services:
            raise ServiceError(
                "invalid-field", f"no service {service!r} in the config", field="service"
            )
        now = self._rt.clock.now()
        the_day = day or now.date()
        hours = follow_the_sun(config, the_day, step_minutes=step_minutes, service=service)
        current = coverage_at(config, now, live_staff(self._rt.state), service=service)
        if language is not None:
            hours = [r for r in hours if r.language == language]
            current = [r for r in current if r.language == language]
        return Coverage(the_day, now, hours, gaps(hours), current)
