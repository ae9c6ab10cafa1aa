"""The quarter-hour rollup gives exactly the interval report of raw rows, on SQLite and
PostgreSQL: days around both DST nights (Sydney springs forward, New York falls back),
ranges half rolled and half raw, a late call and a late change to a rolled day (the
trigger makes it raw until it is rolled again), a threshold change (another fingerprint:
the day reads raw), an open coverage gap (its days wait), and retention."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from ccbridge.config.model import Config
from ccbridge.reports.build import Report, interval_report
from ccbridge.reports.intervals import Step
from ccbridge.reports.query import Period, ReportQuery
from ccbridge.reports.rollup import roll, site_sums
from ccbridge.store.retention import erase_number, purge
from ccbridge.store.schema import Outcome, RouteSource, report_rollup, report_rollup_days
from tests.store.conftest import Db
from tests.store.report_world import report_config, write
from tests.store.test_reports import call

SYDNEY = "Australia/Sydney"  # springs forward 2026-10-04 02:00 -> 03:00
NY_FALL = date(2026, 11, 1)  # manila is in New York's zone here: 01:00 twice
SYD_SPRING = date(2026, 10, 4)
SITES = ("bangalore", "dhaka", "manila")
QUEUES = ("orders-en", "care-en", "orders-hi")
NOW = datetime(2026, 11, 5, tzinfo=UTC)  # every day of the data is closed
ALL = date(2026, 10, 2)  # the oldest day any test rolls (a day costs ~10 ms to roll)
FALL = date(2026, 10, 30)  # the oldest day the tests of New York's fall-back night roll


def config(dhaka_orders_sl: int | None = None) -> Config:
    """report_config (manila in New York, dhaka's care-en at 30 s) with bangalore in
    Sydney."""
    c = report_config()
    sites = []
    for s in c.sites:
        if s.name == "bangalore":
            s = replace(s, timezone=SYDNEY)
        if s.name == "dhaka" and dhaka_orders_sl is not None:
            offerings = tuple(
                replace(o, queue=replace(o.queue, servicelevel=dhaka_orders_sl))
                if o.service == "orders"
                else o
                for o in s.offerings
            )
            s = replace(s, offerings=offerings)
        sites.append(s)
    return replace(c, sites=tuple(sites))


def calls_around(day: date, n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` calls over the 3 UTC days around ``day``: every outcome, sent away, sent
    nowhere, every route source, waits in tenths of seconds."""
    rnd = random.Random(seed)
    t0 = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    sources = [None, *(s.value for s in RouteSource)]
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        entry = rnd.choice(SITES)
        target: str | None = entry if rnd.random() < 0.7 else rnd.choice(SITES)
        queue: str | None = rnd.choice(QUEUES)
        arrived = t0 + timedelta(seconds=rnd.randrange(3 * 86400))
        wait = round(rnd.expovariate(1 / 20), 1)
        outcome = rnd.choice(list(Outcome))
        if outcome in (Outcome.AFTER_HOURS_VOICEMAIL, Outcome.CLOSED) and rnd.random() < 0.7:
            target, queue = None, None
        more: dict[str, Any] = {
            "route_source": rnd.choice(sources),
            "static_fallback": rnd.random() < 0.1,
            "caller_number": f"+88017123456{i % 50:02d}",
        }
        if outcome is Outcome.ANSWERED:
            more |= {
                "talk": round(rnd.uniform(10, 300), 1),
                "hold": rnd.choice([0.0, 12.5]),
                "wrapup": 5.0,
                "sat": rnd.choice([None, 1, 3, 5]),
            }
        if target is None and rnd.random() < 0.5:
            more["after_hours_action"] = "voicemail"
        out.append(
            call(
                f"{seed}-{i}",
                arrived,
                entry=entry,
                target=target,
                queue=queue,
                outcome=outcome,
                wait=wait if queue else None,
                **more,
            )
        )
    return out


def queries_for(site: str) -> list[ReportQuery]:
    days = {"bangalore": SYD_SPRING, "manila": NY_FALL, "dhaka": NY_FALL}[site]
    whole = Period(first=days - timedelta(days=1), last=days + timedelta(days=1))
    # Two instants inside days: a range starting and ending mid-day.
    t = datetime(days.year, days.month, days.day, tzinfo=UTC)
    part = Period(start=t - timedelta(hours=13, minutes=15), end=t + timedelta(hours=20))
    return [
        ReportQuery(whole, (site,), Step.M15),
        ReportQuery(whole, (site,), Step.DAY, by="site"),
        ReportQuery(part, (site,), Step.M60),
        ReportQuery(whole, (site,), Step.M60, queue="orders-en", language="en"),
    ]


def assert_same(a: Report, b: Report) -> None:
    """Row for row, every column: counts exactly, float sums to their last bits (the
    rollup adds quarter-hour sums, raw rows add calls: another order)."""
    assert a.columns == b.columns
    assert len(a.rows) == len(b.rows)
    for x, y in zip(a.rows, b.rows, strict=True):
        assert x.keys() == y.keys()
        for k, v in y.items():
            want = pytest.approx(v, rel=1e-12) if isinstance(v, float) else v
            assert x[k] == want, (k, x, y)


async def compare(db: Db, cfg: Config, now: datetime = NOW, sites: tuple[str, ...] = SITES) -> int:
    """Every query of every site, rollup (where rolled) against raw rows alone; the
    number of non-empty rows compared."""
    engine = db.engine()
    seen = 0
    for site in sites:
        for q in queries_for(site):
            rolled = await interval_report(engine, cfg, q, now)
            raw = await interval_report(engine, cfg, q, now, rollup=False)
            assert_same(rolled, raw)
            seen += sum(1 for r in raw.rows if r["offered"] or r["overflowed_out"])
    return seen


async def days_rolled(db: Db) -> dict[str, set[str]]:
    async with db.engine().connect() as conn:
        rows = (await conn.execute(select(report_rollup_days))).all()
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r.site, set()).add(r.day)
    return out


DATA = calls_around(SYD_SPRING, 300, 1) + calls_around(NY_FALL, 300, 2)


async def test_rollup_plus_raw_equals_raw(migrated: Db) -> None:
    await write(migrated, DATA)
    cfg = config()
    engine = migrated.engine()
    # First at noon UTC on New York's fall-back day: that day is not closed yet there,
    # so its reports are half rollup, half raw.
    noon = datetime(2026, 11, 1, 12, tzinfo=UTC)
    done = await roll(engine, cfg, noon, limit=None, since=FALL)
    done.days["bangalore"] += (
        await roll(engine, cfg, noon, limit=None, since=ALL, sites=["bangalore"])
    ).total
    rolled = await days_rolled(migrated)
    assert "2026-10-31" in rolled["manila"] and "2026-11-01" not in rolled["manila"]
    assert "2026-10-04" in rolled["bangalore"] and "2026-10-31" in rolled["bangalore"]
    assert done.left == 0 and done.total == sum(len(v) for v in rolled.values())
    assert await compare(migrated, cfg, noon, sites=("manila",)) > 30  # half rolled, half raw
    await roll(engine, cfg, NOW, limit=None, since=FALL)
    assert "2026-11-01" in (await days_rolled(migrated))["manila"]
    assert await compare(migrated, cfg) > 100
    # Rolling again changes nothing: the same days, the same rows.
    async with engine.connect() as conn:
        before = (await conn.execute(select(func.count()).select_from(report_rollup))).scalar()
    assert (await roll(engine, cfg, NOW, limit=None, since=FALL)).total == 0
    async with engine.connect() as conn:
        after = (await conn.execute(select(func.count()).select_from(report_rollup))).scalar()
    assert before == after and before


async def test_late_records_make_a_day_raw_until_rolled_again(migrated: Db) -> None:
    await write(migrated, DATA)
    cfg = config()
    engine = migrated.engine()
    await roll(engine, cfg, NOW, limit=None, since=FALL)
    full = await days_rolled(migrated)
    assert "2026-11-01" in full["manila"]
    # A late call into manila's fall-back night (its second 01:00) and a late change to
    # a dhaka call of 2026-11-01 (answered after all, with a score).
    late_at = datetime(2026, 11, 1, 6, 20, tzinfo=UTC)
    changed = next(
        v
        for _, v in DATA
        if v.get("target_site") == "dhaka"
        and v.get("queue")
        and v["outcome"] != "answered"
        and v["arrived_at"] > datetime(2026, 10, 31, tzinfo=UTC)
    )
    await write(
        migrated,
        [
            (
                "calls",
                {
                    "call_id": "late-1",
                    "entry_site": "manila",
                    "target_site": "manila",
                    "arrived_at": late_at,
                    "queue": "orders-en",
                    "service": "orders",
                    "language": "en",
                    "queued_at": late_at,
                    "outcome": Outcome.ANSWERED,
                    "wait_s": 7.0,
                    "talk_s": 30.0,
                    "route_source": RouteSource.STATIC.value,
                },
            ),
            (
                "calls",
                {
                    "call_id": changed["call_id"],
                    "entry_site": changed["entry_site"],
                    "arrived_at": changed["arrived_at"],
                    "outcome": Outcome.ANSWERED,
                    "satisfaction": 4,
                },
            ),
        ],
    )
    rolled = await days_rolled(migrated)
    assert "2026-11-01" not in rolled["manila"]  # the trigger: raw until rolled again
    dhaka_day = changed["arrived_at"].astimezone(site_sums(cfg, "dhaka").zone).date()
    assert dhaka_day.isoformat() not in rolled["dhaka"]
    assert await compare(migrated, cfg, sites=("manila", "dhaka")) > 50
    # The report counts the late call, in the second 01:00 bucket (EST).
    q = ReportQuery(Period(first=NY_FALL, last=NY_FALL), ("manila",), Step.M60)
    rep = await interval_report(engine, cfg, q, NOW)
    second = [r for r in rep.rows if r["interval_start"] == "2026-11-01T01:00:00-05:00"]
    assert sum(r["routed_static"] for r in second) >= 1
    # Only the touched days: the late call's, and the changed call's at its entry site
    # and at dhaka.
    stale = {(site, d) for site, days in full.items() for d in days - rolled.get(site, set())}
    assert ("manila", "2026-11-01") in stale and ("dhaka", dhaka_day.isoformat()) in stale
    assert len(stale) <= 3
    done = await roll(engine, cfg, NOW, limit=None, since=FALL)
    assert done.total == len(stale) and await days_rolled(migrated) == full
    # Erasing a number changes no figure: the trigger leaves the day rolled.
    before = await days_rolled(migrated)
    assert (await erase_number(engine, "+8801712345600")).calls >= 2
    assert await days_rolled(migrated) == before


async def test_another_threshold_reads_raw_until_rolled_again(migrated: Db) -> None:
    await write(migrated, DATA)
    engine = migrated.engine()
    await roll(engine, config(), NOW, limit=None, since=FALL)
    stricter = config(dhaka_orders_sl=5)
    assert site_sums(stricter, "dhaka").fingerprint != site_sums(config(), "dhaka").fingerprint
    assert site_sums(stricter, "manila").fingerprint == site_sums(config(), "manila").fingerprint
    # dhaka's days: another fingerprint, read raw
    assert await compare(migrated, stricter, sites=("dhaka",)) > 20
    whole = Period(first=NY_FALL - timedelta(days=1), last=NY_FALL + timedelta(days=1))
    q = ReportQuery(whole, ("dhaka",), Step.DAY, by="site")
    loose, strict = [
        sum(
            r["answered_within_sl"] + r["abandoned_within_sl"]
            for r in (await interval_report(engine, c, q, NOW)).rows
        )
        for c in (config(), stricter)
    ]
    assert strict < loose  # the threshold mattered
    done = await roll(engine, stricter, NOW, limit=None, since=FALL)
    assert set(done.days) == {"dhaka"}  # only its fingerprint changed
    assert await compare(migrated, stricter, sites=("dhaka",)) > 20


async def test_open_gap_days_wait_and_retention_purges_the_rollup(migrated: Db) -> None:
    gap = {"site": "dhaka", "started_at": datetime(2026, 10, 31, 20, tzinfo=UTC)}
    await write(migrated, [*DATA, ("coverage_gaps", gap)])
    engine = migrated.engine()
    done = await roll(engine, config(), NOW, limit=10, since=FALL)
    assert done.total == 10 and done.left > 0  # bounded rounds: the newest first
    await roll(engine, config(), NOW, limit=None, since=FALL)
    dhaka = await days_rolled(migrated)
    # dhaka's days from the one the open gap began in wait for the gap to close
    assert max(dhaka["dhaka"]) == "2026-10-31" and "2026-11-03" in dhaka["manila"]
    # Retention: days that began before the cutoff lose their rollup with their calls.
    cutoff = datetime(2026, 10, 30, tzinfo=UTC)
    await purge(engine, cutoff)
    rolled = await days_rolled(migrated)
    assert all(d >= "2026-10-30" for days in rolled.values() for d in days)
    async with engine.connect() as conn:
        old = (
            await conn.execute(
                select(func.count())
                .select_from(report_rollup)
                .where(report_rollup.c.slot < int(cutoff.timestamp()) // 900 - 96)
            )
        ).scalar()
    assert old == 0
    assert await compare(migrated, config(), sites=("dhaka",)) > 20
