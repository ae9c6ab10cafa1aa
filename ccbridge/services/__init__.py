"""Operations on sites, agents and calls: what the HTTP API (and later other fronts) calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ccbridge.services.agents import AgentService
from ccbridge.services.calls import CallService
from ccbridge.services.cluster import ClusterRuntime, ClusterService
from ccbridge.services.desk import DeskService
from ccbridge.services.errors import ServiceError
from ccbridge.services.events import EventService
from ccbridge.services.ports import Runtime
from ccbridge.services.recordings import RecordingService
from ccbridge.services.reports import ReportService
from ccbridge.services.sites import SiteService
from ccbridge.services.staffing import StaffingService

if TYPE_CHECKING:
    from ccbridge.store.writeproc import WriteProcess

__all__ = [
    "AgentService",
    "CallService",
    "ClusterService",
    "DeskService",
    "EventService",
    "RecordingService",
    "ReportService",
    "Runtime",
    "ServiceError",
    "Services",
    "SiteService",
    "StaffingService",
]


@dataclass(frozen=True, slots=True)
class Services:
    """Every service over one runtime (the Bridge): what ``build_app`` is given."""

    sites: SiteService
    agents: AgentService
    calls: CallService
    staffing: StaffingService
    reports: ReportService
    recordings: RecordingService
    desk: DeskService
    cluster: ClusterService
    events: EventService

    @classmethod
    def over(cls, runtime: ClusterRuntime, process: WriteProcess | None = None) -> Services:
        """``process``: the record writer's child, which then runs the reports and
        staffing plans too (without it, a child of their own, started on first use)."""
        from ccbridge.reports.worker import ReportWorker

        worker = ReportWorker(runtime.config.store, process)
        return cls(
            SiteService(runtime),
            AgentService(runtime),
            CallService(runtime),
            StaffingService(runtime, worker),
            ReportService(runtime, worker),
            RecordingService(runtime, lambda: runtime.recording),
            DeskService(runtime),
            ClusterService(runtime),
            EventService(runtime.screen_pop.hub),
        )
