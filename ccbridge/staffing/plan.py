"""Required agents per local half hour for each site, service and language (pure)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ccbridge.config.model import Config, Offering, Site, queue_name
from ccbridge.routing.schedule import is_open
from ccbridge.staffing import erlang
from ccbridge.staffing.forecast import Basis, Forecast
from ccbridge.staffing.history import ArrivalHistory, Observation, QueueKey
from ccbridge.staffing.slots import Slot, slot_instants, slot_seconds

__all__ = [
    "IntervalPlan",
    "Status",
    "Targets",
    "configured_staff",
    "offering_keys",
    "plan",
    "requirement",
]


@dataclass(frozen=True, slots=True)
class Targets:
    """What the plan aims at, and the what-if knobs (``volume`` 1.2 = +20 %). ``aht_s``
    is the handle time where the history has none, or everywhere when
    ``aht_from_history`` is off (a what-if on handle time)."""

    aht_s: float = 180.0
    threshold_s: float = 20.0
    service_level: float = 0.8
    max_occupancy: float = 0.85
    shrinkage: float = 0.3
    volume: float = 1.0
    aht_from_history: bool = True

    def __post_init__(self) -> None:
        # Every check erlang.required_agents would make, up front: a bad CLI flag is
        # a message before any work, not a traceback in the middle of a plan.
        erlang.traffic_intensity(0, 1, self.aht_s)
        erlang.required_agents(
            0, self.aht_s, self.threshold_s, self.service_level, max_occupancy=self.max_occupancy
        )
        erlang.rostered_agents(0, self.shrinkage)
        erlang.traffic_intensity(self.volume, 1, 1)  # finite, not negative


class Status:
    OK = "ok"
    UNDERSTAFFED = "understaffed"
    CLOSED = "closed"
    CLOSED_WITH_DEMAND = "closed_with_demand"  # calls expected while the queue is closed
    NO_FORECAST = "no_forecast"  # nothing to go by: not a zero
    UNREACHABLE = "unreachable"  # no agent count meets the target
    NO_SUCH_SLOT = "no_such_slot"  # skipped by a DST change


@dataclass(frozen=True, slots=True)
class IntervalPlan:
    key: QueueKey
    slot_label: str  # local wall clock, e.g. 2026-11-09T09:30
    utc_start: datetime | None  # the slot's first real instant
    seconds: int
    open: bool
    calls: float | None  # forecast x volume
    basis: str
    aht_s: float  # the handle time the requirement used
    required: int | None  # on the phones, Erlang C
    rostered: int | None  # after shrinkage
    staffed: int
    service_level: float | None  # what the required agents give
    staffed_service_level: float | None  # what the staffed agents give (0 when unstable)
    status: str
    # Calls the records hold for the slot (a past or current slot), None when the records
    # do not cover it; ``recorded_complete`` False: the slot touched a coverage gap, the
    # count is only a lower bound.
    recorded: int | None = None
    recorded_complete: bool = True


def slots_between(
    rows: Iterable[IntervalPlan], start: datetime, until: datetime
) -> list[IntervalPlan]:
    """The rows whose slot is not over at ``start`` and begins before ``until`` (a
    bridge keeps these for its gauges, not the three days it plans: BENCHMARKS.md §4)."""
    return [
        r
        for r in rows
        if r.utc_start is not None
        and r.utc_start < until
        and r.utc_start + timedelta(seconds=r.seconds) > start
    ]


def offering_keys(config: Config) -> list[QueueKey]:
    """Every site, service and language the config offers."""
    return sorted(
        QueueKey(s.name, o.service, lang)
        for s in config.sites
        for o in s.offerings
        for lang in o.languages
    )


def configured_staff(config: Config) -> dict[tuple[str, str], int]:
    """(site, queue) -> configured agents that are members of the queue. An agent in
    several queues counts in each: per-queue Erlang C overstates a shared agent, which
    the planner should read as an upper bound on the staffing."""
    out: dict[tuple[str, str], int] = {}
    for s in config.sites:
        for a in s.agents:
            for q in a.queues:
                out[(s.name, q)] = out.get((s.name, q), 0) + 1
    return out


def requirement(
    calls: float, seconds: float, targets: Targets
) -> erlang.Requirement | erlang.Unreachable:
    """Erlang C for ``calls`` arriving over ``seconds`` under ``targets``."""
    a = erlang.traffic_intensity(calls, seconds, targets.aht_s)
    return erlang.required_agents(
        a,
        targets.aht_s,
        targets.threshold_s,
        targets.service_level,
        max_occupancy=targets.max_occupancy,
    )


def _staffed_sl(n: int, calls: float, seconds: float, t: Targets) -> float:
    a = erlang.traffic_intensity(calls, seconds, t.aht_s)
    p = erlang.performance(n, a, t.aht_s, t.threshold_s)
    return 0.0 if isinstance(p, erlang.Unstable) else p.service_level


def _site_offering(config: Config, key: QueueKey) -> tuple[Site, Offering] | None:
    for s in config.sites:
        if s.name == key.site:
            o = s.offering(key.service)
            if o is not None and key.language in o.languages:
                return s, o
    return None


def plan(
    config: Config,
    forecasts: Iterable[Forecast],
    targets: Targets,
    staffed: Mapping[tuple[str, str], int] | None = None,
    *,
    recorded: ArrivalHistory | None = None,
) -> list[IntervalPlan]:
    """One row per forecast slot of each queue the config offers (forecasts of queues
    it does not offer are left out): the requirement, the staffing, and a status; with
    ``recorded``, the calls the records hold for each slot beside the forecast."""
    staff = configured_staff(config) if staffed is None else staffed
    rows: list[IntervalPlan] = []
    for fc in forecasts:
        found = _site_offering(config, fc.key)
        if found is None:
            continue
        site, offering = found
        have = staff.get((site.name, queue_name(fc.key.service, fc.key.language)), 0)
        actual = _recorded(recorded, fc)
        for fs in fc.slots:
            aht = fs.aht_s if targets.aht_from_history and fs.aht_s else targets.aht_s
            t = targets if aht == targets.aht_s else replace(targets, aht_s=aht)
            row = _row(fc.key, site, offering, fs.slot, fs.calls, fs.basis, have, t)
            got = actual(fs.slot)
            if got is not None:
                row = replace(row, recorded=got.count, recorded_complete=got.complete)
            rows.append(row)
    return rows


def _recorded(history: ArrivalHistory | None, fc: Forecast) -> Callable[[Slot], Observation | None]:
    """slot -> what the records hold for it: an observation, a zero inside the span the
    records cover (no row is no call), or None outside it."""
    if history is None or not fc.slots:
        return lambda _s: None
    span = history.span(fc.key)
    if span is None:
        return lambda _s: None
    days = [f.slot.day for f in fc.slots]
    table = {o.slot: o for o in history.arrivals(fc.key, min(days), max(days))}
    lo, hi = span

    def get(slot: Slot) -> Observation | None:
        o = table.get(slot)
        if o is not None:
            return o
        return Observation(slot, 0) if lo <= slot.day <= hi else None

    return get


def _row(
    key: QueueKey,
    site: Site,
    offering: Offering,
    slot: Slot,
    forecast_calls: float | None,
    basis: str,
    have: int,
    t: Targets,
) -> IntervalPlan:
    label = str(slot)
    starts = slot_instants(slot, site.timezone)
    secs = slot_seconds(slot, site.timezone)
    if not starts or secs == 0:
        return IntervalPlan(
            key,
            label,
            None,
            0,
            False,
            None,
            basis,
            t.aht_s,
            None,
            None,
            have,
            None,
            None,
            Status.NO_SUCH_SLOT,
        )
    open_ = is_open(offering.schedule, site.timezone, starts[0]).open
    calls = None if forecast_calls is None else forecast_calls * t.volume

    def row(req: int | None, sl: float | None, ssl: float | None, status: str) -> IntervalPlan:
        rost = None if req is None else erlang.rostered_agents(req, t.shrinkage)
        return IntervalPlan(
            key,
            label,
            starts[0],
            secs,
            open_,
            calls,
            basis,
            t.aht_s,
            req,
            rost,
            have,
            sl,
            ssl,
            status,
        )

    if calls is None:
        return row(None, None, None, Status.NO_FORECAST if open_ else Status.CLOSED)
    if basis == Basis.NO_HISTORY:
        return row(None, None, None, Status.NO_FORECAST)
    if not open_:
        # Calls still arrive at a closed queue's number: another site must take them.
        return row(0, None, None, Status.CLOSED_WITH_DEMAND if calls >= 0.5 else Status.CLOSED)
    req = requirement(calls, secs, t)
    if isinstance(req, erlang.Unreachable):
        return row(None, None, _staffed_sl(have, calls, secs, t), Status.UNREACHABLE)
    ssl = _staffed_sl(have, calls, secs, t)
    status = Status.OK if have >= req.agents else Status.UNDERSTAFFED
    return row(req.agents, req.performance.service_level, ssl, status)
