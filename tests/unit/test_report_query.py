"""The reports' query parser on arbitrary input: a typed, bounded query or a QueryError
naming a parameter, never anything else (hypothesis); and the bounds themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccbridge.reports.intervals import MAX_BUCKETS, SLOT_S, IntervalError, buckets
from ccbridge.reports.query import (
    CALL_PARAMS,
    MAX_PAGE,
    REPORT_PARAMS,
    Cursor,
    QueryError,
    parse_call_query,
    parse_report_query,
)

SITES = ("bangalore", "dhaka", "manila")
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ZONES = ("Asia/Dhaka", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe", "UTC")

# Values that look like what a client sends, plus anything at all.
plausible = st.sampled_from(
    [
        "2026-11-27",
        "2026-11-28",
        "2026-11-27T00:00:00Z",
        "2026-11-27T10:15:00+06:00",
        "2025-01-01T00:00:00-05:00",
        "9999-12-31",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "15",
        "30",
        "60",
        "day",
        "dhaka",
        "dhaka,manila",
        "csv",
        "json",
        "1000000",
        "0",
        "-5",
        "orders",
        "en",
        "site",
        "queue",
        "answered",
        "",
        ",",
        Cursor(NOW, "c1").encode(),
    ]
)
values = st.lists(st.one_of(plausible, st.text(max_size=30)), min_size=1, max_size=3)


def params(names: frozenset[str]) -> st.SearchStrategy[dict[str, list[str]]]:
    keys = st.one_of(st.sampled_from(sorted(names)), st.text(max_size=10))
    return st.dictionaries(keys, values, max_size=6)


@settings(max_examples=250, deadline=None)
@given(params(REPORT_PARAMS), st.booleans(), st.sampled_from(ZONES))
def test_report_parser_answers_a_bounded_query_or_a_named_error(
    p: dict[str, list[str]], agents: bool, zone: str
) -> None:
    from zoneinfo import ZoneInfo

    try:
        q = parse_report_query(
            p,
            sites=SITES,
            services=("orders",),
            languages=("en",),
            agents=agents,
        )
    except QueryError as exc:
        assert exc.field and str(exc)
        return
    assert q.sites and set(q.sites) <= set(SITES)
    start, end = q.period.utc(ZoneInfo(zone))
    assert end > start and (end - start) <= timedelta(seconds=(MAX_BUCKETS + 2) * SLOT_S)
    try:
        items = buckets(start, end, ZoneInfo(zone), q.step)
    except IntervalError:
        return  # the service answers this 400 too
    assert len(items) <= MAX_BUCKETS


@settings(max_examples=250, deadline=None)
@given(params(CALL_PARAMS))
def test_call_parser_answers_a_bounded_query_or_a_named_error(p: dict[str, list[str]]) -> None:
    try:
        q = parse_call_query(p, sites=SITES, now=NOW)
    except QueryError as exc:
        assert exc.field and str(exc)
        return
    assert 1 <= q.limit <= MAX_PAGE
    assert q.end > q.start
    assert set(q.sites) <= set(SITES)


def test_a_million_rows_per_page_is_refused() -> None:
    with pytest.raises(QueryError, match=r"1\.\.1000") as exc:
        parse_call_query({"limit": ["1000000"]}, sites=SITES, now=NOW)
    assert exc.value.field == "limit"


def test_a_cursor_round_trips() -> None:
    c = Cursor(NOW, "call-1")
    q = parse_call_query({"after": [c.encode()]}, sites=SITES, now=NOW)
    assert q.after == c
    assert q.start == NOW - timedelta(days=1) and q.end == NOW  # the default range
