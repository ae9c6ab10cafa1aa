"""Staffing from the records store, on SQLite and PostgreSQL: 8 weeks of seeded synthetic
calls written through the RecordWriter, read back per local half hour, forecast for the
9th week (MAPE per interval class printed and bounded), the plan's recorded arrivals,
coverage gaps flagged, and an empty store refused with a clear message."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ccbridge.config import load_config
from ccbridge.config.model import Config
from ccbridge.staffing.forecast import forecast
from ccbridge.staffing.history import NoHistory
from ccbridge.staffing.plan import Status, Targets, offering_keys
from ccbridge.staffing.planning import plan_days
from ccbridge.staffing.slots import Slot, slot_of
from ccbridge.staffing.storehistory import history_ranges, plan_from_store, read_store
from tests.store.conftest import Db
from tests.store.staffing_records import HOLD, TZ, WRAPUP, records, write
from tests.unit.staffing_history import FIRST_MONDAY, KEY, generate, interval_class

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
                "target_site": "bangalore",
                "queue": "orders-en",
            },
        )
        for i, at in enumerate(t)
    ]
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
    with pytest.raises(NoHistory, match="no queue of the config has call records before"):
        await plan_from_store(
            migrated.engine(), config, plan_days(WEEK9[0], WEEK9[0]), Targets(), now=NOW
        )
