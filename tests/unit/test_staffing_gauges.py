"""The required/staffed gauges: the current half hour's rows, one series per queue."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ccbridge.config import load_config
from ccbridge.staffing.forecast import Basis, Forecast, ForecastSlot
from ccbridge.staffing.gauges import StaffingCollector, current
from ccbridge.staffing.history import QueueKey
from ccbridge.staffing.plan import Targets, plan
from ccbridge.staffing.slots import SLOTS_PER_DAY, Slot

LAB = Path(__file__).resolve().parents[2] / "examples" / "lab.yaml"
DAY = date(2026, 12, 7)


def _plan() -> list:  # type: ignore[type-arg]
    cfg = load_config(LAB, resolve_secrets=False)
    demand = {QueueKey("bangalore", "orders", "en"): 100.0, QueueKey("dhaka", "orders", "bn"): 10.0}
    fcs = [
        Forecast(
            k,
            "profile",
            (DAY, DAY),
            8,
            0.0,
            tuple(ForecastSlot(Slot(DAY, i), c, Basis.PROFILE, 8) for i in range(SLOTS_PER_DAY)),
        )
        for k, c in demand.items()
    ]
    return plan(cfg, fcs, Targets())


def test_current_rows_and_the_gauges() -> None:
    rows = _plan()
    # 04:40 UTC is 10:10 in Bangalore (slot 10:00) and 10:40 in Dhaka (slot 10:30)
    now = datetime(2026, 12, 7, 4, 40, tzinfo=UTC)
    cur = current(rows, now)
    assert [(r.key.site, r.slot_label) for r in cur] == [
        ("bangalore", "2026-12-07T10:00"),
        ("dhaka", "2026-12-07T10:30"),
    ]
    reg = CollectorRegistry()
    reg.register(StaffingCollector(lambda: current(rows, now)))
    get = reg.get_sample_value
    assert get("ccbridge_agents_required", {"site": "bangalore", "queue": "orders-en"}) == 14.0
    assert get("ccbridge_agents_staffed", {"site": "bangalore", "queue": "orders-en"}) == 2.0
    assert get("ccbridge_agents_required", {"site": "dhaka", "queue": "orders-bn"}) == 3.0
    assert get("ccbridge_agents_staffed", {"site": "dhaka", "queue": "orders-bn"}) == 2.0
    text = generate_latest(reg).decode()
    assert text.count("ccbridge_agents_required{") == 2  # one series per queue, no more
    # a filtered scrape finds the collector by name (describe)
    only = generate_latest(reg.restricted_registry(["ccbridge_agents_staffed"])).decode()
    assert "ccbridge_agents_staffed{" in only and "ccbridge_agents_required{" not in only


def test_closed_queue_is_zero_required_and_no_row_outside_the_plan() -> None:
    rows = _plan()
    night = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)  # 22:30 in Bangalore: closed
    cur = current(rows, night)
    blr = next(r for r in cur if r.key.site == "bangalore")
    assert (blr.open, blr.required) == (False, 0)
    assert current(rows, datetime(2026, 12, 9, tzinfo=UTC)) == []
    with pytest.raises(ValueError, match="must carry a time zone"):
        current(rows, datetime(2026, 12, 7, 4, 40))
