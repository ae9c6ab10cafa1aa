"""The agent rollup gives exactly the agent report of raw rows, on SQLite and PostgreSQL:
days around both DST nights (Sydney springs forward, New York falls back), logins and
pauses in microseconds crossing midnight and every interval edge, calls answered after
midnight, a range half rolled and half raw, late records (the triggers make the day of a
late answer raw, and every later day after a late login), and a late write's journey
back to rolled."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ccbridge.config.model import Config
from ccbridge.reports.build import agent_report
from ccbridge.reports.intervals import Step
from ccbridge.reports.query import Period, ReportQuery
from ccbridge.reports.rollup import roll
from ccbridge.store.schema import Outcome
from tests.store.conftest import Db
from tests.store.report_world import write
from tests.store.test_reports import call
from tests.store.test_rollup import (
    FALL,
    NOW,
    NY_FALL,
    QUEUES,
    SITES,
    SYD_SPRING,
    assert_same,
    config,
    days_rolled,
)

AGENTS = 3  # per site


def activity(site: str, agent: str, queue: str, kind: str, t: datetime) -> tuple[str, Any]:
    return (
        "agent_activity",
        {"site": site, "agent": agent, "queue": queue, "kind": kind, "at": t},
    )


def shifts_around(day: date, seed: int) -> list[tuple[str, Any]]:
    """Each site's agents over the 4 UTC days around ``day``: shifts of 2-11 h in one or
    two queues (so a pause in one of them is no pause), a pause, logouts a few minutes
    apart per queue, times in microseconds; rings; answered calls, some answered after
    the local midnight they arrived before, and one answered 3 h after it arrived (not
    counted: ANSWER_LOOKBACK)."""
    rnd = random.Random(seed)
    t0 = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=2)
    span = timedelta(days=4)
    out: list[tuple[str, Any]] = []

    def at(base: datetime, lo_h: float, hi_h: float) -> datetime:
        return base + timedelta(seconds=rnd.uniform(lo_h * 3600, hi_h * 3600))

    for site in SITES:
        for a in range(AGENTS):
            agent = f"{site}-agent{a}"
            t = at(t0, 0, 6)
            while t < t0 + span:
                queues = rnd.sample(QUEUES, rnd.choice([1, 2]))
                end = at(t, 2, 11)
                for i, q in enumerate(queues):
                    out.append(activity(site, agent, q, "login", t + timedelta(seconds=i)))
                    p = at(t, 0.5, 2)
                    out.append(activity(site, agent, q, "pause", p))
                    out.append(activity(site, agent, q, "unpause", at(p, 0.1, 0.7)))
                    out.append(activity(site, agent, q, "logout", at(end, 0, 0.1)))
                    for _ in range(rnd.randrange(4)):
                        kind = rnd.choice(["called", "called", "ring_no_answer"])
                        out.append(activity(site, agent, q, kind, at(t, 0, 2)))
                t = at(end, 1, 8)
    for i in range(60):
        site = rnd.choice(SITES)
        arrived = at(t0, 0, 96)
        wait = round(rnd.uniform(1, 600), 3)
        out.append(
            call(
                f"ag{seed}-{i}",
                arrived,
                entry=site,
                target=site,
                queue=rnd.choice(QUEUES),
                outcome=Outcome.ANSWERED,
                wait=wait,
                talk=round(rnd.uniform(10, 400), 3),
                hold=rnd.choice([0.0, 12.5]),
                wrapup=5.0,
                sat=rnd.choice([None, 2, 5]),
                agent=f"{site}-agent{rnd.randrange(AGENTS)}",
            )
        )
    return out


def midnight_calls(cfg: Config) -> list[tuple[str, Any]]:
    """Per site, a call arriving 5 min before a local midnight answered 8 min later, and
    one waiting 3 h (over ANSWER_LOOKBACK: in no report)."""
    out = []
    for site in SITES:
        zone = ZoneInfo(cfg.site(site).timezone)
        day = {"bangalore": SYD_SPRING, "manila": NY_FALL, "dhaka": NY_FALL}[site]
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
        for cid, arrived, wait in (
            (f"mid-{site}", midnight - timedelta(minutes=5), 480.0),
            (f"long-{site}", midnight - timedelta(hours=2), 3 * 3600.0),
        ):
            out.append(
                call(
                    cid,
                    arrived,
                    entry=site,
                    target=site,
                    outcome=Outcome.ANSWERED,
                    wait=wait,
                    talk=60.0,
                    agent=f"{site}-agent0",
                )
            )
    return out


DATA = shifts_around(SYD_SPRING, 3) + shifts_around(NY_FALL, 4)


def agent_queries(site: str) -> list[ReportQuery]:
    day = {"bangalore": SYD_SPRING, "manila": NY_FALL, "dhaka": NY_FALL}[site]
    whole = Period(first=day - timedelta(days=1), last=day + timedelta(days=1))
    t = datetime(day.year, day.month, day.day, tzinfo=UTC)
    part = Period(start=t - timedelta(hours=13, minutes=15), end=t + timedelta(hours=20))
    return [
        ReportQuery(whole, (site,), Step.M15),
        ReportQuery(whole, (site,), Step.DAY),
        ReportQuery(part, (site,), Step.M60),
        ReportQuery(whole, (site,), Step.M30, agent=f"{site}-agent1"),
    ]


async def compare(
    db: Db, cfg: Config, now: datetime = NOW, sites: tuple[str, ...] = SITES
) -> tuple[int, int]:
    """Every query of every site, rollup (where rolled) against raw rows alone: the
    rows with login time and the rows with answered calls compared."""
    engine = db.engine()
    logged = answered = 0
    for site in sites:
        for q in agent_queries(site):
            rolled = await agent_report(engine, cfg, q, now)
            raw = await agent_report(engine, cfg, q, now, rollup=False)
            assert_same(rolled, raw)
            logged += sum(1 for r in raw.rows if r["login_s"])
            answered += sum(1 for r in raw.rows if r["answered"])
    return logged, answered


async def test_agent_rollup_plus_raw_equals_raw(migrated: Db) -> None:
    cfg = config()
    await write(migrated, DATA + midnight_calls(cfg))
    engine = migrated.engine()
    # Half rolled: at noon UTC on New York's fall-back day, manila's day is still open.
    noon = datetime(2026, 11, 1, 12, tzinfo=UTC)
    await roll(engine, cfg, noon, limit=None, since=FALL)
    rolled = await days_rolled(migrated)
    assert "2026-10-31" in rolled["manila"] and "2026-11-01" not in rolled["manila"]
    logged, got = await compare(migrated, cfg, noon, sites=("manila",))
    assert logged > 20 and got > 3
    await roll(engine, cfg, NOW, limit=None, since=date(2026, 10, 2))
    assert {"2026-10-04", "2026-11-01"} <= rolled_all(await days_rolled(migrated))
    logged, got = await compare(migrated, cfg)
    assert logged > 200 and got > 30
    # The call answered after midnight counts on the day of its answer; the 3-hour wait
    # nowhere.
    for site in SITES:
        q = agent_queries(site)[1]
        lo, hi = q.period.utc(_zone(cfg, site))
        want = sum(
            1
            for table, v in DATA + midnight_calls(cfg)
            if table == "calls"
            and v["agent"] == f"{site}-agent0"
            and v["call_id"] != f"long-{site}"
            and lo <= v["answered_at"] < hi
        )
        rows = (await agent_report(engine, cfg, q, NOW)).rows
        assert sum(r["answered"] for r in rows if r["agent"] == f"{site}-agent0") == want


def _zone(cfg: Config, site: str) -> ZoneInfo:
    return ZoneInfo(cfg.site(site).timezone)


def rolled_all(days: dict[str, set[str]]) -> set[str]:
    return {d for v in days.values() for d in v}


async def test_late_agent_records_make_days_raw_until_rolled_again(migrated: Db) -> None:
    cfg = config()
    await write(migrated, DATA)
    engine = migrated.engine()
    await roll(engine, cfg, NOW, limit=None, since=FALL)
    full = await days_rolled(migrated)
    assert {"2026-10-31", "2026-11-01", "2026-11-02"} <= full["dhaka"]
    dhaka = _zone(cfg, "dhaka")
    # A late ring in dhaka's 2026-10-31: that day alone goes raw.
    ring_at = datetime(2026, 10, 31, 14, 7, 1, 250, tzinfo=dhaka)
    await write(migrated, [activity("dhaka", "dhaka-agent2", QUEUES[0], "called", ring_at)])
    now_rolled = await days_rolled(migrated)
    assert full["dhaka"] - now_rolled["dhaka"] == {"2026-10-31"}
    assert now_rolled["manila"] == full["manila"]
    # A late call that arrived in manila's 2026-10-31 and was answered in 2026-11-01.
    manila = _zone(cfg, "manila")
    late = call(
        "late-answer",
        datetime(2026, 10, 31, 23, 58, tzinfo=manila),
        entry="manila",
        target="manila",
        outcome=Outcome.ANSWERED,
        wait=300.0,
        talk=42.0,
        agent="manila-agent1",
    )
    await write(migrated, [late])
    now_rolled = await days_rolled(migrated)
    assert {"2026-10-31", "2026-11-01"}.isdisjoint(now_rolled["manila"])
    assert "2026-11-02" in now_rolled["manila"]
    # A late login in dhaka's 2026-11-01 at 23:00 with no logout: that day and every later
    # rolled one go raw (the agent is logged in at each of their starts).
    login_at = datetime(2026, 11, 1, 23, 0, 0, 500_000, tzinfo=dhaka)
    await write(migrated, [activity("dhaka", "dhaka-late", QUEUES[1], "login", login_at)])
    now_rolled = await days_rolled(migrated)
    assert all(d < "2026-11-01" for d in now_rolled["dhaka"])
    assert now_rolled["bangalore"] == full["bangalore"]
    logged, got = await compare(migrated, cfg, sites=("manila", "dhaka"))
    assert logged > 50 and got > 5
    # Rolled again: the same figures from the rollup, and the late login counted.
    await roll(engine, cfg, NOW, limit=None, since=FALL)
    assert await days_rolled(migrated) == full
    await compare(migrated, cfg, sites=("manila", "dhaka"))
    q = ReportQuery(Period(first=NY_FALL, last=NY_FALL + timedelta(days=1)), ("dhaka",), Step.DAY)
    late_rows = [
        r for r in (await agent_report(engine, cfg, q, NOW)).rows if r["agent"] == "dhaka-late"
    ]
    assert [r["login_s"] for r in late_rows] == [3599.5, 86400.0]
