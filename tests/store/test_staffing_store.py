"""Staffing from the records store, on SQLite and PostgreSQL: 8 weeks of seeded synthetic
calls written through the RecordWriter, read back per local half hour, forecast for the
9th week (MAPE per interval class printed and bounded), the plan's recorded arrivals,
coverage gaps flagged, and an empty store refused with a clear message."""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest

from ccbridge.app import Bridge
from ccbridge.cli import main
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.config.model import Config
from ccbridge.config.store import StoreSettings
from ccbridge.routing.state import set_site_up
from ccbridge.services.staffing import PLAN_AHEAD
from ccbridge.staffing.forecast import forecast
from ccbridge.staffing.history import NoHistory
from ccbridge.staffing.plan import Status, Targets, offering_keys
from ccbridge.staffing.planning import plan_days
from ccbridge.staffing.slots import Slot, slot_of
from ccbridge.staffing.storehistory import history_ranges, plan_from_store, read_store
from ccbridge.store.cli import run_db
from tests.store.conftest import Db
from tests.store.staffing_records import HOLD, TZ, WRAPUP, records, write
from tests.unit.staffing_history import FIRST_MONDAY, KEY, generate, interval_class

# Every /api/v1 read needs a token (issue 13): the bootstrap token set below ("t").
ADMIN = {"Authorization": "Bearer t"}

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("peak", "off-peak", "night")
WEEK9 = [FIRST_MONDAY + timedelta(days=56 + i) for i in range(7)]
NOW = datetime(2026, 11, 9, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False)


def _slot(label: str) -> Slot:
    return slot_of(datetime.fromisoformat(label))


def _slot_at(t: datetime) -> Slot:
    return slot_of(t.astimezone(TZ))


def _mape(calls: dict[Slot, float | None], truth: dict[Slot, float]) -> dict[str, float]:
    errs: dict[str, list[float]] = {c: [] for c in CLASSES}
    for s, t in truth.items():
        got = calls[s]
        assert got is not None, s
        if t > 0:
            errs[interval_class(s.index)].append(abs(got - t) / t)
    return {c: 100 * sum(v) / len(v) for c, v in errs.items()}


async def test_eight_weeks_from_the_store_forecast_the_ninth(
    migrated: Db, config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    syn = generate(seed=16)
    recs = records(syn)
    n_calls = sum(1 for t, _ in recs if t == "calls")
    took = await write(migrated, recs, tmp_path / "w.journal")

    engine = migrated.engine()
    ranges = history_ranges(WEEK9[0], WEEK9[-1], 8)
    read = await read_store(engine, config, [KEY], ranges)
    history = read.history(NOW)
    # The store gives back exactly what was generated: every slot's count, gaps flagged
    # (their count a lower bound), no row for an empty slot, and the span of the records.
    assert history.span(KEY) == (FIRST_MONDAY, WEEK9[-1])
    last8 = WEEK9[0] - timedelta(days=1)
    got = {o.slot: (o.count, o.complete) for o in history.arrivals(KEY, FIRST_MONDAY, last8)}
    want = {o.slot: (o.count, o.complete) for o in syn.history.arrivals(KEY, FIRST_MONDAY, last8)}
    assert got == want
    assert {s for s, (_, ok) in got.items() if not ok} == set(syn.gaps)
    week9 = {o.slot: o.count for o in history.arrivals(KEY, WEEK9[0], WEEK9[-1])}
    assert week9 == {s: n for s, n in syn.held_out.items() if n}

    # The forecast from the store is the forecast from the generated history, number for
    # number; its error against the generator's true rate is bounded.
    from_store = forecast(history, KEY, WEEK9, weeks=8)
    from_memory = forecast(syn.history, KEY, WEEK9, weeks=8)
    assert [(f.slot, f.calls) for f in from_store.slots] == [
        (f.slot, f.calls) for f in from_memory.slots
    ]
    err = _mape({f.slot: f.calls for f in from_store.slots}, syn.truth)
    # the AHT it read: pooled per weekday and slot where 20+ calls were handled, else the
    # queue's over the window's complete slots, which is exactly the written calls' mean
    window = [
        v
        for t, v in recs
        if t == "calls"
        and "talk_s" in v
        and _slot_at(v["arrived_at"]).day < WEEK9[0]
        and _slot_at(v["arrived_at"]) not in syn.gaps
    ]
    queue_aht = sum(v["talk_s"] + HOLD + WRAPUP for v in window) / len(window)
    per: Counter[tuple[int, int]] = Counter(
        (_slot_at(v["arrived_at"]).day.weekday(), _slot_at(v["arrived_at"]).index) for v in window
    )
    thin = [f for f in from_store.slots if per[(f.slot.day.weekday(), f.slot.index)] < 20]
    assert len(thin) > 50  # the night's slots
    assert all(f.aht_s == pytest.approx(queue_aht) for f in thin)
    assert all(
        f.aht_s is not None and 120 + HOLD + WRAPUP < f.aht_s < 200 + HOLD + WRAPUP
        for f in from_store.slots
    )
    with capsys.disabled():
        print(
            f"\n[{migrated.kind}] {n_calls} calls over 9 weeks written through the "
            f"RecordWriter in {took:.1f} s; forecast of week 9 from the store, MAPE % vs the "
            "true rate: " + ", ".join(f"{c} {err[c]:.1f}" for c in CLASSES)
        )
    assert err["peak"] < 6.0
    assert err["off-peak"] < 9.0
    assert err["night"] < 25.0  # 1 to 3 calls a half hour: Poisson noise dominates

    # The whole plan from the store: week 9's recorded calls beside the forecast.
    result = await plan_from_store(engine, config, WEEK9, Targets(), now=NOW)
    mine = [r for r in result.rows if r.key == KEY]
    assert len(mine) == 7 * 48
    for r in mine:
        s = _slot(r.slot_label)
        assert (r.recorded, r.recorded_complete) == (syn.held_out[s], True), r.slot_label
    # every other configured queue has no records: a note each, not a row of zeros
    others = {k for k in offering_keys(config) if k != KEY}
    assert len(result.notes) == len(others)
    assert all("no arrivals history" in n for n in result.notes)
    # open peak slots need agents; the lab's two orders-en agents are not enough
    peak = [r for r in mine if r.open and interval_class(_slot(r.slot_label).index) == "peak"]
    assert peak and all(r.required is not None and r.required > r.staffed == 2 for r in peak)
    assert all(r.status == Status.UNDERSTAFFED for r in peak)


async def test_a_gap_is_flagged_not_zero_demand(
    migrated: Db, config: Config, tmp_path: Path
) -> None:
    # two weeks of one call a slot on Mondays 10:00; the second Monday's slot is a gap
    mon = [FIRST_MONDAY, FIRST_MONDAY + timedelta(days=7)]
    t = [datetime(d.year, d.month, d.day, 4, 35, tzinfo=UTC) for d in mon]  # 10:05 local
    recs: list[tuple[str, dict[str, object]]] = [
        (
            "calls",
            {
                "call_id": f"g{i}",
                "entry_site": "bangalore",
                "arrived_at": at,
                "queued_at": at,
                "target_site": "bangalore",
                "queue": "orders-en",
            },
        )
        for i, at in enumerate(t)
    ]
    # a call routed there that never queued (the caller hung up on the way) is not offered,
    # as in the interval report
    recs.append(
        (
            "calls",
            {
                "call_id": "never-queued",
                "entry_site": "bangalore",
                "arrived_at": t[0] + timedelta(minutes=2),
                "target_site": "bangalore",
                "queue": "orders-en",
            },
        )
    )
    recs.append(("coverage_gaps", {"site": "bangalore", "started_at": t[1] + timedelta(minutes=1)}))
    await write(migrated, recs, tmp_path / "w.journal")
    read = await read_store(migrated.engine(), config, [KEY], [(mon[0], mon[1])])
    # the gap is still open at NOW: every slot from 10:00 on the second Monday is flagged
    hist = read.history(datetime.combine(mon[1], datetime.min.time(), UTC) + timedelta(hours=6))
    obs = {o.slot: o for o in hist.arrivals(KEY, mon[0], mon[1])}
    assert (obs[Slot(mon[0], 20)].count, obs[Slot(mon[0], 20)].complete) == (1, True)
    assert (obs[Slot(mon[1], 20)].count, obs[Slot(mon[1], 20)].complete) == (1, False)
    assert not obs[Slot(mon[1], 21)].complete  # 10:30: inside the open gap
    # the forecast leaves the gap out: one complete Monday at 10:00 -> 1 call, not 0.5
    fc = forecast(hist, KEY, [mon[1] + timedelta(days=7)], weeks=2)
    assert fc.by_slot()[Slot(mon[1] + timedelta(days=7), 20)].calls == 1.0


async def test_an_empty_store_says_so(migrated: Db, config: Config) -> None:
    with pytest.raises(
        NoHistory,
        match="no queue of the config has history before 2026-11-02: nothing to plan from",
    ):
        await plan_from_store(
            migrated.engine(), config, plan_days(WEEK9[0], WEEK9[0]), Targets(), now=NOW
        )


def _config_with_store(tmp_path: Path, url: str) -> Path:
    text = (REPO / "examples" / "lab.yaml").read_text()
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(f"{text}\nstore: {{url: '{url}'}}\n")
    return cfg


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
def test_the_command_reads_the_store(
    db_target: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 8 weeks of 30 calls in every Monday 10:00-10:30 (local) of bangalore's orders-en,
    # and 12 calls on the planned Monday so far, with a 3-minute coverage gap in that slot
    first = date(2026, 10, 12)
    plan_day = first + timedelta(days=56)
    recs: list[tuple[str, dict[str, object]]] = []
    for w in range(9):
        day = first + timedelta(days=7 * w)
        t0 = datetime(day.year, day.month, day.day, 4, 30, tzinfo=UTC)  # 10:00 IST
        for i in range(30 if w < 8 else 12):
            recs.append(
                (
                    "calls",
                    {
                        "call_id": f"w{w}-{i}",
                        "entry_site": "dhaka",  # entered elsewhere, queued at bangalore
                        "arrived_at": t0 + timedelta(seconds=50 * i),
                        "queued_at": t0 + timedelta(seconds=50 * i + 1),
                        "target_site": "bangalore",
                        "queue": "orders-en",
                        "outcome": "answered",
                        "talk_s": 170.0,
                        "hold_s": 0.0,
                        "wrapup_s": 10.0,
                    },
                )
            )
    t_gap = datetime(plan_day.year, plan_day.month, plan_day.day, 4, 50, tzinfo=UTC)
    recs.append(
        (
            "coverage_gaps",
            {
                "site": "bangalore",
                "started_at": t_gap,
                "ended_at": t_gap + timedelta(minutes=3),
            },
        )
    )

    async def setup() -> None:
        await db_target.upgrade()
        await write(db_target, recs, tmp_path / "w.journal")
        await db_target.dispose()

    asyncio.run(setup())
    cfg = _config_with_store(tmp_path, db_target.settings.url.replace("+aiosqlite", ""))
    out_csv, png = tmp_path / "plan.csv", tmp_path / "plan.png"
    day = plan_day.isoformat()
    args = ["staffing", str(cfg), "--from", day, "--to", day]
    rc = main([*args, "--csv", str(out_csv), "--chart", str(png)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"from the records store (sqlite+aiosqlite:///{tmp_path}" in out
    line = next(s for s in out.splitlines() if "orders-en" in s and f"{day}T10:00" in s)
    # 30 calls in 30 min at AHT 180 s: A = 3 Erlangs -> 6 agents for 80/20 (Erlang C)
    assert line.split()[3:6] == ["04:30", "30.0", "180"]
    assert line.split()[-2:] == ["12*", "understaffed"]  # recorded so far; the slot saw a gap
    row = next(r for r in csv_rows(out_csv) if r["interval_start_local"] == f"{day}T10:00")
    assert (row["recorded_calls"], row["recorded_complete"]) == ("12", "0")
    assert (row["forecast_calls"], row["aht_seconds"]) == ("30.00", "180.0")
    nine = next(r for r in csv_rows(out_csv) if r["interval_start_local"] == f"{day}T09:30")
    assert (nine["forecast_calls"], nine["recorded_calls"], nine["recorded_complete"]) == (
        "0.00",
        "0",
        "1",
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # what-if: a sale day with 20 % more calls needs more agents
    rc = main([*args, "--volume=+20%", "--csv", str(out_csv)])
    capsys.readouterr()
    busier = next(r for r in csv_rows(out_csv) if r["interval_start_local"] == f"{day}T10:00")
    assert rc == 0 and busier["forecast_calls"] == "36.00"
    assert int(busier["required_agents"]) > int(row["required_agents"])


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_the_command_without_a_store_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing-here.db"
    cfg = _config_with_store(tmp_path, f"sqlite:///{missing}")
    rc = main(["staffing", str(cfg), "--from", "2026-12-07", "--to", "2026-12-07"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err == (
        f"error: sqlite+aiosqlite:///{missing}: no such database file: the records store is "
        "empty (run `ccbridge db upgrade CONFIG`, and the bridge to record calls) or give "
        "--history CSV\n"
    )
    # a PostgreSQL server nobody listens for: one line, no traceback
    cfg = _config_with_store(tmp_path, "postgresql://ccb@127.0.0.1:9/records")
    rc = main(["staffing", str(cfg), "--from", "2026-12-07", "--to", "2026-12-07"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("error: postgresql+asyncpg://ccb@127.0.0.1:9/records: cannot reach")


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
async def test_the_api_serves_the_plan_and_refuses_garbage(
    migrated: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "t")
    day = date(2026, 12, 7)
    recs = [
        (
            "calls",
            {
                "call_id": f"a{w}-{i}",
                "entry_site": "dhaka",
                "arrived_at": datetime(2026, 11, 30, 4, 40, tzinfo=UTC)
                - timedelta(days=7 * w, seconds=i),
                "queued_at": datetime(2026, 11, 30, 4, 40, tzinfo=UTC)
                - timedelta(days=7 * w, seconds=i - 1),
                "target_site": "dhaka",
                "queue": "orders-bn",
            },
        )
        for w in range(4)
        for i in range(20)
    ]
    await write(migrated, recs, tmp_path / "w.journal")
    at = Clock(datetime(2026, 12, 7, 3, 0, tzinfo=UTC))
    url = migrated.settings.url.replace("+aiosqlite", "")
    bridge = Bridge(load_config(_config_with_store(tmp_path, url)), at)
    one_day = {"from": "2026-12-07", "to": "2026-12-07"}
    async with TestClient(TestServer(bridge.http_app()), headers=ADMIN) as c:
        r = await c.get("/api/v1/staffing", params=one_day)
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["from"] == body["to"] == "2026-12-07"
        rows = [x for x in body["intervals"] if x["queue"] == "orders-bn" and x["site"] == "dhaka"]
        assert len(rows) == 48
        # 10:30 Dhaka (04:30 UTC): 20 calls every Monday for four weeks; AHT 180 s
        slot = next(x for x in rows if x["start_local"] == f"{day}T10:30")
        assert slot["start"] == "2026-12-07T04:30:00Z"
        # A = 2 Erlangs: 3 agents give 60.3 % in 20 s, 4 give 86.1 % (Erlang C)
        assert slot["forecast_calls"] == 20.0 and slot["required_agents"] == 4
        assert slot["staffed_agents"] == 2 and slot["status"] == "understaffed"
        assert slot["recorded_calls"] is None  # the records end before the plan
        assert any("bangalore/orders-en: no arrivals history" in n for n in body["notes"])
        # what-if: the command's knobs
        r = await c.get("/api/v1/staffing", params={**one_day, "volume": "+20%", "target": "90/15"})
        what_if = next(
            x
            for x in (await r.json())["intervals"]
            if x["queue"] == "orders-bn" and x["start_local"] == f"{day}T10:30"
        )
        assert what_if["forecast_calls"] == 24.0 and what_if["required_agents"] > 4
        # garbage: one clear 400 each
        for params, error, field in [
            ({"to": "2026-12-07"}, "missing-field", "from"),
            ({"from": "2026-12-07"}, "missing-field", "to"),
            ({"from": "7/12/2026", "to": "2026-12-07"}, "invalid-field", "from"),
            ({"from": "2026-12-07", "to": "2026-12-01"}, "invalid-field", None),
            ({"from": "2026-01-01", "to": "2026-12-31"}, "invalid-field", None),
            ({**one_day, "volume": "lots"}, "invalid-field", "volume"),
            ({**one_day, "target": "80"}, "invalid-field", "target"),
            ({**one_day, "aht": "-5"}, "invalid-field", "targets"),
            ({**one_day, "shrinkage": "100"}, "invalid-field", "targets"),
            ({**one_day, "weeks": "1e9"}, "invalid-field", "weeks"),
            ({**one_day, "weeks": "0"}, "invalid-field", None),
        ]:
            r = await c.get("/api/v1/staffing", params=params)
            got = await r.json()
            assert (r.status, got["error"]) == (400, error), (params, got)
            assert got.get("details", {}).get("field") == field, (params, got)
    await bridge.services.staffing.close()

    # a migrated store with no calls: 404 no-history, saying so
    empty_db = tmp_path / "empty" / "e.db"
    await run_db("upgrade", StoreSettings(url=f"sqlite+aiosqlite:///{empty_db}"), print, print)
    (tmp_path / "e").mkdir()
    empty = Bridge(load_config(_config_with_store(tmp_path / "e", f"sqlite:///{empty_db}")), at)
    # no database file at all: 503, and no empty file is created
    (tmp_path / "m").mkdir()
    missing = tmp_path / "m" / "missing.db"
    absent = Bridge(load_config(_config_with_store(tmp_path / "m", f"sqlite:///{missing}")), at)
    for b, status, error, text in [
        (empty, 404, "no-history", "no queue of the config has history before 2026-12-07"),
        (absent, 503, "records-unavailable", "no such database file"),
    ]:
        async with TestClient(TestServer(b.http_app()), headers=ADMIN) as c:
            r = await c.get("/api/v1/staffing", params=one_day)
            got = await r.json()
            assert (r.status, got["error"]) == (status, error), got
            assert text in got["message"]
        await b.services.staffing.close()
    assert not missing.exists()


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
async def test_the_bridge_gauges_show_the_current_slot(
    migrated: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "t")
    # four Mondays of 20 calls at 10:30 in Dhaka (orders-bn), as in the API test
    recs = [
        (
            "calls",
            {
                "call_id": f"g{w}-{i}",
                "entry_site": "dhaka",
                "arrived_at": datetime(2026, 11, 30, 4, 40, i, tzinfo=UTC) - timedelta(days=7 * w),
                "queued_at": datetime(2026, 11, 30, 4, 40, i, tzinfo=UTC) - timedelta(days=7 * w),
                "target_site": "dhaka",
                "queue": "orders-bn",
            },
        )
        for w in range(4)
        for i in range(20)
    ]
    await write(migrated, recs, tmp_path / "w.journal")
    url = migrated.settings.url.replace("+aiosqlite", "")
    # Monday 2026-12-07 04:40 UTC: 10:40 in Dhaka (the 10:30 slot), 10:10 in Bangalore
    now = datetime(2026, 12, 7, 4, 40, tzinfo=UTC)
    bridge = Bridge(load_config(_config_with_store(tmp_path, url)), Clock(now))
    assert bridge.live_plan is not None
    get = bridge.registry.get_sample_value
    bn = {"site": "dhaka", "queue": "orders-bn"}
    assert get("ccbridge_agents_required", bn) is None  # no plan yet: no series
    assert await bridge.live_plan.refresh_once()
    assert get("ccbridge_agents_required", bn) == 4.0  # A = 2 Erlangs at 80/20
    # the bridge keeps the slots of the next two hours, not the three days planned
    rows = bridge.live_plan.rows
    assert rows and len(rows) <= 5 * len({r.key for r in rows})  # 30-min slots: now + 4
    assert all(
        r.utc_start is not None
        and now - timedelta(seconds=r.seconds) < r.utc_start < now + PLAN_AHEAD
        for r in rows
    )
    assert get("ccbridge_agents_staffed", bn) == 0.0  # nobody logged in (no AMI link)
    bridge.state = set_site_up(bridge.state, "dhaka", True, 0.0)
    for iface in ("PJSIP/dac-agent1", "PJSIP/dac-agent2"):
        bridge.bus.dispatch("dhaka", _member("orders-bn", iface))
    assert get("ccbridge_agents_staffed", bn) == 2.0
    # queues with no records have no forecast: no required series, never a made-up 0
    assert get("ccbridge_agents_required", {"site": "bangalore", "queue": "orders-en"}) is None
    # labels are the config's sites and queues: at most one series per queue
    text = generate_latest(bridge.registry).decode()
    series = [ln for ln in text.splitlines() if ln.startswith("ccbridge_agents_required{")]
    assert series == ['ccbridge_agents_required{queue="orders-bn",site="dhaka"} 4.0']
    await bridge.services.staffing.close()

    # an empty store: no plan, the reason kept, no series, nothing raised
    empty_db = tmp_path / "e" / "e.db"
    await run_db("upgrade", StoreSettings(url=f"sqlite+aiosqlite:///{empty_db}"), print, print)
    cfg = _config_with_store(tmp_path / "e", f"sqlite:///{empty_db}")
    empty = Bridge(load_config(cfg), Clock(now))
    assert empty.live_plan is not None
    assert not await empty.live_plan.refresh_once()
    assert empty.live_plan.error is not None and "no queue of the config has history" in (
        empty.live_plan.error
    )
    assert empty.registry.get_sample_value("ccbridge_agents_required", bn) is None
    await empty.services.staffing.close()


def _member(queue: str, iface: str) -> dict[str, str]:
    return {
        "Event": "QueueMemberAdded",
        "Queue": queue,
        "Interface": iface,
        "MemberName": iface,
        "Status": "1",
        "Paused": "0",
    }
