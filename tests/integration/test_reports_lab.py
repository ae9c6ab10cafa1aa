"""A scripted day in miniature on the lab (issue 12): the report's numbers equal the ones
worked out by hand from the script, the same records give the same report on PostgreSQL,
and the Prometheus KPI metrics agree with the report on the same calls.

The script (all calls dialled into bangalore's toll-free numbers, the bridge's clock on
a Wednesday morning when both bangalore and dhaka serve orders):

- two Hindi callers, answered at once by bangalore's two agents (16 s calls): within
  the service level, which this test's config sets to 12 s for bangalore's orders-hi;
- a Bengali caller, sent on to dhaka's orders-bn and answered there: the cross-site call
  (bangalore's overflow out, dhaka's overflow in);
- a caller to the returns number, closed today (a closed date in the test's config, the
  after-hours action `closed`): after hours;
- while both agents talk: a Hindi caller who waits for the first free agent (16 s call
  plus 5 s wrap-up, so ~20 s: answered after the 12 s threshold), one who gives up
  after ~2 s (a short abandon: under 5 s) and one after ~8 s (a long abandon, within
  the 12 s threshold).

Every call asks the bridge over FastAGI (the lab config holds no route for calls without
it): the report's route-source counts say `bridge` for each, none held, fallback or
static.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ccbridge.config import Config
from ccbridge.config.model import AfterHours, AfterHoursAction, SecretValue
from ccbridge.config.store import StoreSettings
from ccbridge.lab.sipp import SCENARIOS, Agent, caller_command, place_calls, run_callers
from ccbridge.lab.sites import Lab
from ccbridge.reports.build import Report, interval_report
from ccbridge.reports.figures import ROUTE_COLUMNS
from ccbridge.reports.intervals import Step
from ccbridge.reports.query import Period, ReportQuery
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.records import check_record
from ccbridge.store.schema import TABLES, calls
from ccbridge.store.write import write_records
from tests.integration.conftest import BridgeFactory, fresh_queue_stats
from tests.integration.staffing_check import assert_staffing_arrivals_equal_offered
from tests.polling import until
from tests.store.pg import PASSWORD, PgCluster

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # 10:30 bangalore, 11:00 dhaka
ORDERS = "+918000000001"
RETURNS = "+918000000002"
HINDI = "+9198123456{:02d}"
BENGALI = "+8801712345678"
SL = 12  # seconds: bangalore orders-hi's threshold in this test


def day_config(lab_config: Config, tmp: Path) -> Config:
    sites = []
    for s in lab_config.sites:
        if s.name == "bangalore":
            offerings = []
            for o in s.offerings:
                if o.service == "returns":  # closed today
                    o = replace(
                        o,
                        schedule=replace(
                            o.schedule, closed_dates=frozenset({WEDNESDAY_MORNING.date()})
                        ),
                    )
                if o.service == "orders":
                    o = replace(o, queue=replace(o.queue, servicelevel=SL))
                offerings.append(o)
            s = replace(s, offerings=tuple(offerings))
        sites.append(s)
    store = StoreSettings(
        enabled=True,
        url=f"sqlite+aiosqlite:///{tmp / 'day.db'}",
        journal=str(tmp / "day.journal"),
    )
    routing = replace(lab_config.routing, after_hours=AfterHours(AfterHoursAction.CLOSED))
    return replace(lab_config, sites=tuple(sites), store=store, routing=routing)


def talk(did: str, caller: str, port: int, duration_ms: int) -> Any:
    return asyncio.to_thread(
        place_calls,
        "127.0.1.1:5060",
        did,
        caller=caller,
        duration_ms=duration_ms,
        max_seconds=60,
        local_port=port,
    )


def give_up(caller: str, port: int, after_ms: int) -> Any:
    """A caller who hangs up (CANCEL) when nothing came for ``after_ms``: in a queue
    that is the time since the queue's ringing/progress, i.e. the wait."""
    cmd = caller_command(
        SCENARIOS / "caller.xml",
        "127.0.1.1:5060",
        ORDERS,
        caller=caller,
        local_port=port,
        calls=1,
        max_seconds=30,
        extra=("-recv_timeout", str(after_ms), "-d", "1000"),
        timeout_is_error=False,
    )
    return asyncio.to_thread(run_callers, cmd, None, 30)


def totals(report: Report) -> dict[tuple[str, str | None], dict[str, Any]]:
    """Per (site, queue): the counts summed over the report's intervals."""
    keys = (
        "offered",
        "answered",
        "answered_within_sl",
        "abandoned",
        "short_abandons",
        "abandoned_within_sl",
        "overflowed_in",
        "overflowed_out",
        "after_hours",
        "fallback_routed",
        *ROUTE_COLUMNS,
    )
    out: dict[tuple[str, str | None], dict[str, Any]] = {}
    for r in report.rows:
        if r["offered"] is None:
            continue  # an interval with nothing seen (a gap): no figures
        t = out.setdefault((r["site"], r["queue"]), dict.fromkeys(keys, 0))
        for k in keys:
            t[k] += r[k]
    return {k: v for k, v in out.items() if any(v.values())}


def report_in_thread(
    settings: StoreSettings, config: Config, query: ReportQuery, now: datetime
) -> Report:
    """The report on its own event loop in this (worker) thread: the test's loop runs the
    bridge under the 50 ms slow-callback gate, and connecting (PostgreSQL's SCRAM) and
    reading are not the bridge's work."""

    async def run() -> Report:
        engine = make_engine(settings)
        try:
            return await interval_report(engine, config, query, now)
        finally:
            await engine.dispose()

    return asyncio.run(run())


async def copy_to_postgres(sqlite: StoreSettings, pg: StoreSettings) -> None:
    """Every record of the day, through the store's own write path, into PostgreSQL."""
    src, dst = make_engine(sqlite), make_engine(pg)
    try:
        await upgrade(dst)
        async with src.connect() as conn:
            rows = {
                name: [dict(r._mapping) for r in await conn.execute(select(t))]
                for name, t in TABLES.items()
                if name != "audit"
            }
        records = [
            check_record(name, {k: v for k, v in row.items() if k != "id"})
            for name, items in rows.items()
            for row in items
        ]
        async with dst.begin() as conn:
            await write_records(conn, records)
    finally:
        await src.dispose()
        await dst.dispose()


async def test_a_scripted_day(
    lab: Lab,
    agents: dict[str, Agent],
    bridge_at: BridgeFactory,
    lab_config: Config,
    tmp_path: Path,
) -> None:
    config = day_config(lab_config, tmp_path)
    engine = make_engine(config.store)
    await upgrade(engine)
    await fresh_queue_stats(lab, "bangalore")
    start = datetime.now(UTC)
    async with bridge_at(WEDNESDAY_MORNING, config) as bridge:
        reg = bridge.registry

        def metric(name: str, site: str, queue: str) -> float:
            service, _, language = queue.partition("-")
            labels = {"site": site, "service": service, "language": language, "queue": queue}
            return reg.get_sample_value(name, labels) or 0.0

        busy = [talk(ORDERS, HINDI.format(i), 6601 + i, 16000) for i in range(2)]
        others = [
            talk(ORDERS, BENGALI, 6611, 1500),
            talk(RETURNS, HINDI.format(9), 6612, 1500),
        ]
        first = asyncio.gather(*busy, *others)
        # Both bangalore agents on a call: the next callers wait.
        await until(
            lambda: metric("ccbridge_calls_answered_total", "bangalore", "orders-hi") >= 2,
            15,
            "both bangalore agents answered",
        )
        late = asyncio.ensure_future(talk(ORDERS, HINDI.format(3), 6621, 1500))  # starts now
        await until(
            lambda: metric("ccbridge_calls_offered_total", "bangalore", "orders-hi") >= 3,
            10,
            "the third caller queued",
        )
        quitters = asyncio.gather(
            give_up(HINDI.format(4), 6631, 2000), give_up(HINDI.format(5), 6632, 8000)
        )
        answered, waited, _ = await asyncio.gather(first, late, quitters)
        assert all(r.ok for r in answered[:3]), [r.output[-800:] for r in answered]
        assert waited.ok, waited.output[-800:]
        rec = bridge.records
        assert rec is not None

        async def ended() -> int:
            async with engine.connect() as conn:
                q = select(func.count()).select_from(calls).where(calls.c.outcome.is_not(None))
                return int((await conn.execute(q)).scalar_one())

        deadline = asyncio.get_running_loop().time() + 30
        while await ended() < 7:
            assert asyncio.get_running_loop().time() < deadline, "seven calls recorded"
            await asyncio.sleep(0.3)
        await until(lambda: rec.writer.status().caught_up, 20, "records written")
        now = datetime.now(UTC)
        query = ReportQuery(
            Period(start=start - timedelta(minutes=1), end=now + timedelta(minutes=1)),
            ("bangalore", "dhaka"),
            Step.M15,
        )
        report = await asyncio.to_thread(report_in_thread, config.store, config, query, now)
        # Issue 16: the staffing plan from the same records counts the same arrivals.
        await assert_staffing_arrivals_equal_offered(engine, config, start, now)
        kpi = {
            (site, queue): {
                "offered": metric("ccbridge_calls_offered_total", site, queue),
                "answered": metric("ccbridge_calls_answered_total", site, queue),
                "answered_within_sl": metric(
                    "ccbridge_calls_answered_within_sl_total", site, queue
                ),
                "abandoned": metric("ccbridge_calls_abandoned_total", site, queue),
            }
            for site, queue in (("bangalore", "orders-hi"), ("dhaka", "orders-bn"))
        }
    await engine.dispose()

    got = totals(report)
    zero = dict.fromkeys(next(iter(got.values())), 0)
    expected = {
        # 2 at once + 1 after ~20 s answered; the 2 s and 8 s quitters
        ("bangalore", "orders-hi"): {
            **zero,
            "offered": 5,
            "answered": 3,
            "answered_within_sl": 2,
            "abandoned": 1,
            "short_abandons": 1,
            "abandoned_within_sl": 1,
            "routed_bridge": 5,
        },
        ("bangalore", "orders-bn"): {**zero, "overflowed_out": 1},  # the Bengali caller
        ("dhaka", "orders-bn"): {
            **zero,
            "offered": 1,
            "answered": 1,
            "answered_within_sl": 1,
            "overflowed_in": 1,
            "routed_bridge": 1,  # counted where it was handled, as every figure
        },
    }
    after_hours = {k: v for k, v in got.items() if v["after_hours"]}
    assert [v["after_hours"] for v in after_hours.values()] == [1], got  # the returns call
    assert [k[0] for k in after_hours] == ["bangalore"]
    for k in after_hours:  # the bridge decided it: closed
        if k not in expected:
            expected[k] = {**zero, "after_hours": 1, "routed_bridge": 1}
        else:
            expected[k]["after_hours"] = 1
            expected[k]["routed_bridge"] += 1
    assert got == expected

    # The rates of bangalore's orders-hi, by hand from the same script.
    rows = [r for r in report.rows if r["queue"] == "orders-hi" and r["answered"]]
    if len(rows) == 1:  # the script fits one quarter hour unless it crossed a boundary
        (r,) = rows
        assert r["service_level"] == 2 / 3
        assert r["service_level_with_abandons"] == (2 + 1) / (3 + 1)
        assert r["abandon_rate"] == 1 / (5 - 1)

    # Prometheus saw the same calls: offered, answered, within SL; its abandons include
    # the short ones.
    for key, m in kpi.items():
        t = got[key]
        assert m == {
            "offered": t["offered"],
            "answered": t["answered"],
            "answered_within_sl": t["answered_within_sl"],
            "abandoned": t["abandoned"] + t["short_abandons"],
        }, key

    # The same records in PostgreSQL give the same report, row for row.
    cluster = await asyncio.to_thread(PgCluster)
    try:
        await asyncio.to_thread(cluster.start)
        pg = StoreSettings(
            enabled=True,
            url=cluster.url(await asyncio.to_thread(cluster.createdb)),
            password=SecretValue(PASSWORD, "test"),
            journal=str(tmp_path / "pg.journal"),
        )
        await asyncio.to_thread(asyncio.run, copy_to_postgres(config.store, pg))
        pg_report = await asyncio.to_thread(report_in_thread, pg, config, query, now)
    finally:
        await asyncio.to_thread(cluster.remove)
    assert len(pg_report.rows) == len(report.rows)
    for a, b in zip(pg_report.rows, report.rows, strict=True):
        assert a.keys() == b.keys()
        for k, v in b.items():
            # float sums may differ in the last bits (the engines add in their own order)
            assert a[k] == (pytest.approx(v, rel=1e-9) if isinstance(v, float) else v), (k, a, b)
