"""The requirement per local half hour from the lab config: hours, holidays, staffing,
the what-if, DST slots; each figure worked by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from ccbridge.config import load_config
from ccbridge.config.model import Config
from ccbridge.staffing.erlang import Performance, performance
from ccbridge.staffing.forecast import Basis, Forecast, ForecastSlot
from ccbridge.staffing.history import QueueKey
from ccbridge.staffing.plan import (
    IntervalPlan,
    Status,
    Targets,
    configured_staff,
    offering_keys,
    plan,
)
from ccbridge.staffing.slots import SLOTS_PER_DAY, Slot

LAB = Path(__file__).resolve().parents[2] / "examples" / "lab.yaml"
MONDAY = date(2026, 12, 7)


@pytest.fixture(scope="module")
def lab() -> Config:
    return load_config(LAB, resolve_secrets=False)


def flat(key: QueueKey, day: date, calls: float | None, basis: str = Basis.PROFILE) -> Forecast:
    slots = tuple(ForecastSlot(Slot(day, i), calls, basis, 8) for i in range(SLOTS_PER_DAY))
    return Forecast(key, "profile", (day, day), 8, 0.0, slots)


def rows_by_slot(rows: list[IntervalPlan]) -> dict[str, IntervalPlan]:
    return {r.slot_label[11:]: r for r in rows}


def test_configured_staff_and_keys(lab: Config) -> None:
    staff = configured_staff(lab)
    assert staff[("bangalore", "orders-en")] == 2  # blr-agent1, blr-agent2
    assert staff[("bangalore", "returns-en")] == 1
    assert staff[("dhaka", "orders-bn")] == 2
    assert ("bangalore", "care-en") not in staff  # care agents log in through the API
    keys = offering_keys(lab)
    assert QueueKey("dhaka", "returns", "bn") in keys
    assert QueueKey("dhaka", "returns", "en") not in keys
    assert len(keys) == 12


def test_100_calls_a_half_hour_at_bangalore(lab: Config) -> None:
    key = QueueKey("bangalore", "orders", "en")
    rows = rows_by_slot(plan(lab, [flat(key, MONDAY, 100.0)], Targets()))
    r = rows["09:00"]  # open mon-sat 09:00-21:00 IST
    assert r.utc_start == datetime(2026, 12, 7, 3, 30, tzinfo=UTC)
    assert (r.seconds, r.open, r.calls) == (1800, True, 100.0)
    # the published vector: A = 10, 14 agents, 80/20 met at 88.8 %; 14 / 0.7 = 20
    assert (r.required, r.rostered, r.staffed) == (14, 20, 2)
    assert r.service_level == pytest.approx(0.88835, abs=1e-5)
    assert r.staffed_service_level == 0.0  # 2 agents for 10 Erlangs: unstable
    assert r.status == Status.UNDERSTAFFED
    assert rows["20:30"].status == Status.UNDERSTAFFED
    # closed before 09:00 and from 21:00, with calls still forecast there
    for hhmm in ("08:30", "21:00", "03:00"):
        c = rows[hhmm]
        assert (c.open, c.required, c.status) == (False, 0, Status.CLOSED_WITH_DEMAND)


def test_what_if_plus_20_percent_follows_erlang_c(lab: Config) -> None:
    key = QueueKey("bangalore", "orders", "en")
    base = rows_by_slot(plan(lab, [flat(key, MONDAY, 100.0)], Targets()))["10:00"]
    more = rows_by_slot(plan(lab, [flat(key, MONDAY, 100.0)], Targets(volume=1.2)))["10:00"]
    assert more.calls == pytest.approx(120.0)
    # A = 120 x 180 / 1800 = 12: 15 agents give 77.1 % (short of 80), 16 give 86.9 %
    sl15, sl16 = (performance(n, 12.0, 180, 20) for n in (15, 16))
    assert isinstance(sl15, Performance) and isinstance(sl16, Performance)
    assert sl15.service_level < 0.8 <= sl16.service_level
    assert (base.required, more.required) == (14, 16)
    assert more.rostered == 23  # 16 / 0.7 = 22.9
    # a longer AHT and a tighter target move it the same way
    slower = rows_by_slot(plan(lab, [flat(key, MONDAY, 100.0)], Targets(aht_s=216)))["10:00"]
    assert slower.required == 16  # 100 x 216 / 1800 = 12 Erlangs again
    tighter = rows_by_slot(
        plan(lab, [flat(key, MONDAY, 100.0)], Targets(service_level=0.9, threshold_s=20))
    )["10:00"]
    assert tighter.required == 15  # 14 give 88.8 % < 90; 15 give 94.1 %


def test_a_quiet_queue_staffed_enough_is_ok(lab: Config) -> None:
    key = QueueKey("dhaka", "orders", "bn")
    # 10 calls in 30 min at 180 s: A = 1; 2 agents give C = 1/3 and
    # SL 1 - exp(-20/180)/3 = 70.2 % < 80 %;
    # 3 give C = 1/11 and SL 1 - exp(-40/180)/11 = 92.7 %; max occupancy 85 % is loose
    r = rows_by_slot(plan(lab, [flat(key, MONDAY, 10.0)], Targets()))["10:00"]
    assert (r.required, r.staffed, r.status) == (3, 2, Status.UNDERSTAFFED)
    assert r.staffed_service_level == pytest.approx(0.70172, abs=1e-5)
    r = rows_by_slot(plan(lab, [flat(key, MONDAY, 4.0)], Targets()))["10:00"]
    assert (r.required, r.staffed, r.status) == (2, 2, Status.OK)


def test_a_national_holiday_closes_the_queue(lab: Config) -> None:
    # 2026-11-30, a Monday, is Bonifacio Day in the Philippines: manila's returns line
    # (mon-fri 08:00-20:00) stays shut; its 24/7 orders line ignores holidays (loader)
    key = QueueKey("manila", "returns", "en")
    rows = plan(lab, [flat(key, date(2026, 11, 30), 20.0)], Targets())
    assert {r.status for r in rows} == {Status.CLOSED_WITH_DEMAND}
    rows = rows_by_slot(plan(lab, [flat(key, date(2026, 12, 1), 20.0)], Targets()))
    # A = 20 x 180 / 1800 = 2: 3 agents give 60.2 %, 4 give 86.1 %
    assert rows["10:00"].open and rows["10:00"].required == 4
    always = QueueKey("manila", "orders", "en")
    assert {r.open for r in plan(lab, [flat(always, date(2026, 11, 30), 1.0)], Targets())} == {True}


def test_no_forecast_is_not_zero_and_unknown_queues_are_left_out(lab: Config) -> None:
    key = QueueKey("bangalore", "orders", "en")
    rows = plan(lab, [flat(key, MONDAY, None, Basis.NO_HISTORY)], Targets())
    r = rows_by_slot(rows)["10:00"]
    assert (r.required, r.status) == (None, Status.NO_FORECAST)
    assert plan(lab, [flat(QueueKey("bangalore", "orders", "ur"), MONDAY, 5.0)], Targets()) == []


def test_an_unreachable_target_says_so(lab: Config) -> None:
    key = QueueKey("bangalore", "orders", "en")
    # 1,000,000 calls in half an hour is 100,000 Erlangs: more than the 10,000-agent cap
    r = rows_by_slot(plan(lab, [flat(key, MONDAY, 1_000_000.0)], Targets()))["10:00"]
    assert (r.required, r.status) == (None, Status.UNREACHABLE)


def test_dst_slots_at_a_site_that_changes_clocks(tmp_path: Path, lab: Config) -> None:
    text = LAB.read_text().replace("timezone: Asia/Manila", "timezone: Europe/London")
    text = text.replace("../.lab/secrets", str(LAB.parent.parent / ".lab" / "secrets"))
    p = tmp_path / "london.yaml"
    p.write_text(text)
    cfg = load_config(p, resolve_secrets=False)
    key = QueueKey("manila", "orders", "en")  # always open, now on London time
    spring = rows_by_slot(plan(cfg, [flat(key, date(2026, 3, 29), 100.0)], Targets()))
    assert spring["01:00"].status == Status.NO_SUCH_SLOT and spring["01:30"].seconds == 0
    assert spring["02:00"].required == 14 and spring["02:00"].seconds == 1800
    autumn = rows_by_slot(plan(cfg, [flat(key, date(2026, 10, 25), 100.0)], Targets()))
    # 100 calls over the repeated hour's 3,600 s: A = 5; 80/20 needs 8 agents
    r = autumn["01:00"]
    assert (r.seconds, r.required) == (3600, 8)
    assert r.utc_start == datetime(2026, 10, 25, 0, 0, tzinfo=UTC)
    sl7 = performance(7, 5.0, 180, 20)
    assert isinstance(sl7, Performance)
    assert sl7.service_level < 0.8 <= (r.service_level or 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aht_s": 0}, "aht_s must be greater than zero"),
        ({"service_level": 1.2}, "target service level must be in (0, 1]"),
        ({"max_occupancy": 0.0}, "max_occupancy must be in (0, 1]"),
        ({"shrinkage": 1.0}, "shrinkage must be in [0, 1)"),
        ({"threshold_s": float("nan")}, "threshold_s must be a finite number"),
        ({"volume": -0.5}, "calls must not be negative"),
    ],
)
def test_bad_targets(kwargs: dict[str, float], message: str) -> None:
    import re

    with pytest.raises(ValueError, match=re.escape(message)):
        Targets(**kwargs)


def test_the_history_aht_unless_a_what_if_sets_one(lab: Config) -> None:
    key = QueueKey("bangalore", "orders", "en")
    slots = tuple(
        ForecastSlot(Slot(MONDAY, i), 100.0, Basis.PROFILE, 8, None, 216.0 if i == 20 else None)
        for i in range(SLOTS_PER_DAY)
    )
    fc = Forecast(key, "profile", (MONDAY, MONDAY), 8, 0.0, slots)
    rows = rows_by_slot(plan(lab, [fc], Targets()))
    # 10:00 has an AHT of 216 s in the history: A = 100 x 216 / 1800 = 12 -> 16 agents
    assert (rows["10:00"].aht_s, rows["10:00"].required) == (216.0, 16)
    # 10:30 has none: the plan's 180 s, A = 10 -> 14
    assert (rows["10:30"].aht_s, rows["10:30"].required) == (180.0, 14)
    # --aht 180 everywhere (aht_from_history off): 14 at 10:00 too
    rows = rows_by_slot(plan(lab, [fc], Targets(aht_s=180.0, aht_from_history=False)))
    assert (rows["10:00"].aht_s, rows["10:00"].required) == (180.0, 14)
