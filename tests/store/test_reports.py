"""Every figure of the interval and agent reports, on SQLite and PostgreSQL, from calls
written through the store's normal path; each expected number is worked out by hand in
the comments beside it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ccbridge.reports.build import Report, agent_report, interval_report
from ccbridge.reports.intervals import Step
from ccbridge.reports.query import Period, ReportQuery
from ccbridge.store.schema import Outcome
from tests.store.conftest import Db
from tests.store.report_world import DST_ZONE, report_config, write

DHAKA = ZoneInfo("Asia/Dhaka")  # UTC+6, no DST
NY = ZoneInfo(DST_ZONE)
DAY = date(2026, 11, 27)
NOW = datetime(2026, 12, 5, tzinfo=UTC)  # every report range is in the past


def at(hh: int, mm: int, ss: int = 0, day: date = DAY, zone: ZoneInfo = DHAKA) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=zone)


def call(
    cid: str,
    arrived: datetime,
    *,
    entry: str = "dhaka",
    target: str | None = "dhaka",
    queue: str | None = "orders-en",
    outcome: Outcome,
    wait: float | None = None,
    talk: float | None = None,
    hold: float | None = None,
    wrapup: float | None = None,
    sat: int | None = None,
    agent: str | None = None,
    **more: Any,
) -> tuple[str, dict[str, Any]]:
    service, _, language = (queue or "orders-en").partition("-")
    v: dict[str, Any] = {
        "call_id": cid,
        "entry_site": entry,
        "target_site": target,
        "arrived_at": arrived,
        "service": service,
        "language": language,
        "queue": queue,
        "outcome": outcome,
        "wait_s": wait,
        "talk_s": talk,
        "hold_s": hold,
        "wrapup_s": wrapup,
        "satisfaction": sat,
        "agent": agent,
        **more,
    }
    if queue is not None and "queued_at" not in more:
        v["queued_at"] = arrived + timedelta(seconds=2)
    if outcome is Outcome.ANSWERED and wait is not None:
        v["answered_at"] = v["queued_at"] + timedelta(seconds=wait)
    return ("calls", {k: x for k, x in v.items() if x is not None})


A, AB, TO = Outcome.ANSWERED, Outcome.ABANDONED, Outcome.TIMEOUT

# dhaka, 10:00-11:00 local (04:00-05:00 UTC), queue orders-en (threshold 20 s)
HOUR = [
    call("c1", at(10, 5), outcome=A, wait=10, talk=100, hold=20, wrapup=5, sat=5),
    call("c2", at(10, 6), outcome=A, wait=25, talk=200, hold=0, wrapup=10, sat=3),
    call("c3", at(10, 7), outcome=Outcome.SHORT_ABANDON, wait=3),  # short: under 5 s
    call("c4", at(10, 8), outcome=AB, wait=12),  # long, within the threshold
    call("c5", at(10, 9), outcome=AB, wait=40),  # long, past it
    # entered at bangalore, sent here: overflowed in, answered at exactly 20 s (within)
    call("c6", at(10, 10), entry="bangalore", outcome=A, wait=20, talk=60, hold=0, wrapup=0),
    # entered here, sent to manila: overflowed out of dhaka's orders-en
    call("c7", at(10, 11), target="manila", outcome=A, wait=4, talk=30),
    # after hours: never queued, no target
    call(
        "c8",
        at(10, 12),
        target=None,
        queue=None,
        outcome=Outcome.AFTER_HOURS_VOICEMAIL,
        after_hours_action="voicemail",
    ),
    call("c9", at(10, 13), outcome=A, wait=5, talk=50, static_fallback=True),
    call("c10", at(10, 14), outcome=TO, wait=300),  # queue timeout: the longest wait
    # care-en has a 30 s threshold at dhaka: 25 s is within
    call("c11", at(10, 40), queue="care-en", outcome=A, wait=25, talk=90, hold=10, wrapup=0),
]


def q(first: date, last: date, step: Step, site: str = "dhaka", **kw: Any) -> ReportQuery:
    return ReportQuery(Period(first=first, last=last), (site,), step, **kw)


def by_interval(report: Report, start: datetime) -> list[dict[str, Any]]:
    iso = start.isoformat()
    return [r for r in report.rows if r["interval_start"] == iso]


def one(rows: list[dict[str, Any]], queue: str | None) -> dict[str, Any]:
    found = [r for r in rows if r["queue"] == queue]
    assert len(found) == 1, rows
    return found[0]


async def test_interval_figures_per_queue(migrated: Db) -> None:
    await write(migrated, HOUR)
    config = report_config()
    engine = migrated.engine()
    hourly = await interval_report(engine, config, q(DAY, DAY, Step.M60), NOW)
    halves = await interval_report(engine, config, q(DAY, DAY, Step.M30), NOW)
    manila = await interval_report(engine, config, q(DAY, DAY, Step.M60, "manila"), NOW)
    assert len({r["interval_start"] for r in hourly.rows}) == 24  # a day of local hours
    rows = by_interval(hourly, at(10, 0))
    assert {r["queue"] for r in rows} == {"orders-en", "care-en", None}
    o = one(rows, "orders-en")
    assert o["interval_end"] == at(11, 0).isoformat() == "2026-11-27T11:00:00+06:00"
    assert o["incomplete"] is False
    # offered: c1-c6, c9, c10 joined this queue (c7 went to manila, c8 never queued)
    assert o["offered"] == 8
    assert o["answered"] == 4  # c1, c2, c6, c9
    assert o["answered_within_sl"] == 3  # c1 10 s, c6 20 s (<=), c9 5 s; not c2 25 s
    assert o["abandoned"] == 2 and o["short_abandons"] == 1  # c4, c5; c3
    assert o["abandoned_within_sl"] == 1  # c4 12 s
    assert o["timed_out"] == 1  # c10
    assert o["abandon_rate"] == pytest.approx(2 / 7)  # 2 / (8 offered - 1 short)
    assert o["service_level"] == pytest.approx(3 / 4)
    assert o["service_level_with_abandons"] == pytest.approx((3 + 1) / (4 + 2))
    assert o["asa_s"] == pytest.approx((10 + 25 + 20 + 5) / 4)  # 15
    # AHT: (100+20+5) + (200+0+10) + (60) + (50) = 445 over 4 answered
    assert o["aht_s"] == pytest.approx(111.25)
    assert o["longest_wait_s"] == 300
    assert o["overflowed_in"] == 1 and o["overflowed_out"] == 1  # c6; c7
    assert o["after_hours"] == 0 and o["fallback_routed"] == 1  # c9
    assert o["satisfaction_avg"] == pytest.approx(4.0) and o["satisfaction_count"] == 2
    ah = one(rows, None)  # c8: after hours, under its service and language
    assert (ah["service"], ah["language"], ah["offered"], ah["after_hours"]) == (
        "orders",
        "en",
        0,
        1,
    )
    assert ah["service_level"] is None and ah["asa_s"] is None  # nothing to divide: no 0
    care = one(rows, "care-en")
    assert care["service_level"] == 1.0  # 25 s within care-en's 30 s at dhaka
    assert care["aht_s"] == pytest.approx(100.0)
    # half hours: c11 (10:40) alone in 10:30; the orders-en calls all in 10:00
    assert [r["queue"] for r in by_interval(halves, at(10, 30))] == ["care-en"]
    assert one(by_interval(halves, at(10, 0)), "orders-en")["offered"] == 8
    # an hour without calls: one row of zeros, not missing
    empty = by_interval(hourly, at(9, 0))
    assert len(empty) == 1 and empty[0]["offered"] == 0 and empty[0]["queue"] is None
    # manila (in New York's zone) got c7 as an overflow in, at 23:11 the day before there
    m = [r for r in manila.rows if r["offered"]]
    assert len(m) == 0  # c7 arrived 2026-11-26 23:11 in New York: outside manila's 27th
    engine = migrated.engine()
    m26 = await interval_report(
        engine, config, q(date(2026, 11, 26), date(2026, 11, 26), Step.DAY, "manila"), NOW
    )
    row = one(m26.rows, "orders-en")
    assert row["interval_start"] == "2026-11-26T00:00:00-05:00"
    assert (row["offered"], row["answered"], row["overflowed_in"]) == (1, 1, 1)


async def test_by_site_rolls_the_queues_up(migrated: Db) -> None:
    await write(migrated, HOUR)
    engine = migrated.engine()
    r = await interval_report(engine, report_config(), q(DAY, DAY, Step.M60, by="site"), NOW)
    rows = by_interval(r, at(10, 0))
    assert len(rows) == 1 and rows[0]["queue"] is None
    s = rows[0]
    assert s["offered"] == 9 and s["answered"] == 5  # orders-en 8 + care-en 1; 4 + 1
    assert s["service_level"] == pytest.approx(4 / 5)
    assert s["after_hours"] == 1 and s["longest_wait_s"] == 300


async def test_local_days_and_coverage_gaps(migrated: Db) -> None:
    records = [
        call("late", at(23, 50), outcome=A, wait=8, talk=10),  # 17:50 UTC on the 27th
        call("early", at(0, 10, day=date(2026, 11, 28)), outcome=A, wait=8, talk=10),
        # a gap at dhaka 12:10-12:20 local on the 27th, and one still open on the 29th
        ("coverage_gaps", {"site": "dhaka", "started_at": at(12, 10), "ended_at": at(12, 20)}),
        ("coverage_gaps", {"site": "dhaka", "started_at": at(6, 0, day=date(2026, 11, 29))}),
    ]
    await write(migrated, records)
    config = report_config()
    engine = migrated.engine()
    days = await interval_report(engine, config, q(DAY, date(2026, 11, 29), Step.DAY), NOW)
    hours = await interval_report(engine, config, q(DAY, DAY, Step.M60), NOW)
    # both calls are on the same UTC day, on two local days
    assert [(r["interval_start"][:10], r["offered"], r["incomplete"]) for r in days.rows] == [
        ("2026-11-27", 1, True),  # the 12:10 gap touches the day: marked, figures kept
        ("2026-11-28", 1, False),
        ("2026-11-29", None, True),  # no call seen during a gap: unknown, not zero
    ]
    noon = by_interval(hours, at(12, 0))
    assert len(noon) == 1 and noon[0]["incomplete"] is True and noon[0]["offered"] is None
    assert by_interval(hours, at(13, 0))[0]["incomplete"] is False
    assert by_interval(hours, at(13, 0))[0]["offered"] == 0


async def test_a_gap_that_begins_after_the_reports_instant_is_not_there_yet(
    migrated: Db,
) -> None:
    # A report made at 10:15 reads the same after a stop opened a gap at 10:30 (the lab's
    # scripted day compares a report made while the bridge ran with one made after).
    records = [
        call("seen", at(10, 0), outcome=A, wait=8, talk=10),
        ("coverage_gaps", {"site": "dhaka", "started_at": at(10, 30)}),
    ]
    await write(migrated, records)
    engine = migrated.engine()
    hours = q(DAY, DAY, Step.M60)
    before = await interval_report(engine, report_config(), hours, at(10, 15))
    after = await interval_report(engine, report_config(), hours, at(10, 45))
    assert [r["incomplete"] for r in by_interval(before, at(10, 0))] == [False]
    assert [r["incomplete"] for r in by_interval(after, at(10, 0))] == [True]


async def test_dst_nights_in_a_dst_zone(migrated: Db) -> None:
    fall = date(2026, 11, 1)  # New York falls back: 01:00-02:00 happens twice
    spring = date(2026, 3, 8)  # springs forward: no 02:00
    m: dict[str, Any] = {"entry": "manila", "target": "manila"}
    records = [
        call("f1", datetime(2026, 11, 1, 5, 30, tzinfo=UTC), outcome=A, wait=1, **m),  # 01:30 EDT
        call("f2", datetime(2026, 11, 1, 6, 30, tzinfo=UTC), outcome=A, wait=1, **m),  # 01:30 EST
        call("f3", datetime(2026, 11, 1, 6, 45, tzinfo=UTC), outcome=A, wait=1, **m),  # 01:45 EST
        call("s1", datetime(2026, 3, 8, 6, 59, tzinfo=UTC), outcome=A, wait=1, **m),  # 01:59 EST
        call("s2", datetime(2026, 3, 8, 7, 0, tzinfo=UTC), outcome=A, wait=1, **m),  # 03:00 EDT
    ]
    await write(migrated, records)
    config = report_config()
    engine = migrated.engine()
    f = await interval_report(engine, config, q(fall, fall, Step.M60, "manila"), NOW)
    fd = await interval_report(engine, config, q(fall, fall, Step.DAY, "manila"), NOW)
    s = await interval_report(engine, config, q(spring, spring, Step.M60, "manila"), NOW)
    s30 = await interval_report(engine, config, q(spring, spring, Step.M30, "manila"), NOW)
    starts = [r["interval_start"] for r in f.rows]
    assert len(starts) == 25  # a 25-hour day
    assert starts[1:3] == ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00"]
    assert [r["offered"] for r in f.rows[1:3]] == [1, 2]  # f1; f2 and f3
    assert [(r["interval_end"], r["offered"]) for r in fd.rows] == [
        ("2026-11-02T00:00:00-05:00", 3)
    ]
    starts = [r["interval_start"] for r in s.rows]
    assert len(starts) == 23  # a 23-hour day: 01:00 EST is followed by 03:00 EDT
    assert starts[1:3] == ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"]
    assert [r["offered"] for r in s.rows[1:3]] == [1, 1]
    assert len(s30.rows) == 46
    assert s30.rows[3]["interval_start"] == "2026-03-08T01:30:00-05:00"
    assert s30.rows[3]["interval_end"] == "2026-03-08T03:00:00-04:00"


async def test_agent_figures(migrated: Db) -> None:
    ag = "dac-agent1"

    def act(queue: str, kind: str, t: datetime) -> tuple[str, dict[str, Any]]:
        return (
            "agent_activity",
            {"site": "dhaka", "agent": ag, "queue": queue, "kind": kind, "at": t},
        )

    records = [
        act("orders-en", "login", at(9, 50)),  # before the range: logged in at 10:00
        act("orders-bn", "login", at(10, 10)),
        act("orders-en", "pause", at(10, 20)),  # paused in one of two queues: not paused
        act("orders-bn", "pause", at(10, 30)),  # paused in both from 10:30
        act("orders-bn", "unpause", at(10, 45)),  # ... until 10:45: 900 s paused
        act("orders-en", "logout", at(11, 15)),
        act("orders-bn", "logout", at(11, 30)),  # logged out of everything at 11:30
        act("orders-en", "called", at(10, 5)),
        act("orders-en", "called", at(10, 6)),
        act("orders-en", "ring_no_answer", at(10, 6, 15)),
        act("orders-en", "called", at(10, 50)),
        # another agent at another site: not in dhaka's report
        (
            "agent_activity",
            {
                "site": "bangalore",
                "agent": ag,
                "queue": "orders-en",
                "kind": "login",
                "at": at(10, 0),
            },
        ),
        call("a1", at(10, 5), outcome=A, wait=8, talk=100, hold=20, wrapup=5, sat=5, agent=ag),
        call("a2", at(10, 50), outcome=A, wait=28, talk=200, hold=0, wrapup=10, sat=3, agent=ag),
        # arrived in the 10:00 hour, answered in the 11:00 one: counted at its answer
        call("a3", at(10, 59, 50), outcome=A, wait=18, talk=60, agent=ag),
    ]
    await write(migrated, records)
    query = ReportQuery(Period(start=at(10, 0), end=at(12, 0)), ("dhaka",), Step.M60)
    engine = migrated.engine()
    r = await agent_report(engine, report_config(), query, NOW)
    assert [(x["interval_start"], x["agent"]) for x in r.rows] == [
        ("2026-11-27T10:00:00+06:00", ag),
        ("2026-11-27T11:00:00+06:00", ag),
    ]
    ten, eleven = r.rows
    assert (ten["offered"], ten["answered"], ten["ring_no_answer"]) == (3, 2, 1)
    assert (ten["talk_s"], ten["hold_s"], ten["wrapup_s"]) == (300, 20, 15)
    assert (ten["login_s"], ten["pause_s"]) == (3600, 900)
    assert ten["occupancy"] == pytest.approx(335 / 2700)  # handle / (login - pause)
    assert ten["aht_s"] == pytest.approx(335 / 2)
    assert ten["satisfaction_avg"] == pytest.approx(4.0) and ten["satisfaction_count"] == 2
    assert (eleven["answered"], eleven["talk_s"], eleven["offered"]) == (1, 60, 0)
    assert (eleven["login_s"], eleven["pause_s"]) == (1800, 0)  # 11:00-11:30
    assert eleven["occupancy"] == pytest.approx(60 / 1800)
    assert eleven["satisfaction_avg"] is None and eleven["incomplete"] is False


async def test_login_time_stops_at_now(migrated: Db) -> None:
    """An agent still logged in: login time runs to the report's now, not to the end."""
    rec = (
        "agent_activity",
        {"site": "dhaka", "agent": "x", "queue": "orders-en", "kind": "login", "at": at(10, 0)},
    )
    await write(migrated, [rec])
    query = ReportQuery(Period(start=at(10, 0), end=at(12, 0)), ("dhaka",), Step.M60)
    engine = migrated.engine()
    r = await agent_report(engine, report_config(), query, at(10, 20))
    assert [x["login_s"] for x in r.rows] == [1200]
