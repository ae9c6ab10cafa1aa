"""Follow the sun over the lab's three sites: who takes each language at each UTC hour,
the gaps, and what covering Dhaka's Bengali evening would take."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from ccbridge.config import load_config
from ccbridge.config.model import Config
from ccbridge.staffing.coverage import Gap, cover_gap, follow_the_sun, gaps
from ccbridge.staffing.forecast import Basis, Forecast, ForecastSlot
from ccbridge.staffing.history import QueueKey
from ccbridge.staffing.plan import Targets, plan
from ccbridge.staffing.report import gap_demand, sun_report
from ccbridge.staffing.slots import SLOTS_PER_DAY, Slot

LAB = Path(__file__).resolve().parents[2] / "examples" / "lab.yaml"
MONDAY = date(2026, 12, 7)  # no holiday in India, Bangladesh or the Philippines


@pytest.fixture(scope="module")
def lab() -> Config:
    return load_config(LAB, resolve_secrets=False)


def hours(rows: list, lang: str, what: str = "staffed") -> list[int]:  # type: ignore[type-arg]
    return [
        r.start.hour
        for r in rows
        if r.language == lang and (r.staffed_sites if what == "staffed" else r.open_sites)
    ]


def test_who_takes_each_language_over_a_utc_monday(lab: Config) -> None:
    rows = follow_the_sun(lab, MONDAY)
    assert len(rows) == 24 * len(lab.languages)
    # manila takes English and Tagalog around the clock (orders: always)
    assert hours(rows, "en") == list(range(24))
    assert hours(rows, "tl") == list(range(24))
    # Hindi: bangalore mon-sat 09:00-21:00 IST = 03:30-15:30 UTC -> hours 03..14
    assert hours(rows, "hi") == list(range(3, 15))
    # Bengali: dhaka sun-thu 09:00-18:00 (03:00-12:00 UTC) and the Monday night shift
    # 22:00-06:00 (16:00 UTC Monday to 00:00 UTC Tuesday)
    assert hours(rows, "bn") == [*range(3, 12), *range(16, 24)]
    # Urdu: no site offers it
    assert hours(rows, "ur", "open") == []
    at = {r.start.hour: r for r in rows if r.language == "bn"}
    assert at[5].staffed_sites == ("dhaka",)
    assert at[5].start == datetime(2026, 12, 7, 5, tzinfo=UTC)
    assert at[13].gap == "closed"


def test_the_gaps_per_language(lab: Config) -> None:
    found = gaps(follow_the_sun(lab, MONDAY))
    d = lambda h: datetime(2026, 12, 7, tzinfo=UTC).replace(hour=h)  # noqa: E731
    end = datetime(2026, 12, 8, tzinfo=UTC)
    assert [g for g in found if g.language == "bn"] == [
        Gap("bn", d(0), d(3), "closed"),
        Gap("bn", d(12), d(16), "closed"),
    ]
    assert [g for g in found if g.language == "hi"] == [
        Gap("hi", d(0), d(3), "closed"),
        Gap("hi", d(15), end, "closed"),
    ]
    assert [g for g in found if g.language == "ur"] == [Gap("ur", d(0), end, "closed")]
    assert not [g for g in found if g.language in ("en", "tl")]


def test_open_but_nobody_staffed_is_a_gap_of_its_own(lab: Config) -> None:
    # everyone logged out of dhaka's Bengali queues: open, but unstaffed
    staffed = {("dhaka", "orders-bn"): 0, ("dhaka", "returns-bn"): 0, ("manila", "orders-en"): 1}
    rows = follow_the_sun(lab, MONDAY, staffed=staffed)
    bn = {r.start.hour: r for r in rows if r.language == "bn"}
    assert bn[5].open_sites == ("dhaka",) and bn[5].gap == "unstaffed"
    assert [g.kind for g in gaps([r for r in rows if r.language == "bn"])] == [
        "closed",
        "unstaffed",
        "closed",
        "unstaffed",
    ]
    # a service filter: returns in Bengali has no night shift
    ret = follow_the_sun(lab, MONDAY, service="returns")
    assert hours(ret, "bn") == list(range(3, 12))
    # half-hour steps: the row's state at its middle
    half = follow_the_sun(lab, MONDAY, step_minutes=30)
    hi = [r.start.strftime("%H:%M") for r in half if r.language == "hi" and r.staffed_sites]
    assert hi[0] == "03:30" and hi[-1] == "15:00"
    with pytest.raises(ValueError, match="step_minutes must divide a day"):
        follow_the_sun(lab, MONDAY, step_minutes=7)


def test_covering_dhakas_bengali_evening(lab: Config) -> None:
    # 20 calls an hour at 13:00 UTC (19:00 in Dhaka): A = 20 x 180 / 3600 = 1 Erlang.
    # 2 agents: C = 1/3, SL = 1 - exp(-20/180)/3 = 70.2 %; 3 agents: C = 1/11,
    # SL = 1 - exp(-40/180)/11 = 92.7 %: 3 agents meet 80/20.
    at = datetime(2026, 12, 7, 13, tzinfo=UTC)
    cover = cover_gap(lab, "bn", "orders", at, 20.0, Targets())
    assert cover.agents == 3
    sites = [c.site for c in cover.candidates]
    # bangalore is open for orders (until 21:00 IST) and it is 18:30 there: first;
    # manila is open 24/7 but it is 21:00; dhaka has the Bengali agents but is closed
    assert sites == ["bangalore", "manila", "dhaka"]
    blr, mnl, dac = cover.candidates
    assert (blr.local_time, blr.daytime, blr.open_for_service, blr.language_agents) == (
        time(18, 30),
        True,
        True,
        0,
    )
    assert (mnl.local_time, mnl.daytime, mnl.open_for_service) == (time(21, 0), False, True)
    assert (dac.local_time, dac.open_for_service, dac.language_agents) == (time(19, 0), False, 2)
    with pytest.raises(ValueError, match="must carry a time zone"):
        cover_gap(lab, "bn", "orders", at.replace(tzinfo=None), 20.0, Targets())


def _flat(key: QueueKey, day: date, calls: float) -> Forecast:
    slots = tuple(ForecastSlot(Slot(day, i), calls, Basis.PROFILE, 8) for i in range(SLOTS_PER_DAY))
    return Forecast(key, "profile", (day, day), 8, 0.0, slots)


def test_the_report_sizes_each_gap_from_the_forecast(lab: Config) -> None:
    # 10 Bengali orders calls every half hour at dhaka, 5 returns: the evening gap
    # (12:00-16:00 UTC) sees 2 x (10 + 5) = 30 calls an hour -> A = 1.5 Erlangs.
    # B1 = 3/5, B2 = 9/29, B3 = 9/67; C(3) = 3 B3 / (3 - 1.5 (1 - B3)) = 9/38, so
    # SL(3) = 1 - (9/38) exp(-1.5 x 20/180) = 79.95 %: just short; 4 agents it is.
    fcs = [
        _flat(QueueKey("dhaka", "orders", "bn"), MONDAY, 10.0),
        _flat(QueueKey("dhaka", "returns", "bn"), MONDAY, 5.0),
    ]
    rows = plan(lab, fcs, Targets())
    start, end = datetime(2026, 12, 7, 12, tzinfo=UTC), datetime(2026, 12, 7, 16, tzinfo=UTC)
    assert gap_demand(rows, "bn", start, end) == pytest.approx(30.0)
    text, _, covers = sun_report(lab, MONDAY, rows, Targets())
    evening = [c for c in covers if c.at.hour == 12]
    assert len(evening) == 1 and evening[0].agents == 4 and evening[0].service == "orders"
    assert "gap 12:00-16:00 UTC closed: up to 30.0 calls/h (orders) -> 4 agents" in text
    assert "  bn   |...#########....########|" in text
    assert "gap 00:00-24:00 UTC closed: no calls forecast" in text  # Urdu
