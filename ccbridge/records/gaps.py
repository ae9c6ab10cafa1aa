"""Coverage gaps: the intervals a site's calls went unseen (its AMI link down, or no bridge).

Pure: instants come from the caller. A gap opens when a site's link leaves UP (or, on
start, at the instant the last run stopped or last proved alive) and closes when the
link is UP again; each change is a ``coverage_gaps`` record keyed by (site, started_at),
so the closing record completes the opening one's row.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

Out = tuple[str, dict[str, Any]]


class CoverageGaps:
    def __init__(self) -> None:
        self.open: dict[str, datetime] = {}  # site -> started_at of its open gap

    def down(self, site: str, at: datetime) -> list[Out]:
        """The site's events stop being seen at ``at`` (no-op while a gap is open)."""
        if site in self.open:
            return []
        self.open[site] = at
        return [("coverage_gaps", {"site": site, "started_at": at})]

    def up(self, site: str, at: datetime) -> list[Out]:
        """The site is seen again: its open gap (if any) closes at ``at``."""
        started = self.open.pop(site, None)
        if started is None:
            return []
        return [
            ("coverage_gaps", {"site": site, "started_at": started, "ended_at": max(at, started)})
        ]

    def all_down(self, sites: Iterable[str], at: datetime) -> list[Out]:
        out: list[Out] = []
        for site in sites:
            out += self.down(site, at)
        return out
