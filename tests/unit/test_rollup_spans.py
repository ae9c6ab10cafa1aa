"""The rollup's pure parts: which quarter hours a report reads from it and which from
calls rows, when a local day is closed, what the fingerprint covers, and that the
rollup table holds exactly the report's sums."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from ccbridge.reports import queries
from ccbridge.reports.rollup import SiteSums, last_closed, raw_ranges, slot_spans
from ccbridge.store.schema import report_rollup

NY = ZoneInfo("America/New_York")


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def q(t: datetime) -> int:
    return int(t.timestamp()) // 900


def test_rolled_days_clipped_merged_and_the_rest_raw() -> None:
    start, end = utc(2026, 11, 1, 6), utc(2026, 11, 4, 12)
    days = [
        (utc(2026, 11, 2, 5), utc(2026, 11, 3, 5)),  # two adjacent days: one span
        (utc(2026, 11, 1, 4), utc(2026, 11, 2, 5)),  # starts before the range: clipped
        (utc(2026, 11, 4, 5), utc(2026, 11, 5, 5)),  # ends after it: clipped
        (utc(2026, 10, 1), utc(2026, 10, 2)),  # outside: nothing
    ]
    spans = slot_spans(days, start, end)
    assert spans == [(q(start), q(utc(2026, 11, 3, 5))), (q(utc(2026, 11, 4, 5)), q(end))]
    assert raw_ranges(spans, start, end) == [(utc(2026, 11, 3, 5), utc(2026, 11, 4, 5))]
    assert raw_ranges([], start, end) == [(start, end)]
    assert raw_ranges([(q(start), q(end))], start, end) == []


def test_a_day_is_closed_its_grace_after_its_local_midnight() -> None:
    # New York's fall-back day ends 2026-11-02 05:00 UTC (a 25-hour day).
    assert last_closed(NY, utc(2026, 11, 2, 6, 59), 7200) == date(2026, 10, 31)
    assert last_closed(NY, utc(2026, 11, 2, 7), 7200) == date(2026, 11, 1)
    assert last_closed(NY, utc(2026, 11, 2, 5), 0) == date(2026, 11, 1)


def test_the_fingerprint_covers_zone_thresholds_and_short_abandons() -> None:
    base = SiteSums("dhaka", ZoneInfo("Asia/Dhaka"), {"orders-en": 20, "care-en": 30}, 20, 5.0)
    same = SiteSums("dhaka", ZoneInfo("Asia/Dhaka"), {"care-en": 30, "orders-en": 20}, 20, 5.0)
    assert base.fingerprint == same.fingerprint and len(base.fingerprint) == 64
    others = [
        SiteSums("dhaka", NY, base.thresholds, 20, 5.0),
        SiteSums("dhaka", base.zone, {"orders-en": 21, "care-en": 30}, 20, 5.0),
        SiteSums("dhaka", base.zone, base.thresholds, 25, 5.0),
        SiteSums("dhaka", base.zone, base.thresholds, 20, 3.0),
    ]
    assert len({base.fingerprint, *(o.fingerprint for o in others)}) == 5


def test_the_rollup_table_holds_the_reports_sums() -> None:
    names = tuple(c.name for c in report_rollup.columns if c.name != "id")
    assert names == queries.ROLLUP_COLUMNS
    assert queries.ROLLUP_COLUMNS[7:] == queries.SUM_COLUMNS
    assert timedelta(seconds=queries.SLOT_S) == timedelta(minutes=15)
