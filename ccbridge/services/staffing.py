"""Staffing: the follow-the-sun coverage of a UTC day and of the present moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from ccbridge.services.errors import ServiceError
from ccbridge.services.ports import Runtime
from ccbridge.staffing.coverage import Gap, SunRow, coverage_at, follow_the_sun, gaps
from ccbridge.staffing.live import live_staff


@dataclass(frozen=True, slots=True)
class Coverage:
    day: date
    at: datetime  # the bridge's now
    hours: list[SunRow]  # the day, staffed by the configured agents
    gaps: list[Gap]
    now: list[SunRow]  # this instant, staffed by the agents logged in and not paused


class StaffingService:
    """Which sites take each language when; the plan per interval waits for the
    records store (issue 12), which gives it its arrivals."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

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
