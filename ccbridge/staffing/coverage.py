"""Follow the sun: which sites take each language over a UTC day, the gaps, who could
cover them (pure: the instants are passed in)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from ccbridge.config.model import Config, queue_name
from ccbridge.routing.schedule import is_open
from ccbridge.staffing import erlang
from ccbridge.staffing.plan import Targets, configured_staff, requirement
from ccbridge.staffing.slots import zone

__all__ = [
    "Candidate",
    "Gap",
    "GapCover",
    "SunRow",
    "cover_gap",
    "coverage_at",
    "follow_the_sun",
    "gaps",
]

DAYTIME = (time(8), time(20))  # local hours a site can staff without a night shift


@dataclass(frozen=True, slots=True)
class SunRow:
    """One step of the UTC day for one language."""

    language: str
    start: datetime  # UTC
    end: datetime
    open_sites: tuple[str, ...]  # a queue in the language is open there
    staffed_sites: tuple[str, ...]  # ... and has agents in it

    @property
    def covered(self) -> bool:
        return bool(self.staffed_sites)

    @property
    def gap(self) -> str | None:
        """None when covered; 'closed' when no site is open; 'unstaffed' when the open
        ones have nobody in the language's queues."""
        if self.staffed_sites:
            return None
        return "unstaffed" if self.open_sites else "closed"


@dataclass(frozen=True, slots=True)
class Gap:
    language: str
    start: datetime  # UTC
    end: datetime
    kind: str  # 'closed' | 'unstaffed'


@dataclass(frozen=True, slots=True)
class Candidate:
    """A site that could take a gap's calls, and what it already has."""

    site: str
    local_time: time
    daytime: bool  # within DAYTIME there: no night shift needed
    open_for_service: bool  # the site is open for the service (in another language)
    language_agents: int  # configured agents already in a queue of the language


@dataclass(frozen=True, slots=True)
class GapCover:
    language: str
    service: str
    at: datetime
    calls_per_hour: float
    requirement: erlang.Requirement | erlang.Unreachable
    candidates: tuple[Candidate, ...]  # best first

    @property
    def agents(self) -> int | None:
        r = self.requirement
        return r.agents if isinstance(r, erlang.Requirement) else None


def _utc_day(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def follow_the_sun(
    config: Config,
    day: date,
    *,
    step_minutes: int = 60,
    service: str | None = None,
    staffed: Mapping[tuple[str, str], int] | None = None,
) -> list[SunRow]:
    """For every language, one row per step of the UTC ``day``: the sites open and the
    sites staffed for it (``service`` narrows to one service). A step counts as open
    when the site is open at its middle: a shift of 09:00-21:00 IST (03:30-15:30 UTC)
    then covers hours 03 to 14, twelve of them, as it should."""
    if step_minutes <= 0 or 1440 % step_minutes:
        raise ValueError(f"step_minutes must divide a day, got {step_minutes}")
    staff = configured_staff(config) if staffed is None else staffed
    rows: list[SunRow] = []
    start = _utc_day(day)
    step = timedelta(minutes=step_minutes)
    for lang in config.languages:
        for k in range(1440 // step_minutes):
            t0 = start + k * step
            rows.append(_row(config, lang, t0, t0 + step, t0 + step / 2, service, staff))
    return rows


def coverage_at(
    config: Config,
    at: datetime,
    staffed: Mapping[tuple[str, str], int],
    *,
    service: str | None = None,
) -> list[SunRow]:
    """One row per language for the instant ``at`` (start = end = at): the sites open
    then, and those with agents in ``staffed`` (e.g. the logged-in ones, live_staff)."""
    if at.tzinfo is None:
        raise ValueError("the instant must carry a time zone")
    at = at.astimezone(UTC)
    return [_row(config, lang, at, at, at, service, staffed) for lang in config.languages]


def _row(
    config: Config,
    lang: str,
    t0: datetime,
    t1: datetime,
    probe: datetime,
    service: str | None,
    staff: Mapping[tuple[str, str], int],
) -> SunRow:
    open_sites: list[str] = []
    staffed_sites: list[str] = []
    for site in config.sites:
        queues = [
            queue_name(o.service, lang)
            for o in site.offerings
            if lang in o.languages
            and (service is None or o.service == service)
            and is_open(o.schedule, site.timezone, probe).open
        ]
        if queues:
            open_sites.append(site.name)
            if any(staff.get((site.name, q), 0) > 0 for q in queues):
                staffed_sites.append(site.name)
    return SunRow(lang, t0, t1, tuple(open_sites), tuple(staffed_sites))


def gaps(rows: list[SunRow]) -> list[Gap]:
    """Runs of consecutive uncovered steps of the same kind, per language."""
    out: list[Gap] = []
    for r in rows:
        kind = r.gap
        if kind is None:
            continue
        last = out[-1] if out else None
        if last and last.language == r.language and last.kind == kind and last.end == r.start:
            out[-1] = Gap(r.language, last.start, r.end, kind)
        else:
            out.append(Gap(r.language, r.start, r.end, kind))
    return out


def cover_gap(
    config: Config,
    language: str,
    service: str,
    at: datetime,
    calls_per_hour: float,
    targets: Targets,
) -> GapCover:
    """How many agents an hour of ``calls_per_hour`` in ``language`` needs at ``at``
    (Erlang C), and the sites that could put them on, best first: open for the service
    already, then in local daytime, then with agents of the language already."""
    if at.tzinfo is None:
        raise ValueError("the gap's instant must carry a time zone")
    req = requirement(calls_per_hour, 3600.0, targets)
    lang_queues = {queue_name(svc, language) for svc in config.services}
    staff_lang = {
        s.name: sum(1 for a in s.agents if lang_queues.intersection(a.queues)) for s in config.sites
    }
    cands: list[Candidate] = []
    for s in config.sites:
        local = at.astimezone(zone(s.timezone)).time().replace(tzinfo=None)
        offering = s.offering(service)
        open_ = offering is not None and is_open(offering.schedule, s.timezone, at).open
        day = DAYTIME[0] <= local < DAYTIME[1]
        cands.append(Candidate(s.name, local, day, open_, staff_lang[s.name]))
    cands.sort(key=lambda c: (not c.open_for_service, not c.daytime, -c.language_agents, c.site))
    return GapCover(language, service, at, calls_per_hour, req, tuple(cands))
