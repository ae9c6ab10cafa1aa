"""The staffing plan as a terminal table, CSV rows and a follow-the-sun summary."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from ccbridge.config.model import Config
from ccbridge.staffing.coverage import GapCover, SunRow, cover_gap, follow_the_sun, gaps
from ccbridge.staffing.plan import IntervalPlan, Status, Targets

__all__ = [
    "CSV_COLUMNS",
    "QueueSummary",
    "gap_demand",
    "plan_csv",
    "plan_table",
    "summarise",
    "sun_report",
]

CSV_COLUMNS = (
    "site",
    "service",
    "language",
    "queue",
    "interval_start_local",
    "interval_start_utc",
    "seconds",
    "open",
    "forecast_calls",
    "basis",
    "aht_seconds",
    "required_agents",
    "rostered_agents",
    "staffed_agents",
    "service_level_required",
    "service_level_staffed",
    "status",
    "recorded_calls",
    "recorded_complete",
)


def _num(v: float | None, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _csv_row(r: IntervalPlan) -> list[str]:
    return [
        r.key.site,
        r.key.service,
        r.key.language,
        r.key.queue,
        r.slot_label,
        "" if r.utc_start is None else r.utc_start.strftime("%Y-%m-%dT%H:%MZ"),
        str(r.seconds),
        "1" if r.open else "0",
        _num(r.calls, ".2f"),
        r.basis,
        f"{r.aht_s:.1f}",
        _num(r.required, "d"),
        _num(r.rostered, "d"),
        str(r.staffed),
        _num(r.service_level, ".4f"),
        _num(r.staffed_service_level, ".4f"),
        r.status,
        _num(r.recorded, "d"),
        "" if r.recorded is None else ("1" if r.recorded_complete else "0"),
    ]


def plan_csv(rows: Iterable[IntervalPlan]) -> str:
    """Every row, the columns of CSV_COLUMNS."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow(_csv_row(r))
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class QueueSummary:
    site: str
    queue: str
    calls: float
    peak_required: int
    agent_hours: float  # required agents x hours, over the open slots
    rostered_hours: float
    understaffed: int  # open slots with fewer agents than required (or unreachable)
    closed_with_demand: int
    no_forecast: int


def summarise(rows: Iterable[IntervalPlan]) -> list[QueueSummary]:
    acc: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        a = acc.setdefault((r.key.site, r.key.queue), [0.0] * 7)
        a[0] += r.calls or 0.0
        a[1] = max(a[1], r.required or 0)
        a[2] += (r.required or 0) * r.seconds / 3600
        a[3] += (r.rostered or 0) * r.seconds / 3600
        a[4] += r.status in (Status.UNDERSTAFFED, Status.UNREACHABLE)
        a[5] += r.status == Status.CLOSED_WITH_DEMAND
        a[6] += r.status == Status.NO_FORECAST
    return [
        QueueSummary(s, q, a[0], int(a[1]), a[2], a[3], int(a[4]), int(a[5]), int(a[6]))
        for (s, q), a in sorted(acc.items())
    ]


def plan_table(rows: Sequence[IntervalPlan], *, all_slots: bool = False) -> str:
    """The slots a planner acts on (open, or calls expected while closed; every slot
    with ``all_slots``), then a summary per queue."""
    head = (
        f"{'site':<10} {'queue':<12} {'local':<16} {'utc':<6} {'calls':>7} {'aht':>5} {'req':>4} "
        f"{'rost':>4} {'have':>4} {'SL req':>6} {'SL have':>7} {'rec':>5}  status"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if not all_slots and r.status == Status.CLOSED:
            continue
        utc = "" if r.utc_start is None else r.utc_start.strftime("%H:%M")
        lines.append(
            f"{r.key.site:<10} {r.key.queue:<12} {r.slot_label:<16} {utc:<6} "
            f"{_num(r.calls, '.1f'):>7} {r.aht_s:>5.0f} {_num(r.required, 'd'):>4} "
            f"{_num(r.rostered, 'd'):>4} "
            f"{r.staffed:>4} {_pct(r.service_level):>6} {_pct(r.staffed_service_level):>7} "
            f"{_recorded(r):>5}  {r.status}"
        )
    lines += ["", "per queue:"]
    for s in summarise(rows):
        lines.append(
            f"  {s.site}/{s.queue}: {s.calls:.0f} calls, peak {s.peak_required} agents, "
            f"{s.agent_hours:.1f} agent-hours on the phones ({s.rostered_hours:.1f} rostered), "
            f"{s.understaffed} slots understaffed, {s.closed_with_demand} closed with calls "
            f"expected, {s.no_forecast} without a forecast"
        )
    return "\n".join(lines) + "\n"


def _recorded(r: IntervalPlan) -> str:
    """The recorded calls; '*' when the slot touched a coverage gap (a lower bound)."""
    if r.recorded is None:
        return ""
    return f"{r.recorded}{'' if r.recorded_complete else '*'}"


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.1%}"


def gap_demand(
    rows: Iterable[IntervalPlan], language: str, start: datetime, end: datetime
) -> float:
    """Peak calls per hour forecast in ``language``, over every site's queues, in the
    UTC hours from ``start`` to ``end`` (calls that arrive while no one can take them)."""
    per_hour: dict[datetime, float] = {}
    for r in rows:
        if r.key.language != language or r.utc_start is None or r.calls is None:
            continue
        if start <= r.utc_start < end:
            h = r.utc_start.replace(minute=0, second=0, microsecond=0)
            per_hour[h] = per_hour.get(h, 0.0) + r.calls
    return max(per_hour.values(), default=0.0)


def sun_report(
    config: Config,
    day: date,
    rows: Sequence[IntervalPlan],
    targets: Targets,
    *,
    staffed: dict[tuple[str, str], int] | None = None,
) -> tuple[str, list[SunRow], list[GapCover]]:
    """Per language: the UTC hours each site covers, the gaps, and for each gap the
    agents its forecast calls need and the sites best placed to put them on."""
    sun = follow_the_sun(config, day, staffed=staffed)
    lines = [
        f"follow the sun, UTC {day.isoformat()}, hours 00-23 by each site's state at HH:30",
        "(# staffed, o open but nobody in the language's queues, . closed):",
    ]
    covers: list[GapCover] = []
    by_lang: dict[str, list[SunRow]] = {}
    for r in sun:
        by_lang.setdefault(r.language, []).append(r)
    for lang, lrows in by_lang.items():
        strip = "".join(_mark(r) for r in lrows)
        lines.append(f"  {lang:<4} |{strip}|")
        for g in gaps(lrows):
            calls = gap_demand(rows, lang, g.start, g.end)
            what = f"{g.start:%H:%M}-{_hhmm(g.end)} UTC {g.kind}"
            if calls <= 0:
                lines.append(f"       gap {what}: no calls forecast")
                continue
            service = _busiest_service(rows, lang, g.start, g.end) or config.services[0]
            peak_at = _peak_hour(rows, lang, g.start, g.end) or g.start
            cover = cover_gap(config, lang, service, peak_at, calls, targets)
            covers.append(cover)
            need = (
                f"{cover.agents} agents"
                if cover.agents is not None
                else "no agent count meets the target"
            )
            best = ", ".join(
                f"{c.site} ({c.local_time:%H:%M} local"
                + (", open" if c.open_for_service else ", closed")
                + (f", {c.language_agents} {lang} agents" if c.language_agents else "")
                + ")"
                for c in cover.candidates[:3]
            )
            lines.append(
                f"       gap {what}: up to {calls:.1f} calls/h ({service}) -> {need} on the "
                f"phones; candidates: {best}"
            )
    return "\n".join(lines) + "\n", sun, covers


def _mark(r: SunRow) -> str:
    return "#" if r.staffed_sites else ("o" if r.open_sites else ".")


def _hhmm(t: datetime) -> str:
    return "24:00" if t.hour == 0 and t.minute == 0 else f"{t:%H:%M}"


def _in_gap(
    rows: Iterable[IntervalPlan], lang: str, start: datetime, end: datetime
) -> list[IntervalPlan]:
    return [
        r
        for r in rows
        if r.key.language == lang and r.utc_start is not None and start <= r.utc_start < end
    ]


def _busiest_service(
    rows: Iterable[IntervalPlan], lang: str, start: datetime, end: datetime
) -> str | None:
    tot: dict[str, float] = {}
    for r in _in_gap(rows, lang, start, end):
        tot[r.key.service] = tot.get(r.key.service, 0.0) + (r.calls or 0.0)
    return max(tot, key=lambda s: (tot[s], s)) if tot else None


def _peak_hour(
    rows: Iterable[IntervalPlan], lang: str, start: datetime, end: datetime
) -> datetime | None:
    per: dict[datetime, float] = {}
    for r in _in_gap(rows, lang, start, end):
        assert r.utc_start is not None
        h = r.utc_start.replace(minute=0, second=0, microsecond=0)
        per[h] = per.get(h, 0.0) + (r.calls or 0.0)
    return max(per, key=lambda h: (per[h], -h.timestamp())) if per else None
